//! The settle rule, with no I/O: what becomes of a message once its action has run (or could
//! not), from the outcome and the subscriber's attempts and backoff. The subscriber carries it
//! out: ack, nak with a delay, or store a dead letter and terminate.

use std::time::Duration;

use hookrelay::config::SubscriberSettings;

use crate::action::ActionError;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The action succeeded: acknowledge.
    Ack,
    /// A transient failure (`reason`) with attempts left: deliver again after `after`.
    Retry { reason: String, after: Duration },
    /// Given up: store a dead letter saying `reason`, then terminate the message. Should the
    /// dead letter not be stored, the message is kept and delivered again after `or_retry_after`.
    DeadLetter {
        reason: String,
        or_retry_after: Duration,
    },
}

/// Whether the `delivered`-th delivery (1 for the first) may still run the action: past
/// `max_deliver`, an earlier attempt ran out of time without settling, and the event is given up.
pub fn may_run(settings: &SubscriberSettings, delivered: i64) -> Result<(), ActionError> {
    if delivered > i64::from(settings.max_deliver) {
        return Err(ActionError::Permanent(format!(
            "no attempts left after {} deliveries (the last attempt did not finish)",
            settings.max_deliver
        )));
    }
    Ok(())
}

/// The settlement of the `delivered`-th delivery whose action ended with `outcome`.
pub fn settle(
    settings: &SubscriberSettings,
    delivered: i64,
    outcome: Result<(), ActionError>,
) -> Settlement {
    let retry_delay = settings.backoff_for(u32::try_from(delivered).unwrap_or(u32::MAX));
    let attempts_left = delivered < i64::from(settings.max_deliver);
    match outcome {
        Ok(()) => Settlement::Ack,
        Err(ActionError::Transient(reason)) if attempts_left => Settlement::Retry {
            reason,
            after: retry_delay,
        },
        Err(ActionError::Throttled {
            reason,
            retry_after,
        }) if attempts_left => Settlement::Retry {
            reason,
            after: retry_delay.max(retry_after),
        },
        Err(error) => Settlement::DeadLetter {
            reason: error.to_string(),
            or_retry_after: retry_delay,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay::config::ActionSettings;

    fn settings() -> SubscriberSettings {
        SubscriberSettings {
            name: "s".into(),
            event_types: vec!["user.lifecycle.create".into()],
            action: ActionSettings::Noop,
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            concurrency: 1,
            read_ahead: 1,
            filter: None,
            rate_limit: None,
            attempt_records: hookrelay::config::AttemptRecords::All,
        }
    }

    fn transient() -> Result<(), ActionError> {
        Err(ActionError::Transient("503".into()))
    }

    fn permanent() -> Result<(), ActionError> {
        Err(ActionError::Permanent("no user".into()))
    }

    fn dead_letter(reason: &str, or_retry_after: u64) -> Settlement {
        Settlement::DeadLetter {
            reason: reason.into(),
            or_retry_after: Duration::from_secs(or_retry_after),
        }
    }

    fn retry(after: u64) -> Settlement {
        Settlement::Retry {
            reason: "503".into(),
            after: Duration::from_secs(after),
        }
    }

    #[test]
    fn every_row_of_the_settle_table() {
        // (delivery, outcome, settlement) with max_deliver 3 and backoff [1s, 5s].
        let table = [
            (1, Ok(()), Settlement::Ack),
            (3, Ok(()), Settlement::Ack),
            (1, transient(), retry(1)),
            (2, transient(), retry(5)),
            // The last backoff repeats; the last attempt gives up.
            (3, transient(), dead_letter("503", 5)),
            (1, permanent(), dead_letter("no user", 1)),
            (3, permanent(), dead_letter("no user", 5)),
            (4, transient(), dead_letter("503", 5)),
        ];
        for (delivered, outcome, expected) in table {
            let label = format!("delivery {delivered}, {outcome:?}");
            assert_eq!(settle(&settings(), delivered, outcome), expected, "{label}");
        }
    }

    #[test]
    fn a_delivery_past_max_deliver_is_given_up_without_running_the_action() {
        assert_eq!(may_run(&settings(), 1), Ok(()));
        assert_eq!(may_run(&settings(), 3), Ok(()));
        let Err(ActionError::Permanent(reason)) = may_run(&settings(), 4) else {
            panic!("the 4th delivery of 3 allowed runs");
        };
        assert!(reason.contains("after 3 deliveries"), "{reason}");
    }

    #[test]
    fn the_last_backoff_repeats_for_later_retries() {
        let mut settings = settings();
        settings.max_deliver = 10;
        assert_eq!(settle(&settings, 7, transient()), retry(5));
        assert_eq!(settle(&settings, 9, transient()), retry(5));
        assert_eq!(settle(&settings, 10, transient()), dead_letter("503", 5));
    }
}

//! What each subscriber did lately, read from the worker's attempt records as they are written
//! (and, at start, those of the last hour): its last success, its last failure and why, and how
//! many attempts succeeded and failed in each of the last 60 minutes, for the subscribers
//! page's sparkline. Only these sums are kept, never the records.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use hookrelay::attempts::{self, Attempt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The minutes a sparkline covers.
pub const MINUTES: usize = 60;

/// One subscriber's recent activity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// When its last successful attempt started (as pages show times).
    pub last_success: Option<String>,
    /// When its last failed attempt started, and why it failed.
    pub last_failure: Option<(String, String)>,
    /// Successes and failures per minute, oldest first, the last one the current minute.
    pub per_minute: Vec<(u32, u32)>,
}

#[derive(Default)]
struct Sums {
    last_success: Option<(SystemTime, String)>,
    last_failure: Option<(SystemTime, String, String)>,
    /// Keyed by the minute since 1970.
    minutes: HashMap<u64, (u32, u32)>,
}

/// Every subscriber's sums.
#[derive(Default)]
pub struct Activity {
    sums: Mutex<HashMap<String, Sums>>,
}

fn minute_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl Activity {
    /// Counts one attempt of `subscriber`.
    pub fn add(&self, subscriber: &str, attempt: &Attempt) {
        let started = attempt.started();
        let mut sums = self.sums.lock().expect("not poisoned");
        let sums = sums.entry(subscriber.to_owned()).or_default();
        let minute = sums.minutes.entry(minute_of(started)).or_default();
        if attempt.outcome == attempts::Outcome::Ok {
            minute.0 += 1;
            if sums
                .last_success
                .as_ref()
                .is_none_or(|(t, _)| *t <= started)
            {
                sums.last_success = Some((started, crate::pages::shown_time(started)));
            }
        } else {
            minute.1 += 1;
            if sums
                .last_failure
                .as_ref()
                .is_none_or(|(t, ..)| *t <= started)
            {
                let why = attempt.error.clone().unwrap_or_default();
                sums.last_failure = Some((started, crate::pages::shown_time(started), why));
            }
        }
        let oldest = minute_of(SystemTime::now()).saturating_sub(MINUTES as u64);
        sums.minutes.retain(|m, _| *m > oldest);
    }

    /// What `subscriber` did lately.
    pub fn recent(&self, subscriber: &str) -> Recent {
        let sums = self.sums.lock().expect("not poisoned");
        let Some(sums) = sums.get(subscriber) else {
            return Recent {
                per_minute: vec![(0, 0); MINUTES],
                ..Recent::default()
            };
        };
        let now = minute_of(SystemTime::now());
        Recent {
            last_success: sums.last_success.as_ref().map(|(_, at)| at.clone()),
            last_failure: (sums.last_failure.as_ref())
                .map(|(_, at, why)| (at.clone(), why.clone())),
            per_minute: (0..MINUTES as u64)
                .rev()
                .map(|ago| sums.minutes.get(&(now - ago)).copied().unwrap_or_default())
                .collect(),
        }
    }

    /// Reads the attempt records from an hour ago on, then as they come, until `shutdown`; a
    /// read that fails (no bucket yet: no worker ran) starts again after 5 s, from where it was.
    pub async fn follow(
        &self,
        js: jetstream::Context,
        bucket: String,
        shutdown: CancellationToken,
    ) {
        let mut from = consumer::DeliverPolicy::ByStartTime {
            start_time: (SystemTime::now() - Duration::from_secs(MINUTES as u64 * 60)).into(),
        };
        let prefix = format!("$KV.{bucket}.");
        while !shutdown.is_cancelled() {
            let read = async {
                let stream = js.get_stream(format!("KV_{bucket}")).await?;
                let reader = stream
                    .create_consumer(consumer::pull::OrderedConfig {
                        deliver_policy: from,
                        ..Default::default()
                    })
                    .await?;
                let mut messages = reader.messages().await?;
                while let Some(message) = messages.next().await {
                    let message = message?;
                    let key = message
                        .subject
                        .strip_prefix(prefix.as_str())
                        .unwrap_or_default();
                    let subscriber = key.split('.').next().unwrap_or_default();
                    if let Ok(attempt) = serde_json::from_slice::<Attempt>(&message.payload) {
                        self.add(subscriber, &attempt);
                    }
                    if let Ok(info) = message.info() {
                        from = consumer::DeliverPolicy::ByStartSequence {
                            start_sequence: info.stream_sequence + 1,
                        };
                    }
                }
                Ok::<_, async_nats::Error>(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = read => if let Err(e) = result {
                    tracing::debug!(error = %e, "cannot read the attempt records yet; trying again in 5s");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_success_and_failure_and_a_minute_by_minute_count() {
        let activity = Activity::default();
        let now = SystemTime::now();
        let ok = |ago: u64| {
            Attempt::new(
                1,
                now - Duration::from_secs(ago),
                Duration::ZERO,
                attempts::Outcome::Ok,
            )
        };
        activity.add("crm", &ok(125));
        activity.add("crm", &ok(5));
        activity.add("crm", &ok(65));
        let failed = Attempt::new(
            2,
            now - Duration::from_secs(30),
            Duration::ZERO,
            attempts::Outcome::Retry,
        )
        .failed("http://crm/... answered 503");
        activity.add("crm", &failed);
        activity.add("crm", &ok(3 * 3600));

        let recent = activity.recent("crm");
        assert_eq!(
            recent.last_success,
            Some(crate::pages::shown_time(ok(5).started()))
        );
        assert_eq!(
            recent.last_failure,
            Some((
                crate::pages::shown_time(failed.started()),
                "http://crm/... answered 503".into()
            ))
        );
        assert_eq!(recent.per_minute.len(), MINUTES);
        let (ok_sum, failed_sum) = recent
            .per_minute
            .iter()
            .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
        assert_eq!(
            (ok_sum, failed_sum),
            (3, 1),
            "the one of 3 h ago is past the hour"
        );
        assert_eq!(activity.recent("other").per_minute, vec![(0, 0); MINUTES]);
    }
}

//! When a subscriber's next action may start: its `rate_limit` (at most `count` starts in any
//! `per`, across all of its consumers) and a pause a downstream asked for (`Retry-After`).

use std::collections::VecDeque;
use std::sync::Mutex;

use hookrelay::config::Rate;
use tokio::time::Instant;

/// One subscriber's gate.
pub struct Gate {
    rate: Option<Rate>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The starts within the last `rate.per`, oldest first.
    starts: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Gate {
    pub fn new(rate: Option<Rate>) -> Self {
        Gate {
            rate,
            state: Mutex::new(State::default()),
        }
    }

    /// Takes a start at `now` if one is free, or says when to ask again.
    pub fn try_start(&self, now: Instant) -> Result<(), Instant> {
        let mut state = self.state.lock().expect("never poisoned");
        if let Some(until) = state.paused_until {
            if now < until {
                return Err(until);
            }
            state.paused_until = None;
        }
        let Some(rate) = self.rate else {
            return Ok(());
        };
        while (state.starts.front()).is_some_and(|start| now.duration_since(*start) >= rate.per) {
            state.starts.pop_front();
        }
        match state.starts.front() {
            Some(oldest) if state.starts.len() >= rate.count as usize => Err(*oldest + rate.per),
            _ => {
                state.starts.push_back(now);
                Ok(())
            }
        }
    }

    /// Waits for a start and takes it.
    pub async fn start(&self) {
        while let Err(at) = self.try_start(Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// No start before `until` (a later pause already set stands).
    pub fn pause_until(&self, until: Instant) {
        let mut state = self.state.lock().expect("never poisoned");
        state.paused_until = Some(state.paused_until.map_or(until, |now| now.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn at_most_count_starts_in_any_period() {
        let gate = Gate::new(Some("3/s".parse().expect("rate")));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(gate.try_start(ms(0)), Ok(()));
        assert_eq!(gate.try_start(ms(100)), Ok(()));
        assert_eq!(gate.try_start(ms(200)), Ok(()));
        // The fourth waits for the first to leave the window, not a whole period from now.
        assert_eq!(gate.try_start(ms(300)), Err(ms(1000)));
        assert_eq!(gate.try_start(ms(999)), Err(ms(1000)));
        assert_eq!(gate.try_start(ms(1000)), Ok(()));
        assert_eq!(gate.try_start(ms(1000)), Err(ms(1100)));
        // Every window of a second holds at most three starts.
        let mut starts = vec![0, 100, 200, 1000];
        let mut at = 1000;
        while at < 5000 {
            at += 7;
            if gate.try_start(ms(at)).is_ok() {
                starts.push(at);
            }
        }
        for (i, start) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .take_while(|s| **s < start + 1000)
                .count();
            assert!(within <= 3, "{within} starts in the second from {start}ms");
        }
        assert!(starts.len() >= 14, "and it does not starve: {starts:?}");
    }

    #[test]
    fn a_pause_holds_every_start_until_it_ends() {
        let gate = Gate::new(None);
        let t0 = Instant::now();
        assert_eq!(gate.try_start(t0), Ok(()));
        gate.pause_until(t0 + Duration::from_secs(5));
        gate.pause_until(t0 + Duration::from_secs(2));
        assert_eq!(
            gate.try_start(t0 + Duration::from_secs(4)),
            Err(t0 + Duration::from_secs(5)),
            "the longer pause stands"
        );
        assert_eq!(gate.try_start(t0 + Duration::from_secs(5)), Ok(()));
    }
}

//! Continuous deliveries for fault tests: senders that POST single-event deliveries back to
//! back, as Okta would, and record every answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{delivery, http_client, new_uuid, okta_post, user_created_event};

/// What one delivery got: its status, or why there was none within Okta's 3 s.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub uuid: String,
    pub answer: Result<u16, String>,
    /// When the request was sent.
    pub sent: Instant,
    /// How long the answer took.
    pub took: Duration,
}

/// Senders running until [`Load::finish`].
pub struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `per_url` senders against each hook URL.
    pub fn start(urls: &[String], per_url: usize) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let senders = urls
            .iter()
            .flat_map(|url| std::iter::repeat_n(url.clone(), per_url))
            .map(|url| tokio::spawn(send_until(url, stop.clone(), outcomes.clone())))
            .collect();
        Load {
            outcomes,
            stop,
            senders,
        }
    }

    /// How many deliveries were answered 200 so far.
    pub fn accepted(&self) -> usize {
        let outcomes = self.outcomes.lock().expect("not poisoned");
        outcomes.iter().filter(|o| o.answer == Ok(200)).count()
    }

    /// Waits (at most 60 s) until `more` further deliveries are answered 200.
    pub async fn wait_for_more_accepted(&self, more: usize) {
        let target = self.accepted() + more;
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.accepted() < target {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{more} more deliveries were not accepted in 60s"));
    }

    /// Stops the senders and returns every outcome.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for sender in self.senders {
            sender.await.expect("a sender finishes");
        }
        let outcomes = self.outcomes.lock().expect("not poisoned");
        outcomes.clone()
    }
}

async fn send_until(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) {
    let http = http_client();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let uuid = new_uuid();
        let body = delivery(
            &new_uuid(),
            vec![user_created_event(&uuid, "load@example.com")],
        );
        let sent = Instant::now();
        let answer = okta_post(&http, &url, &body)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .map_err(|e| format!("no answer within 3s: {e}"));
        let took = sent.elapsed();
        let outcome = Outcome {
            uuid,
            answer,
            sent,
            took,
        };
        outcomes.lock().expect("not poisoned").push(outcome);
    }
}

/// Asserts what every fault test promises: each answer was a 200 or a 503 within 3 s, and every
/// uuid answered 200 is among `stored_ids` exactly once. Returns (accepted, unavailable).
pub fn assert_nothing_acknowledged_lost(
    outcomes: &[Outcome],
    stored_ids: &[&str],
) -> (usize, usize) {
    let unexpected: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o.answer, Ok(200) | Ok(503)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 200 and 503, each within 3 s: {unexpected:?}"
    );
    let mut counts = std::collections::HashMap::new();
    for id in stored_ids {
        *counts.entry(*id).or_insert(0usize) += 1;
    }
    let accepted: Vec<_> = outcomes.iter().filter(|o| o.answer == Ok(200)).collect();
    for outcome in &accepted {
        assert_eq!(
            counts.get(outcome.uuid.as_str()),
            Some(&1),
            "{} was answered 200, so it is stored exactly once",
            outcome.uuid
        );
    }
    (accepted.len(), outcomes.len() - accepted.len())
}

/// A one-line account of a fault test's load: answers, 503s, the longest answer, and how long
/// deliveries failed after `fault` (from the fault to the first 200 sent after it).
pub fn summary(outcomes: &[Outcome], fault: Instant) -> String {
    let accepted = outcomes.iter().filter(|o| o.answer == Ok(200)).count();
    let longest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    let recovered = outcomes
        .iter()
        .filter(|o| o.answer == Ok(200) && o.sent > fault)
        .map(|o| o.sent + o.took - fault)
        .min()
        .unwrap_or_default();
    format!(
        "{} deliveries: {accepted} answered 200, {} not; longest answer {longest:?}; \
         first 200 after the fault came {recovered:?} after it",
        outcomes.len(),
        outcomes.len() - accepted
    )
}

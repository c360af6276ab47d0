//! The dead letters, in memory: read whole from the dead-letter stream's headers whenever the
//! stream changed (checked every two seconds), so the dead-letters page, the counts and every
//! event's status answer without reading the stream. Dead letters are few (each is a failure
//! someone must look at); a stream of 100,000 is read in well under a second.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use hookrelay::dead_letters::{self, DeadLetter, Filter};
use tokio_util::sync::CancellationToken;

use crate::index::Index;

#[derive(Default)]
struct Inner {
    by_sequence: BTreeMap<u64, DeadLetter>,
    /// By the hash of the event's uuid ([`Index::hash`]): their sequences.
    by_uuid: HashMap<u64, Vec<u64>>,
    /// The stream's (messages, last sequence) when read.
    read_at: Option<(u64, u64)>,
}

/// The dead letters.
#[derive(Default)]
pub struct Letters {
    inner: RwLock<Inner>,
}

impl Letters {
    /// Reads the stream again if it changed since the last read.
    pub async fn refresh(&self, dlq: &mut Stream, index: &Index) -> anyhow::Result<()> {
        let state = dlq.info().await?.state.clone();
        let now = (state.messages, state.last_sequence);
        if self.inner.read().expect("not poisoned").read_at == Some(now) {
            return Ok(());
        }
        let letters = dead_letters::list(dlq, &Filter::default()).await?;
        let mut fresh = Inner {
            read_at: Some(now),
            ..Inner::default()
        };
        for letter in letters {
            if let Some(uuid) = &letter.uuid {
                (fresh.by_uuid.entry(index.hash(uuid)).or_default()).push(letter.sequence);
            }
            fresh.by_sequence.insert(letter.sequence, letter);
        }
        *self.inner.write().expect("not poisoned") = fresh;
        Ok(())
    }

    /// Refreshes every `period` until `shutdown`.
    pub async fn follow(
        &self,
        mut dlq: Stream,
        index: &Index,
        period: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(e) = self.refresh(&mut dlq, index).await {
                tracing::warn!(error = %e, "cannot read the dead letters");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }

    /// The dead letters of the event `uuid` (whose hash is `hash`), oldest first.
    pub fn of_event(&self, hash: u64, uuid: &str) -> Vec<DeadLetter> {
        let inner = self.inner.read().expect("not poisoned");
        (inner.by_uuid.get(&hash).into_iter().flatten())
            .filter_map(|s| inner.by_sequence.get(s))
            .filter(|l| l.uuid.as_deref() == Some(uuid))
            .cloned()
            .collect()
    }

    /// The subscribers that dead-lettered the event whose uuid hashes to `hash` (a shared hash
    /// can add one: the event's page reads the letters themselves).
    pub fn subscribers_of(&self, hash: u64) -> Vec<String> {
        let inner = self.inner.read().expect("not poisoned");
        (inner.by_uuid.get(&hash).into_iter().flatten())
            .filter_map(|s| inner.by_sequence.get(s))
            .map(|l| l.subscriber.clone())
            .collect()
    }

    /// The dead letters `filter` keeps, newest first, from before `before`: at most `limit`,
    /// and how many match in all.
    pub fn page(
        &self,
        filter: &Filter,
        before: Option<u64>,
        limit: usize,
    ) -> (Vec<DeadLetter>, usize) {
        let inner = self.inner.read().expect("not poisoned");
        let matching = inner
            .by_sequence
            .values()
            .rev()
            .filter(|l| filter.matches(l));
        let total = matching.clone().count();
        let page = matching
            .filter(|l| before.is_none_or(|b| l.sequence < b))
            .take(limit)
            .cloned()
            .collect();
        (page, total)
    }

    /// Every dead letter `filter` keeps, oldest first: what a replay or a discard of "all"
    /// applies to.
    pub fn matching(&self, filter: &Filter) -> Vec<DeadLetter> {
        let inner = self.inner.read().expect("not poisoned");
        inner
            .by_sequence
            .values()
            .filter(|l| filter.matches(l))
            .cloned()
            .collect()
    }

    /// How many dead letters each subscriber (and `receiver`) has.
    pub fn counts(&self) -> HashMap<String, u64> {
        let inner = self.inner.read().expect("not poisoned");
        let mut counts = HashMap::new();
        for letter in inner.by_sequence.values() {
            *counts.entry(letter.subscriber.clone()).or_default() += 1;
        }
        counts
    }

    /// The reasons of the dead letters, with how many have each: the filter's choices.
    pub fn reasons(&self, subscriber: Option<&str>) -> Vec<(String, usize)> {
        let inner = self.inner.read().expect("not poisoned");
        let mut reasons: HashMap<&str, usize> = HashMap::new();
        for letter in inner.by_sequence.values() {
            if subscriber.is_none_or(|s| s == letter.subscriber) {
                *reasons.entry(letter.reason.as_str()).or_default() += 1;
            }
        }
        let mut reasons: Vec<(String, usize)> = reasons
            .into_iter()
            .map(|(r, n)| (r.to_owned(), n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        reasons
    }

    /// Forgets dead letters just replayed or discarded, before the next refresh reads the
    /// stream again.
    pub fn forget(&self, sequences: &[u64]) {
        let mut inner = self.inner.write().expect("not poisoned");
        for sequence in sequences {
            inner.by_sequence.remove(sequence);
        }
        inner.by_uuid.retain(|_, seqs| {
            seqs.retain(|s| !sequences.contains(s));
            !seqs.is_empty()
        });
    }
}

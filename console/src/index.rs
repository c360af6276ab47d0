//! The console's index of the events stream, in memory: for every stored message its uuid's
//! hash, when it was stored, its type, its source and whether it is an event or a replay of one,
//! 16 bytes an event (and about 5 more for the uuid table: 1,000,000 events take about 21 MB).
//! It is built from the messages' headers (never their payloads) when the console starts, then
//! follows the stream. It answers what JetStream cannot: an event by its uuid, and a page of
//! events newest first by type, source and time, without reading the stream for a page.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{consumer, stream::Stream};
use futures::StreamExt as _;
use hashbrown::HashTable;
use hookrelay::subject::{self, header, source};
use tokio_util::sync::CancellationToken;

/// What kind of message an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A sequence with no message (deleted).
    Gap = 0,
    /// An event's first storing, on `okta.events.<type>`.
    Event = 1,
    /// A replay to one subscriber, on `okta.replay.<subscriber>.<type>`.
    Replay = 2,
}

/// One stored message.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The hash of the event's uuid ([`Index::hash`]).
    pub uuid: u64,
    /// When it was stored, in seconds since 1970.
    pub stored: u32,
    /// Its type, an index into the interned types.
    pub event_type: u16,
    /// An index into [`source::ALL`].
    pub source: u8,
    pub kind: Kind,
}

/// Filters a page applies from the index alone.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Event types (any of them); empty: all.
    pub types: Vec<String>,
    /// Sources (any of them, [`source::ALL`] values); empty: all.
    pub sources: Vec<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// A query resolved against the index's interned names.
pub struct Matcher {
    types: Option<Vec<u16>>,
    sources: Option<Vec<u8>>,
    since: u32,
    until: u32,
}

impl Matcher {
    pub fn matches(&self, entry: &Entry) -> bool {
        entry.kind == Kind::Event
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(&entry.event_type))
            && self
                .sources
                .as_ref()
                .is_none_or(|s| s.contains(&entry.source))
            && entry.stored >= self.since
            && entry.stored <= self.until
    }
}

/// What a walk through the index may ask besides an entry (the index is locked meanwhile).
pub struct Peek<'a>(&'a Inner);

impl Peek<'_> {
    /// Whether the event whose uuid hashes to `hash` was replayed.
    pub fn has_replays(&self, hash: u64) -> bool {
        self.0.replays.contains_key(&hash)
    }
}

/// An event found in the index.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub sequence: u64,
    pub entry: Entry,
}

/// The index.
pub struct Index {
    inner: RwLock<Inner>,
    hasher: std::hash::RandomState,
}

#[derive(Default)]
struct Inner {
    /// The sequence of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry>,
    /// Event (not replay) entries by uuid hash, as sequences less `origin`.
    by_uuid: HashTable<u32>,
    /// The sequence offsets in `by_uuid` count from.
    origin: u64,
    /// Replays by uuid hash: their sequences and subscribers.
    replays: HashMap<u64, Vec<(u64, String)>>,
    types: Vec<String>,
    type_ids: HashMap<String, u16>,
    /// Whether the first read of the stream is done.
    caught_up: bool,
    /// How many messages the stream held when the first read started.
    expected: u64,
}

impl Inner {
    fn entry(&self, sequence: u64) -> Option<&Entry> {
        let at = sequence.checked_sub(self.first)?;
        self.entries.get(usize::try_from(at).ok()?)
    }

    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - u64::from(!self.entries.is_empty())
    }

    fn type_id(&mut self, event_type: &str) -> u16 {
        if let Some(id) = self.type_ids.get(event_type) {
            return *id;
        }
        let id = u16::try_from(self.types.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.types.push(event_type.to_owned());
            self.type_ids.insert(event_type.to_owned(), id);
        }
        id
    }

    /// Forgets every entry before `first` (gone with the stream's retention).
    fn drop_before(&mut self, first: u64) {
        while self.first < first {
            let Some(entry) = self.entries.pop_front() else {
                self.first = first;
                break;
            };
            let sequence = self.first;
            self.first += 1;
            match entry.kind {
                Kind::Event => {
                    let offset = (sequence - self.origin) as u32;
                    if let Ok(found) = self.by_uuid.find_entry(entry.uuid, |&o| o == offset) {
                        found.remove();
                    }
                }
                Kind::Replay => {
                    if let Some(replays) = self.replays.get_mut(&entry.uuid) {
                        replays.retain(|(s, _)| *s != sequence);
                        if replays.is_empty() {
                            self.replays.remove(&entry.uuid);
                        }
                    }
                }
                Kind::Gap => {}
            }
        }
    }
}

/// The most sequences a gap may span and still be filled entry by entry; a longer one (a purged
/// stream) starts the index afresh.
const MAX_GAP: u64 = 1_000_000;

impl Index {
    pub fn new() -> Self {
        Index {
            inner: RwLock::new(Inner::default()),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The hash a uuid is indexed by.
    pub fn hash(&self, uuid: &str) -> u64 {
        self.hasher.hash_one(uuid)
    }

    /// Adds the message stored at `sequence`.
    pub fn add(
        &self,
        sequence: u64,
        stored: SystemTime,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
    ) {
        let (kind, uuid, replayed_to) = if subject.starts_with(subject::EVENTS_PREFIX) {
            (Kind::Event, header::value(headers, "Nats-Msg-Id"), None)
        } else if let Some(rest) = subject.strip_prefix(subject::REPLAY_PREFIX) {
            let to = rest.trim_start_matches('.').split('.').next();
            (Kind::Replay, header::value(headers, header::EVENT_UUID), to)
        } else {
            (Kind::Gap, None, None)
        };
        let uuid = self.hash(uuid.unwrap_or_default());
        let source = header::source(headers);
        let source = source::ALL.iter().position(|s| *s == source).unwrap_or(0) as u8;
        let stored = stored
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let mut inner = self.inner.write().expect("not poisoned");
        if inner.entries.is_empty() || sequence > inner.last() + MAX_GAP {
            *inner = Inner {
                first: sequence,
                origin: sequence,
                caught_up: inner.caught_up,
                expected: inner.expected,
                ..Inner::default()
            };
        }
        if sequence < inner.first + inner.entries.len() as u64 {
            return; // Already indexed (a consumer that started over).
        }
        let event_type = subject::event_type_of(subject).unwrap_or("?");
        let event_type = inner.type_id(event_type);
        while inner.first + (inner.entries.len() as u64) < sequence {
            inner.entries.push_back(Entry {
                uuid: 0,
                stored,
                event_type,
                source: 0,
                kind: Kind::Gap,
            });
        }
        inner.entries.push_back(Entry {
            uuid,
            stored,
            event_type,
            source,
            kind,
        });
        let offset = (sequence - inner.origin) as u32;
        match kind {
            Kind::Event => {
                let Inner {
                    by_uuid,
                    entries,
                    first,
                    origin,
                    ..
                } = &mut *inner;
                let (first, origin) = (*first, *origin);
                by_uuid.insert_unique(uuid, offset, |&o| {
                    entries[(origin + u64::from(o) - first) as usize].uuid
                });
            }
            Kind::Replay => {
                let to = replayed_to.unwrap_or_default().to_owned();
                inner.replays.entry(uuid).or_default().push((sequence, to));
            }
            Kind::Gap => {}
        }
    }

    /// The events stored under `uuid`'s hash (almost always one: a hash shared by two uuids is
    /// told apart by reading the messages), and the replays of it with their subscribers.
    pub fn copies(&self, uuid: &str) -> (Vec<u64>, Vec<(u64, String)>) {
        let hash = self.hash(uuid);
        let inner = self.inner.read().expect("not poisoned");
        let events = inner
            .by_uuid
            .iter_hash(hash)
            .map(|&o| inner.origin + u64::from(o))
            .filter(|&s| inner.entry(s).is_some_and(|e| e.uuid == hash))
            .collect();
        let replays = inner.replays.get(&hash).cloned().unwrap_or_default();
        (events, replays)
    }

    /// The id of an interned type.
    pub fn type_id(&self, event_type: &str) -> Option<u16> {
        self.inner
            .read()
            .expect("not poisoned")
            .type_ids
            .get(event_type)
            .copied()
    }

    /// The entry at `sequence`.
    pub fn entry(&self, sequence: u64) -> Option<Entry> {
        self.inner
            .read()
            .expect("not poisoned")
            .entry(sequence)
            .copied()
    }

    /// The type an entry names.
    pub fn type_name(&self, id: u16) -> String {
        let inner = self.inner.read().expect("not poisoned");
        inner
            .types
            .get(usize::from(id))
            .cloned()
            .unwrap_or_default()
    }

    /// Every event type seen, sorted: the type filter's choices.
    pub fn types(&self) -> Vec<String> {
        let mut types = self.inner.read().expect("not poisoned").types.clone();
        types.retain(|t| t != "?");
        types.sort();
        types
    }

    /// `query` resolved against the interned names.
    pub fn matcher(&self, query: &Query) -> Matcher {
        let inner = self.inner.read().expect("not poisoned");
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        };
        Matcher {
            types: (!query.types.is_empty()).then(|| {
                (query.types.iter())
                    .map(|t| inner.type_ids.get(t).copied().unwrap_or(u16::MAX))
                    .collect()
            }),
            sources: (!query.sources.is_empty()).then(|| {
                (query.sources.iter())
                    .map(|s| source::ALL.iter().position(|a| a == s).unwrap_or(255) as u8)
                    .collect()
            }),
            since: query.since.map_or(0, secs),
            until: query.until.map_or(u32::MAX, secs),
        }
    }

    /// Events newest first from before `before` (the newest when `None`) that `matcher` keeps
    /// and `keep` accepts, at most `limit`; `keep` may stop the walk (`None`). The index is
    /// locked during the walk: `keep` asks it through [`Peek`], never through `self`.
    pub fn newest(
        &self,
        matcher: &Matcher,
        before: Option<u64>,
        limit: usize,
        mut keep: impl FnMut(u64, &Entry, &Peek) -> Option<bool>,
    ) -> Vec<Found> {
        let inner = self.inner.read().expect("not poisoned");
        let mut found = Vec::new();
        if inner.entries.is_empty() {
            return found;
        }
        let top = match before {
            Some(before) if before <= inner.first => return found,
            Some(before) => (before - 1).min(inner.last()),
            None => inner.last(),
        };
        // Stored times only grow along the stream: the walk stops once past `since`.
        let mut sequence = top;
        loop {
            let entry = inner.entries[(sequence - inner.first) as usize];
            if entry.kind == Kind::Event && entry.stored < matcher.since {
                break;
            }
            if matcher.matches(&entry) {
                match keep(sequence, &entry, &Peek(&inner)) {
                    Some(true) => {
                        found.push(Found { sequence, entry });
                        if found.len() >= limit {
                            break;
                        }
                    }
                    Some(false) => {}
                    None => break,
                }
            }
            if sequence == inner.first {
                break;
            }
            sequence -= 1;
        }
        found
    }

    /// How many events after `after` `matcher` keeps, counting at most `cap`.
    pub fn count_after(&self, matcher: &Matcher, after: u64, cap: usize) -> usize {
        let inner = self.inner.read().expect("not poisoned");
        let start = (after + 1).max(inner.first);
        (start..inner.first + inner.entries.len() as u64)
            .filter(|s| inner.entry(*s).is_some_and(|e| matcher.matches(e)))
            .take(cap)
            .count()
    }

    /// Events stored by `source` since `since`.
    pub fn count_since(&self, source: &str, since: SystemTime) -> u64 {
        let matcher = self.matcher(&Query {
            sources: vec![source.to_owned()],
            since: Some(since),
            ..Query::default()
        });
        self.newest(&matcher, None, usize::MAX, |_, _, _| Some(true))
            .len() as u64
    }

    /// The newest sequence indexed (0: none).
    pub fn last(&self) -> u64 {
        let inner = self.inner.read().expect("not poisoned");
        if inner.entries.is_empty() {
            0
        } else {
            inner.last()
        }
    }

    /// Events indexed, and whether the first read of the stream is done (and how many it
    /// expects when not).
    pub fn progress(&self) -> (u64, bool, u64) {
        let inner = self.inner.read().expect("not poisoned");
        (inner.entries.len() as u64, inner.caught_up, inner.expected)
    }

    /// Follows `stream` until `shutdown`: reads every message's headers from where the index
    /// ends and keeps up with new ones. A read that fails starts again after a second.
    pub async fn follow(&self, mut stream: Stream, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.read_on(&mut stream, &shutdown).await {
                tracing::warn!(error = %e, "reading the events stream failed; reading on in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn read_on(
        &self,
        stream: &mut Stream,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let state = stream.info().await?.state.clone();
        {
            let mut inner = self.inner.write().expect("not poisoned");
            if !inner.caught_up {
                inner.expected = state.messages;
                inner.caught_up = state.messages == 0;
            }
            inner.drop_before(state.first_sequence);
        }
        let from = match self.last() {
            0 => state.first_sequence.max(1),
            last => last + 1,
        };
        let reader = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                headers_only: true,
                ..Default::default()
            })
            .await?;
        let mut messages = reader.messages().await?;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => match next {
                    Some(message) => message?,
                    None => return Ok(()),
                },
            };
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            self.add(
                info.stream_sequence,
                info.published.into(),
                &message.subject,
                message.headers.as_ref(),
            );
            if info.pending == 0 {
                let mut inner = self.inner.write().expect("not poisoned");
                if !inner.caught_up {
                    inner.caught_up = true;
                    tracing::info!(events = inner.entries.len(), "events indexed");
                }
            }
        }
    }

    /// Every `period` until `shutdown`, forgets what the stream's retention removed.
    pub async fn prune(&self, mut stream: Stream, period: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            if let Ok(info) = stream.info().await {
                let first = info.state.first_sequence;
                self.inner.write().expect("not poisoned").drop_before(first);
            }
        }
    }
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, *v);
        }
        headers
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn events_are_found_by_uuid_and_listed_newest_first_by_type_source_and_time() {
        let index = Index::new();
        index.add(
            1,
            at(0),
            "okta.events.user.lifecycle.create",
            Some(&headers(&[("Nats-Msg-Id", "a")])),
        );
        index.add(
            2,
            at(1),
            "okta.events.user.session.start",
            Some(&headers(&[
                ("Nats-Msg-Id", "b"),
                (header::SOURCE, "system-log"),
            ])),
        );
        // 3 was deleted.
        index.add(
            4,
            at(2),
            "okta.replay.crm.user.lifecycle.create",
            Some(&headers(&[(header::EVENT_UUID, "a")])),
        );
        index.add(
            5,
            at(3),
            "okta.events.user.lifecycle.create",
            Some(&headers(&[
                ("Nats-Msg-Id", "c"),
                (header::SOURCE, "simulate"),
            ])),
        );

        assert_eq!(index.copies("a"), (vec![1], vec![(4, "crm".to_owned())]));
        assert_eq!(index.copies("c").0, [5]);
        assert_eq!(index.copies("zzz"), (vec![], vec![]));

        let all = index.matcher(&Query::default());
        let seqs = |found: Vec<Found>| found.iter().map(|f| f.sequence).collect::<Vec<_>>();
        assert_eq!(
            seqs(index.newest(&all, None, 50, |_, _, _| Some(true))),
            [5, 2, 1]
        );
        assert_eq!(
            seqs(index.newest(&all, Some(5), 1, |_, _, _| Some(true))),
            [2],
            "a page, older"
        );
        let created = index.matcher(&Query {
            types: vec!["user.lifecycle.create".into()],
            ..Query::default()
        });
        assert_eq!(
            seqs(index.newest(&created, None, 50, |_, _, _| Some(true))),
            [5, 1]
        );
        let recovered = index.matcher(&Query {
            sources: vec!["system-log".into()],
            ..Query::default()
        });
        assert_eq!(
            seqs(index.newest(&recovered, None, 50, |_, _, _| Some(true))),
            [2]
        );
        let hook = index.matcher(&Query {
            sources: vec!["hook".into()],
            ..Query::default()
        });
        assert_eq!(
            seqs(index.newest(&hook, None, 50, |_, _, _| Some(true))),
            [1]
        );
        let late = index.matcher(&Query {
            since: Some(at(1)),
            until: Some(at(2)),
            ..Query::default()
        });
        assert_eq!(
            seqs(index.newest(&late, None, 50, |_, _, _| Some(true))),
            [2]
        );
        let unknown = index.matcher(&Query {
            types: vec!["nope".into()],
            ..Query::default()
        });
        assert!(
            index
                .newest(&unknown, None, 50, |_, _, _| Some(true))
                .is_empty()
        );
        assert_eq!(index.count_after(&all, 1, 100), 2);
        assert_eq!(index.count_since("simulate", at(0)), 1);
        assert_eq!(
            index.types(),
            ["user.lifecycle.create", "user.session.start"]
        );

        // Retention removes the oldest: they are no longer found.
        index.inner.write().expect("lock").drop_before(3);
        assert_eq!(index.copies("a"), (vec![], vec![(4, "crm".to_owned())]));
        assert_eq!(
            seqs(index.newest(&all, None, 50, |_, _, _| Some(true))),
            [5]
        );
        index.inner.write().expect("lock").drop_before(5);
        assert_eq!(index.copies("a"), (vec![], vec![]));
        assert_eq!(index.copies("c").0, [5]);
    }
}

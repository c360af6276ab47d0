//! The reconciler's state, in JetStream key-value buckets so it survives a restart and is
//! shared by every reconciler: the **cursor** (the System Log's `next` link), saved only after
//! every event of the page before it was acknowledged and only over the revision this
//! reconciler read (compare-and-set), and the **lease** that lets one reconciler poll while the
//! others stand by. The lease bucket's entries expire after `reconciler.lease_ttl`: a
//! reconciler that dies without letting go loses it within that time.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

const CURSOR_KEY: &str = "cursor";
const LEASE_KEY: &str = "lease";

/// Where the next poll starts, and how far the reading had got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The `next` link of the last page stored.
    pub next: String,
    /// The newest `published` read so far (RFC 3339), if any event was read.
    pub newest_published: Option<String>,
    /// When this cursor was saved (RFC 3339).
    pub saved_at: String,
    /// The `filter` of the read it belongs to: a next link keeps its query, so a cursor of
    /// other event types is not followed.
    #[serde(default)]
    pub filter: Option<String>,
}

impl Cursor {
    pub fn new(
        next: &reqwest::Url,
        newest_published: Option<SystemTime>,
        filter: Option<String>,
    ) -> Self {
        Cursor {
            filter,
            next: next.to_string(),
            newest_published: newest_published
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            saved_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        }
    }

    /// How far back the events after this cursor may have been stored already: its newest
    /// `published`, else when it was saved.
    pub fn read_up_to(&self) -> Option<SystemTime> {
        let text = self.newest_published.as_deref().unwrap_or(&self.saved_at);
        humantime::parse_rfc3339_weak(text).ok()
    }
}

/// Another reconciler saved the cursor since this one read it: it is the one polling now.
#[derive(Debug, thiserror::Error)]
#[error("another reconciler saved the cursor")]
pub struct Conflict;

/// The cursor and the lease.
pub struct State {
    cursors: kv::Store,
    leases: kv::Store,
    /// Who this reconciler is, in the lease.
    holder: String,
    /// The lease's revision while this reconciler holds it.
    lease: Option<u64>,
    /// The cursor's revision as last read or written (0: none yet).
    cursor_revision: u64,
    /// How often the holder renews the lease: a third of its time to live.
    pub renewal: Duration,
}

impl State {
    /// Opens (or creates) `bucket` and `<bucket>_lease`.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        lease_ttl: Duration,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let cursors = hookrelay::broker::Bucket {
            name: bucket,
            description: "hookrelay reconciler: the System Log cursor",
            max_age: Duration::ZERO,
            replicas,
            history: 1,
        };
        let lease_bucket = format!("{bucket}_lease");
        let leases = hookrelay::broker::Bucket {
            name: &lease_bucket,
            description: "hookrelay reconciler: which one polls",
            max_age: lease_ttl,
            replicas,
            history: 1,
        };
        let (cursors, leases) = (
            hookrelay::broker::key_value(js, &cursors).await?,
            hookrelay::broker::key_value(js, &leases).await?,
        );
        Ok(State {
            cursors,
            leases,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            lease: None,
            cursor_revision: 0,
            renewal: lease_ttl / 3,
        })
    }

    /// Takes the lease if it is free, or renews it if this reconciler holds it. Whether this
    /// reconciler holds it now.
    pub async fn lead(&mut self) -> bool {
        let value = self.holder.clone().into_bytes().into();
        self.lease = match self.lease {
            Some(revision) => self.leases.update(LEASE_KEY, value, revision).await.ok(),
            None => self.leases.create(LEASE_KEY, value).await.ok(),
        };
        self.lease.is_some()
    }

    /// Lets go of the lease, so that a standing-by reconciler takes over at once.
    pub async fn release(&mut self) {
        if let Some(revision) = self.lease.take() {
            let _ = self
                .leases
                .delete_expect_revision(LEASE_KEY, Some(revision))
                .await;
        }
    }

    /// The saved cursor, if any.
    pub async fn load(&mut self) -> anyhow::Result<Option<Cursor>> {
        let entry = (self.cursors.entry(CURSOR_KEY).await).context("reading the cursor")?;
        let Some(entry) = entry else {
            self.cursor_revision = 0;
            return Ok(None);
        };
        self.cursor_revision = entry.revision;
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let cursor = serde_json::from_slice(&entry.value).context("reading the cursor")?;
        Ok(Some(cursor))
    }

    /// Adds failed hook deliveries Okta recorded to the last ones kept (for the console).
    pub async fn note_hook_failures(&self, failures: Vec<hookrelay::okta::HookFailure>) {
        use hookrelay::okta::{HOOK_FAILURES_KEPT, HOOK_FAILURES_KEY};
        let mut kept: Vec<hookrelay::okta::HookFailure> =
            match self.cursors.get(HOOK_FAILURES_KEY).await {
                Ok(Some(value)) => serde_json::from_slice(&value).unwrap_or_default(),
                _ => Vec::new(),
            };
        kept.extend(failures);
        let excess = kept.len().saturating_sub(HOOK_FAILURES_KEPT);
        kept.drain(..excess);
        let value = serde_json::to_vec(&kept).expect("failures serialise");
        if let Err(e) = self.cursors.put(HOOK_FAILURES_KEY, value.into()).await {
            tracing::debug!(error = %e, "the failed hook deliveries were not kept");
        }
    }

    /// Saves `cursor` over the revision this reconciler last read or wrote.
    pub async fn save(&mut self, cursor: &Cursor) -> Result<(), Conflict> {
        let value = serde_json::to_vec(cursor)
            .expect("a cursor serialises")
            .into();
        let saved = if self.cursor_revision == 0 {
            self.cursors.create(CURSOR_KEY, value).await.ok()
        } else {
            (self.cursors)
                .update(CURSOR_KEY, value, self.cursor_revision)
                .await
                .ok()
        };
        self.cursor_revision = saved.ok_or(Conflict)?;
        Ok(())
    }
}

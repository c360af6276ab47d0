//! `[reconciler]`: the second ingress, which reads Okta's System Log and stores what the hook
//! did not deliver.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::subject;

/// How the reconciler polls the System Log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// How long to wait between polls once caught up (pages are fetched back to back while
    /// behind).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The event types to read; empty: those of the configured subscribers.
    pub event_types: Vec<String>,
    /// On the first start (no cursor yet), read the System Log from this long ago.
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    /// Events per page, at most 1000 (Okta's maximum).
    pub page_size: u32,
    /// The share of `/api/v1/logs`'s rate limit the reconciler may use; the rest is left to
    /// the org's other consumers (the bucket is shared).
    pub rate_limit_share: f64,
    /// Also read Okta's `event_hook.delivery` events (failed hook deliveries) and report them.
    pub watch_hook_deliveries: bool,
    /// The JetStream key-value bucket that keeps the cursor (and `<bucket>_lease` the lease).
    pub bucket: String,
    /// How long the lease outlives a reconciler that stopped renewing it (killed, cut off):
    /// a standing-by reconciler takes over after at most this long. Renewed every third of it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        ReconcilerSettings {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9084)),
            poll_interval: Duration::from_secs(15),
            event_types: Vec::new(),
            start: Duration::from_secs(60 * 60),
            page_size: 1000,
            rate_limit_share: 0.5,
            watch_hook_deliveries: true,
            bucket: "hookrelay_reconciler".into(),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl ReconcilerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "reconciler.poll_interval",
                "must be at least 1s",
            ));
        }
        // Okta refuses a `since` more than 180 days back, and keeps 90 days.
        if self.start.is_zero() || self.start > Duration::from_secs(90 * 24 * 60 * 60) {
            return Err(ConfigError::invalid(
                "reconciler.start",
                "must be more than zero and at most 90d (what Okta keeps)",
            ));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(ConfigError::invalid(
                "reconciler.page_size",
                "must be 1 to 1000",
            ));
        }
        if !(self.rate_limit_share > 0.0 && self.rate_limit_share <= 1.0) {
            return Err(ConfigError::invalid(
                "reconciler.rate_limit_share",
                "must be more than 0 and at most 1",
            ));
        }
        if let Some(t) = (self.event_types.iter()).find(|t| !subject::is_valid_event_type(t)) {
            return Err(ConfigError::invalid(
                "reconciler.event_types",
                format!("`{t}` is not an Okta event type such as `user.lifecycle.create`"),
            ));
        }
        if self.lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                "reconciler.lease_ttl",
                "must be at least 3s",
            ));
        }
        if !subject::is_valid_name(&self.bucket) {
            return Err(ConfigError::invalid(
                "reconciler.bucket",
                "must be letters, digits, `-` or `_`",
            ));
        }
        Ok(())
    }
}

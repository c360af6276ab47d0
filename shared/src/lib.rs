//! What hookrelay's receiver and worker share.
//!
//! # Layout
//! - [`config`]: the one [`Settings`](config::Settings) both binaries load.
//! - [`event`]: Okta's delivery envelope and events.
//! - [`subject`]: subject and header names, and the checks that keep them safe.
//! - [`broker`]: the NATS connection and the two JetStream streams.
//! - [`publish`]: the one way Okta events are stored, for every ingress.
//! - [`okta`]: Okta's System Log API, read as Okta says to (next links, rate limits).
//! - [`stored`]: where a stored event stands for each subscriber, and searches of the stream;
//!   [`dead_letters`]: listing, replaying and discarding them; [`attempts`]: the worker's record
//!   of every attempt; [`pause`]: paused subscribers. `hookrelayctl` and the console share these.
//! - [`admin`]: `/healthz`, `/readyz` and the health-check probe.
//! - [`service`]: the command line of both services (`--config`, `run`, `health`).
//! - [`telemetry`], [`shutdown`]: logging and the shutdown signal.

pub mod admin;
pub mod attempts;
pub mod broker;
pub mod config;
pub mod dead_letters;
pub mod event;
pub mod jq;
pub mod okta;
pub mod passwords;
pub mod pause;
pub mod publish;
pub mod service;
pub mod shutdown;
pub mod stored;
pub mod subject;
pub mod subscribers;
pub mod telemetry;

pub use config::Settings;

/// `1 dead letter`, `2 dead letters`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

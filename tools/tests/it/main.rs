//! `hookrelayctl` run as a real process against a real nats-server, a receiver serving real
//! HTTP, a worker, and fakes of what stands outside (a downstream, Okta's System Log).

mod backfill;
mod console;
mod dead_letters;
mod events;
mod helpers;
mod hooks;
mod least_privilege;
mod monitoring;
mod nats_auth;
mod simulate;
mod traces;

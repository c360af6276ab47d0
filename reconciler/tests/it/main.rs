//! The reconciler against a fake of Okta's System Log in polling mode (events arriving over
//! time, a `next` link on every answer, `published` out of order), a real nats-server, and the
//! receiver and worker in process.

mod nats_secrets;
mod reconcile;

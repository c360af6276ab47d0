//! The receiver over real HTTP, against its own real nats-server.

mod helpers;
mod hook;

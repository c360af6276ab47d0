//! The receiver over real HTTP, against its own real nats-server.

mod faults;
mod helpers;
mod hook;
mod hostile;
mod operations;
mod process;

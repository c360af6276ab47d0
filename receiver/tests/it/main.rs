//! The receiver over real HTTP, against its own real nats-server.

mod faults;
mod helpers;
mod hook;
mod hostile;
mod nats_auth;
mod operations;
mod process;
mod secret_file;

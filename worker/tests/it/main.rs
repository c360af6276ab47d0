//! The worker as a real process, fed by a real receiver over real HTTP, against its own
//! nats-server.

mod cluster;
mod faults;
mod helpers;
mod nats_secrets;
mod operations;
mod pause;
mod pipeline;
mod recipes;
mod shaping;
mod traces;

//! The worker as a real process, fed by a real receiver over real HTTP, against its own
//! nats-server.

mod helpers;
mod pipeline;

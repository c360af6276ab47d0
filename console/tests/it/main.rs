//! The console over real HTTP (and in a real browser), on a stack of its own: a nats-server,
//! a receiver and a worker in the test's process, a downstream and fakes of Okta.

mod access;
mod actions;
mod browser;
mod helpers;
mod okta;
mod pages;

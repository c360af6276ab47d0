//! The tool as a child process, and a receiver and a worker in this process.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use hookrelay::Settings;
use hookrelay_testkit::{NatsServer, delivery, new_uuid, okta_post};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What one run of `hookrelayctl` printed, and how it ended.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test, showing both outputs, unless the run succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "hookrelayctl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `hookrelayctl --config <config> <args>` with `env` (and nothing of the caller's
/// hookrelay or Okta settings), giving it a minute.
pub async fn ctl(env: &HashMap<String, String>, config: &Path, args: &[&str]) -> Run {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrelayctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("OKTA_API_TOKEN")
        .envs(env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("hookrelayctl finishes within a minute")
        .expect("hookrelayctl runs");
    let run = Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("hookrelayctl {args:?}\n{}{}", run.stdout, run.stderr);
    }
    run
}

/// The settings `hookrelayctl` would load from `config` and `env`.
pub fn settings(config: &Path, env: &HashMap<String, String>) -> Settings {
    Settings::load_from(Some(config), Some(env.clone())).expect("valid settings")
}

/// A receiver serving real HTTP from this process; stops when dropped.
pub struct Receiver {
    /// The hook URL.
    pub url: String,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Receiver {
    pub async fn start(settings: &Settings) -> Self {
        let app = receiver::Application::build(settings)
            .await
            .expect("the receiver starts");
        let url = format!("http://{}/okta/events", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Receiver { url, shutdown }
    }

    /// Delivers `events` in one request as Okta does, and expects 200.
    pub async fn deliver(&self, events: Vec<Value>) {
        let http = hookrelay_testkit::http_client();
        let body = delivery(&new_uuid(), events);
        let response = okta_post(&http, &self.url, &body)
            .send()
            .await
            .expect("the receiver answers");
        assert_eq!(response.status(), 200);
    }
}

/// A JetStream context on `nats`, for the test's own checks.
pub async fn connect_js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.expect("connect"))
}

/// A worker running its subscribers in this process; stops when dropped.
pub struct Worker {
    shutdown: CancellationToken,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Worker {
    pub async fn start(settings: &Settings) -> Self {
        let worker = worker::Worker::build(settings)
            .await
            .expect("the worker starts");
        let shutdown = CancellationToken::new();
        tokio::spawn(worker.run(shutdown.clone()));
        Worker { shutdown }
    }
}

/// Waits until `done` holds, checking every 50 ms for at most 20 s.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

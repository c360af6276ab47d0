//! `spawn_app()`: a receiver on an ephemeral port against its own nats-server, and typed
//! helpers to talk to it and to read back what JetStream stored.

use std::net::SocketAddr;

use async_nats::jetstream::{self, message::StreamMessage};
use hookrelay::Settings;
use hookrelay_testkit::{NatsServer, default_config, okta_post, stored_messages, test_env};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub nats: NatsServer,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub js: jetstream::Context,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The settings of `config/default.toml` with a test's overrides (`HOOKRELAY__…` names).
pub fn settings(nats: &NatsServer, overrides: &[(&str, &str)]) -> Settings {
    Settings::load_from(Some(&default_config()), Some(test_env(nats, overrides)))
        .expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(NatsServer::start(), overrides).await
}

/// A receiver against `nats` (a server started with a configuration of the test's own).
pub async fn spawn_app_on(nats: NatsServer, overrides: &[(&str, &str)]) -> TestApp {
    let settings = settings(&nats, overrides);
    let app = receiver::Application::build(&settings)
        .await
        .expect("the receiver starts");
    let addr = app.local_addr();
    let admin_addr = app.admin_addr();
    let shutdown = CancellationToken::new();
    let running = Some(tokio::spawn(app.run(shutdown.clone())));
    let client = async_nats::connect(nats.url())
        .await
        .expect("test client connects");
    TestApp {
        nats,
        addr,
        admin_addr,
        js: jetstream::new(client),
        http: hookrelay_testkit::http_client(),
        shutdown,
        running,
    }
}

impl TestApp {
    /// Asks the receiver to stop (as SIGTERM does); the handle ends when it has stopped.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.shutdown.cancel();
        self.running.take().expect("running")
    }

    pub fn hook_url(&self) -> String {
        format!("http://{}/okta/events", self.addr)
    }

    /// POSTs `body` as Okta does: JSON, with the secret header.
    pub async fn deliver(&self, body: &Value) -> reqwest::Response {
        okta_post(&self.http, &self.hook_url(), body)
            .header("x-okta-request-id", "okta-req-1")
            .send()
            .await
            .expect("the receiver answers")
    }

    /// Every event stored on the events stream.
    pub async fn stored_events(&self) -> Vec<StreamMessage> {
        stored_messages(&self.js, "OKTA_EVENTS").await
    }

    /// Every dead letter stored.
    pub async fn dead_letters(&self) -> Vec<StreamMessage> {
        stored_messages(&self.js, "OKTA_DLQ").await
    }
}

/// Asserts a JSON error answer: the status, and `{"error": code, "message": …}`.
pub async fn assert_json_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type}"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

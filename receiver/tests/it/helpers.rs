//! `spawn_app()`: a receiver on an ephemeral port, in this process, on its test's own [`Stack`],
//! and the typed helpers these tests share. Everything else (what JetStream stored, waiting) is
//! the stack's.

use std::net::SocketAddr;

use hookrelay_testkit::{NatsServer, Receiver, Stack, okta_post};
use serde_json::Value;

pub struct TestApp {
    pub stack: Stack,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    receiver: Receiver,
}

impl std::ops::Deref for TestApp {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl std::ops::DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(NatsServer::start(), overrides).await
}

/// A receiver against `nats` (a server started with a configuration of the test's own).
pub async fn spawn_app_on(nats: NatsServer, overrides: &[(&str, &str)]) -> TestApp {
    let stack = Stack::on(nats, None, overrides).await;
    let receiver = stack.receiver().await;
    TestApp {
        addr: receiver.addr,
        admin_addr: receiver.admin_addr,
        stack,
        receiver,
    }
}

impl TestApp {
    /// Asks the receiver to stop (as SIGTERM does); the handle ends when it has stopped.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.receiver.stop()
    }

    pub fn hook_url(&self) -> String {
        self.receiver.url.clone()
    }

    /// POSTs `body` as Okta does: JSON, with the secret header and a request id.
    pub async fn deliver(&self, body: &Value) -> reqwest::Response {
        okta_post(&self.http, &self.hook_url(), body)
            .header("x-okta-request-id", "okta-req-1")
            .send()
            .await
            .expect("the receiver answers")
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

//! A downstream HTTP service for the worker's `http` action to call: it records every request
//! and answers as the test scripts it (a status, after a delay).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::Notify;

/// One request the downstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub at: Instant,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The `Idempotency-Key` header: the event's uuid.
    pub fn key(&self) -> &str {
        self.header("idempotency-key").unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the downstream answers one request.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// A `Retry-After` header, as a rate-limited service sends with a 429 or 503.
    pub retry_after: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    pub fn after(self, delay: Duration) -> Self {
        Reply { delay, ..self }
    }

    pub fn retry_after(self, value: &'static str) -> Self {
        Reply {
            retry_after: Some(value),
            ..self
        }
    }
}

/// Decides the reply from the request and how many requests with the same `Idempotency-Key`
/// came before it (0 for the first).
type Script = Box<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Requests whose reply was sent (after its delay).
    answered: Mutex<Vec<Recorded>>,
    script: Script,
    changed: Notify,
}

/// The running downstream; stops when dropped.
pub struct Downstream {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Downstream {
    /// Starts on a free loopback port; `script` decides each reply.
    pub async fn start(script: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            answered: Mutex::new(Vec::new()),
            script: Box::new(script),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a free port");
        let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
        let app = axum::Router::new()
            .route("/hook", post(receive).put(receive).patch(receive))
            // A webhook URL with more to its path (a Slack-like secret path) lands here too.
            .route("/hook/{*rest}", post(receive).put(receive).patch(receive))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("downstream serves");
        });
        Downstream {
            url,
            shared,
            server,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("not poisoned").clone()
    }

    /// Requests so far for one event.
    pub fn requests_for(&self, uuid: &str) -> Vec<Recorded> {
        let requests = self.requests();
        requests.into_iter().filter(|r| r.key() == uuid).collect()
    }

    /// Requests whose reply has been sent.
    pub fn answered(&self) -> Vec<Recorded> {
        self.shared.answered.lock().expect("not poisoned").clone()
    }

    /// Waits (at most `patience`) until `done` holds for the requests received.
    pub async fn wait_until(&self, patience: Duration, done: impl Fn(&[Recorded]) -> bool) {
        let waited = tokio::time::timeout(patience, async {
            loop {
                let changed = self.shared.changed.notified();
                if done(&self.requests()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "the downstream did not get the expected requests in {patience:?}; it got {} : {:?}",
                self.requests().len(),
                self.requests()
                    .iter()
                    .map(Recorded::key)
                    .collect::<Vec<_>>()
            );
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let recorded = Recorded {
        at: Instant::now(),
        method,
        headers,
        body,
    };
    let reply = {
        let mut requests = shared.requests.lock().expect("not poisoned");
        let before = requests
            .iter()
            .filter(|r| r.key() == recorded.key())
            .count();
        requests.push(recorded.clone());
        (shared.script)(&recorded, before)
    };
    shared.changed.notify_waiters();
    tokio::time::sleep(reply.delay).await;
    shared.answered.lock().expect("not poisoned").push(recorded);
    let status = StatusCode::from_u16(reply.status).expect("a valid status");
    match reply.retry_after {
        Some(value) => (status, [("retry-after", value)]).into_response(),
        None => status.into_response(),
    }
}

//! The admin endpoints both binaries serve on their `admin_listen` address: `/healthz` (the
//! process is alive), `/readyz` (it can do its job now) and `/metrics` (Prometheus), plus the
//! probe the container health check runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The content type of `/metrics`: OpenMetrics text, which Prometheus reads.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a readiness check waits for the broker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin endpoints ask of their process.
pub trait Status: Send + Sync + 'static {
    /// Whether the process can do its job now, or why not.
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Its metrics, in the OpenMetrics text format.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router<S: Status>(status: Arc<S>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(|State(status): State<Arc<S>>| async move { ready(status.ready().await) }),
        )
        .route(
            "/metrics",
            get(|State(status): State<Arc<S>>| async move {
                let (ready, metrics) = tokio::join!(status.ready(), status.metrics());
                (
                    [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
                    with_readiness(metrics, ready.is_ok()),
                )
            }),
        )
        .with_state(status)
}

fn ready(state: Result<(), String>) -> Response {
    match state {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `metrics` with `hookrelay_ready` (what `/readyz` answers, for an alert on a process that is
/// up but cannot do its job) and the telemetry counters every process has.
fn with_readiness(mut metrics: String, ready: bool) -> String {
    let end = metrics.rfind("# EOF").unwrap_or(metrics.len());
    metrics.insert_str(
        end,
        &format!(
            "# HELP hookrelay_ready 1 when /readyz answers 200 (the process can do its job), else 0.\n\
             # TYPE hookrelay_ready gauge\n\
             hookrelay_ready {}\n{}",
            u8::from(ready),
            crate::telemetry::metrics(),
        ),
    );
    metrics
}

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// Readiness of a NATS connection.
pub fn nats_readiness(client: &async_nats::Client) -> Result<(), String> {
    match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        state => Err(format!("NATS connection is {state}")),
    }
}

/// Readiness of the broker: connected, and every one of `streams` there.
pub async fn broker_readiness(
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    streams: &[&str],
) -> Result<(), String> {
    nats_readiness(client)?;
    for stream in streams {
        match tokio::time::timeout(CHECK_TIMEOUT, js.get_stream(stream)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("stream {stream}: {e}")),
            Err(_) => {
                return Err(format!(
                    "stream {stream}: no answer within {CHECK_TIMEOUT:?}"
                ));
            }
        }
    }
    Ok(())
}

/// GETs `path` on the admin address and succeeds on a 200. The container health check runs
/// this (`receiver health`), as the runtime image has no curl. An unspecified address
/// (`0.0.0.0`) is probed on loopback.
pub async fn probe(mut addr: SocketAddr, path: &str) -> Result<(), String> {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within 3s"))?
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err(format!("{addr}{path}: {status_line} {body}"))
    }
}

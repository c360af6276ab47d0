//! A stand-in for Jaeger all-in-one where its image cannot be pulled (the compose smoke test on
//! a machine with no registry): OTLP/HTTP in on one address, and the part of Jaeger's HTTP query
//! API its UI reads (`/api/services`, `/api/traces?service=…`, `/api/traces/{id}`) on another,
//! answering in Jaeger's JSON (`data` of traces with `spans`, `references` and `processes`). A
//! check written against it runs against the real Jaeger unchanged. Nothing is stored on disk;
//! there is no UI.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::{Value, json};

use crate::otlp::{OtlpReceiver, ReceivedSpan};

/// Serves OTLP/HTTP on `otlp` and the query API on `query` until the process ends.
pub async fn serve(otlp: SocketAddr, query: SocketAddr) -> anyhow::Result<()> {
    let receiver = Arc::new(OtlpReceiver::start_on(otlp).await);
    let app = axum::Router::new()
        .route("/api/services", get(services))
        .route("/api/traces", get(search))
        .route("/api/traces/{id}", get(trace))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(query).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

type Shared = State<Arc<OtlpReceiver>>;

async fn services(State(receiver): Shared) -> axum::Json<Value> {
    let names: BTreeSet<String> = receiver.spans().into_iter().map(|s| s.service).collect();
    axum::Json(json!({"data": names, "total": names.len()}))
}

/// The traces with a span from `service` (all, without it), newest first, at most `limit`.
async fn search(
    State(receiver): Shared,
    Query(query): Query<BTreeMap<String, String>>,
) -> axum::Json<Value> {
    let spans = receiver.spans();
    let limit: usize = (query.get("limit"))
        .and_then(|l| l.parse().ok())
        .unwrap_or(20);
    let mut ids: Vec<(u64, &str)> = Vec::new();
    for span in &spans {
        if query.get("service").is_some_and(|s| *s != span.service) {
            continue;
        }
        match ids.iter_mut().find(|(_, id)| *id == span.trace_id) {
            Some((start, _)) => *start = (*start).min(span.start_unix_nanos),
            None => ids.push((span.start_unix_nanos, &span.trace_id)),
        }
    }
    ids.sort_by_key(|(start, _)| std::cmp::Reverse(*start));
    let data: Vec<Value> = (ids.iter().take(limit))
        .map(|(_, id)| of_trace(&spans, id))
        .collect();
    axum::Json(json!({"data": data, "total": data.len(), "limit": 0, "offset": 0, "errors": null}))
}

async fn trace(
    State(receiver): Shared,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, (axum::http::StatusCode, axum::Json<Value>)> {
    let spans = receiver.spans();
    if !spans.iter().any(|s| s.trace_id == id) {
        let error = json!({"data": null, "errors": [{"code": 404, "msg": "trace not found"}]});
        return Err((axum::http::StatusCode::NOT_FOUND, axum::Json(error)));
    }
    Ok(axum::Json(
        json!({"data": [of_trace(&spans, &id)], "errors": null}),
    ))
}

/// One trace in Jaeger's JSON: spans with microsecond times, one process per service.
fn of_trace(spans: &[ReceivedSpan], id: &str) -> Value {
    let mine: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == id).collect();
    let services: BTreeSet<&str> = mine.iter().map(|s| s.service.as_str()).collect();
    let process_of = |service: &str| {
        let n = services.iter().position(|s| *s == service).unwrap_or(0);
        format!("p{}", n + 1)
    };
    let tag =
        |(key, value): &(String, String)| json!({"key": key, "type": "string", "value": value});
    let spans: Vec<Value> = (mine.iter())
        .map(|s| {
            let references: Vec<Value> = (s.parent_span_id.iter())
                .map(|parent| json!({"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": parent}))
                .chain(s.links.iter().map(|(trace, span)| {
                    json!({"refType": "FOLLOWS_FROM", "traceID": trace, "spanID": span})
                }))
                .collect();
            let mut tags: Vec<Value> = s.attributes.iter().map(tag).collect();
            tags.push(json!({"key": "span.kind", "type": "string", "value": s.kind}));
            json!({
                "traceID": s.trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": references,
                "startTime": s.start_unix_nanos / 1000,
                "duration": s.end_unix_nanos.saturating_sub(s.start_unix_nanos) / 1000,
                "tags": tags,
                "processID": process_of(&s.service),
            })
        })
        .collect();
    let processes: serde_json::Map<String, Value> = (services.iter())
        .map(|service| {
            (
                process_of(service),
                json!({"serviceName": service, "tags": []}),
            )
        })
        .collect();
    json!({"traceID": id, "spans": spans, "processes": processes, "warnings": null})
}

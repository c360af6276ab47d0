//! `hookrelay-bench`: the pieces `bench/run` measures hookrelay with, each a subcommand.
//!
//! - `ceiling-http`: an empty axum handler, the HTTP ceiling of this machine.
//! - `ceiling-publish`: a handler that only publishes the body to JetStream and awaits the ack,
//!   the least a durable receiver can do (with `--message-id`, the least one that deduplicates).
//! - `sink`: a downstream for the worker's `http` action that records send→action latency: how
//!   long after `pace` sent an event (its `published` time) the action got it, optionally
//!   answering after a delay.
//! - `pace`: deliveries at a fixed rate, each event's `published` set to when it was sent.
//! - `fill`: a number of events as fast as possible, to measure the worker's drain.
//! - `drain`: watches a consumer and reports how fast it acknowledged the stream's events.
//! - `ceiling-forward`: the least a forwarding worker can do: pull a durable consumer in
//!   batches, POST each event with a keep-alive client at a fixed concurrency (or not at all),
//!   ack; `drain` times it as it times the worker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

/// The same allocator as hookrelay's binaries, so the ceilings differ from hookrelay only in
/// what the handler does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DEMO_SECRET: &str = "Basic YWRtaW46c3VwZXJzZWNyZXQ=";

#[derive(Parser)]
#[command(about = "hookrelay's benchmark tools; bench/run drives them")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer 200 to any POST, doing nothing.
    CeilingHttp {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Publish each POST body to JetStream (stream BENCH), answer 200 once acknowledged.
    CeilingPublish {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        nats: String,
        /// Give each message a unique `Nats-Msg-Id`, as deduplication needs: the least a
        /// receiver that stores each Okta event once can do.
        #[arg(long)]
        message_id: bool,
    },
    /// Record receive→action latency of each POST; GET /stats reports it.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        /// Answer after this long (a slow downstream).
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        delay: Duration,
    },
    /// An OpenTelemetry collector that keeps nothing: `POST /v1/traces` (OTLP/HTTP) answered
    /// 200 with an empty response; GET /stats counts the exports and their bytes.
    OtlpSink {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Send deliveries at a fixed rate for a while; print what came back.
    Pace {
        #[arg(long)]
        url: String,
        /// Events per second.
        #[arg(long)]
        rate: u32,
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Send `events` events in deliveries of `batch`, over `connections` connections.
    Fill {
        #[arg(long)]
        url: String,
        #[arg(long)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Events of three types (one in a thousand of a rare one) about 50,000 users, as the
        /// console's benchmark stores them, instead of one user's `user.lifecycle.create`.
        #[arg(long)]
        varied: bool,
    },
    /// Sign in to the console as `user` and time its pages, `requests` times each, one after
    /// another: the first page of events, a type's, a rare type's, a page deep in the stream,
    /// an event's own page; then a search by a user's login. Prints percentiles in ms.
    ConsoleProbe {
        #[arg(long)]
        url: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// Pull `consumer` (durable, explicit acks, created as the worker creates its own) from
    /// OKTA_EVENTS in batches of `batch`; at most `concurrency` at a time, POST each event to
    /// `url` (none: no POST) and ack it. Runs until killed.
    CeilingForward {
        #[arg(long)]
        nats: String,
        #[arg(long)]
        consumer: String,
        #[arg(long, default_value = "okta.events.user.lifecycle.create")]
        filter: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long)]
        url: Option<String>,
    },
    /// Wait until `consumer` on OKTA_EVENTS has acknowledged `events` events; print the rate.
    Drain {
        #[arg(long)]
        nats: String,
        #[arg(long)]
        consumer: String,
        #[arg(long)]
        events: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest's TLS (enabled in the workspace by the worker's http action) needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::CeilingHttp { listen } => {
            let app = Router::new().fallback(post(|| async { StatusCode::OK }));
            serve(listen, app).await
        }
        Command::CeilingPublish {
            listen,
            nats,
            message_id,
        } => ceiling_publish(listen, &nats, message_id).await,
        Command::Sink { listen, delay } => sink(listen, delay).await,
        Command::OtlpSink { listen } => otlp_sink(listen).await,
        Command::Pace {
            url,
            rate,
            duration,
        } => pace(&url, rate, duration).await,
        Command::Fill {
            url,
            events,
            batch,
            connections,
            varied,
        } => fill(&url, events, batch, connections, varied).await,
        Command::ConsoleProbe {
            url,
            user,
            password,
            requests,
        } => console_probe(&url, &user, &password, requests).await,
        Command::Drain {
            nats,
            consumer,
            events,
        } => drain(&nats, &consumer, events).await,
        Command::CeilingForward {
            nats,
            consumer,
            filter,
            concurrency,
            batch,
            url,
        } => ceiling_forward(&nats, &consumer, filter, concurrency, batch, url).await,
    }
}

async fn serve(listen: SocketAddr, app: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn ceiling_publish(listen: SocketAddr, nats: &str, message_id: bool) -> anyhow::Result<()> {
    let client = async_nats::connect(nats).await?;
    let js = async_nats::jetstream::new(client);
    js.create_or_update_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await?;
    let app = Router::new()
        .fallback(post(
            move |State(js): State<async_nats::jetstream::Context>, body: Bytes| async move {
                let message = async_nats::jetstream::message::PublishMessage::build().payload(body);
                let message = if message_id {
                    message.message_id(uuid::Uuid::new_v4().to_string())
                } else {
                    message
                };
                let stored = match js.send_publish("bench.events", message).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if stored {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
        ))
        .with_state(js);
    serve(listen, app).await
}

/// Latencies in microseconds, and the answer delay.
struct SinkState {
    latencies: Mutex<Vec<u64>>,
    delay: Duration,
}

async fn sink(listen: SocketAddr, delay: Duration) -> anyhow::Result<()> {
    let state = Arc::new(SinkState {
        latencies: Mutex::new(Vec::new()),
        delay,
    });
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(state): State<Arc<SinkState>>, body: Bytes| async move {
                    let sent = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|event| {
                            humantime::parse_rfc3339(event["published"].as_str()?).ok()
                        });
                    if let Some(sent) = sent {
                        let latency = SystemTime::now().duration_since(sent).unwrap_or_default();
                        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        state.latencies.lock().expect("not poisoned").push(micros);
                    }
                    // A zero sleep still waits for the timer's next millisecond tick.
                    if !state.delay.is_zero() {
                        tokio::time::sleep(state.delay).await;
                    }
                    StatusCode::OK
                },
            ),
        )
        .route(
            "/stats",
            get(
                |State(state): State<Arc<SinkState>>,
                 Query(query): Query<std::collections::HashMap<String, String>>| async move {
                    let mut latencies = state.latencies.lock().expect("not poisoned");
                    let stats = percentiles(&mut latencies);
                    if query.contains_key("reset") {
                        latencies.clear();
                    }
                    axum::Json(stats)
                },
            ),
        )
        .with_state(state);
    serve(listen, app).await
}

async fn otlp_sink(listen: SocketAddr) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(counts): State<Arc<(AtomicU64, AtomicU64)>>, body: Bytes| async move {
                    counts.0.fetch_add(1, Ordering::Relaxed);
                    counts.1.fetch_add(body.len() as u64, Ordering::Relaxed);
                    // An empty ExportTraceServiceResponse is zero bytes of protobuf.
                    (StatusCode::OK, [("content-type", "application/x-protobuf")])
                },
            ),
        )
        .route(
            "/stats",
            get(
                |State(counts): State<Arc<(AtomicU64, AtomicU64)>>| async move {
                    axum::Json(json!({
                        "exports": counts.0.load(Ordering::Relaxed),
                        "bytes": counts.1.load(Ordering::Relaxed),
                    }))
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(counts);
    serve(listen, app).await
}

fn percentiles(values: &mut [u64]) -> Value {
    values.sort_unstable();
    let at = |p: f64| -> u64 {
        if values.is_empty() {
            return 0;
        }
        let index = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
        values[index]
    };
    json!({
        "count": values.len(),
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
        "max_us": values.last().copied().unwrap_or(0),
    })
}

/// An Okta delivery of `events` fresh `user.lifecycle.create` events, shaped like the sample,
/// `published` now.
fn delivery(events: usize) -> String {
    delivery_of(events, None)
}

/// The type and user of the `n`th event of a varied fill: one in a thousand `user.account.lock`,
/// a third `user.session.start`, the rest `user.lifecycle.create`; 50,000 users.
fn varied(n: usize) -> (&'static str, String) {
    let event_type = if n % 1000 == 999 {
        "user.account.lock"
    } else if n % 3 == 0 {
        "user.session.start"
    } else {
        "user.lifecycle.create"
    };
    (
        event_type,
        format!("user{}@example.com", (n * 7919) % 50_000),
    )
}

/// [`delivery`], or with `counter` events varied as [`varied`] says.
fn delivery_of(events: usize, counter: Option<&std::sync::atomic::AtomicUsize>) -> String {
    let published = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let events: Vec<Value> = (0..events)
        .map(|_| {
            let (event_type, user) = match counter {
                Some(c) => varied(c.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
                None => ("user.lifecycle.create", "bench@example.com".to_owned()),
            };
            json!({
                "uuid": uuid::Uuid::new_v4().to_string(),
                "published": published,
                "eventType": event_type,
                "version": "0",
                "displayMessage": "Create okta user",
                "severity": "INFO",
                "client": {"userAgent": {"rawUserAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "os": "Linux", "browser": "CHROME"}, "zone": "null", "device": "Computer", "id": null, "ipAddress": "203.0.113.7", "geographicalContext": {"city": "Toronto", "state": "Ontario", "country": "Canada", "postalCode": "M5V", "geolocation": {"lat": 43.6, "lon": -79.4}}},
                "actor": {"id": "00u1qw1mqitPHM8AJ0g7", "type": "User", "alternateId": "admin@example.com", "displayName": "Okta Admin"},
                "outcome": {"result": "SUCCESS", "reason": null},
                "target": [{"id": "00u1xut9ylB1o5uW40g7", "type": "User", "alternateId": user, "displayName": "Bench User"}],
                "transaction": {"type": "WEB", "id": "ZIvFmRBtY4xZ2ZrMqw0mYAAAA6o", "detail": {}},
                "debugContext": {"debugData": {"requestId": "ZIvFmRBtY4xZ2ZrMqw0mYAAAA6o", "requestUri": "/api/v1/users", "url": "/api/v1/users?activate=true"}}
            })
        })
        .collect();
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://dev-123456.okta.com/api/v1/eventHooks/whoql0HfiLGPWc8Jx0g3",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventTime": "2026-11-26T17:02:50.228Z",
        "contentType": "application/json",
        "data": {"events": events}
    })
    .to_string()
}

async fn post_delivery(http: &reqwest::Client, url: &str, body: String) -> Result<u16, String> {
    http.post(url)
        .header("authorization", DEMO_SECRET)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(3))
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

async fn pace(url: &str, rate: u32, duration: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticker.tick().await;
        let http = http.clone();
        let url = url.to_string();
        sends.spawn(async move { post_delivery(&http, &url, delivery(1)).await });
    }
    let (mut ok, mut other) = (0u64, 0u64);
    while let Some(result) = sends.join_next().await {
        match result? {
            Ok(200) => ok += 1,
            _ => other += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"sent": ok + other, "ok": ok, "not_ok": other, "rate": (ok + other) as f64 / elapsed})
    );
    Ok(())
}

async fn fill(
    url: &str,
    events: usize,
    batch: usize,
    connections: usize,
    varied: bool,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deliveries = events.div_ceil(batch);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (http, url, next, counter) =
            (http.clone(), url.to_string(), next.clone(), counter.clone());
        senders.spawn(async move {
            let mut failures = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < deliveries {
                let body = delivery_of(batch, varied.then_some(&*counter));
                if post_delivery(&http, &url, body).await != Ok(200) {
                    failures += 1;
                }
            }
            failures
        });
    }
    let mut failures = 0;
    while let Some(result) = senders.join_next().await {
        failures += result?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"events": deliveries * batch, "failed_deliveries": failures, "events_per_s": (deliveries * batch) as f64 / elapsed})
    );
    anyhow::ensure!(failures == 0, "{failures} deliveries failed");
    Ok(())
}

async fn drain(nats: &str, consumer: &str, events: u64) -> anyhow::Result<()> {
    let client = async_nats::connect(nats).await?;
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("OKTA_EVENTS").await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        anyhow::ensure!(Instant::now() < deadline, "not drained in 300s");
        let acked = match stream.consumer_info(consumer).await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(_) => 0,
        };
        let now = Instant::now();
        if acked > 0 && first.is_none() {
            first = Some((now, acked));
        }
        if acked >= events {
            let (start, start_acked) = first.unwrap_or((now, 0));
            let seconds = now.duration_since(start).as_secs_f64().max(0.001);
            println!(
                "{}",
                json!({"events": acked, "events_per_s": (acked - start_acked) as f64 / seconds})
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ceiling_forward(
    nats: &str,
    name: &str,
    filter_subject: String,
    concurrency: usize,
    batch: usize,
    url: Option<String>,
) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, consumer::pull};
    let client = async_nats::connect(nats).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream("OKTA_EVENTS").await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {name}: {e}"))?;
    // On a runtime thread, as a worker's loop: `main`'s own thread is outside the runtime's
    // pool, so every hand-over between it and the tasks it spawns would wake another thread
    // (at concurrency 1 that halves the rate).
    tokio::spawn(forward_all(consumer, concurrency, batch, url)).await?
}

async fn forward_all(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    concurrency: usize,
    batch: usize,
    url: Option<String>,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let http = reqwest::Client::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("pulling: {e}"))?;
        let slot = slots.clone().acquire_owned().await?;
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let delivered = match url {
                None => true,
                Some(url) => (http.post(url))
                    .header("content-type", "application/json")
                    .body(message.payload.clone())
                    .send()
                    .await
                    .is_ok_and(|answer| answer.status().is_success()),
            };
            let settled = if delivered {
                message.ack().await
            } else {
                message
                    .ack_with(async_nats::jetstream::AckKind::Nak(None))
                    .await
            };
            if let Err(e) = settled {
                eprintln!("ack failed: {e}");
            }
            drop(slot);
        });
    }
    Ok(())
}

/// Times `path` on the console `requests` times, one after another: percentiles in ms.
async fn time_page(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    paths: &[String],
    requests: usize,
) -> anyhow::Result<Value> {
    let mut took = Vec::with_capacity(requests);
    for i in 0..requests {
        let path = &paths[i % paths.len()];
        let started = Instant::now();
        let response = http
            .get(format!("{url}{path}"))
            .header("cookie", cookie)
            .send()
            .await?;
        let status = response.status();
        response.bytes().await?;
        anyhow::ensure!(status == 200, "{path} answered {status}");
        took.push(started.elapsed().as_micros() as u64);
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Ok(json!({"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0), "requests": requests}))
}

async fn console_probe(
    url: &str,
    user: &str,
    password: &str,
    requests: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{url}/login"))
        .header("origin", url)
        .form(&[("username", user), ("password", password)])
        .send()
        .await?;
    anyhow::ensure!(login.status() == 303, "sign-in answered {}", login.status());
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?
        .to_owned();
    let json = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        let url = format!("{url}{path}");
        async move {
            let value: Value = (http.get(url).header("cookie", cookie))
                .header("accept", "application/json")
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(value)
        }
    };
    let newest = json("/events".into()).await?["newest"]
        .as_u64()
        .unwrap_or(0);
    // Events from all over the stream, for their own pages and for pages deep in it.
    let mut uuids = Vec::new();
    let mut deep = Vec::new();
    for i in 1..=40u64 {
        let before = newest * i / 41 + 1;
        deep.push(format!("/events?before={before}"));
        let page = json(format!("/events?before={before}")).await?;
        if let Some(uuid) = page["events"][0]["uuid"].as_str() {
            uuids.push(format!("/events/{uuid}"));
        }
    }
    let mut report = serde_json::Map::new();
    for (name, paths) in [
        ("first_page", vec!["/events".to_owned()]),
        (
            "type_page",
            vec!["/events?type=user.session.start".to_owned()],
        ),
        (
            "rare_type_page",
            vec!["/events?type=user.account.lock".to_owned()],
        ),
        ("deep_page", deep),
        ("event_page", uuids),
    ] {
        report.insert(
            name.into(),
            time_page(&http, url, &cookie, &paths, requests).await?,
        );
    }
    let mut searches = Vec::new();
    for user in [
        "user1234@example.com",
        "user42@example.com",
        "nobody@example.com",
    ] {
        let started = Instant::now();
        let page = json(format!("/events?q={}", user.replace('@', "%40"))).await?;
        searches.push(json!({
            "q": user,
            "ms": started.elapsed().as_millis() as u64,
            "found": page["events"].as_array().map_or(0, Vec::len),
            "searched": page["searched"],
        }));
    }
    report.insert("searches".into(), Value::Array(searches));
    println!("{}", Value::Object(report));
    Ok(())
}

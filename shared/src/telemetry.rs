//! Logs and traces for every process. `tracing` stays the API: log lines go to standard output
//! (plain for people, JSON for collectors, with the trace and span ids of the span they are
//! written in), and with an OTLP endpoint configured (`[telemetry]`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and friends) spans are exported through OpenTelemetry as well
//! (`tracing-opentelemetry`). With no endpoint, tracing is off: no exporter, and
//! [`tracing_on`] tells the code that makes spans only for traces (one per published event)
//! and carries their context (`traceparent`) to make none.
//!
//! Spans leave through a queue of `bsp_max_queue_size` in front of the exporter: a span that
//! finds it full is dropped and counted (`hookrelay_telemetry_spans_dropped_total`), never
//! waited for, so a collector that is slow or gone never slows an event. On SIGTERM the queue
//! is flushed before the process exits ([`Guard::shutdown`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter as _, SpanProcessor};
use secrecy::ExposeSecret as _;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, LogSettings, OtlpProtocol, Telemetry, TelemetrySettings};

/// Whether spans are exported: set once, at start.
static TRACING_ON: AtomicBool = AtomicBool::new(false);
/// Spans dropped: the queue was full, or their export failed.
static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Exports that failed or timed out.
static EXPORTS_FAILED: AtomicU64 = AtomicU64::new(0);

/// Whether traces are exported. Code that makes a span only for the trace (a span per event)
/// or carries a trace's context to another process asks this first: off, it costs nothing.
pub fn tracing_on() -> bool {
    TRACING_ON.load(Ordering::Relaxed)
}

/// The `hookrelay_telemetry_*` counters, in the OpenMetrics text format, for `/metrics`.
pub fn metrics() -> String {
    format!(
        "# HELP hookrelay_telemetry_spans_dropped Spans not exported: the export queue was full (a slow or unreachable collector), or their export failed.\n\
         # TYPE hookrelay_telemetry_spans_dropped counter\n\
         hookrelay_telemetry_spans_dropped_total {}\n\
         # HELP hookrelay_telemetry_exports_failed Exports of spans that failed or timed out.\n\
         # TYPE hookrelay_telemetry_exports_failed counter\n\
         hookrelay_telemetry_exports_failed_total {}\n",
        SPANS_DROPPED.load(Ordering::Relaxed),
        EXPORTS_FAILED.load(Ordering::Relaxed),
    )
}

/// What keeps traces flowing until the process stops.
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    flush: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

impl Guard {
    /// Exports the spans still queued (for at most 5 s) and stops the exporter: the last thing
    /// a service does before it exits.
    pub async fn shutdown(self) {
        if let Some(flush) = &self.flush {
            let (done, exported) = oneshot::channel();
            if flush.send(done).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), exported).await;
            }
        }
        if let Some(provider) = self.provider {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(1));
        }
    }
}

/// Installs the global subscriber: logs, and traces when configured. Call once, first thing
/// in a service's `main`, within the tokio runtime. `service` names the process in its traces
/// (`hookrelay-receiver`) unless `OTEL_SERVICE_NAME` or `telemetry.service_name` says otherwise.
pub fn init(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
    service: &str,
) -> anyhow::Result<Guard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&log.level),
    }
    .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer();
    let fmt: Box<dyn tracing_subscriber::Layer<_> + Send + Sync> = match log.format {
        // The message first, after a short time of day and the level, and the spans' fields
        // after it: the line a user looks for ("The user … has been added to the Okta org!")
        // reads in an 80-column terminal.
        LogFormat::Plain => Box::new(
            fmt.compact()
                .with_target(false)
                .with_timer(TimeOfDay)
                .with_ansi(std::io::stdout().is_terminal()),
        ),
        LogFormat::Json => Box::new(
            fmt.event_format(WithTraceIds(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()),
        ),
    };
    install(filter, fmt, telemetry, service)
}

/// For `hookrelayctl`: what the library says while a command runs (a wait for Okta's rate
/// limit, a retry) as plain lines on standard error, beside the command's own progress lines;
/// warnings only from the rest (`RUST_LOG` overrides it). With `[telemetry]` set, the commands
/// that publish are traced as `hookrelayctl`.
pub fn init_for_tools(telemetry: &TelemetrySettings) -> anyhow::Result<Guard> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives).ok(),
        _ => None,
    }
    .unwrap_or_else(|| EnvFilter::new("warn,hookrelay::okta=info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time();
    install(filter, Box::new(fmt), telemetry, "hookrelayctl")
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs `filter` and `fmt`, and the OpenTelemetry layer when `telemetry` has an endpoint.
fn install(
    filter: EnvFilter,
    fmt: BoxedLayer,
    telemetry: &TelemetrySettings,
    service: &str,
) -> anyhow::Result<Guard> {
    let resolved = telemetry.resolve(|key| std::env::var(key).ok())?;
    // The log level filters the log lines only: traces have their own level (info), so that
    // `level = "warn"` keeps every event's trace.
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let Some(resolved) = resolved else {
        registry
            .try_init()
            .map_err(|e| anyhow::anyhow!("log set-up: {e}"))?;
        return Ok(Guard {
            provider: None,
            flush: None,
        });
    };
    let (provider, flush) = provider(&resolved, service)?;
    let tracer = provider.tracer("hookrelay");
    registry
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                // Nothing reads OpenTelemetry's current context: spans carry their own.
                .with_context_activation(false)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .try_init()
        .map_err(|e| anyhow::anyhow!("log set-up: {e}"))?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    TRACING_ON.store(true, Ordering::Relaxed);
    tracing::info!(
        // A collector's URL may carry a key (in its user or its query): only its origin.
        endpoint = %reqwest::Url::parse(&resolved.traces_endpoint)
            .map(|url| crate::config::shown_url(&url))
            .unwrap_or_default(),
        protocol = ?resolved.protocol,
        "exporting traces (OpenTelemetry)"
    );
    Ok(Guard {
        provider: Some(provider),
        flush: Some(flush),
    })
}

/// The tracer provider of `resolved`, and the queue in front of its exporter.
fn provider(
    resolved: &Telemetry,
    service: &str,
) -> anyhow::Result<(SdkTracerProvider, mpsc::Sender<oneshot::Sender<()>>)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let headers: std::collections::HashMap<String, String> = (resolved.headers.iter())
        .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
        .collect();
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match resolved.protocol {
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_endpoint(&resolved.traces_endpoint)
            .with_headers(headers)
            .with_timeout(resolved.export_timeout)
            .build(),
        OtlpProtocol::Grpc => {
            let mut map = http::HeaderMap::new();
            for (key, value) in &headers {
                let name = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                    anyhow::anyhow!("telemetry.headers: `{key}` is not a header name")
                })?;
                let value = http::HeaderValue::from_str(value).map_err(|_| {
                    anyhow::anyhow!("telemetry.headers: the value of `{key}` is not valid")
                })?;
                map.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map);
            builder
                .with_tonic()
                .with_endpoint(&resolved.traces_endpoint)
                .with_metadata(metadata)
                .with_timeout(resolved.export_timeout)
                .build()
        }
    }
    .map_err(|e| anyhow::anyhow!("telemetry: the OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_service_name(
        resolved
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned()),
    );
    for (key, value) in &resolved.resource_attributes {
        resource =
            resource.with_attribute(opentelemetry::KeyValue::new(key.clone(), value.clone()));
    }
    let resource = resource.build();
    // The SDK hands the resource to its own processors; this one's exporter gets it here.
    let mut exporter = exporter;
    exporter.set_resource(&resource);
    let queue = Arc::new(Queue {
        spans: Mutex::new(Vec::new()),
        capacity: resolved.max_queue_size,
        batch: resolved.max_export_batch_size.max(1),
        batch_full: Notify::new(),
    });
    let (flush, flushes) = mpsc::channel(1);
    tokio::spawn(export(
        exporter,
        queue.clone(),
        flushes,
        resolved.schedule_delay,
        resolved.export_timeout,
    ));
    let mut builder = SdkTracerProvider::builder()
        .with_span_processor(Enqueue(queue))
        .with_resource(resource);
    if let Some((sampler, arg)) = &resolved.sampler {
        builder = builder.with_sampler(sampler_of(sampler, arg.as_deref())?);
    }
    Ok((builder.build(), flush))
}

/// The sampler `OTEL_TRACES_SAMPLER` (or `telemetry.sampler`) names.
fn sampler_of(name: &str, arg: Option<&str>) -> anyhow::Result<opentelemetry_sdk::trace::Sampler> {
    use opentelemetry_sdk::trace::Sampler;
    let ratio = || -> anyhow::Result<f64> {
        let ratio: f64 =
            arg.unwrap_or("1").trim().parse().map_err(|_| {
                anyhow::anyhow!("OTEL_TRACES_SAMPLER_ARG: not a number from 0 to 1")
            })?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&ratio),
            "OTEL_TRACES_SAMPLER_ARG: not from 0 to 1"
        );
        Ok(ratio)
    };
    Ok(match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => anyhow::bail!(
            "OTEL_TRACES_SAMPLER (telemetry.sampler): `{other}` is not always_on, always_off, \
             traceidratio or parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
        ),
    })
}

/// Ended spans waiting for the exporter, at most `capacity` of them. The export task is woken
/// when a batch is full (or by its timer), not for every span: handing a span over costs a
/// short lock and a push.
struct Queue {
    spans: Mutex<Vec<SpanData>>,
    capacity: usize,
    batch: usize,
    batch_full: Notify,
}

impl Queue {
    /// At most one batch of the oldest queued spans.
    fn take_batch(&self) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if spans.len() <= self.batch {
            std::mem::take(&mut *spans)
        } else {
            spans.drain(..self.batch).collect()
        }
    }
}

/// The span processor in front of [`Queue`]: a full queue drops the span (counted), it never
/// waits.
struct Enqueue(Arc<Queue>);

impl std::fmt::Debug for Enqueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enqueue")
    }
}

impl SpanProcessor for Enqueue {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let queue = &self.0;
        let mut spans = queue.spans.lock().unwrap_or_else(|e| e.into_inner());
        if spans.len() >= queue.capacity {
            SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        spans.push(span);
        if spans.len() == queue.batch {
            queue.batch_full.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Exports the queued spans when a batch is full, every `delay`, and when asked to flush (then
/// everything queued, before it answers); each export bounded by `timeout`. The spans of a
/// failed or timed-out export are dropped and counted.
async fn export(
    exporter: opentelemetry_otlp::SpanExporter,
    queue: Arc<Queue>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    delay: Duration,
    timeout: Duration,
) {
    loop {
        let flushed = tokio::select! {
            () = queue.batch_full.notified() => None,
            () = tokio::time::sleep(delay) => None,
            request = flushes.recv() => match request {
                Some(done) => Some(done),
                None => return,
            },
        };
        // Full batches go out one after the other (a burst); a partial one ends the round,
        // unless this is a flush, which takes everything.
        loop {
            let chunk = queue.take_batch();
            if chunk.is_empty() {
                break;
            }
            let full = chunk.len() == queue.batch;
            let count = chunk.len() as u64;
            match tokio::time::timeout(timeout, exporter.export(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed(count);
                    tracing::debug!(error = %e, "spans not exported");
                }
                Err(_) => failed(count),
            }
            if !full && flushed.is_none() {
                break;
            }
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

fn failed(spans: u64) {
    EXPORTS_FAILED.fetch_add(1, Ordering::Relaxed);
    SPANS_DROPPED.fetch_add(spans, Ordering::Relaxed);
}

/// The time of day in UTC, to the second (`05:35:31`): the date and the fraction take a
/// quarter of an 80-column line, and a collector that needs them reads the JSON format.
struct TimeOfDay;

impl tracing_subscriber::fmt::time::FormatTime for TimeOfDay {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            % 86_400;
        write!(w, "{:02}:{:02}:{:02}", now / 3600, now / 60 % 60, now % 60)
    }
}

/// JSON log lines with the `trace_id` and `span_id` of the span they are written in.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    F: FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        if tracing_on()
            && let Some((trace_id, span_id)) = ids(&tracing::Span::current())
            && let Some(end) = line.rfind('}')
        {
            line.insert_str(
                end,
                &format!(",\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\""),
            );
        }
        writer.write_str(&line)
    }
}

/// The trace and span ids of `span`, when it is traced.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The trace id of `span`, when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    ids(span).map(|(trace, _)| trace)
}

/// Writes into NATS headers.
struct NatsInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// Reads from NATS headers.
struct NatsExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes into HTTP headers.
struct HttpInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HttpInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Reads from HTTP headers.
struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Carries `span`'s trace into NATS headers (`traceparent`, `tracestate`), when tracing is on.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    if tracing_on() {
        TraceContextPropagator::new().inject_context(&span.context(), &mut NatsInjector(headers));
    }
}

/// The trace a NATS message carries, to parent the span of its handling.
pub fn extract_nats(headers: &async_nats::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&NatsExtractor(headers))
}

/// Carries `span`'s trace into HTTP headers, when tracing is on.
pub fn inject_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if tracing_on() {
        TraceContextPropagator::new().inject_context(&span.context(), &mut HttpInjector(headers));
    }
}

/// The trace an HTTP request carries (a proxy in front may add one).
pub fn extract_http(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HttpExtractor(headers))
}

/// The PRODUCER span of one message published to `subject` (OpenTelemetry's messaging
/// conventions; `message_id`: the event's uuid), when tracing is on; a disabled span, which
/// costs nothing, otherwise.
pub fn send_span(subject: &str, message_id: &str) -> tracing::Span {
    if !tracing_on() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "send",
        otel.name = %format_args!("send {subject}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = subject,
        messaging.message.id = message_id,
        okta.event_type = crate::subject::event_type_of(subject).unwrap_or_default(),
        error.type = tracing::field::Empty,
    )
}

/// Puts `span` in the trace of the message stored with `stored` headers (a replay stays in
/// its event's trace), linked to the span it runs in (the command or request that asked for
/// it). Without a stored trace, `span` stays where it is.
pub fn continue_trace(span: &tracing::Span, stored: &async_nats::HeaderMap) {
    let parent = extract_nats(stored);
    if !parent.span().span_context().is_valid() {
        return;
    }
    let _ = span.set_parent(parent);
    link_to_current(span);
}

/// Links `span` to the span it is made in (the command that asked for it), when there is one:
/// for work that is its own trace (an event's) but was asked for by another (a command's).
pub fn link_to_current(span: &tracing::Span) {
    if !tracing_on() {
        return;
    }
    let asked_by = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .clone();
    if asked_by.is_valid() {
        span.add_link(asked_by);
    }
}

/// Makes `span` a child of the trace `parent` carries, if it carries one.
pub fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_are_the_standard_names() {
        assert!(sampler_of("parentbased_traceidratio", Some("0.25")).is_ok());
        assert!(sampler_of("always_off", None).is_ok());
        let error = sampler_of("traceidratio", Some("2")).expect_err("over 1");
        assert!(
            error.to_string().contains("OTEL_TRACES_SAMPLER_ARG"),
            "{error}"
        );
        let error = sampler_of("sometimes", None).expect_err("unknown");
        assert!(error.to_string().contains("`sometimes`"), "{error}");
    }
}

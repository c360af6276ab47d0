//! One test's hookrelay: its own nats-server, the settings every process of the test loads, a
//! JetStream context to check what was stored, and the one patience every wait uses. The
//! receiver and the worker run in this process ([`Stack::receiver`], [`Stack::worker`]), or as
//! the real binaries with [`crate::process`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage, stream::Stream};
use hookrelay::Settings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{NatsServer, default_config, okta_post, stored_messages, test_env};

/// How long a test waits for anything that must eventually happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `done` holds, checking every 50 ms, for at most [`PATIENCE`]; fails the test
/// saying `what` it waited for.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} in vain for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A nats-server of the test's own, and the configuration its processes share.
pub struct Stack {
    pub nats: NatsServer,
    /// The configuration file the processes read (`config/default.toml` unless the test has
    /// its own).
    pub config: PathBuf,
    /// The `HOOKRELAY__…` variables over it: this server, ephemeral ports, the demo secret,
    /// then the test's overrides.
    pub env: HashMap<String, String>,
    /// What `config` and `env` load to; stream names and the like are read from here.
    pub settings: Settings,
    /// For the test's own checks.
    pub js: jetstream::Context,
    pub http: reqwest::Client,
}

impl Stack {
    /// A new server and the default configuration.
    pub async fn start() -> Self {
        Self::with(&[]).await
    }

    /// A new server and the default configuration with these `HOOKRELAY__…` overrides.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        Self::on(NatsServer::start(), None, overrides).await
    }

    /// `nats` (a server or a cluster node the test started its own way), `config` (default:
    /// `config/default.toml`) and overrides.
    pub async fn on(nats: NatsServer, config: Option<&Path>, overrides: &[(&str, &str)]) -> Self {
        let config = config.map(Path::to_path_buf).unwrap_or_else(default_config);
        let env = test_env(&nats, overrides);
        let settings = Settings::load_from(Some(&config), Some(env.clone()))
            .expect("the test's settings are valid");
        // The test's own view connects as hookrelay does, credentials included.
        let client = hookrelay::broker::connect(&settings.nats, "hookrelay-test")
            .await
            .expect("the test connects to its nats-server");
        Stack {
            nats,
            config,
            env,
            settings,
            js: jetstream::new(client),
            http: crate::http_client(),
        }
    }

    /// The events stream.
    pub async fn events_stream(&self) -> Stream {
        (self.js.get_stream(&self.settings.nats.stream).await).expect("the events stream")
    }

    /// Every event stored, oldest first.
    pub async fn stored_events(&self) -> Vec<StreamMessage> {
        stored_messages(&self.js, &self.settings.nats.stream).await
    }

    /// Every dead letter stored, oldest first.
    pub async fn dead_letters(&self) -> Vec<StreamMessage> {
        stored_messages(&self.js, &self.settings.nats.dlq_stream).await
    }

    /// Waits until at least `count` dead letters are stored, and returns them all.
    pub async fn wait_for_dead_letters(&self, count: usize) -> Vec<StreamMessage> {
        eventually(&format!("{count} dead letters"), || async {
            self.dead_letters().await.len() >= count
        })
        .await;
        self.dead_letters().await
    }

    /// Waits until the durable `consumer` has delivered something and has nothing pending and
    /// nothing unacknowledged: every event it had was acked or terminated.
    pub async fn wait_until_settled(&self, consumer: &str) {
        let stream = self.events_stream().await;
        eventually(&format!("consumer {consumer} settles"), || async {
            let info = stream.consumer_info(consumer).await.expect("consumer info");
            info.num_ack_pending == 0 && info.num_pending == 0 && info.delivered.stream_sequence > 0
        })
        .await;
    }

    /// A receiver with the stack's settings, serving real HTTP on ephemeral ports from this
    /// process.
    pub async fn receiver(&self) -> Receiver {
        Receiver::start(&self.settings).await
    }

    /// A worker running the stack's subscribers in this process.
    pub async fn worker(&self) -> InProcess {
        let worker = worker::Worker::build(&self.settings)
            .await
            .expect("the worker starts");
        InProcess::spawn(|shutdown| worker.run(shutdown))
    }

    /// A console with the stack's settings, serving real HTTP on ephemeral ports from this
    /// process.
    pub async fn console(&self) -> Console {
        Console::start(&self.settings).await
    }

    /// POSTs `delivery` to a hook URL as Okta does.
    pub async fn post(&self, hook_url: &str, delivery: &Value) -> reqwest::Response {
        okta_post(&self.http, hook_url, delivery)
            .send()
            .await
            .expect("the receiver answers")
    }
}

/// A receiver running in this process; stops when dropped.
pub struct Receiver {
    /// The hook URL.
    pub url: String,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    http: reqwest::Client,
    running: InProcess,
}

impl Receiver {
    /// A receiver with `settings` (a cluster's, say).
    pub async fn start(settings: &Settings) -> Self {
        let app = receiver::Application::build(settings)
            .await
            .expect("the receiver starts");
        let addr = app.local_addr();
        Receiver {
            url: format!("http://{addr}{}", settings.receiver.path),
            addr,
            admin_addr: app.admin_addr(),
            http: crate::http_client(),
            running: InProcess::spawn(|shutdown| app.run(shutdown)),
        }
    }

    /// POSTs `delivery` as Okta does.
    pub async fn post(&self, delivery: &Value) -> reqwest::Result<reqwest::Response> {
        okta_post(&self.http, &self.url, delivery).send().await
    }

    /// POSTs `delivery` as Okta does and expects 200.
    pub async fn deliver(&self, delivery: &Value) {
        let response = self.post(delivery).await.expect("the receiver answers");
        assert_eq!(response.status(), 200, "the delivery is stored");
    }

    /// Delivers `events` in one fresh delivery, and expects 200.
    pub async fn deliver_events(&self, events: Vec<Value>) {
        self.deliver(&crate::delivery(&crate::new_uuid(), events))
            .await;
    }

    /// Asks the receiver to stop (as SIGTERM does); the handle ends when it has stopped.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.running.stop()
    }
}

/// A service's `run` in this process (the receiver's or the worker's), stopped as SIGTERM would
/// stop it when [`stop`](InProcess::stop) is called or it is dropped.
pub struct InProcess {
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Spawns `run(shutdown)`.
    pub fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let running = Some(tokio::spawn(run(shutdown.clone())));
        InProcess { shutdown, running }
    }

    /// Asks the service to stop; the handle ends when it has.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.shutdown.cancel();
        self.running.take().expect("stopped only once")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A console running in this process; stops when dropped.
pub struct Console {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub admin_addr: SocketAddr,
    running: InProcess,
}

impl Console {
    /// A console with `settings`, once its index has read the stream it found.
    pub async fn start(settings: &Settings) -> Self {
        let console = console::Console::build(settings)
            .await
            .expect("the console starts");
        let url = format!("http://{}", console.local_addr());
        let admin_addr = console.admin_addr();
        let index = console.state().index.clone();
        let running = InProcess::spawn(|shutdown| console.run(shutdown));
        eventually("the console reads the stream it found", || {
            let index = index.clone();
            async move { index.progress().1 }
        })
        .await;
        Console {
            url,
            admin_addr,
            running,
        }
    }

    /// A client of this console that has not signed in.
    pub fn client(&self) -> ConsoleClient {
        ConsoleClient::new(&self.url)
    }

    /// Asks the console to stop; the handle ends when it has.
    pub fn stop(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.running.stop()
    }
}

/// A browser-like client of the console: it keeps the session cookie, sends forms from the
/// console's own origin (as a browser on its pages does), and follows no redirect, so a test
/// sees each 303.
#[derive(Clone)]
pub struct ConsoleClient {
    pub url: String,
    http: reqwest::Client,
    /// The `Cookie` header to send: the session's, once signed in.
    pub cookie: Option<String>,
}

impl ConsoleClient {
    pub fn new(url: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ConsoleClient {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            cookie: None,
        }
    }

    /// Signs in with a name and password; panics unless the console lets them in.
    pub async fn signed_in(mut self, name: &str, password: &str) -> Self {
        let response = self
            .post_form("/login", &[("username", name), ("password", password)])
            .await;
        assert_eq!(response.status(), 303, "{name} signs in");
        self.keep_cookies(&response);
        assert!(self.cookie.is_some(), "a session cookie");
        self
    }

    /// Keeps the cookies a response sets (the last value of each name), as a browser does.
    pub fn keep_cookies(&mut self, response: &reqwest::Response) {
        let mut jar: Vec<(String, String)> = (self.cookie.iter())
            .flat_map(|c| c.split("; "))
            .filter_map(|p| p.split_once('=').map(|(n, v)| (n.to_owned(), v.to_owned())))
            .collect();
        for set in response.headers().get_all("set-cookie") {
            let text = set.to_str().unwrap_or_default();
            let first = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            jar.retain(|(n, _)| n != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                jar.push((name.to_owned(), value.to_owned()));
            }
        }
        let header: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
        self.cookie = (!header.is_empty()).then(|| header.join("; "));
    }

    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    /// GETs `path` as a page (HTML).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.with_cookie(self.http.get(format!("{}{path}", self.url)))
            .send()
            .await
            .expect("the console answers")
    }

    /// GETs `path` as a script does (`Accept: application/json`), and reads the JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .with_cookie(self.http.get(format!("{}{path}", self.url)))
            .header("accept", "application/json")
            .send()
            .await
            .expect("the console answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs a form from the console's own page.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_from(path, fields, &self.url).await
    }

    /// POSTs a form as a page at `origin` would.
    pub async fn post_form_from(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: &str,
    ) -> reqwest::Response {
        self.with_cookie(self.http.post(format!("{}{path}", self.url)))
            .header("origin", origin)
            .form(fields)
            .send()
            .await
            .expect("the console answers")
    }
}

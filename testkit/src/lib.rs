//! Test fixtures for hookrelay's integration tests: a real `nats-server` per test (own port,
//! own store directory, killed on drop, killable and restartable), free ports, and Okta-shaped
//! deliveries.
//!
//! # Layout
//! - [`Stack`]: one test's server, settings and JetStream view, with a [`Receiver`] and a
//!   worker in the test's process; [`eventually`] and its one [`PATIENCE`].
//! - [`process`]: the real binaries as child processes ([`Process`], [`process::run`]).
//! - [`Downstream`], [`system_log`], [`okta_org`]: fakes of the services hookrelay talks to.
//! - [`okta_oidc`]: a fake Okta authorization server that signs the console's users in (OIDC).
//! - [`load`]: senders for load and fault tests.
//! - [`secure`]: TLS certificates, nkeys and operator-mode credentials for a locked-down NATS.
//! - [`browser`]: headless Chromium over WebDriver, with the browser's console errors.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod browser;
mod downstream;
pub mod jaeger;
pub mod load;
pub mod okta_oidc;
pub mod okta_org;
pub mod otlp;
pub mod process;
pub mod secure;
mod stack;
pub mod system_log;
pub mod trace_picture;
pub use downstream::{Downstream, Recorded, Reply};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use process::{Process, Run};
pub use stack::{Console, ConsoleClient, InProcess, PATIENCE, Receiver, Stack, eventually};

/// A `nats-server` with JetStream, on a free loopback port, storing into a temporary directory.
/// Killed (SIGKILL) when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Variables the server's configuration reads (`$NAME`).
    env: Vec<(String, String)>,
    /// The server's name (`-n`); cluster members have one.
    pub name: String,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(free_port(), "standalone", Vec::new())
    }

    /// Starts a server that also reads this configuration text (for example
    /// `max_payload: 65536`); command-line options win over it.
    pub fn start_with_config(config: &str) -> Self {
        let file = tempfile::NamedTempFile::new().expect("a temporary config file");
        std::fs::write(file.path(), config).expect("config written");
        let (_, path) = file.keep().expect("config kept");
        Self::start_with(
            free_port(),
            "standalone",
            vec!["-c".into(), path.display().to_string()],
        )
    }

    /// Starts a server with the configuration file at `path`, as it is, and `env` for the
    /// variables it reads; command-line options (port, store) win over it.
    pub fn start_with_file(path: &Path, env: &[(String, String)]) -> Self {
        let args = vec!["-c".into(), path.display().to_string()];
        let mut server = Self::new(free_port(), "standalone", args);
        server.env = env.to_vec();
        server.spawn();
        server
    }

    fn start_with(port: u16, name: &str, extra_args: Vec<String>) -> Self {
        let mut server = Self::new(port, name, extra_args);
        server.spawn();
        server
    }

    fn new(port: u16, name: &str, extra_args: Vec<String>) -> Self {
        let store = tempfile::tempdir().expect("a temporary store directory");
        NatsServer {
            child: None,
            port,
            store,
            extra_args,
            env: Vec::new(),
            name: name.to_string(),
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Everything the server has logged (errors, permission violations, …).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    /// Kills the server at once (SIGKILL): no flush, no goodbye, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .args(["-n", &self.name])
            .arg("-l")
            .arg(self.log_path())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts (install it: apt-get install nats-server)");
        self.child = Some(child);
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], self.port)));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of JetStream servers routed to each other on loopback ports.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes, `node0`…, each routed to all the others.
    pub fn start(size: usize) -> Self {
        let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes = (0..size)
            .map(|i| {
                let routes: Vec<String> = route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect();
                let args = vec![
                    "--cluster_name".to_string(),
                    "hookrelay-test".to_string(),
                    "--cluster".to_string(),
                    format!("nats://127.0.0.1:{}", route_ports[i]),
                    "--routes".to_string(),
                    routes.join(","),
                ];
                NatsServer::start_with(client_ports[i], &format!("node{i}"), args)
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's URL, comma-separated, as `nats.url` takes them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// The node called `name`.
    pub fn node_mut(&mut self, name: &str) -> &mut NatsServer {
        self.nodes
            .iter_mut()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
}

/// `$NATS_SERVER`, else `nats-server` on the `PATH`, else Debian's `/usr/sbin/nats-server`.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("the OS hands out a free port")
        .port()
}

/// Waits (at most 10 s) until something accepts connections at `addr`.
pub fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after 10s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workspace's `config/default.toml`, the file every test starts from.
pub fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml")
}

/// `HOOKRELAY__…` overrides for a test: this server, ephemeral ports for every listener, the
/// demo secret; then `overrides`, which win.
pub fn test_env(nats: &NatsServer, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    env_for_url(&nats.url(), overrides)
}

/// [`test_env`] for any `nats.url`, such as a cluster's [`NatsCluster::urls`].
pub fn env_for_url(url: &str, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let base = [
        ("HOOKRELAY__NATS__URL", url),
        ("HOOKRELAY__RECEIVER__LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__RECEIVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__RECEIVER__AUTH__SECRET", DEMO_SECRET),
        ("HOOKRELAY__WORKER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__RECONCILER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__CONSOLE__LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__CONSOLE__ADMIN_LISTEN", "127.0.0.1:0"),
    ];
    base.iter()
        .chain(overrides)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The guide's demo secret, as Okta sends it.
pub const DEMO_SECRET: &str = "Basic YWRtaW46c3VwZXJzZWNyZXQ=";

/// A System Log event like Okta's `user.lifecycle.create`, for the user `alternate_id`.
pub fn user_created_event(uuid: &str, alternate_id: &str) -> Value {
    json!({
        "uuid": uuid,
        "published": "2026-11-26T17:02:49.111Z",
        "eventType": "user.lifecycle.create",
        "version": "0",
        "displayMessage": "Create okta user",
        "severity": "INFO",
        "actor": {"id": "00u1", "type": "User", "alternateId": "admin@example.com", "displayName": "Okta Admin"},
        "target": [{"id": "00u2", "type": "User", "alternateId": alternate_id, "displayName": alternate_id}],
        "outcome": {"result": "SUCCESS", "reason": null},
        "client": {"zone": "null"}
    })
}

/// Any event of `event_type`, with no target.
pub fn event_of_type(uuid: &str, event_type: &str) -> Value {
    json!({
        "uuid": uuid,
        "published": "2026-11-26T17:02:49.111Z",
        "eventType": event_type,
        "displayMessage": "something happened",
        "target": null
    })
}

/// A delivery (Okta's envelope) carrying `events`.
pub fn delivery(event_id: &str, events: Vec<Value>) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://dev-123456.okta.com/api/v1/eventHooks/whoql0HfiLGPWc8Jx0g3",
        "eventId": event_id,
        "eventTime": "2026-11-26T17:02:50.228Z",
        "contentType": "application/json",
        "data": {"events": events}
    })
}

/// An HTTP client for tests. The worker's `http` action brings reqwest's TLS without a default
/// crypto provider; this installs ring's, as the worker does, so any client can be built.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A POST of `delivery` to a hook URL as Okta sends it: JSON, the demo secret, and Okta's
/// 3 s timeout.
pub fn okta_post(http: &reqwest::Client, url: &str, delivery: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("authorization", DEMO_SECRET)
        .header("content-type", "application/json")
        .timeout(std::time::Duration::from_secs(3))
        .body(delivery.to_string())
}

/// A fresh random uuid.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Every message stored on `stream`, oldest first, read back by sequence so the test sees
/// exactly what JetStream stored.
pub async fn stored_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            out.push(message);
        }
    }
    out
}

/// The value of header `name` on a stored message.
pub fn header<'a>(
    message: &'a async_nats::jetstream::message::StreamMessage,
    name: &str,
) -> Option<&'a str> {
    message.headers.get(name).map(|value| value.as_str())
}

/// The value of one sample of a Prometheus text exposition: `name` with exactly these labels
/// (in any order). `None` when there is no such sample.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut found: Vec<(&str, &str)> = series_labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            let mut wanted = labels.to_vec();
            found.sort_unstable();
            wanted.sort_unstable();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

/// GETs `/metrics` from an admin address.
pub async fn scrape(http: &reqwest::Client, admin: SocketAddr) -> String {
    let response = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.expect("a text body")
}

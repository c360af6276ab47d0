//! Test fixtures for hookrelay's integration tests: a real `nats-server` per test (own port,
//! own store directory, killed on drop, killable and restartable), free ports, and Okta-shaped
//! deliveries.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A `nats-server` with JetStream, on a free loopback port, storing into a temporary directory.
/// Killed (SIGKILL) when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("a temporary store directory");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store,
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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
    let url = nats.url();
    let base = [
        ("HOOKRELAY__NATS__URL", url.as_str()),
        ("HOOKRELAY__RECEIVER__LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__RECEIVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("HOOKRELAY__RECEIVER__AUTH__SECRET", DEMO_SECRET),
        ("HOOKRELAY__WORKER__ADMIN_LISTEN", "127.0.0.1:0"),
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

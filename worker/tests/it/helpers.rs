//! A receiver in this process, the `worker` binary as a child process whose log lines the test
//! reads, both on one test's own nats-server.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use hookrelay::Settings;
use hookrelay_testkit::{NatsServer, default_config, okta_post, stored_messages, test_env};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something the worker must eventually do.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A receiver running in this process.
pub struct Receiver {
    pub url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Receiver {
    pub async fn start(nats: &NatsServer) -> Self {
        Self::start_with_env(test_env(nats, &[])).await
    }

    /// A receiver with these `HOOKRELAY__…` variables over `config/default.toml`.
    pub async fn start_with_env(env: HashMap<String, String>) -> Self {
        let settings =
            Settings::load_from(Some(&default_config()), Some(env)).expect("valid settings");
        let app = receiver::Application::build(&settings)
            .await
            .expect("the receiver starts");
        let url = format!("http://{}/okta/events", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Receiver {
            url,
            http: hookrelay_testkit::http_client(),
            shutdown,
        }
    }

    /// POSTs a delivery as Okta does and expects 200.
    pub async fn deliver(&self, body: &Value) {
        let response = self.try_deliver(body).await.expect("the receiver answers");
        assert_eq!(response.status(), 200);
    }

    /// POSTs a delivery as Okta does, giving up after Okta's 3 s.
    pub async fn try_deliver(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        okta_post(&self.http, &self.url, body).send().await
    }
}

/// The `worker` binary, running, with every line it logs kept for the test.
pub struct WorkerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    logged: Arc<Notify>,
}

impl WorkerProcess {
    /// Starts the worker with `config` (default: `config/default.toml`) and waits until it is
    /// ready.
    pub async fn start(nats: &NatsServer, config: Option<&Path>) -> Self {
        Self::start_with_env(test_env(nats, &[]), config).await
    }

    /// [`WorkerProcess::start`] with these `HOOKRELAY__…` variables.
    pub async fn start_with_env(env: HashMap<String, String>, config: Option<&Path>) -> Self {
        let config = config.map(Path::to_path_buf).unwrap_or_else(default_config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("--config")
            .arg(config)
            .env_remove("HOOKRELAY_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the worker binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let logged = Arc::new(Notify::new());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for output in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            let logged = logged.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(output).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("worker| {line}");
                    }
                    lines.lock().expect("not poisoned").push(line);
                    logged.notify_waiters();
                }
            });
        }
        let worker = WorkerProcess {
            child,
            lines,
            logged,
        };
        worker
            .wait_for_line(|line| line.contains("worker ready"))
            .await;
        worker
    }

    /// Lines logged so far that satisfy `matches`.
    pub fn lines_where(&self, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let lines = self.lines.lock().expect("not poisoned");
        lines.iter().filter(|l| matches(l)).cloned().collect()
    }

    /// Waits until a line satisfying `matches` is logged, and returns it.
    pub async fn wait_for_line(&self, matches: impl Fn(&str) -> bool) -> String {
        self.wait_for_lines(1, matches).await.remove(0)
    }

    /// Waits until `count` lines satisfying `matches` are logged.
    pub async fn wait_for_lines(
        &self,
        count: usize,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.logged.notified();
                let found = self.lines_where(&matches);
                if found.len() >= count {
                    return found;
                }
                notified.await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            let all = self.lines.lock().expect("not poisoned").join("\n");
            panic!(
                "the worker did not log {count} expected line(s) in {PATIENCE:?}; it logged:\n{all}"
            )
        })
    }

    /// Kills the process at once (SIGKILL), as a crash.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("the worker is killed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("the worker runs");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the worker exits after SIGTERM")
            .expect("exit status");
        status.code()
    }
}

/// A JetStream context on the test's server.
pub async fn jetstream(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.expect("connects"))
}

/// Every dead letter stored.
pub async fn dead_letters(js: &jetstream::Context) -> Vec<StreamMessage> {
    stored_messages(js, "OKTA_DLQ").await
}

/// Waits until `count` dead letters are stored.
pub async fn wait_for_dead_letters(js: &jetstream::Context, count: usize) -> Vec<StreamMessage> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let stored = dead_letters(js).await;
            if stored.len() >= count {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dead letters are stored")
}

/// A configuration file with one subscriber whose `http` action POSTs to `url`; `extra` adds
/// subscriber keys (`ack_wait = "1s"`…). Lives as long as the returned directory.
pub fn http_subscriber_config(url: &str, extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hookrelay.toml");
    let text = format!(
        "[[worker.subscribers]]\nname = \"crm-sync\"\nevent_types = [\"user.lifecycle.create\"]\n\
         action = {{ type = \"http\", url = \"{url}\", timeout = \"10s\" }}\n{extra}\n"
    );
    std::fs::write(&path, text).expect("write the config");
    (dir, path)
}

/// The durable consumer of the `crm-sync` subscriber of [`http_subscriber_config`].
pub const CRM_SYNC_CONSUMER: &str = "crm-sync_user_lifecycle_create";

/// Waits until the consumer has nothing pending and nothing unacknowledged: every event it had
/// was acked or terminated.
pub async fn wait_until_settled(js: &jetstream::Context, consumer: &str) {
    let stream = js.get_stream("OKTA_EVENTS").await.expect("the stream");
    tokio::time::timeout(PATIENCE, async {
        loop {
            let info = stream.consumer_info(consumer).await.expect("consumer info");
            if info.num_ack_pending == 0
                && info.num_pending == 0
                && info.delivered.stream_sequence > 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the consumer settles");
}

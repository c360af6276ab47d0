//! One console test's stack: a configuration with two subscribers (one forwarding to a
//! scripted downstream whose URL holds secrets, one that does nothing) and two local users,
//! an operator and a viewer.

use std::path::PathBuf;

use hookrelay_testkit::{
    Console, ConsoleClient, Downstream, InProcess, NatsServer, Receiver, Reply, Stack,
};

/// The operator's and the viewer's names and passwords.
pub const OPERATOR: (&str, &str) = ("olivia", "correct horse battery staple");
pub const VIEWER: (&str, &str) = ("victor", "another long passphrase");

/// The downstream URL's path and query: secrets no page may show.
pub const SECRET_PATH: &str = "/services/T000/B000/XXXXSECRETPATH";
pub const SECRET_QUERY: &str = "token=sekrit-query-token";

/// A test's hookrelay with a console.
pub struct App {
    pub stack: Stack,
    pub receiver: Receiver,
    /// The worker, running while the app lives.
    pub _worker: Option<InProcess>,
    pub console: Console,
    pub downstream: Downstream,
    _dir: tempfile::TempDir,
}

/// The configuration: `crm` forwards `user.lifecycle.create` to the downstream (quick retries,
/// two attempts), `audit` takes it and `user.session.start` and does nothing; `extra` is
/// added at the end.
pub fn config(downstream: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hookrelay.toml");
    let hash = hookrelay::passwords::hash;
    let text = format!(
        r#"
[[worker.subscribers]]
name = "crm"
event_types = ["user.lifecycle.create"]
action = {{ type = "http", url = "{downstream}{SECRET_PATH}?{SECRET_QUERY}", timeout = "5s" }}
backoff = ["200ms"]
max_deliver = 2

[[worker.subscribers]]
name = "audit"
event_types = ["user.lifecycle.create", "user.session.start"]
action = {{ type = "noop" }}

[[console.users]]
name = "{}"
role = "operator"
password_hash = "{}"

[[console.users]]
name = "{}"
role = "viewer"
password_hash = "{}"
{extra}
"#,
        OPERATOR.0,
        hash(OPERATOR.1),
        VIEWER.0,
        hash(VIEWER.1),
    );
    std::fs::write(&path, text).expect("write the config");
    (dir, path)
}

impl App {
    /// The stack, with a downstream that answers as `script` says, and a worker.
    pub async fn start(
        script: impl Fn(&hookrelay_testkit::Recorded, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(script, "", &[], true).await
    }

    pub async fn start_with(
        script: impl Fn(&hookrelay_testkit::Recorded, usize) -> Reply + Send + Sync + 'static,
        extra: &str,
        overrides: &[(&str, &str)],
        worker: bool,
    ) -> Self {
        let downstream = Downstream::start(script).await;
        let (dir, path) = config(&downstream.url, extra);
        let stack = Stack::on(NatsServer::start(), Some(&path), overrides).await;
        let receiver = stack.receiver().await;
        let worker = match worker {
            true => Some(stack.worker().await),
            false => None,
        };
        let console = stack.console().await;
        App {
            stack,
            receiver,
            _worker: worker,
            console,
            downstream,
            _dir: dir,
        }
    }

    pub async fn operator(&self) -> ConsoleClient {
        self.console
            .client()
            .signed_in(OPERATOR.0, OPERATOR.1)
            .await
    }

    pub async fn viewer(&self) -> ConsoleClient {
        self.console.client().signed_in(VIEWER.0, VIEWER.1).await
    }
}

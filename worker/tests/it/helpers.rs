//! The `worker` binary as a child process whose log lines the test reads, on one test's
//! [`Stack`] (whose receiver runs in this process).

use std::net::SocketAddr;
use std::path::Path;

use hookrelay_testkit::{Process, Stack, free_port};

/// The `worker` binary with the stack's configuration, once it says it is ready.
pub async fn start_worker(stack: &Stack) -> Process {
    start_worker_with(stack, &stack.config).await
}

/// The `worker` binary with another configuration file, on the stack's server.
pub async fn start_worker_with(stack: &Stack, config: &Path) -> Process {
    let binary = Path::new(env!("CARGO_BIN_EXE_worker"));
    Process::start(binary, config, &stack.env, "worker ready").await
}

/// A worker with the configuration at `config` on the stack's server, and its admin address.
pub async fn worker_with_admin(stack: &Stack, config: &Path) -> (Process, SocketAddr) {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = stack.env.clone();
    env.insert("HOOKRELAY__WORKER__ADMIN_LISTEN".into(), admin.to_string());
    let binary = Path::new(env!("CARGO_BIN_EXE_worker"));
    (
        Process::start(binary, config, &env, "worker ready").await,
        admin,
    )
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

//! hookrelay's binaries as child processes, the way an operator runs them: a service whose
//! every log line the test can wait for ([`Process`]), or a command run to its end ([`run`]).
//! The binary comes from the test (`env!("CARGO_BIN_EXE_worker")`), the configuration from its
//! [`Stack`](crate::Stack).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::stack::PATIENCE;

/// `binary --config <config>`, with `env` over none of the caller's hookrelay or Okta settings.
fn command(binary: &Path, config: &Path, env: &HashMap<String, String>) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .env_remove("HOOKRELAY_CONFIG")
        .env_remove("OKTA_API_TOKEN")
        .env_remove("RUST_LOG")
        .envs(env)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A service binary, running, with every line it logs (stdout and stderr) kept for the test.
/// Killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    logged: Arc<Notify>,
    /// The tasks reading stdout and stderr; they end when the process closes them.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    /// Starts `binary` and waits until it logs a line containing `ready`.
    pub async fn start(
        binary: &Path,
        config: &Path,
        env: &HashMap<String, String>,
        ready: &str,
    ) -> Self {
        let name = binary
            .file_name()
            .map_or("process".into(), |n| n.to_string_lossy().into_owned());
        let mut child = command(binary, config, env)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let logged = Arc::new(Notify::new());
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for output in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let (lines, logged, name) = (lines.clone(), logged.clone(), name.clone());
            readers.push(tokio::spawn(async move {
                let mut reader = BufReader::new(output).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("{name}| {line}");
                    }
                    lines.lock().expect("not poisoned").push(line);
                    logged.notify_waiters();
                }
            }));
        }
        let process = Process {
            name,
            child,
            lines,
            logged,
            readers,
        };
        process.wait_for_line(|line| line.contains(ready)).await;
        process
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
                "{} did not log {count} expected line(s) in {PATIENCE:?}; it logged:\n{all}",
                self.name
            )
        })
    }

    /// Kills the process at once (SIGKILL), as a crash.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("the process is killed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
    }

    /// Sends SIGTERM and waits for the process to exit and for its last lines to be read;
    /// returns its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("the process runs");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent to {}", self.name);
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} exits within {PATIENCE:?} of SIGTERM", self.name))
            .expect("exit status");
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(PATIENCE, reader).await;
        }
        status.code()
    }
}

/// What one run of a command printed, and how it ended.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test, showing both outputs, unless the run succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.success,
            "the command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `binary --config <config> <args>` with `env` to its end, giving it a minute.
pub async fn run(
    binary: &Path,
    config: &Path,
    env: &HashMap<String, String>,
    args: &[&str],
) -> Run {
    run_with_input(binary, config, env, args, None).await
}

/// [`run`], with `input` on its standard input (closed after it).
pub async fn run_with_input(
    binary: &Path,
    config: &Path,
    env: &HashMap<String, String>,
    args: &[&str],
    input: Option<&str>,
) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let mut command = command(binary, config, env);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if input.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("the command runs");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("input written");
    }
    let output = child.wait_with_output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("the command finishes within a minute")
        .expect("the command runs");
    let run = Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!(
            "{} {args:?}\n{}{}",
            binary.display(),
            run.stdout,
            run.stderr
        );
    }
    run
}

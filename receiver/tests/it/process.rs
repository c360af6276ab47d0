//! The `receiver` binary as an operator runs it: started, then stopped with SIGTERM, with what it
//! logs read back.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hookrelay_testkit::{NatsServer, default_config, free_port, test_env, wait_for_port};
use serde_json::Value;

#[test]
fn a_clean_stop_warns_only_of_the_demo_secret_and_says_how_compose_users_replace_it() {
    let nats = NatsServer::start();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin_listen = admin.to_string();
    let env = test_env(
        &nats,
        &[
            ("HOOKRELAY__RECEIVER__ADMIN_LISTEN", &admin_listen),
            ("HOOKRELAY__LOG__FORMAT", "json"),
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_receiver"))
        .arg("--config")
        .arg(default_config())
        .env_remove("RUST_LOG")
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the receiver binary starts");
    wait_for_port(admin);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "SIGTERM sent");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child
        .try_wait()
        .expect("the child can be waited on")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the receiver did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the receiver's output");
    assert!(output.status.success(), "a clean stop exits 0: {output:?}");

    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .collect();
    let messages = |level: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|line| line["level"] == level)
            .map(|line| line["message"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        messages("INFO").iter().any(|m| m == "receiver stopped"),
        "the stop is logged: {lines:?}"
    );
    let warnings = messages("WARN");
    assert_eq!(
        warnings.len(),
        1,
        "one warning, the demo secret: {warnings:?}"
    );
    assert!(
        warnings[0].contains("HOOKRELAY__RECEIVER__AUTH__SECRET")
            && warnings[0].contains("HOOKRELAY_SECRET in .env"),
        "the warning names the variable for the binary and for docker compose: {}",
        warnings[0]
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).trim().is_empty(),
        "nothing on stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

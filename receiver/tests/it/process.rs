//! The `receiver` binary as an operator runs it: started, then stopped with SIGTERM, with what it
//! logs read back.

use hookrelay_testkit::{Process, Stack};
use serde_json::Value;

#[tokio::test]
async fn a_clean_stop_warns_only_of_the_demo_secret_and_says_how_compose_users_replace_it() {
    let stack = Stack::with(&[("HOOKRELAY__LOG__FORMAT", "json")]).await;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_receiver"));
    let mut receiver = Process::start(binary, &stack.config, &stack.env, "receiver ready").await;
    assert_eq!(receiver.terminate().await, Some(0), "a clean stop exits 0");

    let lines: Vec<Value> = receiver
        .lines_where(|_| true)
        .iter()
        .map(|line| serde_json::from_str(line).expect("every line is a JSON log line"))
        .collect();
    let messages = |level: &str| -> Vec<String> {
        (lines.iter())
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
}

//! `hookrelayctl console` and `hookrelayctl subscribers`: the console's first sign-in and local
//! users' password hashes, and pausing a subscriber from the command line.

use std::path::Path;

use hookrelay_testkit::{Stack, process};

use crate::helpers::ctl;

/// The password line `initial-password` prints.
fn password_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a password line")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_first_sign_in_takes_the_password_initial_password_prints_and_only_the_last() {
    let stack = Stack::start().await;
    let console = stack.console().await;
    // Before any password was made, `admin` signs in with nothing.
    let refused = console
        .client()
        .post_form("/login", &[("username", "admin"), ("password", "")])
        .await;
    assert_eq!(refused.status(), 401);
    let login = console
        .client()
        .get("/login")
        .await
        .text()
        .await
        .expect("a page");
    assert!(
        login.contains("docker compose exec console hookrelayctl console initial-password"),
        "{login}"
    );

    let first = ctl(&stack, &["console", "initial-password"]).await.ok();
    assert!(first.stdout.contains("user:     admin"), "{}", first.stdout);
    let first = password_of(&first.stdout);
    assert_eq!(first.len(), 20);
    let second = password_of(
        &ctl(&stack, &["console", "initial-password"])
            .await
            .ok()
            .stdout,
    );
    assert_ne!(first, second);
    let old = console
        .client()
        .post_form("/login", &[("username", "admin"), ("password", &first)])
        .await;
    assert_eq!(old.status(), 401, "the earlier password no longer works");
    let admin = console.client().signed_in("admin", &second).await;
    assert_eq!(admin.get("/subscribers").await.status(), 200);
    assert_eq!(
        admin
            .post_form("/subscribers/user-added/pause", &[])
            .await
            .status(),
        303,
        "the first sign-in is an operator"
    );
    // Nothing of it is stored in plain text.
    let bucket = stack
        .js
        .get_key_value("hookrelay_console")
        .await
        .expect("the bucket");
    let stored = bucket
        .get("first-sign-in")
        .await
        .expect("read")
        .expect("a hash");
    let stored = String::from_utf8_lossy(&stored).into_owned();
    assert!(
        stored.starts_with("$argon2id$") && !stored.contains(&second),
        "{stored}"
    );
}

#[tokio::test]
async fn a_hash_from_hash_password_signs_a_configured_user_in() {
    let stack = Stack::start().await;
    let run = process::run_with_input(
        Path::new(env!("CARGO_BIN_EXE_hookrelayctl")),
        &stack.config,
        &stack.env,
        &["console", "hash-password"],
        Some("a long enough passphrase\n"),
    )
    .await
    .ok();
    let hash = run.stdout.trim().to_owned();
    assert!(
        hookrelay::passwords::verify(&hash, "a long enough passphrase"),
        "{hash}"
    );
    assert!(
        !hookrelay::passwords::verify(&hash, "a long enough passphrase\n"),
        "the newline is not part of it"
    );
    let short = process::run_with_input(
        Path::new(env!("CARGO_BIN_EXE_hookrelayctl")),
        &stack.config,
        &stack.env,
        &["console", "hash-password"],
        Some("short"),
    )
    .await
    .ok();
    assert!(
        short.stderr.contains("fewer than 12 characters"),
        "{}",
        short.stderr
    );

    // Configured, the first sign-in is off.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hookrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[[console.users]]\nname = \"alice\"\nrole = \"viewer\"\npassword_hash = \"{hash}\"\n"
        ),
    )
    .expect("written");
    let stack = Stack::on(hookrelay_testkit::NatsServer::start(), Some(&config), &[]).await;
    let console = stack.console().await;
    let alice = console
        .client()
        .signed_in("Alice", "a long enough passphrase")
        .await;
    assert_eq!(
        alice
            .post_form("/subscribers/user-added/pause", &[])
            .await
            .status(),
        403,
        "a viewer"
    );
    let run = ctl(&stack, &["console", "initial-password"]).await;
    assert!(
        !run.success && run.stderr.contains("the first sign-in is off"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn subscribers_are_listed_paused_and_resumed_from_the_command_line() {
    let stack = Stack::start().await;
    let _worker = stack.worker().await;
    let paused = ctl(&stack, &["subscribers", "pause", "user-added"])
        .await
        .ok();
    assert!(
        paused.stdout.starts_with("paused user-added"),
        "{}",
        paused.stdout
    );
    let list = ctl(&stack, &["subscribers", "list"]).await.ok();
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("user-added"))
        .expect("its line");
    assert!(
        line.contains("paused since ") && line.contains("user.lifecycle.create"),
        "{line}"
    );
    let json = ctl(&stack, &["subscribers", "list", "--json"]).await.ok();
    let shown: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(shown["paused"], true);
    assert!(
        shown["state"]["by"]
            .as_str()
            .expect("by")
            .starts_with("hookrelayctl")
    );
    ctl(&stack, &["subscribers", "resume", "user-added"])
        .await
        .ok();
    let json = ctl(&stack, &["subscribers", "list", "--json"]).await.ok();
    let shown: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(shown["paused"], false);
    let unknown = ctl(&stack, &["subscribers", "pause", "nobody"]).await;
    assert!(
        !unknown.success && unknown.stderr.contains("no subscriber \"nobody\""),
        "{}",
        unknown.stderr
    );
}

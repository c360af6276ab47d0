//! `hookrelayctl` against a NATS that asks for a password given in the URL: it connects, and
//! what it prints names the server without the password.

use hookrelay_testkit::{NatsServer, Stack};

use crate::helpers::ctl;

#[tokio::test]
async fn credentials_in_the_url_connect_and_are_printed_as_stars() {
    let password = "ctl-pw-4711";
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ user: ops, password: \"{password}\" }}"
    ));
    let url = nats
        .url()
        .replace("nats://", &format!("nats://ops:{password}@"));
    let stack = Stack::on(nats, None, &[("HOOKRELAY__NATS__URL", &url)]).await;
    let _receiver = stack.receiver().await;

    let run = ctl(&stack, &["dead-letters", "list"]).await.ok();
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(printed.contains("nats://ops:***@127.0.0.1:"), "{printed}");
    assert!(!printed.contains(password), "{printed}");
}

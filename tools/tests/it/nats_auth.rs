//! `hookrelayctl` against a NATS that asks for a secret: it connects, and what it prints names
//! the server without the secret.

use hookrelay_testkit::secure::stacks_with_each_secret;
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

#[tokio::test]
async fn no_nats_secret_is_ever_printed_right_or_wrong() {
    for secured in stacks_with_each_secret(None).await {
        let (stack, how) = (&secured.stack, secured.how);
        hookrelay::broker::ensure_streams(&stack.js, &stack.settings.nats)
            .await
            .expect("streams");
        let run = ctl(stack, &["dead-letters", "list"]).await;
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(run.success, !secured.refused, "{how}: {printed}");
        if secured.refused {
            assert!(
                printed.contains("authorization violation"),
                "{how}: {printed}"
            );
        }
        secured.assert_not_in(&printed.lines().map(str::to_owned).collect::<Vec<_>>());
    }
}

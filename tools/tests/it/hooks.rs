//! `hookrelayctl hooks` against a fake of Okta's event hook Management API and token endpoint
//! (`testkit/src/okta_org.rs`), with a real receiver that Okta's verification calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookrelay_testkit::okta_org::{API_TOKEN, OktaOrg, P256, RSA, ServiceApp, key_pair};
use hookrelay_testkit::{DEMO_SECRET, Receiver, Stack, new_uuid, user_created_event};
use serde_json::Value;

use crate::helpers::ctl;

/// A stack with a receiver, whose `[okta]` section points at `org` with `okta` settings.
async fn stack_for(org: &OktaOrg, okta: &[(&str, &str)]) -> (Stack, Receiver) {
    let url = org.url();
    let mut env = vec![("HOOKRELAY__OKTA__ORG_URL", url.as_str())];
    env.extend_from_slice(okta);
    let stack = Stack::with(&env).await;
    let receiver = stack.receiver().await;
    (stack, receiver)
}

fn base_url(receiver: &Receiver) -> String {
    format!("http://{}", receiver.addr)
}

/// The id on the line `hooks create` or `set-url` printed first.
fn hook_id(stdout: &str) -> String {
    let first = stdout.lines().next().expect("a line");
    let id = first.split_whitespace().nth(1).expect("an id");
    id.to_owned()
}

#[tokio::test]
async fn create_takes_the_configuration_and_leaves_a_verified_active_hook_okta_delivers_to() {
    let org = OktaOrg::start().await;
    let (stack, receiver) = stack_for(&org, &[("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN)]).await;
    let run = ctl(&stack, &["hooks", "create", "--url", &base_url(&receiver)])
        .await
        .ok();
    let id = hook_id(&run.stdout);
    let hook = org.hook(&id).expect("created in Okta");
    assert_eq!(
        hook.uri(),
        receiver.url,
        "the receiver's path on the given base"
    );
    assert_eq!(hook.auth(), ("authorization".into(), DEMO_SECRET.into()));
    assert_eq!(
        hook.events["items"],
        serde_json::json!(["user.lifecycle.create"])
    );
    assert_eq!(
        (hook.status.as_str(), hook.verification_status.as_str()),
        ("ACTIVE", "VERIFIED")
    );
    assert!(run.stdout.contains("ACTIVE  VERIFIED"), "{}", run.stdout);
    assert!(run.stderr.contains("plain http"), "warns: {}", run.stderr);
    for printed in [&run.stdout, &run.stderr] {
        assert!(!printed.contains(DEMO_SECRET) && !printed.contains(API_TOKEN));
    }

    let status = org
        .deliver(&id, vec![user_created_event(&new_uuid(), "a@example.com")])
        .await;
    assert_eq!(status.map(|s| s.as_u16()), Some(200), "Okta delivers to it");
    assert_eq!(stack.stored_events().await.len(), 1);

    let run = ctl(&stack, &["hooks", "list", "--json"]).await.ok();
    let listed: Value = serde_json::from_str(run.stdout.trim()).expect("one JSON line");
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["verification_status"], "VERIFIED");
}

#[tokio::test]
async fn set_url_follows_a_new_tunnel_and_creates_the_hook_when_asked() {
    let org = OktaOrg::start().await;
    let (stack, first) = stack_for(&org, &[("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN)]).await;
    let run = ctl(
        &stack,
        &["hooks", "set-url", "hookrelay", "--url", &base_url(&first)],
    )
    .await;
    assert!(
        !run.success && run.stderr.contains("--create"),
        "{}",
        run.stderr
    );

    let args = [
        "hooks",
        "set-url",
        "hookrelay",
        "--url",
        &base_url(&first),
        "--create",
    ];
    let id = hook_id(&ctl(&stack, &args).await.ok().stdout);
    // A new tunnel: another receiver, at another address.
    let second = stack.receiver().await;
    let run = ctl(
        &stack,
        &["hooks", "set-url", "hookrelay", "--url", &second.url],
    )
    .await
    .ok();
    assert!(run.stdout.starts_with("updated"), "{}", run.stdout);
    let hook = org.hook(&id).expect("the same hook");
    assert_eq!(hook.uri(), second.url);
    assert_eq!(
        hook.verification_status, "VERIFIED",
        "verified again after the change"
    );
    assert_eq!(org.hooks().len(), 1);
}

#[tokio::test]
async fn errors_say_what_okta_said_and_never_the_secret() {
    let org = OktaOrg::start().await;
    let (stack, receiver) = stack_for(&org, &[("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN)]).await;
    let id = hook_id(
        &ctl(&stack, &["hooks", "create", "--url", &base_url(&receiver)])
            .await
            .ok()
            .stdout,
    );
    let run = ctl(&stack, &["hooks", "delete", &id]).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("Only") || run.stderr.contains("only delete event hooks"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("deactivate"), "{}", run.stderr);
    ctl(&stack, &["hooks", "deactivate", &id]).await.ok();
    ctl(&stack, &["hooks", "delete", &id]).await.ok();
    assert!(org.hooks().is_empty());

    // A receiver that does not know the secret the hook would carry: verification fails.
    let mut env = stack.env.clone();
    env.insert(
        "HOOKRELAY__RECEIVER__AUTH__SECRET".into(),
        "another-secret-4711".into(),
    );
    let other = hookrelay::Settings::load_from(Some(&stack.config), Some(env)).expect("settings");
    let stranger = Receiver::start(&other).await;
    let run = ctl(&stack, &["hooks", "create", "--url", &stranger.url]).await;
    assert!(!run.success);
    assert!(run.stderr.contains("could not verify"), "{}", run.stderr);
    assert!(
        run.stderr.contains("401"),
        "says what the receiver answered: {}",
        run.stderr
    );

    let mut wrong = stack.env.clone();
    wrong.insert("HOOKRELAY__OKTA__API_TOKEN".into(), "00wrong".into());
    let run = crate::helpers::ctl_with(&stack.config, &wrong, &["hooks", "list"]).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("401") && run.stderr.contains("Invalid token provided"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("00wrong"), "{}", run.stderr);
}

#[tokio::test]
async fn a_service_app_authenticates_with_private_key_jwt_and_dpop() {
    let dir = tempfile::tempdir().expect("a directory");
    for (algorithm, dpop) in [(RSA, true), (P256, false)] {
        let org = OktaOrg::start().await;
        let (private_key, public_key_pem) = key_pair(dir.path(), &algorithm);
        let client_id = format!("0oa{}", &new_uuid()[..17]);
        org.register(ServiceApp {
            client_id: client_id.clone(),
            key_id: "kid-1".into(),
            public_key_pem,
            dpop,
            scopes: vec!["okta.eventHooks.manage".into()],
        });
        let okta = [
            ("HOOKRELAY__OKTA__CLIENT_ID", client_id.as_str()),
            ("HOOKRELAY__OKTA__KEY_ID", "kid-1"),
            ("HOOKRELAY__OKTA__PRIVATE_KEY_FILE", private_key.as_str()),
            ("HOOKRELAY__OKTA__DPOP", if dpop { "true" } else { "false" }),
        ];
        let (stack, receiver) = stack_for(&org, &okta).await;
        let run = ctl(&stack, &["hooks", "create", "--url", &base_url(&receiver)]).await;
        assert!(run.success, "dpop {dpop}: {}{}", run.stdout, run.stderr);
        assert_eq!(org.hooks().len(), 1);
        assert_eq!(
            org.tokens_issued(),
            1,
            "one token for create, verify and the rest"
        );

        // Tokens that expire after one call: `create` (create, verify, …) renews its token on
        // each of Okta's 401s and succeeds.
        org.expire_tokens_after(1);
        let url = base_url(&receiver);
        let run = ctl(
            &stack,
            &["hooks", "create", "--url", &url, "--name", "second"],
        )
        .await;
        assert!(run.success, "dpop {dpop}: {}{}", run.stdout, run.stderr);
        assert_eq!(org.hooks().len(), 2);
        assert!(org.tokens_issued() >= 3, "a fresh token after each 401");

        // A key Okta does not know for the app, and a scope it was not granted.
        let mut env = stack.env.clone();
        env.insert("HOOKRELAY__OKTA__KEY_ID".into(), "kid-other".into());
        let run = crate::helpers::ctl_with(&stack.config, &env, &["hooks", "list"]).await;
        assert!(!run.success);
        assert!(
            run.stderr.contains("invalid_client") && run.stderr.contains("okta.key_id"),
            "{}",
            run.stderr
        );
    }

    let org = OktaOrg::start().await;
    let (private_key, public_key_pem) = key_pair(dir.path(), &P256);
    org.register(ServiceApp {
        client_id: "0oalogsonly".into(),
        key_id: "k".into(),
        public_key_pem,
        dpop: true,
        scopes: vec!["okta.logs.read".into()],
    });
    let okta = [
        ("HOOKRELAY__OKTA__CLIENT_ID", "0oalogsonly"),
        ("HOOKRELAY__OKTA__KEY_ID", "k"),
        ("HOOKRELAY__OKTA__PRIVATE_KEY_FILE", private_key.as_str()),
    ];
    let (stack, _receiver) = stack_for(&org, &okta).await;
    let run = ctl(&stack, &["hooks", "list"]).await;
    assert!(!run.success);
    assert!(
        run.stderr.contains("invalid_scope") && run.stderr.contains("okta.eventHooks.manage"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn rotate_secret_changes_the_hook_s_secret_while_every_delivery_is_accepted() {
    let dir = tempfile::tempdir().expect("a directory");
    let secret_file = dir.path().join("hook-secrets");
    std::fs::write(&secret_file, "first-secret-0815\n").expect("written");
    let secret_file_text = secret_file.display().to_string();
    let org = OktaOrg::start().await;
    let (stack, receiver) = stack_for(
        &org,
        &[
            ("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN),
            ("HOOKRELAY__RECEIVER__AUTH__SECRET", ""),
            ("HOOKRELAY__RECEIVER__AUTH__SECRET_FILE", &secret_file_text),
        ],
    )
    .await;
    let id = hook_id(
        &ctl(&stack, &["hooks", "create", "--url", &base_url(&receiver)])
            .await
            .ok()
            .stdout,
    );
    assert_eq!(org.hook(&id).expect("hook").auth().1, "first-secret-0815");

    // Okta delivers all along.
    let answers = Arc::new(Mutex::new(Vec::new()));
    let delivering = {
        let (org, id, answers) = (org.clone(), id.clone(), answers.clone());
        tokio::spawn(async move {
            loop {
                let event = user_created_event(&new_uuid(), "r@example.com");
                let status = org.deliver(&id, vec![event]).await;
                answers.lock().unwrap().push(status.map(|s| s.as_u16()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = ctl(&stack, &["hooks", "rotate-secret", &id, "--grace", "1s"])
        .await
        .ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    delivering.abort();

    let new = org.hook(&id).expect("hook").auth().1;
    assert_ne!(new, "first-secret-0815");
    let file = std::fs::read_to_string(&secret_file).expect("read");
    assert_eq!(file.trim(), new, "only the new secret is left");
    assert!(!run.stdout.contains(&new), "{}", run.stdout);
    let answers = answers.lock().unwrap().clone();
    let delivered: Vec<u16> = answers.iter().flatten().copied().collect();
    assert!(delivered.iter().all(|s| *s == 200), "{answers:?}");
    assert!(
        delivered.len() > 10,
        "deliveries before and after: {answers:?}"
    );
    assert_eq!(
        answers.last(),
        Some(&Some(200)),
        "Okta delivers with the new secret"
    );
}

/// Compose hands the one-shot the tunnel's token: empty, the tunnel stopped at once, so the
/// command says so at once instead of waiting a minute for a URL that never comes, and touches
/// no hook.
#[tokio::test]
async fn with_an_empty_ngrok_token_set_url_says_so_at_once_and_touches_nothing() {
    let org = OktaOrg::start().await;
    let (stack, _receiver) = stack_for(&org, &[("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN)]).await;
    let mut env = stack.env.clone();
    env.insert("NGROK_AUTHTOKEN".into(), String::new());
    // Nothing listens there: waiting for it would end a minute later in another error.
    let args = [
        "hooks",
        "set-url",
        "hookrelay",
        "--from-ngrok",
        "http://127.0.0.1:9",
        "--create",
    ];

    let optional = [&args[..], &["--optional"]].concat();
    let run = crate::helpers::ctl_with(&stack.config, &env, &optional)
        .await
        .ok();
    assert!(
        run.stdout.contains("NGROK_AUTHTOKEN is not set"),
        "{}",
        run.stdout
    );

    let run = crate::helpers::ctl_with(&stack.config, &env, &args).await;
    assert!(!run.success, "without --optional it is an error");
    assert!(
        run.stderr.contains("NGROK_AUTHTOKEN is not set"),
        "{}",
        run.stderr
    );
    assert!(org.hooks().is_empty(), "no hook made");
}

#[tokio::test]
async fn the_tunnel_s_url_is_read_from_ngrok_and_nothing_happens_without_okta_access() {
    let org = OktaOrg::start().await;
    let (stack, receiver) = stack_for(&org, &[("HOOKRELAY__OKTA__API_TOKEN", API_TOKEN)]).await;
    // ngrok's local API, listing the tunnel to the receiver.
    let public_url = base_url(&receiver);
    let tunnels = serde_json::json!({"tunnels": [{"public_url": public_url, "proto": "http"}]});
    let app = axum::Router::new().route(
        "/api/tunnels",
        axum::routing::get(move || async move { axum::Json(tunnels) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let ngrok = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let args = [
        "hooks",
        "set-url",
        "hookrelay",
        "--from-ngrok",
        &ngrok,
        "--create",
        "--optional",
    ];
    let run = ctl(&stack, &args).await.ok();
    let hook = org.hooks().pop().expect("created");
    assert_eq!(hook.uri(), receiver.url, "{}", run.stdout);
    assert_eq!(
        (hook.status.as_str(), hook.verification_status.as_str()),
        ("ACTIVE", "VERIFIED")
    );

    let mut unconfigured = stack.env.clone();
    unconfigured.remove("HOOKRELAY__OKTA__ORG_URL");
    unconfigured.remove("HOOKRELAY__OKTA__API_TOKEN");
    let run = crate::helpers::ctl_with(&stack.config, &unconfigured, &args)
        .await
        .ok();
    assert!(run.stdout.contains("not configured"), "{}", run.stdout);
}

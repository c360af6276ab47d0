//! A NATS that asks for credentials: each way of giving them connects (user and password, token,
//! nkey seed, `.creds` file in operator mode, TLS with a CA, mutual TLS), a wrong one stops
//! start-up with NATS's reason and the setting's name, and no secret is ever printed.

use std::net::SocketAddr;
use std::path::Path;

use hookrelay_testkit::secure::{Operator, Pki, nkey_user, write_file};
use hookrelay_testkit::{
    NatsServer, Process, Stack, delivery, free_port, new_uuid, okta_post, user_created_event,
};

const PASSWORD: &str = "s3cret-pw-4711";
const TOKEN: &str = "t0ken-0815-secret";

fn password_server() -> NatsServer {
    NatsServer::start_with_config(&format!(
        "authorization {{ user: hookrelay, password: \"{PASSWORD}\" }}"
    ))
}

/// A stack on a password server, authenticating with `nats.user` and `nats.password`.
async fn password_stack() -> Stack {
    let credentials = [
        ("HOOKRELAY__NATS__USER", "hookrelay"),
        ("HOOKRELAY__NATS__PASSWORD", PASSWORD),
    ];
    Stack::on(password_server(), None, &credentials).await
}

/// The stack's settings with `changes` to its variables (`None` removes one).
fn settings_with(stack: &Stack, changes: &[(&str, Option<&str>)]) -> hookrelay::Settings {
    let mut env = stack.env.clone();
    for (key, value) in changes {
        match value {
            Some(value) => env.insert(key.to_string(), value.to_string()),
            None => env.remove(*key),
        };
    }
    hookrelay::Settings::load_from(Some(&stack.config), Some(env)).expect("valid settings")
}

/// The settings of `stack` with the credentials in `url` instead of `nats.user`/`password`.
fn credentials_in_url(stack: &Stack, url: &str) -> hookrelay::Settings {
    settings_with(
        stack,
        &[
            ("HOOKRELAY__NATS__USER", None),
            ("HOOKRELAY__NATS__PASSWORD", None),
            ("HOOKRELAY__NATS__URL", Some(url)),
        ],
    )
}

/// The receiver binary on `stack`, given one delivery, then stopped: everything it printed.
async fn run_receiver(stack: &Stack) -> Vec<String> {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut env = stack.env.clone();
    env.insert("HOOKRELAY__RECEIVER__LISTEN".into(), listen.to_string());
    let binary = Path::new(env!("CARGO_BIN_EXE_receiver"));
    let mut receiver = Process::start(binary, &stack.config, &env, "receiver ready").await;
    let body = delivery(
        &new_uuid(),
        vec![user_created_event(&new_uuid(), "a@example.com")],
    );
    let url = format!("http://{listen}{}", stack.settings.receiver.path);
    let answer = okta_post(&stack.http, &url, &body)
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200, "stored with the broker's credentials");
    assert_eq!(receiver.terminate().await, Some(0));
    receiver.lines_where(|_| true)
}

fn assert_nothing_secret(lines: &[String]) {
    assert_none_of(lines, &[PASSWORD, TOKEN]);
}

fn assert_none_of(lines: &[String], secrets: &[&str]) {
    for line in lines {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret was printed: {line}");
        }
    }
}

/// The message of the receiver's start-up error with these `settings`.
async fn start_up_error(settings: &hookrelay::Settings) -> String {
    match receiver::Application::build(settings).await {
        Ok(_) => panic!("start-up is refused"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_user_and_password_in_the_settings_or_in_the_url_connect_and_are_never_printed() {
    let stack = password_stack().await;
    assert_nothing_secret(&run_receiver(&stack).await);
    assert_eq!(stack.stored_events().await.len(), 1);

    let port = stack
        .nats
        .url()
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let in_url = format!("nats://hookrelay:{PASSWORD}@127.0.0.1:{port}");
    let settings = credentials_in_url(&stack, &in_url);
    assert_eq!(
        settings.nats.display_url(),
        format!("nats://hookrelay:***@127.0.0.1:{port}")
    );
    let app = receiver::Application::build(&settings)
        .await
        .expect("the credentials in the URL are sent");
    drop(app);
}

#[tokio::test]
async fn a_wrong_password_stops_start_up_with_nats_reason_and_the_setting_not_its_value() {
    let stack = password_stack().await;
    let url = stack.nats.url();
    let settings = settings_with(&stack, &[("HOOKRELAY__NATS__PASSWORD", Some("wrong-0815"))]);
    let Err(error) = receiver::Application::build(&settings).await else {
        panic!("a wrong password is refused");
    };
    let message = format!("{error:#}");
    assert!(message.contains("authorization violation"), "{message}");
    assert!(message.contains("nats.user/nats.password"), "{message}");
    assert!(message.contains(&url), "names the server: {message}");
    assert!(!message.contains("wrong-0815"), "{message}");

    let in_url = url.replace("nats://", "nats://hookrelay:wrong-0815@");
    let settings = credentials_in_url(&stack, &in_url);
    let Err(error) = receiver::Application::build(&settings).await else {
        panic!("a wrong password in the URL is refused");
    };
    let message = format!("{error:#}");
    assert!(message.contains("hookrelay:***@"), "{message}");
    assert!(!message.contains("wrong-0815"), "{message}");
}

#[tokio::test]
async fn a_token_connects_and_is_never_printed() {
    let nats = NatsServer::start_with_config(&format!("authorization {{ token: \"{TOKEN}\" }}"));
    let stack = Stack::on(nats, None, &[("HOOKRELAY__NATS__TOKEN", TOKEN)]).await;
    assert_nothing_secret(&run_receiver(&stack).await);
    assert_eq!(stack.stored_events().await.len(), 1);
}

#[tokio::test]
async fn an_nkey_seed_file_connects_and_the_seed_is_never_printed() {
    let (public, seed) = nkey_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users: [ {{ nkey: {public} }} ] }}"
    ));
    let dir = tempfile::tempdir().expect("a directory");
    let seed_file = write_file(dir.path(), "hookrelay.nk", &format!("{seed}\n"));
    let seed_file = seed_file.display().to_string();
    let stack = Stack::on(
        nats,
        None,
        &[("HOOKRELAY__NATS__NKEY_SEED_FILE", &seed_file)],
    )
    .await;
    assert_none_of(&run_receiver(&stack).await, &[&seed]);
    assert_eq!(stack.stored_events().await.len(), 1);

    let (_, other_seed) = nkey_user();
    let other = write_file(dir.path(), "other.nk", &other_seed);
    let other = other.display().to_string();
    let settings = settings_with(&stack, &[("HOOKRELAY__NATS__NKEY_SEED_FILE", Some(&other))]);
    let message = start_up_error(&settings).await;
    assert!(message.contains("authorization violation"), "{message}");
    assert!(message.contains("nats.nkey_seed_file"), "{message}");
    assert!(!message.contains(&other_seed), "{message}");
}

#[tokio::test]
async fn a_creds_file_connects_in_operator_mode_and_its_seed_is_never_printed() {
    let operator = Operator::new();
    let nats = NatsServer::start_with_config(&operator.server_config());
    let dir = tempfile::tempdir().expect("a directory");
    let creds = operator.user_creds("receiver");
    let creds_file = write_file(dir.path(), "receiver.creds", &creds);
    let creds_file = creds_file.display().to_string();
    let stack = Stack::on(
        nats,
        None,
        &[("HOOKRELAY__NATS__CREDENTIALS_FILE", &creds_file)],
    )
    .await;
    let seed = (creds.lines())
        .find(|l| l.starts_with("SU"))
        .expect("a seed");
    assert_none_of(&run_receiver(&stack).await, &[seed]);
    assert_eq!(stack.stored_events().await.len(), 1);

    // A user of an account the server does not know.
    let stranger = Operator::new().user_creds("stranger");
    let stranger = write_file(dir.path(), "stranger.creds", &stranger);
    let stranger = stranger.display().to_string();
    let settings = settings_with(
        &stack,
        &[("HOOKRELAY__NATS__CREDENTIALS_FILE", Some(&stranger))],
    );
    let message = start_up_error(&settings).await;
    assert!(message.contains("authorization violation"), "{message}");
    assert!(message.contains("nats.credentials_file"), "{message}");
}

/// `nats.url` of `nats` with the `tls://` scheme.
fn tls_url(nats: &NatsServer) -> String {
    nats.url().replace("nats://", "tls://")
}

#[tokio::test]
async fn tls_with_the_ca_connects_and_an_untrusted_certificate_stops_start_up_naming_nats_tls() {
    let pki = Pki::generate();
    let nats = NatsServer::start_with_config(&pki.server_config(false));
    let url = tls_url(&nats);
    let ca = pki.path("ca.pem").display().to_string();
    let stack = Stack::on(
        nats,
        None,
        &[
            ("HOOKRELAY__NATS__URL", &url),
            ("HOOKRELAY__NATS__TLS__CA_FILE", &ca),
        ],
    )
    .await;
    run_receiver(&stack).await;
    assert_eq!(stack.stored_events().await.len(), 1);

    let other_ca = pki.path("other-ca.pem").display().to_string();
    let settings = settings_with(
        &stack,
        &[("HOOKRELAY__NATS__TLS__CA_FILE", Some(&other_ca))],
    );
    let message = start_up_error(&settings).await;
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(message.contains("nats.tls"), "{message}");
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn mutual_tls_connects_with_the_client_certificate_and_is_refused_without_it() {
    let pki = Pki::generate();
    let nats = NatsServer::start_with_config(&pki.server_config(true));
    let file = |name: &str| pki.path(name).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let stack = Stack::on(
        nats,
        None,
        &[
            ("HOOKRELAY__NATS__TLS__CA_FILE", &ca),
            ("HOOKRELAY__NATS__TLS__CERT_FILE", &cert),
            ("HOOKRELAY__NATS__TLS__KEY_FILE", &key),
            ("HOOKRELAY__NATS__STARTUP_TIMEOUT", "3s"),
        ],
    )
    .await;
    run_receiver(&stack).await;
    assert_eq!(stack.stored_events().await.len(), 1);

    let settings = settings_with(
        &stack,
        &[
            ("HOOKRELAY__NATS__TLS__CERT_FILE", None),
            ("HOOKRELAY__NATS__TLS__KEY_FILE", None),
        ],
    );
    let message = start_up_error(&settings).await;
    assert!(
        message.contains("BadCertificate") && message.contains("nats.tls"),
        "{message}"
    );
}

//! Sign in with Okta, against a fake Okta authorization server that refuses what Okta refuses
//! (`testkit::okta_oidc`): the authorization code flow with PKCE, state and nonce, the ID token
//! checked, groups mapped to roles; and every way a sign-in must fail.

use hookrelay_testkit::okta_oidc::{
    Misbehaviour, OidcClient, OidcUser, OktaAuthServer, client_without_redirects,
};
use hookrelay_testkit::{ConsoleClient, Reply, free_port};

use crate::helpers::App;

pub const OPERATOR_LOGIN: &str = "ops@example.com";
pub const VIEWER_LOGIN: &str = "reader@example.com";
pub const OUTSIDER_LOGIN: &str = "outsider@example.com";
pub const PASSWORD: &str = "Okta-p4ssword!";
const CLIENT_ID: &str = "0oa1hookrelayconsole";
const CLIENT_SECRET: &str = "console-client-secret-from-okta";

/// A fake Okta with three people (an operator, a viewer, someone in neither group) and the
/// console's app integration, whose redirect URI is the console's, on a port chosen now.
pub struct AuthServer {
    pub server: OktaAuthServer,
    port: u16,
}

impl AuthServer {
    pub async fn start() -> Self {
        let port = free_port();
        let server = OktaAuthServer::start(OidcClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![format!("http://127.0.0.1:{port}/login/okta/callback")],
        })
        .await;
        for (login, groups) in [
            (OPERATOR_LOGIN, vec!["Everyone", "hookrelay-operators"]),
            (VIEWER_LOGIN, vec!["Everyone", "hookrelay-viewers"]),
            (OUTSIDER_LOGIN, vec!["Everyone"]),
        ] {
            server.add_user(OidcUser {
                login: login.into(),
                password: PASSWORD.into(),
                name: login.into(),
                groups: groups.into_iter().map(String::from).collect(),
            });
        }
        AuthServer { server, port }
    }

    /// A console that signs people in with this Okta.
    pub async fn app(&self) -> App {
        let oidc = format!(
            r#"
[console.oidc]
issuer = "{}"
client_id = "{CLIENT_ID}"
operator_groups = ["hookrelay-operators"]
viewer_groups = ["hookrelay-viewers"]
"#,
            self.server.issuer()
        );
        let listen = format!("127.0.0.1:{}", self.port);
        let url = format!("http://127.0.0.1:{}", self.port);
        App::start_with(
            |_, _| Reply::status(200),
            &oidc,
            &[
                ("HOOKRELAY__CONSOLE__LISTEN", &listen),
                ("HOOKRELAY__CONSOLE__URL", &url),
                ("HOOKRELAY__CONSOLE__OIDC__CLIENT_SECRET", CLIENT_SECRET),
            ],
            false,
        )
        .await
    }

    /// Starts a sign-in at the console: the client with its login cookie, and where the console
    /// sent it (Okta's authorize URL).
    pub async fn start_sign_in(&self, app: &App) -> (ConsoleClient, String) {
        let mut client = app.console.client();
        let response = client.get("/login/okta?next=/subscribers").await;
        assert_eq!(response.status(), 303, "off to Okta");
        client.keep_cookies(&response);
        let location = response.headers()["location"]
            .to_str()
            .expect("text")
            .to_owned();
        (client, location)
    }

    /// Signs `login` in at Okta: the console's callback URL Okta sends the browser to.
    pub async fn callback(&self, authorize: &str, login: &str) -> String {
        self.server
            .sign_in(&client_without_redirects(), authorize, login, PASSWORD)
            .await
    }
}

/// The path and query of a URL of the console.
fn path_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("a URL");
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

#[tokio::test]
async fn an_operator_and_a_viewer_sign_in_with_okta_by_their_groups() {
    let okta = AuthServer::start().await;
    let app = okta.app().await;
    for (login, role) in [(OPERATOR_LOGIN, "operator"), (VIEWER_LOGIN, "viewer")] {
        let (mut client, authorize) = okta.start_sign_in(&app).await;
        let query: Vec<(String, String)> = reqwest::Url::parse(&authorize)
            .expect("a URL")
            .query_pairs()
            .into_owned()
            .collect();
        let get = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(
            authorize.starts_with(&okta.server.authorization_endpoint()),
            "{authorize}"
        );
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("code_challenge").map(str::len), Some(43));
        assert_eq!(get("client_id"), Some(CLIENT_ID));
        assert!(get("state").is_some_and(|s| s.len() >= 32));
        assert!(get("nonce").is_some_and(|s| s.len() >= 32));
        assert!(get("scope").is_some_and(|s| s.split(' ').any(|s| s == "groups")));

        let callback = okta.callback(&authorize, login).await;
        let response = client.get(&path_of(&callback)).await;
        assert_eq!(response.status(), 303, "{login} signed in");
        assert_eq!(
            response.headers()["location"],
            "/subscribers",
            "back where they were going"
        );
        client.keep_cookies(&response);
        assert!(
            !client
                .cookie
                .as_deref()
                .unwrap_or_default()
                .contains("hookrelay_login"),
            "the pending sign-in is gone"
        );
        let (status, page) = client.get_json("/subscribers").await;
        assert_eq!(status, 200, "{page}");
        let who = client.get("/events").await.text().await.expect("a page");
        assert!(
            who.contains(login) && who.contains(role),
            "{login} as {role}"
        );
        let pause = client.post_form("/subscribers/crm/pause", &[]).await;
        let expected = if role == "operator" { 303 } else { 403 };
        assert_eq!(pause.status(), expected, "{login} pauses: {role}");
    }
    assert_eq!(
        okta.server.token_requests(),
        2,
        "one code redeemed per sign-in"
    );
}

#[tokio::test]
async fn someone_in_neither_group_is_refused_with_a_page_that_says_so() {
    let okta = AuthServer::start().await;
    let app = okta.app().await;
    let (mut client, authorize) = okta.start_sign_in(&app).await;
    let callback = okta.callback(&authorize, OUTSIDER_LOGIN).await;
    let response = client.get(&path_of(&callback)).await;
    assert_eq!(response.status(), 403);
    client.keep_cookies(&response);
    let page = response.text().await.expect("a page");
    assert!(
        page.contains(OUTSIDER_LOGIN) && page.contains("hookrelay-operators"),
        "{page}"
    );
    assert_eq!(
        client.get("/events").await.status(),
        303,
        "no session: to the sign-in"
    );
}

#[tokio::test]
async fn a_callback_used_twice_forged_or_from_another_browser_is_refused() {
    let okta = AuthServer::start().await;
    let app = okta.app().await;

    // The same callback twice: the second finds no pending sign-in (and Okta would refuse the
    // used code anyway).
    let (mut client, authorize) = okta.start_sign_in(&app).await;
    let callback = path_of(&okta.callback(&authorize, OPERATOR_LOGIN).await);
    let first = client.get(&callback).await;
    assert_eq!(first.status(), 303);
    client.keep_cookies(&first);
    assert_eq!(client.get(&callback).await.status(), 401, "used once");
    let stolen = app.console.client();

    // A callback in a browser that did not start the sign-in (login CSRF).
    let (_, authorize) = okta.start_sign_in(&app).await;
    let callback = path_of(&okta.callback(&authorize, OPERATOR_LOGIN).await);
    assert_eq!(
        stolen.get(&callback).await.status(),
        401,
        "no pending sign-in here"
    );

    // A state that is not the sign-in's.
    let (client, authorize) = okta.start_sign_in(&app).await;
    let callback = okta.callback(&authorize, OPERATOR_LOGIN).await;
    let forged = callback.replace("state=", "state=x");
    let response = client.get(&path_of(&forged)).await;
    assert_eq!(response.status(), 401);
    assert!(
        response
            .text()
            .await
            .expect("a page")
            .contains("state differs")
    );

    // Okta's own refusal is said, not hidden.
    let (client, _) = okta.start_sign_in(&app).await;
    let response = client
        .get("/login/okta/callback?error=access_denied&error_description=User+is+not+assigned+to+the+client+application.&state=x")
        .await;
    assert_eq!(response.status(), 401);
    assert!(
        response
            .text()
            .await
            .expect("a page")
            .contains("User is not assigned")
    );
}

#[tokio::test]
async fn id_tokens_that_okta_would_not_issue_sign_nobody_in() {
    let okta = AuthServer::start().await;
    let app = okta.app().await;
    for (how, says) in [
        (Misbehaviour::ExpiredIdToken, "ExpiredSignature"),
        (Misbehaviour::WrongAudience, "InvalidAudience"),
        (Misbehaviour::BadSignature, "InvalidSignature"),
        (Misbehaviour::WrongNonce, "nonce"),
        (Misbehaviour::WrongIssuer, "InvalidIssuer"),
    ] {
        okta.server.misbehave(Some(how));
        let (mut client, authorize) = okta.start_sign_in(&app).await;
        let callback = okta.callback(&authorize, OPERATOR_LOGIN).await;
        let response = client.get(&path_of(&callback)).await;
        assert_eq!(response.status(), 401, "{how:?}");
        client.keep_cookies(&response);
        let page = response.text().await.expect("a page");
        assert!(
            page.contains("ID token is not valid") && page.contains(says),
            "{how:?}: {page}"
        );
        assert_eq!(
            client.get("/events").await.status(),
            303,
            "{how:?}: no session"
        );
    }
    okta.server.misbehave(None);

    // Okta rotates its keys: the console fetches them again for a kid it has not seen (at most
    // once a second).
    okta.server.rotate_keys();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (mut client, authorize) = okta.start_sign_in(&app).await;
    let callback = okta.callback(&authorize, OPERATOR_LOGIN).await;
    let response = client.get(&path_of(&callback)).await;
    assert_eq!(response.status(), 303, "signed in with the new key");
    client.keep_cookies(&response);
    assert_eq!(client.get("/events").await.status(), 200);
}

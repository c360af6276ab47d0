//! A fake of an Okta custom authorization server (`/oauth2/default`) for a web app that signs
//! users in with OpenID Connect: the authorization code flow with PKCE (S256), `state` and
//! `nonce`, RS256 ID tokens carrying a `groups` claim, and the JWKS to verify them. It refuses
//! what Okta refuses, in Okta's words where we know them:
//!
//! - at `/v1/authorize`: an unknown `client_id` or a `redirect_uri` not registered exactly is
//!   a 400 page and never a redirect (OAuth 2.0 §4.1.2.1); every other fault is redirected back
//!   with `error`, `error_description` and `state` (a missing `state`, `nonce` or PKCE
//!   challenge, a method other than `S256`, a scope without `openid`, …);
//! - at `/v1/token`: client authentication (`client_secret_basic` or `client_secret_post`),
//!   then codes that are unknown, used (once, even if that redemption failed), expired, issued
//!   to another client, redeemed with another `redirect_uri` or a `code_verifier` whose S256 is
//!   not the challenge, in OAuth's error shape (`error`, `error_description`);
//! - and on demand it misbehaves ([`Misbehaviour`]) so that a console's tests can show its
//!   verifier refuses an expired, misaddressed, forged, replayed or foreign ID token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SecureRandom as _;
use serde_json::{Value, json};

use crate::okta_org::{RSA, key_pair};

/// Where a custom authorization server lives in an Okta org; the fake's only one.
const SERVER_PATH: &str = "/oauth2/default";

/// The `aud` of ID tokens issued under [`Misbehaviour::WrongAudience`]: another app's client id.
pub const OTHER_AUDIENCE: &str = "0oa-someone-else";

/// The `iss` of ID tokens issued under [`Misbehaviour::WrongIssuer`]: another org's server.
pub const OTHER_ISSUER: &str = "https://someone-else.okta.com/oauth2/default";

/// How long Okta's authorization codes live.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// What Okta says of a code it will not redeem, whatever the reason.
const INVALID_CODE: &str = "The authorization code is invalid or has expired.";

/// An OIDC web app registered in the org ("Client authentication: Client secret").
#[derive(Clone, Debug)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    /// "Sign-in redirect URIs": a request's `redirect_uri` must be one of them, exactly.
    pub redirect_uris: Vec<String>,
}

/// A person who can sign in, and is assigned to every client of the fake.
#[derive(Clone, Debug)]
pub struct OidcUser {
    /// The Okta username: `preferred_username` and `email` in the ID token.
    pub login: String,
    pub password: String,
    /// The `name` claim.
    pub name: String,
    /// The `groups` claim, as a groups claim "Matches regex `.*`", included always.
    pub groups: Vec<String>,
}

/// A fault in the ID tokens issued from now until cleared, each one a correct verifier must
/// refuse. Access tokens and everything else stay correct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `iat` two hours ago, `exp` one hour ago.
    ExpiredIdToken,
    /// `aud` is [`OTHER_AUDIENCE`].
    WrongAudience,
    /// Signed with a key the JWKS does not publish, under the published `kid`.
    BadSignature,
    /// A `nonce` other than the authorize request's.
    WrongNonce,
    /// `iss` is [`OTHER_ISSUER`].
    WrongIssuer,
}

/// The answer of a sign-in that did not end in a redirect (a wrong password, a request refused
/// without a redirect): what a browser would show.
#[derive(Clone, Debug)]
pub struct SignInRefused {
    pub status: u16,
    pub page: String,
}

/// An RSA key that signs ID tokens, with what the JWKS publishes of it.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// The modulus and exponent, base64url without padding.
    n: String,
    e: String,
}

impl SigningKey {
    /// A 2048-bit key made by openssl in `dir`, as Okta's keys are.
    fn generate(dir: &std::path::Path) -> Self {
        let (private_path, _) = key_pair(dir, &RSA);
        let pem = std::fs::read_to_string(&private_path).expect("openssl wrote the key");
        // `openssl genpkey` writes PKCS#8 (`BEGIN PRIVATE KEY`): base64 between the armour.
        let der: String = (pem.lines())
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(der).expect("a PEM body is base64");
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("openssl's RSA key");
        let public: ring::signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        SigningKey {
            kid: random(32),
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("openssl's RSA key"),
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
        }
    }
}

/// A person as the fake keeps them: with the `sub` Okta gave them.
#[derive(Clone)]
struct Account {
    sub: String,
    user: OidcUser,
}

/// What a code stands for, kept until its one redemption attempt.
struct Code {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: String,
    scope: String,
    account: Account,
    /// When the user signed in (`auth_time`), seconds since the epoch.
    auth_time: u64,
    issued: Instant,
}

struct Server {
    issuer: String,
    clients: Vec<OidcClient>,
    accounts: Vec<Account>,
    codes: HashMap<String, Code>,
    code_lifetime: Duration,
    misbehaviour: Option<Misbehaviour>,
    key: SigningKey,
    /// The key [`Misbehaviour::BadSignature`] signs with, made when first needed.
    impostor: Option<SigningKey>,
    /// Where openssl writes keys.
    keys_dir: tempfile::TempDir,
    token_requests: usize,
}

type Shared = Arc<Mutex<Server>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Server> {
    shared
        .lock()
        .expect("no handler panics while holding the lock")
}

/// The fake authorization server, serving on a loopback port until dropped.
pub struct OktaAuthServer {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OktaAuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OktaAuthServer {
    /// Serves an authorization server that knows `client` (more with [`Self::add_client`]) and
    /// no users yet, with a fresh signing key.
    pub async fn start(client: OidcClient) -> OktaAuthServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let keys_dir = tempfile::tempdir().expect("a temporary directory for keys");
        let key = SigningKey::generate(keys_dir.path());
        let shared = Arc::new(Mutex::new(Server {
            issuer: format!("http://{addr}{SERVER_PATH}"),
            clients: vec![client],
            accounts: Vec::new(),
            codes: HashMap::new(),
            code_lifetime: CODE_LIFETIME,
            misbehaviour: None,
            key,
            impostor: None,
            keys_dir,
            token_requests: 0,
        }));
        let routes = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/v1/authorize", get(authorize).post(sign_in_form))
            .route("/v1/token", axum::routing::post(token))
            .route("/v1/keys", get(keys))
            .with_state(shared.clone());
        let app = Router::new().nest(SERVER_PATH, routes);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OktaAuthServer { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>/oauth2/default`: what the console is configured with; every
    /// endpoint is found from its `/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        lock(&self.shared).issuer.clone()
    }

    /// `<issuer>/v1/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/v1/authorize", self.issuer())
    }

    /// `<issuer>/v1/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/v1/token", self.issuer())
    }

    /// `<issuer>/v1/keys`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/v1/keys", self.issuer())
    }

    /// Registers another app, for tests of codes redeemed by the wrong client.
    pub fn add_client(&self, client: OidcClient) {
        lock(&self.shared).clients.push(client);
    }

    /// Adds a person who can sign in, with a made-up Okta user id as `sub`.
    pub fn add_user(&self, user: OidcUser) {
        let sub = format!("00u{}", &uuid::Uuid::new_v4().simple().to_string()[..17]);
        lock(&self.shared).accounts.push(Account { sub, user });
    }

    /// The `sub` of the user whose login is `login`, as ID tokens carry it.
    pub fn sub_of(&self, login: &str) -> Option<String> {
        (lock(&self.shared).accounts.iter())
            .find(|a| a.user.login.eq_ignore_ascii_case(login))
            .map(|a| a.sub.clone())
    }

    /// Makes the ID tokens issued from now on faulty in this way (`None`: correct again).
    pub fn misbehave(&self, how: Option<Misbehaviour>) {
        let mut server = lock(&self.shared);
        if how == Some(Misbehaviour::BadSignature) && server.impostor.is_none() {
            server.impostor = Some(SigningKey::generate(server.keys_dir.path()));
        }
        server.misbehaviour = how;
    }

    /// Replaces the signing key with a new one under a new `kid`, as Okta's automatic key
    /// rotation does: the JWKS publishes only the new key from now on, so tokens signed before
    /// no longer verify and a verifier must fetch the JWKS again on an unknown `kid`.
    pub fn rotate_keys(&self) {
        let mut server = lock(&self.shared);
        server.key = SigningKey::generate(server.keys_dir.path());
    }

    /// The `kid` the ID tokens are signed under, as the JWKS publishes it.
    pub fn current_kid(&self) -> String {
        lock(&self.shared).key.kid.clone()
    }

    /// How long codes issued from now on may be redeemed ([`CODE_LIFETIME`] unless changed), so
    /// that a test need not wait a minute to see an expired code refused.
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        lock(&self.shared).code_lifetime = lifetime;
    }

    /// Requests made to the token endpoint so far, answered or refused.
    pub fn token_requests(&self) -> usize {
        lock(&self.shared).token_requests
    }

    /// For HTTP-level tests without a browser: GETs `authorize_url` (what the console
    /// redirected to), submits the sign-in form with `login` and `password`, and returns the
    /// `Location` the fake redirects to: the client's `redirect_uri` with `code` and `state`,
    /// or with `error`. Panics when there is no redirect (see [`Self::try_sign_in`]).
    /// `http` must not follow redirects ([`client_without_redirects`]).
    pub async fn sign_in(
        &self,
        http: &reqwest::Client,
        authorize_url: &str,
        login: &str,
        password: &str,
    ) -> String {
        match self.try_sign_in(http, authorize_url, login, password).await {
            Ok(location) => location,
            Err(refused) => panic!(
                "signing in as {login} at {authorize_url} ended without a redirect: {} {}",
                refused.status, refused.page
            ),
        }
    }

    /// [`Self::sign_in`], with the page the user would be left on when there is no redirect:
    /// 401 with the form for wrong credentials, 400 for an unknown client or redirect URI.
    pub async fn try_sign_in(
        &self,
        http: &reqwest::Client,
        authorize_url: &str,
        login: &str,
        password: &str,
    ) -> Result<String, SignInRefused> {
        let answer = http
            .get(authorize_url)
            .send()
            .await
            .expect("the fake answers");
        if let Some(location) = location(&answer) {
            return Ok(location);
        }
        assert!(
            answer.url().path().ends_with("/v1/authorize"),
            "the client followed a redirect to {}: build it with client_without_redirects()",
            answer.url()
        );
        let status = answer.status().as_u16();
        let page = answer.text().await.expect("a page");
        if status != 200 {
            return Err(SignInRefused { status, page });
        }
        let action = form_action(&page).expect("the sign-in page has a form");
        let mut fields = hidden_fields(&page);
        fields.push(("username".into(), login.into()));
        fields.push(("password".into(), password.into()));
        let answer = (http.post(format!("http://{}{action}", self.addr)))
            .form(&fields)
            .send()
            .await
            .expect("the fake answers");
        if let Some(location) = location(&answer) {
            return Ok(location);
        }
        let status = answer.status().as_u16();
        let page = answer.text().await.expect("a page");
        Err(SignInRefused { status, page })
    }
}

/// A client that, like a test of redirects should, does not follow them. (It installs ring's
/// crypto provider first, as [`crate::http_client`] does, since the workspace's reqwest has
/// none of its own.)
pub fn client_without_redirects() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

fn location(answer: &reqwest::Response) -> Option<String> {
    if !answer.status().is_redirection() {
        return None;
    }
    let location = answer.headers().get(header::LOCATION)?;
    Some(location.to_str().expect("an ASCII Location").to_owned())
}

/// The `action` of the sign-in page's form.
fn form_action(page: &str) -> Option<String> {
    let (_, rest) = page.split_once("<form method=\"post\" action=\"")?;
    let (action, _) = rest.split_once('"')?;
    Some(unescape(action))
}

/// The hidden fields of the sign-in page, as [`sign_in_page`] writes them.
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    (page.split("<input type=\"hidden\" name=\"").skip(1))
        .filter_map(|field| {
            let (name, rest) = field.split_once("\" value=\"")?;
            let (value, _) = rest.split_once('"')?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

/// `bytes` random bytes, base64url.
fn random(bytes: usize) -> String {
    let mut buffer = vec![0; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buffer)
        .expect("the system's random source");
    URL_SAFE_NO_PAD.encode(buffer)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A query string or form body, in order. A parameter sent without a value is treated as
/// omitted (RFC 6749 §3.1).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(text: &str) -> Self {
        let mut url = reqwest::Url::parse("http://x/").expect("a URL");
        url.set_query(Some(text));
        Params(url.query_pairs().into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        (self.0.iter())
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// A parameter sent more than once, which RFC 6749 §3.1 forbids.
    fn repeated(&self) -> Option<&str> {
        (self.0.iter().enumerate())
            .find(|(i, (name, _))| self.0[..*i].iter().any(|(earlier, _)| earlier == name))
            .map(|(_, (name, _))| name.as_str())
    }
}

/// The discovery document: Okta's for a custom authorization server, trimmed to what the fake
/// serves.
async fn discovery(State(shared): State<Shared>) -> Response {
    let issuer = lock(&shared).issuer.clone();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/v1/authorize"),
        "token_endpoint": format!("{issuer}/v1/token"),
        "jwks_uri": format!("{issuer}/v1/keys"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "claims_supported": [
            "iss", "ver", "sub", "aud", "iat", "exp", "jti", "auth_time", "amr", "idp", "nonce",
            "name", "preferred_username", "email", "email_verified", "groups",
        ],
        "request_parameter_supported": false,
    }))
    .into_response()
}

async fn keys(State(shared): State<Shared>) -> Response {
    let server = lock(&shared);
    let key = &server.key;
    axum::Json(json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": key.kid, "n": key.n, "e": key.e,
    }]}))
    .into_response()
}

/// An authorize request that Okta would show the sign-in page for.
struct Authorization {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: String,
    nonce: String,
    code_challenge: String,
}

/// Why an authorize request is refused, and how.
enum Refused {
    /// A page for the user: the redirect URI is not known to be the client's, so nothing may
    /// be sent to it (OAuth 2.0 §4.1.2.1).
    Page(String),
    /// An error sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// The scopes the authorization server knows.
const SCOPES: [&str; 5] = ["openid", "profile", "email", "groups", "offline_access"];

/// Checks an authorize request (the query, or the sign-in form's hidden fields) as Okta does.
fn check(server: &Server, params: &Params) -> Result<Authorization, Refused> {
    let Some(client) =
        (params.get("client_id")).and_then(|id| server.clients.iter().find(|c| c.client_id == id))
    else {
        return Err(Refused::Page(
            "Invalid value for 'client_id' parameter.".into(),
        ));
    };
    let Some(redirect_uri) = (params.get("redirect_uri")).filter(|uri| {
        client
            .redirect_uris
            .iter()
            .any(|registered| registered == uri)
    }) else {
        return Err(Refused::Page(
            "The 'redirect_uri' parameter must be a Login redirect URI in the client app \
             settings."
                .into(),
        ));
    };
    let state = params.get("state");
    let refuse = |error, description: &str| {
        Err(Refused::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            error,
            description: description.to_owned(),
            state: state.map(str::to_owned),
        })
    };
    if let Some(name) = params.repeated() {
        let why = format!("The '{name}' parameter was included more than once.");
        return refuse("invalid_request", &why);
    }
    match params.get("response_type") {
        None => {
            return refuse(
                "invalid_request",
                "The 'response_type' parameter is required.",
            );
        }
        Some("code") => {}
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "The response type is not supported by the authorization server. Configured \
                 response types: [code].",
            );
        }
    }
    if params
        .get("response_mode")
        .is_some_and(|mode| mode != "query")
    {
        return refuse(
            "invalid_request",
            "The 'response_mode' is not supported by this fake: only 'query'.",
        );
    }
    let Some(scope) = params.get("scope") else {
        return refuse(
            "invalid_scope",
            "The authorization server resource does not have any configured default scopes, \
             'scope' must be provided.",
        );
    };
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if scopes.iter().any(|s| !SCOPES.contains(s)) {
        return refuse(
            "invalid_scope",
            "One or more scopes are not configured for the authorization server resource.",
        );
    }
    if scopes.contains(&"offline_access") {
        return refuse(
            "invalid_scope",
            "The following scopes are not allowed: offline_access (the client's grant types \
             do not include refresh_token).",
        );
    }
    if !scopes.contains(&"openid") {
        return refuse(
            "invalid_scope",
            "The 'openid' scope is required: this fake issues ID tokens.",
        );
    }
    let Some(state) = state else {
        return refuse(
            "invalid_request",
            "The 'state' parameter is required for authorization requests.",
        );
    };
    let Some(code_challenge) = params.get("code_challenge") else {
        return refuse(
            "invalid_request",
            "PKCE code challenge is required by the application.",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return refuse(
            "invalid_request",
            "PKCE code challenge method is not supported. Only 'S256' is supported.",
        );
    }
    if !pkce_shaped(code_challenge) {
        return refuse(
            "invalid_request",
            "PKCE code challenge must be between 43 and 128 characters of [A-Za-z0-9-._~].",
        );
    }
    let Some(nonce) = params.get("nonce") else {
        return refuse("invalid_request", "The 'nonce' parameter is required.");
    };
    if params.get("prompt") == Some("none") {
        return refuse(
            "login_required",
            "The client specified not to prompt, but the user is not logged in.",
        );
    }
    Ok(Authorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        scope: scopes.join(" "),
        state: state.to_owned(),
        nonce: nonce.to_owned(),
        code_challenge: code_challenge.to_owned(),
    })
}

/// RFC 7636 §4.1's shape of a verifier, which S256 challenges also have.
fn pkce_shaped(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && (value.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The answer to a refused authorize request.
fn refusal(refused: Refused) -> Response {
    match refused {
        Refused::Page(why) => {
            let page = format!(
                "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
                 <title>400 Bad Request — Fake Okta</title>\n<link rel=\"icon\" href=\"data:,\">\n\
                 </head>\n<body>\n<h1>400 Bad Request</h1>\n<p id=\"error\">{}</p>\n\
                 </body>\n</html>\n",
                escape(&why)
            );
            html(StatusCode::BAD_REQUEST, page)
        }
        Refused::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut pairs = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &state {
                pairs.push(("state", state));
            }
            redirect(&redirect_uri, &pairs)
        }
    }
}

/// A 302 to `uri` with `pairs` added to its query.
fn redirect(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = reqwest::Url::parse(uri).expect("registered redirect URIs are URLs");
    url.query_pairs_mut().extend_pairs(pairs);
    let location = HeaderValue::from_str(url.as_str()).expect("a URL is a header value");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn html(status: StatusCode, page: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, page).into_response()
}

async fn authorize(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(&query.unwrap_or_default());
    let server = lock(&shared);
    match check(&server, &params) {
        Ok(_) => html(
            StatusCode::OK,
            sign_in_page(&server.issuer, &params.0, None, false),
        ),
        Err(refused) => refusal(refused),
    }
}

/// The sign-in form: it posts back the authorize request's parameters as hidden fields.
fn sign_in_page(
    issuer: &str,
    request: &[(String, String)],
    login: Option<&str>,
    failed: bool,
) -> String {
    let hidden: String = (request.iter())
        .filter(|(name, _)| name != "username" && name != "password")
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            )
        })
        .collect();
    let error = if failed {
        "<p class=\"error\" role=\"alert\">Unable to sign in</p>\n"
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Sign in — Fake Okta</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <style>body{{font-family:sans-serif;max-width:22rem;margin:4rem auto}}\
         label,input,button{{display:block;width:100%;margin:.3rem 0}}\
         .error{{color:#b00020}}</style>\n</head>\n<body>\n<main>\n<h1>Sign in</h1>\n\
         <p>Fake Okta: <code>{issuer}</code></p>\n{error}\
         <form method=\"post\" action=\"{SERVER_PATH}/v1/authorize\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" \
         value=\"{login}\" required autofocus>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>\n{hidden}\
         <button type=\"submit\">Sign in</button>\n</form>\n</main>\n</body>\n</html>\n",
        issuer = escape(issuer),
        login = escape(login.unwrap_or_default()),
    )
}

/// `POST /v1/authorize`: the sign-in form. The request it carries is checked again, as a
/// hand-made POST must not skip what the GET refuses.
async fn sign_in_form(State(shared): State<Shared>, body: Bytes) -> Response {
    let params = Params::parse(&String::from_utf8_lossy(&body));
    let mut server = lock(&shared);
    let request = match check(&server, &params) {
        Ok(request) => request,
        Err(refused) => return refusal(refused),
    };
    let (login, password) = (params.get("username"), params.get("password"));
    let account = (server.accounts.iter())
        .find(|a| login.is_some_and(|login| a.user.login.eq_ignore_ascii_case(login)))
        .filter(|a| password == Some(a.user.password.as_str()))
        .cloned();
    let Some(account) = account else {
        let page = sign_in_page(&server.issuer, &params.0, login, true);
        return html(StatusCode::UNAUTHORIZED, page);
    };
    let code = random(32);
    let state = request.state.clone();
    let redirect_uri = request.redirect_uri.clone();
    server.codes.insert(
        code.clone(),
        Code {
            client_id: request.client_id,
            redirect_uri: request.redirect_uri,
            code_challenge: request.code_challenge,
            nonce: request.nonce,
            scope: request.scope,
            account,
            auth_time: now(),
            issued: Instant::now(),
        },
    );
    redirect(&redirect_uri, &[("code", &code), ("state", &state)])
}

/// OAuth's error shape, at the token endpoint.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (status, axum::Json(body)).into_response()
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// `POST /v1/token`: every answer, token or error, with `Cache-Control: no-store` and
/// `Pragma: no-cache` (RFC 6749 §5.1).
async fn token(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut server = lock(&shared);
    server.token_requests += 1;
    let mut answer = match redeem(&mut server, &headers, &body) {
        Ok(tokens) => axum::Json(tokens).into_response(),
        Err(refused) => *refused,
    };
    let answer_headers = answer.headers_mut();
    answer_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer_headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    answer
}

/// The client the request authenticates as, by `client_secret_basic` or `client_secret_post`.
fn authenticate(
    server: &Server,
    headers: &HeaderMap,
    form: &Params,
) -> Result<OidcClient, Box<Response>> {
    let failed = |basic: bool| {
        let mut answer = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
        if basic {
            // RFC 6749 §5.2: a client that tried the Authorization header is told its scheme.
            (answer.headers_mut()).insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Okta\""),
            );
        }
        Box::new(answer)
    };
    let authorization = (headers.get(header::AUTHORIZATION)).map(|v| v.to_str().unwrap_or(""));
    let (client_id, secret, basic) = match authorization {
        Some(authorization) => {
            if form.get("client_secret").is_some() {
                return Err(Box::new(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Cannot supply multiple client credentials. Use one of the following: \
                     credentials in the Authorization header, credentials in the post body, or \
                     a client_assertion in the post body.",
                )));
            }
            // RFC 6749 §2.3.1: the id and secret are form-encoded, then joined and base64ed.
            let credentials = (authorization.strip_prefix("Basic "))
                .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
                .and_then(|decoded| String::from_utf8(decoded).ok());
            let Some((id, secret)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
                return Err(failed(true));
            };
            let decode = |part: &str| {
                let pairs = Params::parse(&format!("v={part}"));
                pairs.get("v").unwrap_or_default().to_owned()
            };
            let id = decode(id);
            if form.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(failed(true));
            }
            (id, decode(secret), true)
        }
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned(), false),
            _ => return Err(failed(false)),
        },
    };
    (server.clients.iter())
        .find(|c| c.client_id == client_id && c.client_secret == secret)
        .cloned()
        .ok_or_else(|| failed(basic))
}

/// The tokens for an authorization code, or the error Okta answers.
fn redeem(server: &mut Server, headers: &HeaderMap, body: &[u8]) -> Result<Value, Box<Response>> {
    let content_type = (headers.get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request must be application/x-www-form-urlencoded.",
        )));
    }
    let form = Params::parse(&String::from_utf8_lossy(body));
    let client = authenticate(server, headers, &form)?;
    if form.get("grant_type") != Some("authorization_code") {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server. \
             Configured grant types: [authorization_code].",
        )));
    }
    // A code is consumed by its first redemption attempt, whatever comes of it.
    let Some(code) = form.get("code").and_then(|code| server.codes.remove(code)) else {
        return Err(Box::new(invalid_grant(INVALID_CODE)));
    };
    if code.issued.elapsed() > server.code_lifetime || code.client_id != client.client_id {
        return Err(Box::new(invalid_grant(INVALID_CODE)));
    }
    if form.get("redirect_uri") != Some(code.redirect_uri.as_str()) {
        return Err(Box::new(invalid_grant(
            "The 'redirect_uri' does not match the redirection URI used in the authorization \
             request.",
        )));
    }
    let verified = form.get("code_verifier").is_some_and(|verifier| {
        let hash = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        pkce_shaped(verifier) && URL_SAFE_NO_PAD.encode(hash.as_ref()) == code.code_challenge
    });
    if !verified {
        return Err(Box::new(invalid_grant("PKCE verification failed.")));
    }
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": 3600,
        "access_token": access_token(server, &code),
        "scope": code.scope,
        "id_token": id_token(server, &code),
    }))
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("RS256 signs with an RSA key")
}

/// The ID token, with the claims Okta puts in one for these scopes, the groups claim always,
/// and the fault the server is asked to make.
fn id_token(server: &Server, code: &Code) -> String {
    let now = now();
    let scopes: Vec<&str> = code.scope.split(' ').collect();
    let mut claims = json!({
        "ver": 1,
        "sub": code.account.sub,
        "iss": server.issuer,
        "aud": code.client_id,
        "iat": now,
        "exp": now + 3600,
        "jti": format!("ID.{}", random(32)),
        "amr": ["pwd"],
        "idp": "00ofakeoktaidp00000",
        "nonce": code.nonce,
        "auth_time": code.auth_time,
        "groups": code.account.user.groups,
    });
    if scopes.contains(&"profile") {
        claims["name"] = json!(code.account.user.name);
        claims["preferred_username"] = json!(code.account.user.login);
    }
    if scopes.contains(&"email") {
        claims["email"] = json!(code.account.user.login);
        claims["email_verified"] = json!(true);
    }
    let mut key = &server.key.encoding;
    match server.misbehaviour {
        None => {}
        Some(Misbehaviour::ExpiredIdToken) => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
            claims["auth_time"] = json!(now - 7200);
        }
        Some(Misbehaviour::WrongAudience) => claims["aud"] = json!(OTHER_AUDIENCE),
        Some(Misbehaviour::BadSignature) => {
            let impostor = server.impostor.as_ref();
            key = &impostor
                .expect("made when the misbehaviour was set")
                .encoding;
        }
        Some(Misbehaviour::WrongNonce) => claims["nonce"] = json!(random(16)),
        Some(Misbehaviour::WrongIssuer) => claims["iss"] = json!(OTHER_ISSUER),
    }
    sign(key, &server.key.kid, &claims)
}

/// A JWT access token as a custom authorization server issues, for the default audience.
fn access_token(server: &Server, code: &Code) -> String {
    let now = now();
    let claims = json!({
        "ver": 1,
        "jti": format!("AT.{}", random(32)),
        "iss": server.issuer,
        "aud": "api://default",
        "iat": now,
        "exp": now + 3600,
        "cid": code.client_id,
        "uid": code.account.sub,
        "scp": code.scope.split(' ').collect::<Vec<_>>(),
        "auth_time": code.auth_time,
        "sub": code.account.user.login,
    });
    sign(&server.key.encoding, &server.key.kid, &claims)
}

/// Text made safe for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
fn unescape(text: &str) -> String {
    (text.replace("&lt;", "<").replace("&gt;", ">"))
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

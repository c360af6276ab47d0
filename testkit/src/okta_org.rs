//! A fake of an Okta org's event hook Management API (`/api/v1/eventHooks`) and its token
//! endpoint (`/oauth2/v1/token`), keeping hooks in memory and enforcing what Okta documents:
//!
//! - an SSWS API token, or an access token issued to a registered API service app for a
//!   `private_key_jwt` client assertion (signature under the registered key and `kid`, `aud` the
//!   token endpoint, `iss` = `sub` = the client id, not expired), with the scopes the app was
//!   granted; for an app that requires DPoP, a proof on every token request and API call
//!   (`typ`, `jwk`, signature, `htm`, `htu`, fresh `iat`, unused `jti`, the server's nonce at
//!   the token endpoint, `ath` and the token's key binding at the API), a first token request
//!   without the nonce answered `use_dpop_nonce`;
//! - a created hook is `ACTIVE` and `UNVERIFIED`; `authScheme.value` is write-only; verifying is
//!   a real GET to the hook's URL with `X-Okta-Verification-Challenge` and the hook's header,
//!   3 s timeout, one retry; updating the channel resets the verification; only `INACTIVE`
//!   hooks can be deleted; only `ACTIVE` and `VERIFIED` hooks get deliveries;
//! - the System Log too, when asked ([`OktaOrg::with_system_log`]), for the API token or a
//!   token with `okta.logs.read`;
//! - errors in Okta's shape (`errorCode`, `errorSummary`, `errorCauses`, …) and OAuth's
//!   (`error`, `error_description`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use crate::system_log::{Authorize, Limits, SystemLog};

/// The SSWS API token the fake accepts (an admin's: every scope).
pub const API_TOKEN: &str = "00fake-management-api-token";

/// A registered API service app.
#[derive(Clone)]
pub struct ServiceApp {
    pub client_id: String,
    pub key_id: String,
    /// The public key, PEM (`BEGIN PUBLIC KEY`), RSA or P-256.
    pub public_key_pem: String,
    /// "Require Demonstrating Proof of Possession (DPoP) header in token requests".
    pub dpop: bool,
    /// The Okta API scopes granted to the app.
    pub scopes: Vec<String>,
}

/// A key pair made by openssl in `dir`: the private key's path (PEM, what
/// `okta.private_key_file` takes) and the public key's PEM (what [`ServiceApp`] registers).
/// `algorithm` is openssl's: `["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]`.
pub fn key_pair(dir: &std::path::Path, algorithm: &[&str]) -> (String, String) {
    let private = dir.join(format!("app-{}.pem", random()));
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-out"])
        .arg(&private)
        .args(algorithm)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey {algorithm:?}");
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .output()
        .expect("openssl runs");
    assert!(public.status.success(), "openssl pkey -pubout");
    (
        private.display().to_string(),
        String::from_utf8(public.stdout).expect("PEM"),
    )
}

/// openssl's arguments for a P-256 key.
pub const P256: [&str; 4] = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
/// openssl's arguments for a 2048-bit RSA key.
pub const RSA: [&str; 4] = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];

/// One event hook as the fake keeps it, secret included.
#[derive(Clone, Debug)]
pub struct Hook {
    pub id: String,
    pub name: String,
    pub status: String,
    pub verification_status: String,
    pub events: Value,
    /// The channel as given, `authScheme.value` included.
    pub channel: Value,
}

impl Hook {
    pub fn uri(&self) -> &str {
        self.channel["config"]["uri"].as_str().unwrap_or_default()
    }

    /// The header Okta sends, and its value.
    pub fn auth(&self) -> (String, String) {
        let scheme = &self.channel["config"]["authScheme"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (text(&scheme["key"]), text(&scheme["value"]))
    }

    /// The hook as Okta shows it: without the secret.
    fn shown(&self) -> Value {
        let mut channel = self.channel.clone();
        if let Some(scheme) = channel["config"]["authScheme"].as_object_mut() {
            scheme.remove("value");
        }
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "verificationStatus": self.verification_status,
            "events": self.events,
            "channel": channel,
            "created": "2026-11-27T00:00:00.000Z",
        })
    }
}

struct Issued {
    scopes: Vec<String>,
    /// The thumbprint of the DPoP key the token is bound to.
    jkt: Option<String>,
    /// API calls made with it.
    uses: usize,
}

#[derive(Default)]
struct Org {
    hooks: Vec<Hook>,
    apps: Vec<ServiceApp>,
    tokens: HashMap<String, Issued>,
    nonce: String,
    seen_jti: HashSet<String>,
    /// Token requests answered with a token, for tests of the cache.
    tokens_issued: usize,
    /// API calls a token is good for before it expires (as all do, after an hour), if limited.
    token_uses: Option<usize>,
    next_id: usize,
}

/// The fake org, serving on a loopback port.
#[derive(Clone)]
pub struct OktaOrg {
    pub addr: SocketAddr,
    org: Arc<Mutex<Org>>,
    http: reqwest::Client,
}

impl OktaOrg {
    pub async fn start() -> Self {
        Self::serve(None).await.0
    }

    /// The org, also serving its System Log (polling mode, see [`SystemLog::polling`]) to
    /// whoever may read it: the API token, or a token with `okta.logs.read`.
    pub async fn with_system_log(events: Vec<Value>) -> (Self, SystemLog) {
        let (org, log) = Self::serve(Some(events)).await;
        (org, log.expect("served"))
    }

    async fn serve(log_events: Option<Vec<Value>>) -> (Self, Option<SystemLog>) {
        let org = Arc::new(Mutex::new(Org {
            nonce: random(),
            ..Org::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("a client");
        let fake = OktaOrg { addr, org, http };
        let app = Router::new()
            .route("/oauth2/v1/token", post(token))
            .route("/api/v1/eventHooks", get(list).post(create))
            .route(
                "/api/v1/eventHooks/{id}",
                get(show).put(update).delete(delete),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/{action}",
                post(lifecycle),
            )
            .with_state(fake.clone());
        let (app, log) = match log_events {
            Some(events) => {
                let org = fake.clone();
                let may_read: Authorize = Arc::new(move |method, uri, headers| {
                    authorize(&org, method, uri, headers, "okta.logs.read").is_ok()
                });
                let (log, logs) =
                    SystemLog::mounted(addr, events, Limits::default(), true, Some(may_read));
                (app.merge(logs), Some(log))
            }
            None => (app, None),
        };
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, log)
    }

    /// `http://127.0.0.1:<port>`: `okta.org_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn register(&self, app: ServiceApp) {
        self.org.lock().unwrap().apps.push(app);
    }

    /// Every hook, secrets included.
    pub fn hooks(&self) -> Vec<Hook> {
        self.org.lock().unwrap().hooks.clone()
    }

    pub fn hook(&self, id: &str) -> Option<Hook> {
        self.hooks().into_iter().find(|h| h.id == id)
    }

    pub fn tokens_issued(&self) -> usize {
        self.org.lock().unwrap().tokens_issued
    }

    /// Makes every access token expire after `uses` API calls: the next call is answered 401
    /// with `WWW-Authenticate: … error="invalid_token"`, as Okta answers an expired token.
    pub fn expire_tokens_after(&self, uses: usize) {
        self.org.lock().unwrap().token_uses = Some(uses);
    }

    /// Delivers `events` as Okta does, if the hook is `ACTIVE` and `VERIFIED`: a POST to its
    /// URL with its header. The receiver's status, or `None` when Okta would not deliver.
    pub async fn deliver(&self, id: &str, events: Vec<Value>) -> Option<StatusCode> {
        let hook = self.hook(id)?;
        if hook.status != "ACTIVE" || hook.verification_status != "VERIFIED" {
            return None;
        }
        let (header, secret) = hook.auth();
        let body = crate::delivery(&crate::new_uuid(), events);
        let answer = (self.http.post(hook.uri()))
            .header(header, secret)
            .json(&body)
            .send()
            .await
            .ok()?;
        Some(StatusCode::from_u16(answer.status().as_u16()).expect("a status"))
    }

    /// Okta's verification: GET with a challenge and the hook's header; true when echoed.
    async fn verify(&self, hook: &Hook) -> Result<(), String> {
        let (header, secret) = hook.auth();
        let mut why = String::new();
        for _ in 0..2 {
            let challenge = random();
            let answer = (self.http.get(hook.uri()))
                .header("x-okta-verification-challenge", &challenge)
                .header(&header, &secret)
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    let body: Value = answer.json().await.unwrap_or_default();
                    if body["verification"] == challenge.as_str() {
                        return Ok(());
                    }
                    why = "the answer did not echo the challenge".into();
                }
                Ok(answer) => why = format!("the endpoint answered {}", answer.status()),
                Err(e) => why = format!("no answer: {e}"),
            }
        }
        Err(why)
    }
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Okta's error shape.
fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = (causes.iter())
        .map(|c| json!({"errorSummary": c}))
        .collect();
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": format!("oae{}", random()),
        "errorCauses": causes,
    });
    (status, axum::Json(body)).into_response()
}

/// OAuth's error shape, at the token endpoint.
fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// The RFC 7638 thumbprint of an EC public key JWK.
fn thumbprint(jwk: &jsonwebtoken::jwk::Jwk) -> Option<String> {
    let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
        return None;
    };
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        ec.x, ec.y
    );
    let hash = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    Some(URL_SAFE_NO_PAD.encode(hash.as_ref()))
}

/// Checks a DPoP proof for `method` `url`; returns its key's thumbprint.
fn check_proof(
    org: &mut Org,
    proof: &str,
    method: &Method,
    url: &str,
    nonce: Option<&str>,
    token: Option<&str>,
) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(proof).map_err(|e| format!("not a JWT: {e}"))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err("typ must be dpop+jwt".into());
    }
    let jwk = header.jwk.ok_or("no jwk in the header")?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad jwk: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map_err(|e| format!("signature: {e}"))?
        .claims;
    if claims["htm"] != method.as_str() {
        return Err("htm does not match the method".into());
    }
    if claims["htu"] != url {
        return Err(format!("htu {} is not {url}", claims["htu"]));
    }
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    if iat.abs_diff(now()) > 60 {
        return Err("iat is not recent".into());
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?;
    if !org.seen_jti.insert(jti.to_owned()) {
        return Err("jti was used before".into());
    }
    if let Some(nonce) = nonce
        && claims["nonce"] != nonce
    {
        return Err("use_dpop_nonce".into());
    }
    if let Some(token) = token {
        let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        if claims["ath"] != URL_SAFE_NO_PAD.encode(hash.as_ref()).as_str() {
            return Err("ath does not match the token".into());
        }
    }
    thumbprint(&jwk).ok_or_else(|| "the jwk is not a P-256 key".into())
}

async fn token(State(fake): State<OktaOrg>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url_form(&body);
    let token_url = format!("{}{}", fake.url(), uri.path());
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "client_credentials" {
        return oauth_error("unsupported_grant_type", "only client_credentials");
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return oauth_error(
            "invalid_client",
            "client_assertion_type is missing or wrong",
        );
    }
    let assertion = field("client_assertion");
    let mut org = fake.org.lock().unwrap();
    // Whose assertion: its `iss`, read before the signature is checked against that app's key.
    let unverified: Value = (assertion.split('.').nth(1))
        .and_then(|claims| URL_SAFE_NO_PAD.decode(claims).ok())
        .and_then(|claims| serde_json::from_slice(&claims).ok())
        .unwrap_or_default();
    let Some(app) = (org.apps.iter())
        .find(|a| unverified["iss"] == a.client_id.as_str())
        .cloned()
    else {
        return oauth_error("invalid_client", "The client_id is not known.");
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return oauth_error("invalid_client", "The client_assertion is not a JWT.");
    };
    if header.kid.as_deref() != Some(app.key_id.as_str()) {
        return oauth_error(
            "invalid_client",
            "The client_assertion kid is not the app's key.",
        );
    }
    let key = match header.alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()),
        Algorithm::ES256 => DecodingKey::from_ec_pem(app.public_key_pem.as_bytes()),
        _ => return oauth_error("invalid_client", "alg must be RS256 or ES256"),
    }
    .expect("a registered key parses");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[&token_url]);
    validation.set_issuer(&[&app.client_id]);
    validation.sub = Some(app.client_id.clone());
    validation.leeway = 0;
    if let Err(e) = jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        return oauth_error(
            "invalid_client",
            &format!("The client_assertion is not valid: {e}"),
        );
    }
    let jkt = if app.dpop {
        let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
            return oauth_error(
                "invalid_dpop_proof",
                "The DPoP proof JWT header is missing.",
            );
        };
        let nonce = org.nonce.clone();
        match check_proof(
            &mut org,
            proof,
            &Method::POST,
            &token_url,
            Some(&nonce),
            None,
        ) {
            Ok(jkt) => Some(jkt),
            Err(why) if why == "use_dpop_nonce" => {
                let mut answer = oauth_error(
                    "use_dpop_nonce",
                    "Authorization server requires nonce in DPoP proof.",
                );
                answer
                    .headers_mut()
                    .insert("dpop-nonce", nonce.parse().expect("a header value"));
                return answer;
            }
            Err(why) => return oauth_error("invalid_dpop_proof", &why),
        }
    } else {
        None
    };
    let wanted: Vec<String> = field("scope").split(' ').map(str::to_owned).collect();
    if let Some(missing) = wanted.iter().find(|s| !app.scopes.contains(s)) {
        return oauth_error(
            "invalid_scope",
            &format!("The following scopes are not allowed: {missing}"),
        );
    }
    let value = random();
    let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
    org.tokens.insert(
        value.clone(),
        Issued {
            scopes: wanted.clone(),
            jkt,
            uses: 0,
        },
    );
    org.tokens_issued += 1;
    axum::Json(json!({
        "token_type": token_type,
        "expires_in": 3600,
        "access_token": value,
        "scope": wanted.join(" "),
    }))
    .into_response()
}

/// `application/x-www-form-urlencoded`, decoded.
fn url_form(body: &[u8]) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .expect("a query");
    url.query_pairs().into_owned().collect()
}

/// Whether the request may do what needs `scope`; the error answer if not.
fn authorize(
    fake: &OktaOrg,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    scope: &str,
) -> Result<(), Box<Response>> {
    let unauthorized = || {
        okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
            &[],
        )
    };
    let authorization = (headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if authorization == format!("SSWS {API_TOKEN}") {
        return Ok(());
    }
    let mut org = fake.org.lock().unwrap();
    let (scheme, value) = authorization.split_once(' ').unwrap_or_default();
    let token_uses = org.token_uses;
    let Some(issued) = org.tokens.get_mut(value) else {
        return Err(Box::new(unauthorized()));
    };
    if token_uses.is_some_and(|limit| issued.uses >= limit) {
        let mut answer = unauthorized();
        let challenge = format!(
            "{scheme} error=\"invalid_token\", error_description=\"The access token is invalid.\""
        );
        answer.headers_mut().insert(
            "www-authenticate",
            challenge.parse().expect("a header value"),
        );
        return Err(Box::new(answer));
    }
    issued.uses += 1;
    let (scopes, jkt) = (issued.scopes.clone(), issued.jkt.clone());
    match (scheme, jkt) {
        ("Bearer", None) => {}
        ("DPoP", Some(jkt)) => {
            let proof = (headers.get("dpop"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let url = format!("{}{}", fake.url(), uri.path());
            match check_proof(&mut org, proof, method, &url, None, Some(value)) {
                Ok(key) if key == jkt => {}
                _ => {
                    let mut answer = unauthorized();
                    answer.headers_mut().insert(
                        "www-authenticate",
                        "DPoP error=\"invalid_dpop_proof\""
                            .parse()
                            .expect("a value"),
                    );
                    return Err(Box::new(answer));
                }
            }
        }
        _ => return Err(Box::new(unauthorized())),
    }
    if !scopes.iter().any(|s| s == scope) {
        return Err(Box::new(okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
            &[],
        )));
    }
    Ok(())
}

fn not_found(id: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (EventHook)"),
        &[],
    )
}

/// The problems of a hook body, as Okta's `errorCauses` would list them.
fn invalid(body: &Value) -> Vec<&'static str> {
    let mut causes = Vec::new();
    if body["name"].as_str().is_none_or(str::is_empty) {
        causes.push("name: The field cannot be left blank");
    }
    if body["events"]["type"] != "EVENT_TYPE"
        || body["events"]["items"].as_array().is_none_or(Vec::is_empty)
    {
        causes.push("events: an EVENT_TYPE list of at least one event type is required");
    }
    let channel = &body["channel"];
    if channel["type"] != "HTTP" || channel["version"] != "1.0.0" {
        causes.push("channel: type HTTP, version 1.0.0");
    }
    if channel["config"]["uri"].as_str().is_none_or(str::is_empty) {
        causes.push("channel.config.uri: The field cannot be left blank");
    }
    let scheme = &channel["config"]["authScheme"];
    if !scheme.is_null() && (scheme["type"] != "HEADER" || scheme["value"].as_str().is_none()) {
        causes.push("channel.config.authScheme: type HEADER with key and value");
    }
    causes
}

macro_rules! authorized {
    ($fake:expr, $method:expr, $uri:expr, $headers:expr) => {
        if let Err(answer) = authorize(&$fake, &$method, &$uri, &$headers, "okta.eventHooks.manage")
        {
            return *answer;
        }
    };
}

async fn list(
    State(fake): State<OktaOrg>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    authorized!(fake, method, uri, headers);
    let hooks: Vec<Value> = fake.hooks().iter().map(Hook::shown).collect();
    axum::Json(hooks).into_response()
}

async fn show(
    State(fake): State<OktaOrg>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    authorized!(fake, method, uri, headers);
    match fake.hook(&id) {
        Some(hook) => axum::Json(hook.shown()).into_response(),
        None => not_found(&id),
    }
}

fn validation_failed(causes: &[&str]) -> Response {
    okta_error(
        StatusCode::BAD_REQUEST,
        "E0000001",
        "Api validation failed: eventHook",
        causes,
    )
}

/// A hook body that Okta would take, or its validation error.
fn valid_hook(body: &[u8]) -> Result<Value, Box<Response>> {
    let body: Value = serde_json::from_slice(body).unwrap_or_default();
    let causes = invalid(&body);
    if causes.is_empty() {
        Ok(body)
    } else {
        Err(Box::new(validation_failed(&causes)))
    }
}

async fn create(
    State(fake): State<OktaOrg>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorized!(fake, method, uri, headers);
    let body = match valid_hook(&body) {
        Ok(body) => body,
        Err(answer) => return *answer,
    };
    let mut org = fake.org.lock().unwrap();
    org.next_id += 1;
    let hook = Hook {
        id: format!("who{:017}", org.next_id),
        name: body["name"].as_str().unwrap_or_default().to_owned(),
        status: "ACTIVE".into(),
        verification_status: "UNVERIFIED".into(),
        events: body["events"].clone(),
        channel: body["channel"].clone(),
    };
    org.hooks.push(hook.clone());
    (StatusCode::OK, axum::Json(hook.shown())).into_response()
}

async fn update(
    State(fake): State<OktaOrg>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorized!(fake, method, uri, headers);
    let body = match valid_hook(&body) {
        Ok(body) => body,
        Err(answer) => return *answer,
    };
    let mut org = fake.org.lock().unwrap();
    let Some(hook) = org.hooks.iter_mut().find(|h| h.id == id) else {
        return not_found(&id);
    };
    if hook.channel != body["channel"] {
        // "Updating the channel property requires you to verify the hook again."
        hook.verification_status = "UNVERIFIED".into();
    }
    hook.name = body["name"].as_str().unwrap_or_default().to_owned();
    hook.events = body["events"].clone();
    hook.channel = body["channel"].clone();
    axum::Json(hook.shown()).into_response()
}

async fn lifecycle(
    State(fake): State<OktaOrg>,
    Path((id, action)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    authorized!(fake, method, uri, headers);
    let Some(hook) = fake.hook(&id) else {
        return not_found(&id);
    };
    let (status, verification) = match action.as_str() {
        "activate" => ("ACTIVE", None),
        "deactivate" => ("INACTIVE", None),
        "verify" => match fake.verify(&hook).await {
            Ok(()) => (hook.status.as_str(), Some("VERIFIED")),
            Err(why) => {
                let cause = format!("Verification of {} failed: {why}", hook.uri());
                return validation_failed(&[cause.as_str()]);
            }
        },
        _ => return not_found(&id),
    };
    let mut org = fake.org.lock().unwrap();
    let Some(kept) = org.hooks.iter_mut().find(|h| h.id == id) else {
        return not_found(&id);
    };
    kept.status = status.to_owned();
    if let Some(verification) = verification {
        kept.verification_status = verification.to_owned();
    }
    axum::Json(kept.shown()).into_response()
}

async fn delete(
    State(fake): State<OktaOrg>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    authorized!(fake, method, uri, headers);
    let mut org = fake.org.lock().unwrap();
    let Some(position) = org.hooks.iter().position(|h| h.id == id) else {
        return not_found(&id);
    };
    if org.hooks[position].status != "INACTIVE" {
        return validation_failed(&["You can only delete event hooks with a status of INACTIVE."]);
    }
    org.hooks.remove(position);
    StatusCode::NO_CONTENT.into_response()
}

//! The fake Okta authorization server refuses what Okta refuses: a fake that only says yes
//! proves nothing. Each request here is the console's correct one, wrong in one way; each
//! faulty ID token is checked by a verifier written as the console's must be (JWKS by `kid`,
//! RS256, `iss`, `aud`, `exp`, `nonce`).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_testkit::okta_oidc::{
    Misbehaviour, OTHER_AUDIENCE, OTHER_ISSUER, OidcClient, OidcUser, OktaAuthServer,
    client_without_redirects,
};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

const CLIENT_ID: &str = "0oaconsole";
const SECRET: &str = "console-secret";
const CALLBACK: &str = "http://127.0.0.1:9/auth/callback";
/// Also registered, so that a redirect URI can be valid yet not the authorize request's.
const OTHER_CALLBACK: &str = "http://localhost:9/auth/callback";
const LOGIN: &str = "ada@example.com";
const PASSWORD: &str = "correct horse";

struct Setup {
    server: OktaAuthServer,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let server = OktaAuthServer::start(OidcClient {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![CALLBACK.into(), OTHER_CALLBACK.into()],
    })
    .await;
    server.add_user(OidcUser {
        login: LOGIN.into(),
        password: PASSWORD.into(),
        name: "Ada Lovelace".into(),
        groups: vec!["hookrelay-operators".into(), "Everyone".into()],
    });
    Setup {
        server,
        http: client_without_redirects(),
    }
}

/// One sign-in's secrets, as the console keeps them in its session.
struct Attempt {
    state: String,
    nonce: String,
    verifier: String,
    /// The authorize request's parameters.
    params: Vec<(&'static str, String)>,
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The console's correct authorize request.
fn attempt() -> Attempt {
    let verifier = format!("{}{}", random(), random());
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let (state, nonce) = (random(), random());
    let params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", CLIENT_ID.to_owned()),
        ("redirect_uri", CALLBACK.to_owned()),
        ("scope", "openid profile email groups".to_owned()),
        ("state", state.clone()),
        ("nonce", nonce.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_owned()),
    ];
    Attempt {
        state,
        nonce,
        verifier,
        params,
    }
}

impl Attempt {
    /// The request with `name` set to `value`, or left out if `None`.
    fn with(mut self, name: &'static str, value: Option<&str>) -> Self {
        self.params.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            self.params.push((name, value.to_owned()));
        }
        self
    }

    fn url(&self, server: &OktaAuthServer) -> String {
        let mut url = reqwest::Url::parse(&server.authorization_endpoint()).unwrap();
        url.query_pairs_mut().extend_pairs(&self.params);
        url.into()
    }
}

/// The query of a redirect to the console's callback.
fn callback_query(location: &str, callback: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(location).unwrap();
    assert_eq!(
        &url.as_str()[..url.as_str().find('?').unwrap()],
        callback,
        "{location}"
    );
    url.query_pairs().into_owned().collect()
}

impl Setup {
    /// Signs Ada in for `attempt` and returns the code, checking the state came back.
    async fn code(&self, attempt: &Attempt) -> String {
        let location = (self.server)
            .sign_in(&self.http, &attempt.url(&self.server), LOGIN, PASSWORD)
            .await;
        let query = callback_query(&location, CALLBACK);
        assert_eq!(query["state"], attempt.state);
        assert!(!query.contains_key("error"), "{location}");
        query["code"].clone()
    }

    /// POSTs `form` to the token endpoint with the client authenticated by `auth`.
    async fn token(
        &self,
        auth: Auth,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.http.post(self.server.token_endpoint());
        match auth {
            Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
            Auth::Post(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
            Auth::None => {}
        }
        let answer = request.form(&form).send().await.unwrap();
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        (status, headers, answer.json().await.unwrap())
    }

    /// Redeems `code` as the console does: Basic authentication, its callback, its verifier.
    async fn redeem(&self, code: &str, verifier: &str) -> (u16, Value) {
        let (status, _, body) = self
            .token(
                Auth::Basic(CLIENT_ID, SECRET),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier),
                ],
            )
            .await;
        (status, body)
    }

    /// A whole sign-in: the token endpoint's answer, which must be a success.
    async fn sign_in(&self, attempt: &Attempt) -> Value {
        let code = self.code(attempt).await;
        let (status, body) = self.redeem(&code, &attempt.verifier).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn jwks(&self) -> Value {
        let answer = self.http.get(self.server.jwks_uri()).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }

    /// The console's check of an ID token against the JWKS published now.
    async fn verify(&self, id_token: &str, nonce: &str) -> Result<Value, Refusal> {
        verify(id_token, &self.jwks().await, &self.server.issuer(), nonce)
    }
}

#[derive(Clone, Copy)]
enum Auth {
    Basic(&'static str, &'static str),
    Post(&'static str, &'static str),
    None,
}

#[derive(Debug)]
enum Refusal {
    UnknownKid,
    Jwt(ErrorKind),
    WrongNonce,
}

/// An ID token check as the OpenID Connect Core spec (§3.1.3.7) asks of the console.
fn verify(id_token: &str, jwks: &Value, issuer: &str, nonce: &str) -> Result<Value, Refusal> {
    let keys: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWKS");
    let header = jsonwebtoken::decode_header(id_token).map_err(|e| Refusal::Jwt(e.into_kind()))?;
    let kid = header.kid.ok_or(Refusal::UnknownKid)?;
    let jwk = keys.find(&kid).ok_or(Refusal::UnknownKid)?;
    let key = DecodingKey::from_jwk(jwk).expect("an RSA JWK");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
        .map_err(|e| Refusal::Jwt(e.into_kind()))?
        .claims;
    if claims["nonce"] != nonce {
        return Err(Refusal::WrongNonce);
    }
    Ok(claims)
}

/// A JWT's claims, unverified: to show what a faulty token got wrong besides the fault.
fn claims_of(jwt: &str) -> Value {
    let claims = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn the_discovery_document_names_the_endpoints_and_what_okta_supports() {
    let s = setup().await;
    let issuer = s.server.issuer();
    assert_eq!(
        issuer,
        format!("http://{}/oauth2/default", s.server.addr),
        "a custom authorization server's issuer"
    );
    let answer = (s.http)
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let doc: Value = answer.json().await.unwrap();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{issuer}/v1/authorize")
    );
    assert_eq!(doc["token_endpoint"], format!("{issuer}/v1/token"));
    assert_eq!(doc["jwks_uri"], format!("{issuer}/v1/keys"));
    let list = |name: &str| -> Vec<&str> {
        (doc[name].as_array().unwrap_or_else(|| panic!("{name}")))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    assert_eq!(list("response_types_supported"), ["code"]);
    assert_eq!(list("subject_types_supported"), ["public"]);
    assert_eq!(list("id_token_signing_alg_values_supported"), ["RS256"]);
    assert_eq!(list("code_challenge_methods_supported"), ["S256"]);
    assert_eq!(list("grant_types_supported"), ["authorization_code"]);
    assert_eq!(
        list("token_endpoint_auth_methods_supported"),
        ["client_secret_basic", "client_secret_post"]
    );
    assert_eq!(
        list("scopes_supported"),
        ["openid", "profile", "email", "groups", "offline_access"]
    );
    for claim in [
        "sub",
        "iss",
        "aud",
        "nonce",
        "name",
        "preferred_username",
        "email",
        "groups",
    ] {
        assert!(list("claims_supported").contains(&claim), "{claim}");
    }
    // Every endpoint it names answers.
    let jwks = s
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    let authorize = s
        .http
        .get(doc["authorization_endpoint"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(authorize.unwrap().status(), 400, "no client_id: a page");
}

#[tokio::test]
async fn the_jwks_publishes_one_rsa_signing_key_in_base64url() {
    let s = setup().await;
    let jwks = s.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], s.server.current_kid());
    assert_eq!(key["e"], "AQAB", "65537");
    let n = URL_SAFE_NO_PAD
        .decode(key["n"].as_str().unwrap())
        .expect("base64url without padding");
    assert_eq!(n.len(), 256, "a 2048-bit modulus without a leading zero");
    assert_ne!(n[0], 0);
}

#[tokio::test]
async fn a_signed_in_user_gets_an_id_token_that_verifies_against_the_jwks() {
    let s = setup().await;
    let attempt = attempt();
    let code = s.code(&attempt).await;
    let (status, headers, body) = s
        .token(
            Auth::Basic(CLIENT_ID, SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &attempt.verifier),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid profile email groups");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    let id_token = body["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(s.server.current_kid().as_str()));

    let claims = s.verify(id_token, &attempt.nonce).await.unwrap();
    assert_eq!(claims["iss"], s.server.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["nonce"], attempt.nonce);
    assert_eq!(claims["sub"], s.server.sub_of(LOGIN).unwrap());
    assert!(claims["sub"].as_str().unwrap().starts_with("00u"));
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["preferred_username"], LOGIN);
    assert_eq!(claims["email"], LOGIN);
    assert_eq!(
        claims["groups"],
        serde_json::json!(["hookrelay-operators", "Everyone"])
    );
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp, iat + 3600);
    assert!(claims["auth_time"].as_u64().unwrap() <= iat);
    assert_eq!(s.server.token_requests(), 1);
}

#[tokio::test]
async fn client_secret_post_authenticates_the_client_as_well() {
    let s = setup().await;
    let attempt = attempt();
    let code = s.code(&attempt).await;
    let (status, _, body) = s
        .token(
            Auth::Post(CLIENT_ID, SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &attempt.verifier),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    s.verify(id_token, &attempt.nonce).await.unwrap();
}

#[tokio::test]
async fn an_id_token_carries_profile_and_email_only_when_asked_but_groups_always() {
    let s = setup().await;
    let attempt = attempt().with("scope", Some("openid"));
    let body = s.sign_in(&attempt).await;
    let claims = s
        .verify(body["id_token"].as_str().unwrap(), &attempt.nonce)
        .await
        .unwrap();
    for absent in ["name", "preferred_username", "email"] {
        assert!(claims.get(absent).is_none(), "{absent} in {claims}");
    }
    assert_eq!(
        claims["groups"],
        serde_json::json!(["hookrelay-operators", "Everyone"])
    );
}

#[tokio::test]
async fn a_wrong_or_missing_code_verifier_is_refused() {
    let s = setup().await;
    let pkce_failed = serde_json::json!({
        "error": "invalid_grant", "error_description": "PKCE verification failed."
    });
    let attempt1 = attempt();
    let code = s.code(&attempt1).await;
    let other_verifier = attempt().verifier;
    assert_eq!(
        s.redeem(&code, &other_verifier).await,
        (400, pkce_failed.clone())
    );

    // The challenge itself is not a verifier.
    let attempt2 = attempt();
    let code = s.code(&attempt2).await;
    let challenge = &attempt2
        .params
        .iter()
        .find(|(n, _)| *n == "code_challenge")
        .unwrap()
        .1;
    assert_eq!(s.redeem(&code, challenge).await, (400, pkce_failed.clone()));

    let attempt3 = attempt();
    let code = s.code(&attempt3).await;
    let (status, _, body) = s
        .token(
            Auth::Basic(CLIENT_ID, SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
            ],
        )
        .await;
    assert_eq!((status, body), (400, pkce_failed));

    // The same steps with the right verifier succeed.
    let attempt4 = attempt();
    let code = s.code(&attempt4).await;
    assert_eq!(s.redeem(&code, &attempt4.verifier).await.0, 200);
}

#[tokio::test]
async fn a_reused_code_is_refused() {
    let s = setup().await;
    let attempt = attempt();
    let code = s.code(&attempt).await;
    assert_eq!(s.redeem(&code, &attempt.verifier).await.0, 200);
    let (status, body) = s.redeem(&code, &attempt.verifier).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "The authorization code is invalid or has expired."
    );
}

#[tokio::test]
async fn a_code_refused_once_cannot_be_redeemed_after() {
    let s = setup().await;
    let attempt = attempt();
    let code = s.code(&attempt).await;
    let (status, body) = s.redeem(&code, &format!("{}x", attempt.verifier)).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("PKCE verification failed."))
    );
    let (status, body) = s.redeem(&code, &attempt.verifier).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "The authorization code is invalid or has expired."
    );
}

#[tokio::test]
async fn an_unknown_code_is_refused() {
    let s = setup().await;
    let (status, body) = s
        .redeem("not-a-code-the-fake-issued", &attempt().verifier)
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn a_redirect_uri_other_than_the_authorize_requests_is_refused_at_the_token_endpoint() {
    let s = setup().await;
    let mismatch = serde_json::json!({
        "error": "invalid_grant",
        "error_description":
            "The 'redirect_uri' does not match the redirection URI used in the authorization request."
    });
    for redirect_uri in [Some(OTHER_CALLBACK), None] {
        let attempt = attempt();
        let code = s.code(&attempt).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", attempt.verifier.as_str()),
        ];
        form.extend(redirect_uri.map(|uri| ("redirect_uri", uri)));
        let (status, _, body) = s.token(Auth::Basic(CLIENT_ID, SECRET), &form).await;
        assert_eq!((status, &body), (400, &mismatch), "{redirect_uri:?}");
    }
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_refused_with_a_page_not_a_redirect() {
    let s = setup().await;
    let unregistered = [
        "https://attacker.example/auth/callback",
        "http://127.0.0.1:9/auth/callback/more",
        "http://127.0.0.1:9/auth/callback?next=/admin",
        "http://127.0.0.1:9/auth/callback/",
        "http://127.0.0.1:9/AUTH/callback",
    ];
    for redirect_uri in unregistered {
        // Even a request faulty in another way must not be sent there.
        for attempt in [attempt(), attempt().with("state", None)] {
            let url = attempt
                .with("redirect_uri", Some(redirect_uri))
                .url(&s.server);
            let answer = s.http.get(&url).send().await.unwrap();
            assert_eq!(answer.status(), 400, "{redirect_uri}");
            assert!(answer.headers().get("location").is_none(), "{redirect_uri}");
            assert!(
                answer.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            let page = answer.text().await.unwrap();
            assert!(page.contains("Login redirect URI"), "{page}");
            assert!(!page.contains("<form"), "no sign-in for it: {page}");
        }
    }
    let missing = attempt().with("redirect_uri", None).url(&s.server);
    assert_eq!(s.http.get(&missing).send().await.unwrap().status(), 400);
    // The registered one, for contrast, gets the sign-in page.
    let registered = s.http.get(attempt().url(&s.server)).send().await.unwrap();
    assert_eq!(registered.status(), 200);
}

#[tokio::test]
async fn an_unknown_client_id_is_refused_with_a_page_not_a_redirect() {
    let s = setup().await;
    for client_id in [Some("0oa-not-registered"), None] {
        let url = attempt().with("client_id", client_id).url(&s.server);
        let answer = s.http.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{client_id:?}");
        assert!(answer.headers().get("location").is_none());
        let page = answer.text().await.unwrap();
        assert!(
            page.contains("Invalid value for &#39;client_id&#39; parameter."),
            "{page}"
        );
    }
}

/// The error a faulty authorize request is redirected back with.
async fn redirected_error(s: &Setup, attempt: &Attempt) -> HashMap<String, String> {
    let answer = s.http.get(attempt.url(&s.server)).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap();
    let query = callback_query(location, CALLBACK);
    assert!(!query.contains_key("code"), "{location}");
    query
}

#[tokio::test]
async fn a_request_without_state_is_sent_back_with_invalid_request() {
    let s = setup().await;
    let query = redirected_error(&s, &attempt().with("state", None)).await;
    assert_eq!(query["error"], "invalid_request");
    assert!(query["error_description"].starts_with("The 'state' parameter is required"));
    assert!(!query.contains_key("state"));
    let query = redirected_error(&s, &attempt().with("state", Some(""))).await;
    assert_eq!(
        query["error"], "invalid_request",
        "an empty state is no state"
    );
}

#[tokio::test]
async fn a_plain_or_missing_pkce_challenge_is_sent_back_with_invalid_request() {
    let s = setup().await;
    let faulty = [
        attempt().with("code_challenge_method", Some("plain")),
        attempt().with("code_challenge_method", None),
        attempt().with("code_challenge", None),
        attempt().with("code_challenge", Some("too-short")),
    ];
    for attempt in faulty {
        let query = redirected_error(&s, &attempt).await;
        assert_eq!(query["error"], "invalid_request", "{:?}", attempt.params);
        assert!(query["error_description"].contains("PKCE"), "{query:?}");
        assert_eq!(
            query["state"], attempt.state,
            "the state comes back with the error"
        );
    }
}

#[tokio::test]
async fn other_faulty_authorize_requests_are_sent_back_with_okta_s_errors() {
    let s = setup().await;
    let cases = [
        (
            attempt().with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (
            attempt().with("response_type", Some("id_token")),
            "unsupported_response_type",
        ),
        (
            attempt().with("scope", Some("profile email groups")),
            "invalid_scope",
        ),
        (
            attempt().with("scope", Some("openid okta.users.manage")),
            "invalid_scope",
        ),
        (attempt().with("scope", None), "invalid_scope"),
        (attempt().with("nonce", None), "invalid_request"),
        (
            attempt().with("response_mode", Some("fragment")),
            "invalid_request",
        ),
        (attempt().with("prompt", Some("none")), "login_required"),
    ];
    for (attempt, error) in cases {
        let query = redirected_error(&s, &attempt).await;
        assert_eq!(query["error"], error, "{:?}", attempt.params);
        assert!(!query["error_description"].is_empty());
        assert_eq!(query["state"], attempt.state);
    }
    // A parameter sent twice (RFC 6749 §3.1).
    let mut twice = attempt();
    twice.params.push(("nonce", "another".into()));
    assert_eq!(
        redirected_error(&s, &twice).await["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn the_sign_in_form_cannot_skip_the_checks_of_the_authorize_request() {
    let s = setup().await;
    let attempt = attempt().with("code_challenge", None);
    let mut form: Vec<(&str, String)> = attempt.params.clone();
    form.push(("username", LOGIN.into()));
    form.push(("password", PASSWORD.into()));
    let answer = (s.http.post(s.server.authorization_endpoint()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let query = callback_query(answer.headers()["location"].to_str().unwrap(), CALLBACK);
    assert_eq!(query["error"], "invalid_request");
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn a_wrong_password_is_answered_with_the_form_again() {
    let s = setup().await;
    let attempt = attempt();
    for (login, password) in [
        (LOGIN, "wrong"),
        ("grace@example.com", PASSWORD),
        (LOGIN, ""),
    ] {
        let refused = (s.server)
            .try_sign_in(&s.http, &attempt.url(&s.server), login, password)
            .await
            .expect_err("no redirect");
        assert_eq!(refused.status, 401, "{login}");
        assert!(
            refused.page.contains("Unable to sign in"),
            "{}",
            refused.page
        );
        assert!(refused.page.contains("<form method=\"post\""));
        assert!(
            refused.page.contains(&attempt.state),
            "the request is kept for another try"
        );
    }
    // The same page with the right password lets Ada in.
    assert!(!s.code(&attempt).await.is_empty());
}

#[tokio::test]
async fn the_sign_in_page_escapes_what_it_echoes_and_loads_nothing() {
    let s = setup().await;
    let nasty = "\"><script>alert(1)</script><a href='x'>&amp;";
    let attempt = attempt().with("state", Some(nasty));
    let answer = s.http.get(attempt.url(&s.server)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/html; charset=utf-8");
    let page = answer.text().await.unwrap();
    assert!(page.contains("<title>Sign in — Fake Okta</title>"));
    assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<a href"), "{page}");
    assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
    assert!(!page.contains("src="), "no external resources: {page}");
    for handler in ["onclick", "onload", "onsubmit", "onerror", "javascript:"] {
        assert!(!page.contains(handler), "no inline handlers: {page}");
    }
    assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""));
    // What was escaped comes back intact.
    let location = (s.server)
        .sign_in(&s.http, &attempt.url(&s.server), LOGIN, PASSWORD)
        .await;
    assert_eq!(callback_query(&location, CALLBACK)["state"], nasty);
}

#[tokio::test]
async fn a_wrong_or_missing_client_secret_is_refused() {
    let s = setup().await;
    let attempt = attempt();
    let code = s.code(&attempt).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", attempt.verifier.as_str()),
    ];
    let invalid_client = serde_json::json!({
        "error": "invalid_client", "error_description": "Client authentication failed."
    });
    let wrong = [
        Auth::Basic(CLIENT_ID, "not-the-secret"),
        Auth::Post(CLIENT_ID, "not-the-secret"),
        Auth::Basic("0oa-unknown", SECRET),
        Auth::Post("0oa-unknown", SECRET),
        Auth::None,
    ];
    for auth in wrong {
        let (status, headers, body) = s.token(auth, &form).await;
        assert_eq!((status, &body), (401, &invalid_client));
        assert_eq!(headers["cache-control"], "no-store");
    }
    // The client id alone is not authentication.
    let mut without_secret = form.to_vec();
    without_secret.push(("client_id", CLIENT_ID));
    assert_eq!(s.token(Auth::None, &without_secret).await.0, 401);
    // Credentials in the header and the body at once.
    let mut both = form.to_vec();
    both.push(("client_secret", SECRET));
    let (status, _, body) = s.token(Auth::Basic(CLIENT_ID, SECRET), &both).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(s.server.token_requests(), 7);
    // Unauthenticated requests did not use the code up: the client redeems it.
    assert_eq!(s.redeem(&code, &attempt.verifier).await.0, 200);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let s = setup().await;
    s.server.set_code_lifetime(Duration::from_millis(200));
    let attempt = attempt();
    let code = s.code(&attempt).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = s.redeem(&code, &attempt.verifier).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "The authorization code is invalid or has expired."
    );
    // Within its lifetime, a code is good.
    let attempt = self::attempt();
    let code = s.code(&attempt).await;
    assert_eq!(s.redeem(&code, &attempt.verifier).await.0, 200);
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_refused() {
    let s = setup().await;
    s.server.add_client(OidcClient {
        client_id: "0oaother".into(),
        client_secret: "other-secret".into(),
        redirect_uris: vec![CALLBACK.into()],
    });
    let attempt = attempt();
    let code = s.code(&attempt).await;
    let (status, _, body) = s
        .token(
            Auth::Basic("0oaother", "other-secret"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &attempt.verifier),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn only_the_authorization_code_grant_is_supported() {
    let s = setup().await;
    for grant in [
        Some("client_credentials"),
        Some("password"),
        Some("refresh_token"),
        None,
    ] {
        let mut form = vec![("scope", "openid")];
        form.extend(grant.map(|g| ("grant_type", g)));
        let (status, _, body) = s.token(Auth::Basic(CLIENT_ID, SECRET), &form).await;
        assert_eq!(status, 400, "{grant:?}");
        assert_eq!(body["error"], "unsupported_grant_type", "{grant:?}");
    }
}

/// An ID token issued while the server misbehaves `how`, with the nonce the console expects.
async fn faulty_id_token(s: &Setup, how: Misbehaviour) -> (String, String) {
    s.server.misbehave(Some(how));
    let attempt = attempt();
    let body = s.sign_in(&attempt).await;
    (body["id_token"].as_str().unwrap().to_owned(), attempt.nonce)
}

#[tokio::test]
async fn an_expired_id_token_is_refused_by_a_correct_verifier() {
    let s = setup().await;
    let (token, nonce) = faulty_id_token(&s, Misbehaviour::ExpiredIdToken).await;
    let refusal = s.verify(&token, &nonce).await.unwrap_err();
    assert!(
        matches!(refusal, Refusal::Jwt(ErrorKind::ExpiredSignature)),
        "{refusal:?}"
    );
    let claims = claims_of(&token);
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        claims["iat"].as_u64().unwrap() + 3600
    );
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused_by_a_correct_verifier() {
    let s = setup().await;
    let (token, nonce) = faulty_id_token(&s, Misbehaviour::WrongAudience).await;
    let refusal = s.verify(&token, &nonce).await.unwrap_err();
    assert!(
        matches!(refusal, Refusal::Jwt(ErrorKind::InvalidAudience)),
        "{refusal:?}"
    );
    assert_eq!(claims_of(&token)["aud"], OTHER_AUDIENCE);
}

#[tokio::test]
async fn an_id_token_with_a_forged_signature_is_refused_by_a_correct_verifier() {
    let s = setup().await;
    let (token, nonce) = faulty_id_token(&s, Misbehaviour::BadSignature).await;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        header.kid,
        Some(s.server.current_kid()),
        "under the published kid"
    );
    let refusal = s.verify(&token, &nonce).await.unwrap_err();
    assert!(
        matches!(refusal, Refusal::Jwt(ErrorKind::InvalidSignature)),
        "{refusal:?}"
    );
    assert_eq!(
        claims_of(&token)["nonce"],
        nonce,
        "only the signature is wrong"
    );
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused_by_a_correct_verifier() {
    let s = setup().await;
    let (token, nonce) = faulty_id_token(&s, Misbehaviour::WrongNonce).await;
    let refusal = s.verify(&token, &nonce).await.unwrap_err();
    assert!(matches!(refusal, Refusal::WrongNonce), "{refusal:?}");
    assert!(
        claims_of(&token)["nonce"]
            .as_str()
            .is_some_and(|n| n != nonce)
    );
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused_by_a_correct_verifier() {
    let s = setup().await;
    let (token, nonce) = faulty_id_token(&s, Misbehaviour::WrongIssuer).await;
    let refusal = s.verify(&token, &nonce).await.unwrap_err();
    assert!(
        matches!(refusal, Refusal::Jwt(ErrorKind::InvalidIssuer)),
        "{refusal:?}"
    );
    assert_eq!(claims_of(&token)["iss"], OTHER_ISSUER);
}

#[tokio::test]
async fn clearing_the_misbehaviour_issues_good_id_tokens_again() {
    let s = setup().await;
    let (faulty, nonce) = faulty_id_token(&s, Misbehaviour::BadSignature).await;
    assert!(s.verify(&faulty, &nonce).await.is_err());
    let attempt = attempt();
    let still = s.sign_in(&attempt).await;
    assert!(
        s.verify(still["id_token"].as_str().unwrap(), &attempt.nonce)
            .await
            .is_err(),
        "until cleared"
    );
    s.server.misbehave(None);
    let attempt = self::attempt();
    let body = s.sign_in(&attempt).await;
    s.verify(body["id_token"].as_str().unwrap(), &attempt.nonce)
        .await
        .unwrap();
}

#[tokio::test]
async fn rotating_keys_publishes_a_new_kid_and_signs_with_it() {
    let s = setup().await;
    let before = attempt();
    let old_token = s.sign_in(&before).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = s.jwks().await["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    s.verify(&old_token, &before.nonce).await.unwrap();

    s.server.rotate_keys();
    let jwks = s.jwks().await;
    let kids: Vec<&str> = (jwks["keys"].as_array().unwrap().iter())
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [s.server.current_kid().as_str()]);
    assert_ne!(kids[0], old_kid);

    let after = attempt();
    let new_token = s.sign_in(&after).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kids[0]));
    s.verify(&new_token, &after.nonce).await.unwrap();
    let refusal = s.verify(&old_token, &before.nonce).await.unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownKid), "{refusal:?}");
}

#[tokio::test]
async fn a_dropped_server_stops_answering() {
    let s = setup().await;
    let discovery = format!("{}/.well-known/openid-configuration", s.server.issuer());
    drop(s.server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = client_without_redirects();
    assert!(fresh.get(&discovery).send().await.is_err());
}

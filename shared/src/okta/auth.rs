//! Authenticating to Okta's API. Either an SSWS API token, or what Okta recommends: an API
//! service app whose tokens come from the org's token endpoint for a client assertion signed
//! with the app's private key (`private_key_jwt`, RFC 7523), cached until shortly before they
//! expire. With DPoP (RFC 9449), which new service apps require by default, every token is bound
//! to a P-256 key this process makes at start, and every request carries a fresh proof signed
//! with it; a server that asks for a nonce (`use_dpop_nonce`) gets it in the next proof.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::OktaError;
use crate::config::{OktaAccess, OktaCredentials};

/// A token is renewed this long before Okta says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// How long a client assertion is valid (Okta accepts at most an hour).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// The signing key of a PEM private key (RSA → RS256, P-256 → ES256), if it holds one.
pub fn signing_key(pem: &str) -> Option<(EncodingKey, Algorithm)> {
    if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
        return Some((key, Algorithm::RS256));
    }
    EncodingKey::from_ec_pem(pem.as_bytes())
        .ok()
        .map(|key| (key, Algorithm::ES256))
}

/// Puts the right `Authorization` (and `DPoP`) headers on requests to one org.
pub struct Authorizer {
    org_url: reqwest::Url,
    how: How,
}

enum How {
    ApiToken(HeaderValue),
    ServiceApp(Box<ServiceApp>),
}

struct ServiceApp {
    http: reqwest::Client,
    client_id: String,
    key_id: String,
    key: EncodingKey,
    algorithm: Algorithm,
    scopes: String,
    dpop: Option<DpopKey>,
    /// The last `DPoP-Nonce` the org gave.
    nonce: std::sync::Mutex<Option<String>>,
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: SecretString,
    /// `DPoP` or `Bearer`, as Okta said.
    scheme: String,
    renew_at: Instant,
}

/// The key DPoP proofs are signed with, made at start and never stored.
struct DpopKey {
    key: EncodingKey,
    jwk: Jwk,
}

impl DpopKey {
    fn generate() -> Result<Self, OktaError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| OktaError::Client("cannot make a DPoP key".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| OktaError::Client("cannot read the DPoP key".into()))?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                y: URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        };
        Ok(DpopKey {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
        })
    }

    /// A proof for one request (`htu` without query or fragment), bound to `token` when one is
    /// sent with it (`ath`).
    fn proof(
        &self,
        method: &reqwest::Method,
        url: &reqwest::Url,
        nonce: Option<&str>,
        token: Option<&str>,
    ) -> Result<HeaderValue, OktaError> {
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let mut claims = json!({
            "htm": method.as_str(),
            "htu": htu.as_str(),
            "iat": unix_now(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if let Some(token) = token {
            let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            claims["ath"] = URL_SAFE_NO_PAD.encode(hash.as_ref()).into();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let proof = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| OktaError::Client(format!("cannot sign a DPoP proof: {e}")))?;
        HeaderValue::from_str(&proof).map_err(|e| OktaError::Client(e.to_string()))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What the token endpoint answers.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

/// An OAuth error answer (`{"error", "error_description"}`).
#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl Authorizer {
    /// For `access`, asking a service app's tokens for `scopes` (`okta.logs.read`, …).
    pub fn new(
        http: reqwest::Client,
        access: &OktaAccess,
        scopes: &[&str],
    ) -> Result<Self, OktaError> {
        let how = match &access.credentials {
            OktaCredentials::ApiToken(token) => {
                let mut value = HeaderValue::from_str(&format!("SSWS {}", token.expose_secret()))
                    .map_err(|_| {
                    OktaError::Client("the API token is not a valid header value".into())
                })?;
                value.set_sensitive(true);
                How::ApiToken(value)
            }
            OktaCredentials::ServiceApp {
                client_id,
                key_id,
                private_key,
                dpop,
            } => {
                let (key, algorithm) = signing_key(private_key.expose_secret())
                    .ok_or_else(|| OktaError::Client("okta.private_key_file: no key".into()))?;
                How::ServiceApp(Box::new(ServiceApp {
                    http,
                    client_id: client_id.clone(),
                    key_id: key_id.clone(),
                    key,
                    algorithm,
                    scopes: scopes.join(" "),
                    dpop: dpop.then(DpopKey::generate).transpose()?,
                    nonce: std::sync::Mutex::new(None),
                    token: tokio::sync::Mutex::new(None),
                }))
            }
        };
        Ok(Authorizer {
            org_url: access.org_url.clone(),
            how,
        })
    }

    /// Whether it authenticates with an SSWS API token (else a service app).
    pub fn is_api_token(&self) -> bool {
        matches!(self.how, How::ApiToken(_))
    }

    /// The headers that authorize a `method` request to `url`: `Authorization`, and with DPoP
    /// a fresh `DPoP` proof. Fetches a token first when none is cached or it is about to expire.
    pub async fn headers(
        &self,
        method: &reqwest::Method,
        url: &reqwest::Url,
    ) -> Result<HeaderMap, OktaError> {
        let mut headers = HeaderMap::new();
        let app = match &self.how {
            How::ApiToken(value) => {
                headers.insert("authorization", value.clone());
                return Ok(headers);
            }
            How::ServiceApp(app) => app,
        };
        let mut cached = app.token.lock().await;
        if cached.as_ref().is_none_or(|t| Instant::now() >= t.renew_at) {
            *cached = Some(app.fetch_token(&self.org_url).await?);
        }
        let token = cached.as_ref().expect("just fetched");
        let mut value =
            HeaderValue::from_str(&format!("{} {}", token.scheme, token.value.expose_secret()))
                .map_err(|_| {
                    OktaError::Client("Okta's token is not a valid header value".into())
                })?;
        value.set_sensitive(true);
        headers.insert("authorization", value);
        if let Some(dpop) = &app.dpop {
            let nonce = app.nonce();
            let proof = dpop.proof(
                method,
                url,
                nonce.as_deref(),
                Some(token.value.expose_secret()),
            )?;
            headers.insert("dpop", proof);
        }
        Ok(headers)
    }

    /// Reads an answer refused with 401: a DPoP nonce to use from now on, or a token Okta no
    /// longer takes. True when trying the request again (with new headers) may succeed.
    pub async fn after_unauthorized(&self, answer: &HeaderMap) -> bool {
        let How::ServiceApp(app) = &self.how else {
            return false;
        };
        let challenge = (answer.get("www-authenticate"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if challenge.contains("use_dpop_nonce") && app.learn_nonce(answer) {
            return true;
        }
        if challenge.contains("invalid_token") {
            *app.token.lock().await = None;
            return true;
        }
        false
    }
}

impl ServiceApp {
    fn nonce(&self) -> Option<String> {
        self.nonce.lock().expect("not poisoned").clone()
    }

    /// Keeps the answer's `DPoP-Nonce`; true when it is new.
    fn learn_nonce(&self, answer: &HeaderMap) -> bool {
        let Some(nonce) = (answer.get("dpop-nonce")).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let mut kept = self.nonce.lock().expect("not poisoned");
        let new = kept.as_deref() != Some(nonce);
        *kept = Some(nonce.to_owned());
        new
    }

    /// A client assertion for the token endpoint: `iss` and `sub` the client id, `aud` the
    /// endpoint, signed with the app's key under its `kid`.
    fn assertion(&self, token_url: &reqwest::Url) -> Result<String, OktaError> {
        let now = unix_now();
        let claims = json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| OktaError::Client(format!("cannot sign the client assertion: {e}")))
    }

    /// Asks the org's token endpoint for a token (client credentials), answering a demand
    /// for a DPoP nonce once.
    async fn fetch_token(&self, org_url: &reqwest::Url) -> Result<Token, OktaError> {
        let token_url = org_url
            .join("/oauth2/v1/token")
            .expect("a path joins a base URL");
        let mut nonce_asked = false;
        loop {
            let form = [
                ("grant_type", "client_credentials".to_owned()),
                ("scope", self.scopes.clone()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                ("client_assertion", self.assertion(&token_url)?),
            ];
            let mut request = self.http.post(token_url.clone()).form(&form);
            if let Some(dpop) = &self.dpop {
                let proof = dpop.proof(
                    &reqwest::Method::POST,
                    &token_url,
                    self.nonce().as_deref(),
                    None,
                )?;
                request = request.header("dpop", proof);
            }
            let answer = (request.send().await).map_err(|e| {
                OktaError::Client(format!("asking for a token: {}", e.without_url()))
            })?;
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            if status.is_success() {
                let token: TokenAnswer = serde_json::from_slice(&body)
                    .map_err(|e| OktaError::Client(format!("the token endpoint's answer: {e}")))?;
                let lifetime = Duration::from_secs(token.expires_in);
                return Ok(Token {
                    value: SecretString::from(token.access_token),
                    scheme: token.token_type,
                    renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
                });
            }
            let error: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
            if error.error == "use_dpop_nonce" && !nonce_asked && self.learn_nonce(&headers) {
                nonce_asked = true;
                continue;
            }
            let hint = match error.error.as_str() {
                "invalid_client" => {
                    " (check okta.client_id, okta.key_id, and that the app has the public key of \
                     okta.private_key_file)"
                }
                "invalid_scope" => {
                    " (grant the app the scope in Okta API Scopes: okta.eventHooks.manage for \
                     hooks, okta.logs.read for the System Log)"
                }
                "invalid_dpop_proof" => {
                    " (does the app require DPoP? okta.dpop must match its \"Require DPoP\" setting)"
                }
                _ => "",
            };
            return Err(OktaError::Refused {
                status,
                summary: format!(
                    "the token endpoint refused: {} {}",
                    error.error, error.error_description
                )
                .trim()
                .to_owned(),
                hint,
            });
        }
    }
}

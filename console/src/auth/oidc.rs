//! Sign in with Okta: OpenID Connect's authorization code flow with PKCE (S256), `state` and
//! `nonce`, the ID token verified against the issuer's published keys (RS256 only; the issuer,
//! the audience, the expiry and the nonce checked), and the groups claim mapped to a role.
//!
//! Written on `jsonwebtoken`, which the workspace already uses for Okta's API: the flow is two
//! HTTP calls and one verification, each step checked here and in the tests against a fake
//! authorization server that refuses what Okta refuses (`testkit::okta_oidc`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay::config::{OidcSettings, Role};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::session::random_id;

/// How long a sign-in may take between leaving for Okta and coming back.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// The clock difference tolerated between Okta and this machine.
const LEEWAY: u64 = 60;
/// How soon the keys may be fetched again for a token signed with a key not seen yet: Okta's
/// rotation is picked up at once, and tokens with made-up keys cost Okta one request a second.
const REFETCH_KEYS_AFTER: Duration = Duration::from_secs(1);

/// Why a sign-in with Okta did not succeed; the text is shown to the person (escaped).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Something about the sign-in was wrong: start again.
    #[error("{0}")]
    Refused(String),
    /// Okta could not be reached or answered what it should not.
    #[error("{0}")]
    Unavailable(String),
}

/// Okta's discovery document: what the console uses of it.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// What a sign-in must find again when Okta sends the browser back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    /// Where to go once signed in (a path of the console).
    pub next: String,
    /// Seconds since 1970 when it started.
    created: u64,
}

/// Okta's answer on the callback.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Who signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// Their role, or `None` when they are in none of the configured groups.
    pub role: Option<Role>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    nonce: Option<String>,
    azp: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The console's Okta client.
pub struct Oidc {
    settings: OidcSettings,
    secret: SecretString,
    redirect_uri: String,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    keys: RwLock<Option<(Instant, JwkSet)>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether two secrets are equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The PKCE challenge of a verifier: base64url of its SHA-256.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

impl Oidc {
    /// A client for `settings`, sending people back to `<console_url>/login/okta/callback`.
    pub fn new(settings: &OidcSettings, console_url: &str) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hookrelay-console/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Oidc {
            secret: settings.secret()?,
            settings: settings.clone(),
            redirect_uri: format!("{}/login/okta/callback", console_url.trim_end_matches('/')),
            http,
            discovery: RwLock::new(None),
            keys: RwLock::new(None),
        })
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some(discovery) = self.discovery.read().await.clone() {
            return Ok(discovery);
        }
        let issuer = self.settings.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let unavailable = |e: &dyn std::fmt::Display| {
            OidcError::Unavailable(format!(
                "Okta's sign-in could not be reached ({issuer}): {e}"
            ))
        };
        let answer = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(&e.without_url()))?;
        if !answer.status().is_success() {
            return Err(unavailable(&format!(
                "{} answered {}",
                url,
                answer.status()
            )));
        }
        let discovery: Discovery = answer
            .json()
            .await
            .map_err(|e| unavailable(&e.without_url()))?;
        if discovery.issuer.trim_end_matches('/') != issuer {
            return Err(unavailable(&format!(
                "its discovery document names the issuer {}, not {issuer} (console.oidc.issuer)",
                discovery.issuer
            )));
        }
        *self.discovery.write().await = Some(discovery.clone());
        Ok(discovery)
    }

    /// Where to send the browser to sign in, and what to keep until it comes back.
    pub async fn start(&self, next: &str) -> Result<(String, Pending), OidcError> {
        let discovery = self.discovery().await?;
        let pending = Pending {
            state: random_id(),
            nonce: random_id(),
            verifier: random_id(),
            next: next.to_owned(),
            created: now(),
        };
        let mut url = reqwest::Url::parse(&discovery.authorization_endpoint).map_err(|e| {
            OidcError::Unavailable(format!("Okta's authorization endpoint is not a URL: {e}"))
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("response_type", "code")
            .append_pair("response_mode", "query")
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url.to_string(), pending))
    }

    /// Finishes the sign-in Okta sent back: checks `state`, redeems the code with the PKCE
    /// verifier, verifies the ID token, and maps the groups claim to a role.
    pub async fn finish(
        &self,
        pending: Option<Pending>,
        callback: &Callback,
    ) -> Result<Identity, OidcError> {
        if let Some(error) = &callback.error {
            let description = callback.error_description.as_deref().unwrap_or_default();
            return Err(OidcError::Refused(format!(
                "Okta refused the sign-in: {error}. {description}"
            )));
        }
        let refused = |why: &str| Err(OidcError::Refused(why.to_owned()));
        let Some(pending) = pending else {
            return refused("This sign-in was not started here, or it was finished already.");
        };
        let (Some(code), Some(state)) = (&callback.code, &callback.state) else {
            return refused("Okta's answer has no code or no state.");
        };
        if !same(state, &pending.state) {
            return refused("Okta's answer does not belong to this sign-in (its state differs).");
        }
        if now().saturating_sub(pending.created) > PENDING_FOR.as_secs() {
            return refused("The sign-in took longer than 10 minutes.");
        }
        let discovery = self.discovery().await?;
        let answer = self
            .http
            .post(&discovery.token_endpoint)
            .basic_auth(&self.settings.client_id, Some(self.secret.expose_secret()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", pending.verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                OidcError::Unavailable(format!("Okta's token endpoint: {}", e.without_url()))
            })?;
        let status = answer.status();
        let token: TokenAnswer = answer.json().await.map_err(|e| {
            OidcError::Unavailable(format!(
                "Okta's token endpoint answered {status}: {}",
                e.without_url()
            ))
        })?;
        let id_token = match token {
            TokenAnswer {
                id_token: Some(t), ..
            } if status.is_success() => t,
            TokenAnswer {
                error,
                error_description,
                ..
            } => {
                return Err(OidcError::Refused(format!(
                    "Okta did not accept the sign-in's code ({}: {}).",
                    error.as_deref().unwrap_or("no ID token"),
                    error_description.as_deref().unwrap_or_default()
                )));
            }
        };
        let claims = self.verify(&id_token, &discovery, &pending.nonce).await?;
        let groups: Vec<String> = match claims.rest.get(&self.settings.groups_claim) {
            Some(serde_json::Value::Array(groups)) => groups
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(group)) => vec![group.clone()],
            _ => Vec::new(),
        };
        let role = self.settings.role_of(groups.iter().map(String::as_str));
        let user = claims
            .preferred_username
            .or(claims.email)
            .unwrap_or(claims.sub);
        Ok(Identity { user, groups, role })
    }

    /// The ID token's claims, once its signature, issuer, audience, times and nonce check out.
    async fn verify(
        &self,
        token: &str,
        discovery: &Discovery,
        nonce: &str,
    ) -> Result<Claims, OidcError> {
        let invalid =
            |why: String| OidcError::Refused(format!("Okta's ID token is not valid: {why}."));
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!(
                "it is signed with {:?}, not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("it names no key".into()))?;
        let key = self.key(&discovery.jwks_uri, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[discovery.issuer.as_str()]);
        validation.set_audience(&[self.settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| invalid(e.to_string()))?
            .claims;
        if !claims.nonce.as_deref().is_some_and(|n| same(n, nonce)) {
            return Err(invalid("its nonce is not this sign-in's".into()));
        }
        if claims
            .azp
            .as_deref()
            .is_some_and(|azp| azp != self.settings.client_id)
        {
            return Err(invalid("it was issued to another client (azp)".into()));
        }
        Ok(claims)
    }

    /// The published key `kid`, fetching the keys again (at most every second) when it is new:
    /// Okta rotates its keys.
    async fn key(&self, jwks_uri: &str, kid: &str) -> Result<DecodingKey, OidcError> {
        let find = |keys: &JwkSet| {
            keys.find(kid)
                .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
        };
        let stale = match &*self.keys.read().await {
            Some((_, keys)) if let Some(key) = find(keys) => return Ok(key),
            Some((fetched, _)) => fetched.elapsed() >= REFETCH_KEYS_AFTER,
            None => true,
        };
        if stale {
            let answer =
                self.http.get(jwks_uri).send().await.map_err(|e| {
                    OidcError::Unavailable(format!("Okta's keys: {}", e.without_url()))
                })?;
            let keys: JwkSet = answer
                .json()
                .await
                .map_err(|e| OidcError::Unavailable(format!("Okta's keys: {}", e.without_url())))?;
            *self.keys.write().await = Some((Instant::now(), keys));
        }
        (self.keys.read().await.as_ref())
            .and_then(|(_, keys)| find(keys))
            .ok_or_else(|| {
                OidcError::Refused(format!(
                    "Okta's ID token is not valid: it is signed with a key ({kid}) Okta does not publish."
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn secrets_are_compared_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}

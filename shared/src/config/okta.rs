//! `[okta]`: access to the org's Management API, for everything that talks to Okta (the
//! reconciler, `hookrelayctl backfill` and `hooks`). One place for the org URL and how to
//! authenticate: an SSWS API token, or (Okta's recommendation) an API service app with
//! `private_key_jwt` client credentials and DPoP-bound tokens.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// The org and how to authenticate to its API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaSettings {
    /// The org's base URL, such as `https://dev-123456.okta.com`; empty when not configured.
    pub org_url: String,
    /// An API token, sent as `Authorization: SSWS <token>`
    /// (`HOOKRELAY__OKTA__API_TOKEN`). Needs the System Log read permission (`okta.logs.read`).
    pub api_token: SecretString,
    /// A file holding the API token (a Docker or Kubernetes secret), read at start.
    pub api_token_file: Option<PathBuf>,
    /// An API service app's client id (`0oa…`), with `key_id` and `private_key_file`: OAuth 2.0
    /// client credentials with `private_key_jwt`, instead of an API token.
    pub client_id: String,
    /// The `kid` of the app's public key, as the Admin Console shows it.
    pub key_id: String,
    /// The app's private key, PEM (RSA or P-256), read at start.
    pub private_key_file: Option<PathBuf>,
    /// Bind tokens to a key of this process (DPoP, RFC 9449), as new service apps require by
    /// default ("Require Demonstrating Proof of Possession (DPoP) header in token requests").
    pub dpop: bool,
}

impl Default for OktaSettings {
    fn default() -> Self {
        OktaSettings {
            org_url: String::new(),
            api_token: SecretString::default(),
            api_token_file: None,
            client_id: String::new(),
            key_id: String::new(),
            private_key_file: None,
            dpop: true,
        }
    }
}

/// Okta API access, checked: an `https://` (or, for tests, `http://`) org URL and credentials.
#[derive(Clone)]
pub struct OktaAccess {
    pub org_url: reqwest::Url,
    pub credentials: OktaCredentials,
}

/// How to authenticate to the org's API.
#[derive(Clone)]
pub enum OktaCredentials {
    /// `Authorization: SSWS <token>`: acts as the admin who made the token.
    ApiToken(SecretString),
    /// An API service app: tokens from `/oauth2/v1/token` for a client assertion signed with
    /// `private_key` (PEM, checked at load).
    ServiceApp {
        client_id: String,
        key_id: String,
        private_key: SecretString,
        dpop: bool,
    },
}

impl OktaSettings {
    /// Whether anything of the section is set (an org URL, a token, a service app).
    pub fn is_configured(&self) -> bool {
        !self.org_url.trim().is_empty()
            || !self.api_token.expose_secret().is_empty()
            || self.api_token_file.is_some()
            || self.is_service_app()
    }

    fn is_service_app(&self) -> bool {
        !self.client_id.trim().is_empty()
            || !self.key_id.trim().is_empty()
            || self.private_key_file.is_some()
    }

    /// The service app's credentials; an error names the key that is missing or wrong.
    fn service_app(&self) -> Result<OktaCredentials, ConfigError> {
        let client_id = self.client_id.trim();
        if client_id.is_empty() {
            return Err(ConfigError::invalid(
                "okta.client_id",
                "is required with okta.private_key_file: the API service app's client id",
            ));
        }
        let key_id = self.key_id.trim();
        if key_id.is_empty() {
            return Err(ConfigError::invalid(
                "okta.key_id",
                "is required with okta.client_id: the KID of the app's public key",
            ));
        }
        let Some(path) = &self.private_key_file else {
            return Err(ConfigError::invalid(
                "okta.private_key_file",
                "is required with okta.client_id: the app's private key (PEM)",
            ));
        };
        let pem = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                "okta.private_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if crate::okta::auth::signing_key(&pem).is_none() {
            return Err(ConfigError::invalid(
                "okta.private_key_file",
                format!(
                    "{} holds no RSA or P-256 private key in PEM (BEGIN PRIVATE KEY)",
                    path.display()
                ),
            ));
        }
        Ok(OktaCredentials::ServiceApp {
            client_id: client_id.to_owned(),
            key_id: key_id.to_owned(),
            private_key: SecretString::from(pem),
            dpop: self.dpop,
        })
    }

    /// The checked org URL and credentials; an error names the key that is missing or wrong.
    pub fn access(&self) -> Result<OktaAccess, ConfigError> {
        let org_url = self.org_url.trim();
        if org_url.is_empty() {
            return Err(ConfigError::invalid(
                "okta.org_url",
                "is required: the org's base URL, such as https://dev-123456.okta.com \
                 (HOOKRELAY__OKTA__ORG_URL)",
            ));
        }
        let parsed = reqwest::Url::parse(org_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(
                    "okta.org_url",
                    format!("`{org_url}` is not a URL such as https://dev-123456.okta.com"),
                )
            })?;
        let has_token =
            !self.api_token.expose_secret().trim().is_empty() || self.api_token_file.is_some();
        if self.is_service_app() {
            if has_token {
                return Err(ConfigError::invalid(
                    "okta.api_token",
                    "give one way to authenticate: an API token, or a service app \
                     (okta.client_id, okta.key_id, okta.private_key_file)",
                ));
            }
            return Ok(OktaAccess {
                org_url: parsed,
                credentials: self.service_app()?,
            });
        }
        let token = match &self.api_token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::invalid(
                        "okta.api_token_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            None => self.api_token.expose_secret().trim().to_owned(),
        };
        if token.is_empty() {
            return Err(ConfigError::invalid(
                "okta.api_token",
                "is required: an API token (HOOKRELAY__OKTA__API_TOKEN, or \
                 okta.api_token_file), or a service app (okta.client_id, okta.key_id, \
                 okta.private_key_file)",
            ));
        }
        if token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(ConfigError::invalid(
                "okta.api_token",
                "must be visible ASCII, as an HTTP header value is",
            ));
        }
        Ok(OktaAccess {
            org_url: parsed,
            credentials: OktaCredentials::ApiToken(SecretString::from(token)),
        })
    }
}

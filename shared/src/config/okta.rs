//! `[okta]`: access to the org's Management API, for everything that reads from Okta (the
//! reconciler, `hookrelayctl backfill`). One place for the org URL and the API token.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// The org and how to authenticate to its API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaSettings {
    /// The org's base URL, such as `https://dev-123456.okta.com`; empty when not configured.
    pub org_url: String,
    /// An API token, sent as `Authorization: SSWS <token>`
    /// (`HOOKRELAY__OKTA__API_TOKEN`). Needs the System Log read permission (`okta.logs.read`).
    pub api_token: SecretString,
    /// A file holding the API token (a Docker or Kubernetes secret), read at start.
    pub api_token_file: Option<PathBuf>,
}

/// Okta API access, checked: an `https://` (or, for tests, `http://`) org URL and a token.
#[derive(Clone)]
pub struct OktaAccess {
    pub org_url: reqwest::Url,
    pub token: SecretString,
}

impl OktaSettings {
    /// Whether anything of the section is set (an org URL, a token or a token file).
    pub fn is_configured(&self) -> bool {
        !self.org_url.trim().is_empty()
            || !self.api_token.expose_secret().is_empty()
            || self.api_token_file.is_some()
    }

    /// The checked org URL and token; an error names the key that is missing or wrong.
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
                "is required: an API token that can read the System Log \
                 (HOOKRELAY__OKTA__API_TOKEN, or okta.api_token_file)",
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
            token: SecretString::from(token),
        })
    }
}

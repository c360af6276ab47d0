//! Okta's event hook Management API (`/api/v1/eventHooks`): list, create, get, update, delete,
//! and the lifecycle calls `verify`, `activate`, `deactivate`. A refusal says what Okta said
//! (`errorSummary` and each of `errorCauses`); 429s wait for the rate limit to reset, 5xx answers
//! and network errors are tried again. The hook's secret (`authScheme.value`) is sent, never
//! returned by Okta, and never printed.

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::{Authorizer, Calls, OktaError, Request, send};
use crate::config::OktaAccess;

/// Tries after a 429, a 5xx or a network error.
const RETRIES: u32 = 3;

/// An event hook as Okta keeps it (the fields hookrelay reads or sets).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHook {
    #[serde(default, skip_serializing)]
    pub id: String,
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default, skip_serializing)]
    pub status: String,
    /// `VERIFIED` or `UNVERIFIED`.
    #[serde(default, skip_serializing)]
    pub verification_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub events: Events,
    pub channel: Channel,
}

/// The event types the hook subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Events {
    /// `EVENT_TYPE`.
    #[serde(rename = "type")]
    pub kind: String,
    pub items: Vec<String>,
    /// An `EXPRESSION_LANGUAGE` filter, kept as Okta gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

/// Where and how Okta delivers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Channel {
    /// `HTTP`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `1.0.0`.
    pub version: String,
    pub config: ChannelConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfig {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<AuthScheme>,
}

/// The header Okta sends with every request: `{type: HEADER, key, value}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthScheme {
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
    /// Write-only: Okta never returns it.
    #[serde(
        default,
        serialize_with = "expose",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<SecretString>,
}

fn expose<S: serde::Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => s.serialize_str(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl EventHook {
    /// A hook that delivers `event_types` to `uri` with `header: secret`.
    pub fn new(
        name: &str,
        uri: &str,
        event_types: Vec<String>,
        header: &str,
        secret: SecretString,
    ) -> Self {
        EventHook {
            id: String::new(),
            name: name.to_owned(),
            status: String::new(),
            verification_status: String::new(),
            description: Some("hookrelay: every event to NATS JetStream".into()),
            events: Events {
                kind: "EVENT_TYPE".into(),
                items: event_types,
                filter: None,
            },
            channel: Channel {
                kind: "HTTP".into(),
                version: "1.0.0".into(),
                config: ChannelConfig {
                    uri: uri.to_owned(),
                    headers: Vec::new(),
                    auth_scheme: Some(AuthScheme {
                        kind: "HEADER".into(),
                        key: header.to_owned(),
                        value: Some(secret),
                    }),
                },
            },
        }
    }

    /// Sets the header and its secret (Okta needs the secret again on every update).
    pub fn set_secret(&mut self, header: &str, secret: SecretString) {
        self.channel.config.auth_scheme = Some(AuthScheme {
            kind: "HEADER".into(),
            key: header.to_owned(),
            value: Some(secret),
        });
    }
}

/// A client of one org's event hooks.
pub struct EventHooks {
    http: reqwest::Client,
    org_url: reqwest::Url,
    auth: Authorizer,
}

impl EventHooks {
    pub fn new(access: &OktaAccess) -> Result<Self, OktaError> {
        let http = super::http_client()?;
        Ok(EventHooks {
            auth: Authorizer::new(http.clone(), access, &["okta.eventHooks.manage"])?,
            http,
            org_url: access.org_url.clone(),
        })
    }

    pub async fn list(&self) -> Result<Vec<EventHook>, OktaError> {
        self.call(reqwest::Method::GET, "", None).await
    }

    pub async fn get(&self, id: &str) -> Result<EventHook, OktaError> {
        self.call(reqwest::Method::GET, &format!("/{id}"), None)
            .await
    }

    pub async fn create(&self, hook: &EventHook) -> Result<EventHook, OktaError> {
        self.call(reqwest::Method::POST, "", Some(hook)).await
    }

    /// Replaces the hook (a changed channel needs verifying again).
    pub async fn update(&self, id: &str, hook: &EventHook) -> Result<EventHook, OktaError> {
        self.call(reqwest::Method::PUT, &format!("/{id}"), Some(hook))
            .await
    }

    /// `verify`, `activate` or `deactivate`.
    pub async fn lifecycle(&self, id: &str, action: &str) -> Result<EventHook, OktaError> {
        let path = format!("/{id}/lifecycle/{action}");
        self.call(reqwest::Method::POST, &path, None).await
    }

    /// Deletes an `INACTIVE` hook.
    pub async fn delete(&self, id: &str) -> Result<(), OktaError> {
        self.call::<serde_json::Value>(reqwest::Method::DELETE, &format!("/{id}"), None)
            .await
            .map(drop)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&EventHook>,
    ) -> Result<T, OktaError> {
        let url = (self.org_url)
            .join(&format!("/api/v1/eventHooks{path}"))
            .map_err(|e| OktaError::Client(format!("a hook id that makes no URL: {e}")))?;
        let request = Request {
            method,
            url: &url,
            body,
            max_retries: RETRIES,
        };
        let is_api_token = self.auth.is_api_token();
        let answer = send(
            &self.http,
            &self.auth,
            request,
            &mut Calls::default(),
            |status| hint(status, is_api_token),
        )
        .await?;
        let bytes = (answer.bytes().await)
            .map_err(|e| OktaError::Client(format!("reading Okta's answer: {e}")))?;
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| OktaError::Client(format!("Okta's answer: {e}")))
    }
}

/// What to check after a 401 or a 403 from the event hook API.
fn hint(status: reqwest::StatusCode, api_token: bool) -> &'static str {
    match (status.as_u16(), api_token) {
        (401, true) => " (is the API token right? okta.api_token, or OKTA_API_TOKEN)",
        (401, false) => " (check okta.client_id, okta.key_id and okta.private_key_file)",
        (403, true) => " (managing event hooks needs an admin's API token: a super or org admin)",
        (403, false) => {
            " (grant the app okta.eventHooks.manage and an admin role that may manage hooks)"
        }
        _ => "",
    }
}

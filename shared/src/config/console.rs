//! `[console]`: the web console: where it listens, how people sign in (Okta, or local users),
//! and how long a session lasts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// The web console.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Address of the pages.
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// The address people open, such as `https://hookrelay.example.com` (no path): the
    /// redirect URI given to Okta is `<url>/login/okta/callback`, and an `https` one makes the
    /// session cookie `Secure` (a console behind a proxy that terminates TLS).
    pub url: String,
    /// A session ends after this long without a request…
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// …and this long after sign-in in any case.
    #[serde(with = "humantime_serde")]
    pub session_max: Duration,
    /// The key-value bucket of sessions (they survive a restart and are shared by every
    /// console) and of the first sign-in's password.
    pub bucket: String,
    /// Local users, for a console without Okta.
    pub users: Vec<ConsoleUser>,
    /// Sign in with Okta (OpenID Connect).
    pub oidc: Option<OidcSettings>,
    /// Behind a proxy, the header it adds with the client's address (`x-forwarded-for`): the
    /// last address in it counts failed sign-ins per client (a client cannot forge what the
    /// proxy appends last). Empty: the connection's own address.
    pub client_ip_header: String,
    /// A link to an event's trace in your trace viewer, `{trace_id}` replaced: Jaeger's
    /// `http://localhost:16686/trace/{trace_id}`, Grafana Tempo's explore URL… Empty: the trace
    /// id is shown without a link.
    pub trace_url: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9085)),
            url: "http://localhost:8090".into(),
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 60 * 60),
            bucket: "hookrelay_console".into(),
            users: Vec::new(),
            oidc: None,
            client_ip_header: String::new(),
            trace_url: String::new(),
        }
    }
}

/// What a signed-in person may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also replays, discards dead letters, pauses and resumes subscribers.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// `[[console.users]]`: one local user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    pub role: Role,
    /// An argon2id PHC string (`$argon2id$v=19$…`): `hookrelayctl console hash-password` prints
    /// one from the password on its standard input. Never the password itself.
    pub password_hash: SecretString,
}

/// `[console.oidc]`: sign in with Okta, the authorization code flow with PKCE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The authorization server: `https://<org>.okta.com` (the org's) or
    /// `https://<org>.okta.com/oauth2/default` (a custom one).
    pub issuer: String,
    /// The Okta app integration's client id.
    pub client_id: String,
    /// Its client secret (`HOOKRELAY__CONSOLE__OIDC__CLIENT_SECRET`), or…
    #[serde(default)]
    pub client_secret: SecretString,
    /// …a file holding it (a Docker or Kubernetes secret), read at start.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The ID token claim with the user's groups.
    #[serde(default = "groups_claim")]
    pub groups_claim: String,
    /// Members of any of these groups are operators.
    #[serde(default)]
    pub operator_groups: Vec<String>,
    /// Members of any of these groups (and not of an operator group) are viewers. Anyone in
    /// neither is refused.
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    /// The scopes asked for.
    #[serde(default = "scopes")]
    pub scopes: Vec<String>,
}

fn groups_claim() -> String {
    "groups".into()
}

fn scopes() -> Vec<String> {
    ["openid", "profile", "email", "groups"]
        .map(String::from)
        .to_vec()
}

impl OidcSettings {
    /// The client secret, from the value or the file.
    pub fn secret(&self) -> Result<SecretString, ConfigError> {
        let key = "console.oidc.client_secret";
        let secret = match &self.client_secret_file {
            Some(path) if self.client_secret.expose_secret().is_empty() => {
                std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid(
                        "console.oidc.client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
            }
            _ => self.client_secret.expose_secret().to_owned(),
        };
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "is required with [console.oidc]: set HOOKRELAY__CONSOLE__OIDC__CLIENT_SECRET \
                 or console.oidc.client_secret_file",
            ));
        }
        Ok(SecretString::from(secret.to_owned()))
    }

    /// The role of someone in `groups`, if any.
    pub fn role_of<'a>(&self, groups: impl IntoIterator<Item = &'a str> + Clone) -> Option<Role> {
        let any = |wanted: &[String]| {
            groups
                .clone()
                .into_iter()
                .any(|g| wanted.iter().any(|w| w == g))
        };
        if any(&self.operator_groups) {
            Some(Role::Operator)
        } else if any(&self.viewer_groups) {
            Some(Role::Viewer)
        } else {
            None
        }
    }
}

/// Whether `url` may be used without TLS: only on this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

impl ConsoleSettings {
    /// The console's own address, parsed (checked at load).
    pub fn base_url(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.url).expect("console.url was checked at load")
    }

    /// Whether the session cookie is `Secure`: the console is reached over TLS.
    pub fn secure_cookies(&self) -> bool {
        self.base_url().scheme() == "https"
    }

    /// Whether nobody is configured to sign in: the console then offers the first sign-in
    /// (`admin`, with the password `hookrelayctl console initial-password` sets).
    pub fn first_sign_in(&self) -> bool {
        self.users.is_empty() && self.oidc.is_none()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid("console.url", format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return Err(ConfigError::invalid(
                "console.url",
                "must be http(s)://host[:port] with no path, such as https://hookrelay.example.com",
            ));
        }
        if !self.client_ip_header.is_empty()
            && axum::http::HeaderName::from_bytes(self.client_ip_header.as_bytes()).is_err()
        {
            return Err(ConfigError::invalid(
                "console.client_ip_header",
                "is not a header name (such as x-forwarded-for)",
            ));
        }
        if !self.trace_url.is_empty()
            && (!self.trace_url.contains("{trace_id}")
                || reqwest::Url::parse(&self.trace_url.replace("{trace_id}", "0"))
                    .map_or(true, |url| !matches!(url.scheme(), "http" | "https")))
        {
            return Err(ConfigError::invalid(
                "console.trace_url",
                "must be an http(s) URL with {trace_id} in it, such as http://localhost:16686/trace/{trace_id}",
            ));
        }
        if self.session_idle.is_zero() || self.session_max < self.session_idle {
            return Err(ConfigError::invalid(
                "console.session_idle",
                "must be more than zero and at most console.session_max",
            ));
        }
        if !crate::subject::is_valid_name(&self.bucket) {
            return Err(ConfigError::invalid(
                "console.bucket",
                "must be letters, digits, `-` or `_`",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (index, user) in self.users.iter().enumerate() {
            let key = |field: &str| format!("console.users[{index}].{field}");
            if user.name.trim().is_empty() || user.name.len() > 128 {
                return Err(ConfigError::invalid(
                    key("name"),
                    "must be 1 to 128 characters",
                ));
            }
            if !names.insert(user.name.to_lowercase()) {
                return Err(ConfigError::invalid(
                    key("name"),
                    format!("`{}` is listed twice", user.name),
                ));
            }
            if !crate::passwords::is_argon2id(user.password_hash.expose_secret()) {
                return Err(ConfigError::invalid(
                    key("password_hash"),
                    "must be an argon2id hash ($argon2id$…), as `hookrelayctl console \
                     hash-password` prints, never the password itself",
                ));
            }
        }
        if let Some(oidc) = &self.oidc {
            let issuer = reqwest::Url::parse(&oidc.issuer).map_err(|e| {
                ConfigError::invalid("console.oidc.issuer", format!("is not a URL: {e}"))
            })?;
            if issuer.scheme() != "https" && !is_loopback(&issuer) {
                return Err(ConfigError::invalid(
                    "console.oidc.issuer",
                    "must be https:// (such as https://dev-123456.okta.com/oauth2/default)",
                ));
            }
            if oidc.client_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "console.oidc.client_id",
                    "is required with [console.oidc]: the app integration's client id",
                ));
            }
            oidc.secret()?;
            if oidc.operator_groups.is_empty() && oidc.viewer_groups.is_empty() {
                return Err(ConfigError::invalid(
                    "console.oidc.operator_groups",
                    "name at least one group in operator_groups or viewer_groups: without one \
                     nobody could sign in",
                ));
            }
            if !oidc.scopes.iter().any(|s| s == "openid") {
                return Err(ConfigError::invalid(
                    "console.oidc.scopes",
                    "must include openid",
                ));
            }
            if url.scheme() != "https" && !is_loopback(&url) {
                return Err(ConfigError::invalid(
                    "console.url",
                    "must be https:// with [console.oidc] (Okta sends the sign-in back there), \
                     unless it is localhost",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_url_is_an_http_url_with_the_trace_id_in_it() {
        let with = |trace_url: &str| ConsoleSettings {
            trace_url: trace_url.into(),
            ..ConsoleSettings::default()
        };
        for good in [
            "",
            "http://localhost:16686/trace/{trace_id}",
            "https://grafana.example/explore?traceId={trace_id}",
        ] {
            assert!(with(good).validate().is_ok(), "{good}");
        }
        for bad in [
            "http://localhost:16686/search",
            "javascript:alert(1)//{trace_id}",
            "{trace_id}",
        ] {
            let error = with(bad).validate().expect_err(bad);
            assert!(error.to_string().contains("console.trace_url"), "{error}");
        }
    }

    #[test]
    fn groups_map_to_the_highest_role() {
        let oidc = OidcSettings {
            issuer: "https://example.okta.com".into(),
            client_id: "0oa1".into(),
            client_secret: SecretString::from("s"),
            client_secret_file: None,
            groups_claim: groups_claim(),
            operator_groups: vec!["hookrelay-operators".into()],
            viewer_groups: vec!["Everyone".into()],
            scopes: scopes(),
        };
        assert_eq!(
            oidc.role_of(["Everyone", "hookrelay-operators"]),
            Some(Role::Operator)
        );
        assert_eq!(oidc.role_of(["Everyone"]), Some(Role::Viewer));
        assert_eq!(oidc.role_of(["hookrelay-operator"]), None, "exact names");
        assert_eq!(oidc.role_of([]), None);
    }
}

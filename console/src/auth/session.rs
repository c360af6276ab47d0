//! Sessions: an opaque random id in an `HttpOnly`, `SameSite=Lax` cookie (`Secure`, and named
//! `__Host-…`, when the console is reached over TLS); the session itself in a JetStream
//! key-value bucket under the id's SHA-256, so sessions survive a console restart, are shared
//! by every console replica, and a reader of the bucket cannot use one. A session ends after
//! `console.session_idle` without a request and `console.session_max` after sign-in; signing
//! out deletes it, and its id then no longer works anywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay::config::{ConsoleSettings, Role};
use serde::{Deserialize, Serialize};

/// How often a session's last use is written back: not on every request.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// How they signed in: `password` or `okta`.
    pub via: String,
    /// Seconds since 1970 when they signed in.
    pub created: u64,
    /// Seconds since 1970 of their last request (to the minute).
    pub seen: u64,
}

/// The sessions bucket and the cookie's settings.
#[derive(Clone)]
pub struct Sessions {
    store: kv::Store,
    idle: Duration,
    max: Duration,
    secure: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 32 random bytes, base64url: an id no one guesses.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random numbers are available");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key an id is stored under: its SHA-256, hex.
fn key_of(prefix: &str, id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

impl Sessions {
    /// Opens (or creates) the bucket `<console.bucket>_sessions`.
    pub async fn open(
        js: &jetstream::Context,
        settings: &ConsoleSettings,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let name = format!("{}_sessions", settings.bucket);
        let store = hookrelay::broker::key_value(
            js,
            &hookrelay::broker::Bucket {
                name: &name,
                description: "hookrelay console: sessions, by the SHA-256 of their id",
                max_age: settings.session_max,
                replicas,
                history: 1,
            },
        )
        .await?;
        Ok(Sessions {
            store,
            idle: settings.session_idle,
            max: settings.session_max,
            secure: settings.secure_cookies(),
        })
    }

    /// The session cookie's name: `__Host-` prefixed over TLS, which browsers accept only from
    /// a secure origin, for the whole host and no domain.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-hookrelay_session"
        } else {
            "hookrelay_session"
        }
    }

    /// A cookie attribute string with the flags every cookie of the console has.
    fn flags(&self) -> &'static str {
        if self.secure {
            "Path=/; HttpOnly; SameSite=Lax; Secure"
        } else {
            "Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// Starts a session; returns the `Set-Cookie` value that carries it.
    pub async fn start(&self, user: &str, role: Role, via: &str) -> anyhow::Result<String> {
        let id = random_id();
        let session = Session {
            user: user.to_owned(),
            role,
            via: via.to_owned(),
            created: now(),
            seen: now(),
        };
        self.put(&id, &session).await?;
        Ok(format!(
            "{}={id}; Max-Age={}; {}",
            self.cookie_name(),
            self.max.as_secs(),
            self.flags()
        ))
    }

    async fn put(&self, id: &str, session: &Session) -> anyhow::Result<()> {
        let value = serde_json::to_vec(session).expect("a session serialises");
        (self.store.put(key_of("s.", id), value.into()).await)
            .map_err(|e| anyhow::anyhow!("storing a session: {e}"))?;
        Ok(())
    }

    /// The session of a request's cookie, if it is live; notes its use.
    pub async fn find(&self, headers: &axum::http::HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, self.cookie_name())?;
        if id.len() != 43 {
            return None;
        }
        let value = self.store.get(key_of("s.", id)).await.ok()??;
        let mut session: Session = serde_json::from_slice(&value).ok()?;
        let now = now();
        let idle_for = now.saturating_sub(session.seen);
        let age = now.saturating_sub(session.created);
        if idle_for > self.idle.as_secs() || age > self.max.as_secs() {
            self.end_id(id).await;
            return None;
        }
        // Often enough that a session in use never looks idle.
        if idle_for >= TOUCH_EVERY.min(self.idle / 4).as_secs() {
            session.seen = now;
            if let Err(e) = self.put(id, &session).await {
                tracing::debug!(error = %e, "a session's last use was not written");
            }
        }
        Some((id.to_owned(), session))
    }

    async fn end_id(&self, id: &str) {
        if let Err(e) = self.store.purge(key_of("s.", id)).await {
            tracing::warn!(error = %e, "a session could not be ended");
        }
    }

    /// Ends the request's session (signing out); returns the `Set-Cookie` value that clears it.
    pub async fn end(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(id) = cookie(headers, self.cookie_name()) {
            self.end_id(id).await;
        }
        format!("{}=; Max-Age=0; {}", self.cookie_name(), self.flags())
    }

    /// Keeps what a sign-in with Okta must find again when Okta sends the browser back, for
    /// ten minutes, under a fresh id; returns the `Set-Cookie` value that carries the id.
    pub async fn remember_login<T: Serialize>(&self, pending: &T) -> anyhow::Result<String> {
        let id = random_id();
        let value = serde_json::to_vec(pending).expect("a pending sign-in serialises");
        (self.store.put(key_of("login.", &id), value.into()).await)
            .map_err(|e| anyhow::anyhow!("storing a pending sign-in: {e}"))?;
        Ok(format!(
            "hookrelay_login={id}; Max-Age=600; {}",
            self.flags()
        ))
    }

    /// The pending sign-in of a request's login cookie, taken (it works once), and the
    /// `Set-Cookie` value that clears the cookie.
    pub async fn take_login<T: for<'de> Deserialize<'de>>(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> (Option<T>, String) {
        let clear = format!("hookrelay_login=; Max-Age=0; {}", self.flags());
        let Some(id) = cookie(headers, "hookrelay_login").filter(|id| id.len() == 43) else {
            return (None, clear);
        };
        let key = key_of("login.", id);
        let value = self.store.get(&key).await.ok().flatten();
        let _ = self.store.purge(&key).await;
        (value.and_then(|v| serde_json::from_slice(&v).ok()), clear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "cookie",
            "a=1; hookrelay_session=abc; b=2".parse().expect("value"),
        );
        headers.append("cookie", "c=3".parse().expect("value"));
        assert_eq!(cookie(&headers, "hookrelay_session"), Some("abc"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "hookrelay"), None);
    }

    #[test]
    fn ids_are_random_and_stored_only_as_their_hash() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let key = key_of("s.", &a);
        assert!(!key.contains(&a));
        assert_eq!(key.len(), 2 + 64);
    }
}

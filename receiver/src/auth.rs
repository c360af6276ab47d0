//! The hook's shared secret: Okta sends it verbatim in a configured header with every request,
//! verification included. It is the only proof of origin, so it is checked first, before the
//! body is read, and compared in constant time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use subtle::{Choice, ConstantTimeEq};

/// How often refused requests are logged at most: an internet-facing endpoint must not let
/// anyone fill its logs.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The header and the values it may carry (several while a secret is rotated).
pub struct HeaderSecret {
    header: HeaderName,
    secrets: Accepted,
    refusals: RefusalLog,
}

/// The accepted secrets, replaceable while requests are checked against them.
#[derive(Clone, Default)]
pub struct Accepted(Arc<RwLock<Arc<[SecretString]>>>);

impl Accepted {
    fn current(&self) -> Arc<[SecretString]> {
        self.0.read().expect("not poisoned").clone()
    }

    /// From now on, accept these (and only these).
    pub fn replace(&self, secrets: Vec<SecretString>) {
        *self.0.write().expect("not poisoned") = secrets.into();
    }
}

impl HeaderSecret {
    pub fn new(header: HeaderName, secrets: Vec<SecretString>) -> Self {
        let accepted = Accepted::default();
        accepted.replace(secrets);
        HeaderSecret {
            header,
            secrets: accepted,
            refusals: RefusalLog::default(),
        }
    }

    /// A handle that replaces the accepted secrets (a re-read secret file).
    pub fn accepted(&self) -> Accepted {
        self.secrets.clone()
    }

    /// Whether the request carries one of the secrets. Every secret is compared, each in
    /// constant time, so only lengths can be told from the time this takes.
    pub fn verify(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(&self.header) else {
            return false;
        };
        let matched = (self.secrets.current().iter()).fold(Choice::from(0), |matched, secret| {
            matched | value.as_bytes().ct_eq(secret.expose_secret().as_bytes())
        });
        matched.into()
    }

    /// [`HeaderSecret::verify`], counting (and now and then logging) a refusal.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let admitted = self.verify(headers);
        if !admitted {
            self.refusals.refused(&self.header);
        }
        admitted
    }
}

/// Counts refused requests and logs them at most once per [`REFUSAL_LOG_PERIOD`].
#[derive(Default)]
struct RefusalLog {
    /// Refusals since the last log line.
    count: AtomicU64,
    /// When the last line was logged, in seconds since the Unix epoch.
    logged_at: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, header: &HeaderName) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.logged_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFUSAL_LOG_PERIOD.as_secs()
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %header,
                refused = self.count.swap(0, Ordering::Relaxed),
                "requests without the right secret header refused (logged at most every 10s)"
            );
        }
    }
}

/// Re-reads `auth.secret_file` every second until `shutdown`; when its contents change, the
/// receiver accepts what it now lists (with `secret` and `secrets`). A file that cannot be
/// read, lists no secret or holds a value that cannot be a header keeps the previous secrets,
/// and says why once.
pub async fn watch_secret_file(
    auth: hookrelay::config::AuthSettings,
    accepted: Accepted,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(file) = auth.secret_file.clone() else {
        return;
    };
    let mut seen = std::fs::read_to_string(&file).ok();
    let mut complained: Option<String> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SECRET_FILE_CHECK) => {}
        }
        let text = std::fs::read_to_string(&file);
        if text.as_ref().ok() == seen.as_ref() {
            continue;
        }
        let outcome = match &text {
            Ok(text) if text.lines().all(|l| l.trim().is_empty()) => {
                Err("it lists no secret".to_owned())
            }
            Ok(_) => auth.accepted_secrets().map_err(|e| e.to_string()),
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        match outcome {
            Ok(secrets) => {
                tracing::info!(
                    file = %file.display(),
                    accepted = secrets.len(),
                    "secret file changed: accepting the secrets it lists now"
                );
                accepted.replace(secrets);
                seen = text.ok();
                complained = None;
            }
            Err(why) if complained.as_ref() != Some(&why) => {
                tracing::warn!(
                    file = %file.display(),
                    %why,
                    "secret file changed but cannot be used: keeping the previous secrets"
                );
                complained = Some(why);
            }
            Err(_) => {}
        }
    }
}

/// How often the secret file is looked at.
const SECRET_FILE_CHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().expect("header value"));
        headers
    }

    #[test]
    fn any_configured_secret_is_accepted_and_nothing_else() {
        let secret = HeaderSecret::new(
            HeaderName::from_static("authorization"),
            vec![
                "old-secret".to_owned().into(),
                "new-secret".to_owned().into(),
            ],
        );
        assert!(secret.verify(&headers("old-secret")));
        assert!(secret.verify(&headers("new-secret")));
        for wrong in [
            "",
            "new",
            "new-secret ",
            "NEW-SECRET",
            "old-secretnew-secret",
        ] {
            assert!(!secret.verify(&headers(wrong)), "{wrong:?}");
        }
        assert!(!secret.verify(&HeaderMap::new()));
    }
}

//! `[nats]`: the broker and the two streams.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::ServerAddr;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;
use crate::subject;

/// The broker and the two streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Where the NATS server listens: one URL, or a cluster's, comma-separated.
    pub url: String,
    /// The servers of `url`, parsed at load.
    #[serde(skip)]
    servers: Vec<ServerAddr>,
    /// The stream that stores every event, on subjects `okta.events.>`.
    pub stream: String,
    /// The stream that stores dead letters, on subjects `okta.dlq.>`.
    pub dlq_stream: String,
    /// How long JetStream remembers an event's uuid to drop a second copy of it.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long the events stream keeps an event.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long the dead-letter stream keeps a dead letter.
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
    /// How long the worker's record of each attempt at an event is kept (the console's attempt
    /// timeline, `hookrelayctl events show`).
    #[serde(with = "humantime_serde")]
    pub attempts_retention: Duration,
    /// At most this many attempt records are kept, all subscribers together; the oldest go
    /// first.
    pub attempts_max_records: u64,
    /// The last attempts kept of one event for one subscriber (1 to 64).
    pub attempts_per_event: u32,
    /// Copies of each stream in a NATS cluster: 1 for a single server, 3 for a 3-node cluster.
    pub replicas: usize,
    /// How long start-up keeps trying to reach NATS and set up the streams before giving up.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// A user name, with `password` or `password_file` (or both in the URL:
    /// `nats://user:password@host:4222`).
    pub user: String,
    /// The user's password (`HOOKRELAY__NATS__PASSWORD`); a secret, never printed.
    pub password: SecretString,
    /// A file holding the password (a Docker or Kubernetes secret), read at start.
    pub password_file: Option<PathBuf>,
    /// A token the server expects (`HOOKRELAY__NATS__TOKEN`); a secret, never printed.
    pub token: SecretString,
    /// A file holding the token, read at start.
    pub token_file: Option<PathBuf>,
    /// A `.creds` file (a user's JWT and nkey seed, operator mode: `nsc`, Synadia Cloud).
    pub credentials_file: Option<PathBuf>,
    /// A file holding a user's nkey seed (`SU…`), for a server that lists users by nkey.
    pub nkey_seed_file: Option<PathBuf>,
    /// Where replies to this process's requests arrive: `<inbox_prefix>.<random>`. Empty means
    /// `_INBOX.<client>` (`_INBOX.hookrelay-receiver`, …), which a server's permissions can
    /// give each process alone.
    pub inbox_prefix: String,
    /// TLS to the server.
    pub tls: NatsTls,
    /// How to authenticate, resolved at load from the keys above and the URL.
    #[serde(skip)]
    auth: NatsAuth,
}

/// `[nats.tls]`: TLS to the server. Any of it, or a `tls://` URL, makes TLS required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsTls {
    /// PEM certificates of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a server that verifies clients (mutual TLS); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS, even with no file set (system roots).
    pub required: bool,
}

impl NatsTls {
    /// Whether the connection must use TLS: any TLS setting asks for it.
    pub fn is_required(&self) -> bool {
        self.required || self.ca_file.is_some() || self.cert_file.is_some()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::invalid(
                "nats.tls.cert_file",
                "nats.tls.cert_file and nats.tls.key_file go together (mutual TLS)",
            ));
        }
        for (key, file, what) in [
            ("nats.tls.ca_file", &self.ca_file, "CERTIFICATE"),
            ("nats.tls.cert_file", &self.cert_file, "CERTIFICATE"),
            ("nats.tls.key_file", &self.key_file, "PRIVATE KEY"),
        ] {
            let Some(path) = file else { continue };
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
            })?;
            // `BEGIN CERTIFICATE`, `BEGIN PRIVATE KEY`, `BEGIN EC PRIVATE KEY`, …
            if !text
                .lines()
                .any(|l| l.starts_with("-----BEGIN") && l.contains(what))
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{} holds no PEM {}", path.display(), what.to_lowercase()),
                ));
            }
        }
        Ok(())
    }
}

/// How the client proves who it is, resolved at load. Secrets stay secret.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// User and password, from `nats.user` and `nats.password`/`password_file`, or the URL.
    UserPassword {
        user: String,
        password: SecretString,
        /// The settings it came from, for messages.
        keys: &'static str,
    },
    /// A token, from `nats.token`/`token_file`.
    Token {
        token: SecretString,
        keys: &'static str,
    },
    /// The contents of a `.creds` file (a user JWT and its nkey seed), checked at load.
    Credentials { creds: SecretString },
    /// An nkey seed, checked at load.
    Nkey { seed: SecretString },
}

impl NatsAuth {
    /// The settings the credentials came from (`nats.user/nats.password`, …), for messages that
    /// must name them without their values; `None` without credentials.
    pub fn keys(&self) -> Option<&'static str> {
        match self {
            NatsAuth::None => None,
            NatsAuth::UserPassword { keys, .. } | NatsAuth::Token { keys, .. } => Some(keys),
            NatsAuth::Credentials { .. } => Some("nats.credentials_file"),
            NatsAuth::Nkey { .. } => Some("nats.nkey_seed_file"),
        }
    }
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            servers: parse_servers("nats://127.0.0.1:4222").expect("the default URL parses"),
            stream: "OKTA_EVENTS".into(),
            dlq_stream: "OKTA_DLQ".into(),
            duplicate_window: Duration::from_secs(60 * 60),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            dlq_retention: Duration::from_secs(30 * 24 * 60 * 60),
            attempts_retention: Duration::from_secs(7 * 24 * 60 * 60),
            attempts_max_records: 1_000_000,
            attempts_per_event: 10,
            replicas: 1,
            startup_timeout: Duration::from_secs(30),
            user: String::new(),
            password: SecretString::default(),
            password_file: None,
            token: SecretString::default(),
            token_file: None,
            credentials_file: None,
            nkey_seed_file: None,
            inbox_prefix: String::new(),
            tls: NatsTls::default(),
            auth: NatsAuth::None,
        }
    }
}

impl NatsSettings {
    /// The servers to connect to (one, or each of a cluster's), parsed from `url` at load.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// How the client authenticates, resolved at load.
    pub fn auth(&self) -> &NatsAuth {
        &self.auth
    }

    /// The inbox prefix of a process that connects as `client_name`.
    pub fn inbox_prefix_for(&self, client_name: &str) -> String {
        if self.inbox_prefix.is_empty() {
            format!("_INBOX.{client_name}")
        } else {
            self.inbox_prefix.clone()
        }
    }

    /// Whether the connection must use TLS: a `nats.tls` setting or a `tls://` URL.
    pub fn tls_required(&self) -> bool {
        self.tls.is_required() || self.servers.iter().any(|s| s.tls_required())
    }

    /// `nats.url` as it may be printed: any password in it replaced by `***`.
    pub fn display_url(&self) -> String {
        (self.servers.iter())
            .map(|server| {
                let mut url = server.clone().into_inner();
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.to_string().trim_end_matches('/').to_owned()
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the section, parses `url` into [`servers`](Self::servers) and resolves the
    /// credentials (reading their files).
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        let nats = self;
        nats.servers = parse_servers(&nats.url)?;
        nats.auth = nats.resolve_auth()?;
        nats.tls.validate()?;
        if !nats.inbox_prefix.is_empty()
            && !(nats.inbox_prefix.split('.')).all(subject::is_valid_name)
        {
            return Err(ConfigError::invalid(
                "nats.inbox_prefix",
                "must be dot-separated tokens of letters, digits, `-` and `_`, such as _INBOX_worker",
            ));
        }
        for (key, name) in [
            ("nats.stream", &nats.stream),
            ("nats.dlq_stream", &nats.dlq_stream),
        ] {
            if !subject::is_valid_name(name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("`{name}` is not a valid stream name (letters, digits, `-`, `_`)"),
                ));
            }
        }
        if nats.stream == nats.dlq_stream {
            return Err(ConfigError::invalid(
                "nats.dlq_stream",
                "must differ from nats.stream",
            ));
        }
        if nats.duplicate_window.is_zero() || nats.duplicate_window > nats.retention {
            return Err(ConfigError::invalid(
                "nats.duplicate_window",
                "must be more than zero and at most nats.retention",
            ));
        }
        if !(1..=5).contains(&nats.replicas) {
            return Err(ConfigError::invalid("nats.replicas", "must be 1 to 5"));
        }
        if nats.startup_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "nats.startup_timeout",
                "must be more than zero",
            ));
        }
        if !(1..=64).contains(&nats.attempts_per_event) {
            return Err(ConfigError::invalid(
                "nats.attempts_per_event",
                "must be 1 to 64 (JetStream keeps at most 64 values of a key)",
            ));
        }
        if nats.attempts_max_records == 0 || nats.attempts_retention.is_zero() {
            return Err(ConfigError::invalid(
                if nats.attempts_max_records == 0 {
                    "nats.attempts_max_records"
                } else {
                    "nats.attempts_retention"
                },
                "must be more than zero",
            ));
        }
        if nats.dlq_retention < nats.duplicate_window {
            return Err(ConfigError::invalid(
                "nats.dlq_retention",
                "must be at least nats.duplicate_window",
            ));
        }
        Ok(())
    }
}

impl NatsSettings {
    fn resolve_auth(&self) -> Result<NatsAuth, ConfigError> {
        let password = secret("nats.password", &self.password, self.password_file.as_ref())?;
        let token = secret("nats.token", &self.token, self.token_file.as_ref())?;
        let in_url = self
            .servers
            .iter()
            .map(|s| s.clone().into_inner())
            .find(|u| !u.username().is_empty());
        let mut modes = Vec::new();
        if !self.user.is_empty() || password.is_some() {
            let Some(password) = password else {
                return Err(ConfigError::invalid(
                    "nats.password",
                    "is required with nats.user (or nats.password_file)",
                ));
            };
            if self.user.is_empty() {
                return Err(ConfigError::invalid(
                    "nats.user",
                    "is required with nats.password",
                ));
            }
            modes.push(NatsAuth::UserPassword {
                user: self.user.clone(),
                password,
                keys: "nats.user/nats.password",
            });
        }
        if let Some(token) = token {
            modes.push(NatsAuth::Token {
                token,
                keys: "nats.token",
            });
        }
        if let Some(path) = &self.credentials_file {
            modes.push(NatsAuth::Credentials {
                creds: credentials(path)?,
            });
        }
        if let Some(path) = &self.nkey_seed_file {
            modes.push(NatsAuth::Nkey {
                seed: nkey_seed(path)?,
            });
        }
        if let Some(url) = in_url {
            let user = percent_decode(url.username());
            let password = url.password().map(percent_decode).unwrap_or_default();
            // `nats://token@host` is how NATS URLs carry a token.
            modes.push(if url.password().is_none() {
                NatsAuth::Token {
                    token: SecretString::from(user),
                    keys: "the token in nats.url",
                }
            } else {
                NatsAuth::UserPassword {
                    user,
                    password: SecretString::from(password),
                    keys: "the user and password in nats.url",
                }
            });
        }
        if modes.len() > 1 {
            return Err(ConfigError::invalid(
                "nats.user",
                "give one way to authenticate: nats.credentials_file, nats.nkey_seed_file, \
                 nats.user with nats.password, nats.token, or credentials in nats.url",
            ));
        }
        Ok(modes.pop().unwrap_or_default())
    }
}

/// A secret from its setting or, when given, its file (trimmed); `None` when neither is set.
fn secret(
    key: &str,
    value: &SecretString,
    file: Option<&PathBuf>,
) -> Result<Option<SecretString>, ConfigError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                format!("{key}_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?,
        None => value.expose_secret().to_owned(),
    };
    let text = text.trim();
    Ok((!text.is_empty()).then(|| SecretString::from(text.to_owned())))
}

/// The contents of a `.creds` file, once they parse as one (a user JWT and an nkey seed).
fn credentials(path: &PathBuf) -> Result<SecretString, ConfigError> {
    const KEY: &str = "nats.credentials_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
    // async-nats's own parser; its errors name what is missing, never the seed.
    async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
        ConfigError::invalid(
            KEY,
            format!("{} is not a NATS credentials file: {e}", path.display()),
        )
    })?;
    Ok(SecretString::from(text))
}

/// The nkey seed in a file, once it decodes as a user's seed (`SU…`).
fn nkey_seed(path: &PathBuf) -> Result<SecretString, ConfigError> {
    const KEY: &str = "nats.nkey_seed_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(KEY, format!("cannot read {}: {e}", path.display())))?;
    // `nk -gen user` writes the seed alone; `nsc` may write it between comment lines.
    let seed = (text.lines().map(str::trim)).find(|line| line.starts_with("SU"));
    let valid = seed.filter(|seed| nkeys::KeyPair::from_seed(seed).is_ok());
    match valid {
        Some(seed) => Ok(SecretString::from(seed.to_owned())),
        None => Err(ConfigError::invalid(
            KEY,
            format!(
                "{} holds no user nkey seed (a line starting SU, as `nk -gen user` writes)",
                path.display()
            ),
        )),
    }
}

/// A server as it may be printed even when it does not parse: whatever stands between `://`
/// and the last `@` (a user and password, or a token) is shown as `***`.
fn without_password(server: &str) -> String {
    match (server.find("://"), server.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            format!("{}***{}", &server[..scheme + 3], &server[at..])
        }
        (None, Some(at)) => format!("***{}", &server[at..]),
        _ => server.to_owned(),
    }
}

/// `%XX` escapes of a URL's user or password, decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The servers of a comma-separated `nats.url`.
fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, ConfigError> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|server| {
            server.parse::<ServerAddr>().map_err(|_| {
                ConfigError::invalid(
                    "nats.url",
                    format!(
                        "`{}` is not a NATS URL such as nats://127.0.0.1:4222",
                        without_password(server)
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(ConfigError::invalid("nats.url", "must not be empty"));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<NatsSettings, ConfigError> {
        let env = pairs
            .iter()
            .map(|(k, v)| (format!("HOOKRELAY__NATS__{k}"), v.to_string()))
            .collect();
        crate::Settings::load_from(None, Some(env)).map(|s| s.nats)
    }

    #[test]
    fn credentials_resolve_to_one_way_of_authenticating() {
        assert!(matches!(load(&[]).unwrap().auth(), NatsAuth::None));
        let nats = load(&[("USER", "u"), ("PASSWORD", "p")]).unwrap();
        assert!(
            matches!(nats.auth(), NatsAuth::UserPassword { user, password, .. }
                if user == "u" && password.expose_secret() == "p")
        );
        let nats = load(&[("TOKEN", "t")]).unwrap();
        assert!(
            matches!(nats.auth(), NatsAuth::Token { token, .. } if token.expose_secret() == "t")
        );
        let nats = load(&[("URL", "nats://u:p%40ss@h:4222,nats://h2:4222")]).unwrap();
        assert!(
            matches!(nats.auth(), NatsAuth::UserPassword { password, .. }
                if password.expose_secret() == "p@ss")
        );
        assert_eq!(nats.display_url(), "nats://u:***@h:4222,nats://h2:4222");
        let nats = load(&[("URL", "nats://t0k@h:4222")]).unwrap();
        assert!(
            matches!(nats.auth(), NatsAuth::Token { token, .. } if token.expose_secret() == "t0k")
        );
    }

    #[test]
    fn a_url_that_does_not_parse_is_refused_without_its_credentials() {
        for url in ["nats://u:s3cret@host:notaport", "u:s3cret@host:99999"] {
            let error = load(&[("URL", url)]).expect_err("refused").to_string();
            assert!(
                error.contains("nats.url") && error.contains("***@host"),
                "{error}"
            );
            assert!(!error.contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn half_or_double_credentials_are_refused_by_name() {
        for (pairs, key) in [
            (&[("USER", "u")][..], "nats.password"),
            (&[("PASSWORD", "p")][..], "nats.user"),
            (
                &[("USER", "u"), ("PASSWORD", "p"), ("TOKEN", "t")][..],
                "nats.user",
            ),
            (
                &[("TOKEN", "t"), ("URL", "nats://u:p@h:4222")][..],
                "nats.user",
            ),
            (
                &[("PASSWORD_FILE", "/nonexistent/pw"), ("USER", "u")][..],
                "nats.password_file",
            ),
        ] {
            let error = load(pairs).expect_err("refused").to_string();
            assert!(error.contains(key), "{pairs:?}: {error}");
            assert!(!error.contains("p@") && !error.contains("\"p\""), "{error}");
        }
    }

    #[test]
    fn files_that_are_not_what_their_setting_needs_are_refused_by_name_without_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let garbage = write("garbage", "SUnot-a-seed-but-secret-looking\n");
        let pem = write(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let seed = write(
            "user.nk",
            "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n",
        );
        for (pairs, key) in [
            (
                vec![("CREDENTIALS_FILE", garbage.as_str())],
                "nats.credentials_file",
            ),
            (
                vec![("CREDENTIALS_FILE", "/nonexistent/x.creds")],
                "nats.credentials_file",
            ),
            (
                vec![("NKEY_SEED_FILE", garbage.as_str())],
                "nats.nkey_seed_file",
            ),
            (vec![("TLS__CA_FILE", garbage.as_str())], "nats.tls.ca_file"),
            (
                vec![("TLS__CA_FILE", "/nonexistent/ca.pem")],
                "nats.tls.ca_file",
            ),
            (vec![("TLS__CERT_FILE", pem.as_str())], "nats.tls.cert_file"),
            (
                vec![
                    ("TLS__CERT_FILE", pem.as_str()),
                    ("TLS__KEY_FILE", pem.as_str()),
                ],
                "nats.tls.key_file",
            ),
            (
                vec![("NKEY_SEED_FILE", seed.as_str()), ("TOKEN", "t")],
                "give one way",
            ),
            (vec![("INBOX_PREFIX", "_INBOX.>")], "nats.inbox_prefix"),
        ] {
            let error = load(&pairs).expect_err("refused").to_string();
            assert!(error.contains(key), "{pairs:?}: {error}");
            assert!(!error.contains("secret-looking"), "{error}");
        }
        let nats = load(&[("NKEY_SEED_FILE", &seed), ("TLS__CA_FILE", &pem)]).unwrap();
        assert!(matches!(nats.auth(), NatsAuth::Nkey { .. }));
        assert!(nats.tls_required(), "a CA file asks for TLS");
        assert_eq!(
            nats.inbox_prefix_for("hookrelay-worker"),
            "_INBOX.hookrelay-worker"
        );
        assert!(load(&[("URL", "tls://h:4222")]).unwrap().tls_required());
        assert!(!load(&[]).unwrap().tls_required());
    }
}

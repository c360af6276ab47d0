//! A locked-down NATS for tests: TLS material made with `openssl` ([`Pki`]: a CA, a server
//! certificate for 127.0.0.1, a client certificate for mutual TLS, and a CA nobody trusts), nkey
//! users ([`nkey_user`]), and operator mode with `.creds` files ([`Operator`]: JWTs signed the
//! way `nsc` signs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};

/// Certificates and keys in a temporary directory, made by Debian's `openssl`.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA (`ca.pem`), a server certificate for 127.0.0.1 and localhost (`server.pem`,
    /// `server-key.pem`), a client certificate (`client.pem`, `client-key.pem`), all signed by
    /// the CA, and a second, unrelated CA (`other-ca.pem`).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = Pki { dir };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=hookrelay test {ca}"),
                "-keyout",
                &format!("{ca}-key.pem"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let extensions =
                format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n");
            std::fs::write(pki.path(&format!("{name}.ext")), extensions).expect("written");
            pki.openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN=hookrelay test {name}"),
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
            ]);
            pki.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
        }
        pki
    }

    /// A file of the PKI, by name (`ca.pem`, `client-key.pem`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// nats-server's `tls` block: the server certificate, and with `verify_clients` a demand
    /// for a client certificate signed by the CA.
    pub fn server_config(&self, verify_clients: bool) -> String {
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: {verify_clients}\n  timeout: 2\n}}\n",
            self.path("server.pem"),
            self.path("server-key.pem"),
            self.path("ca.pem"),
        )
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl runs (install it: apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A new nkey user: its public key (for the server's `users` list) and its seed (secret).
pub fn nkey_user() -> (String, String) {
    let user = KeyPair::new_user();
    (user.public_key(), user.seed().expect("a seed"))
}

/// Writes `text` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("file written");
    path
}

/// An operator with a system account and one account that has JetStream: the server configuration for operator mode
/// (memory resolver) and `.creds` files for users of the account.
pub struct Operator {
    operator: KeyPair,
    /// The server's own account, which JetStream needs.
    system: KeyPair,
    account: KeyPair,
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator {
    pub fn new() -> Self {
        Operator {
            operator: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            account: KeyPair::new_account(),
        }
    }

    /// The server configuration that trusts the operator and knows its account.
    pub fn server_config(&self) -> String {
        let operator = jwt(
            &self.operator,
            &self.operator.public_key(),
            "hookrelay-test-operator",
            json!({"type": "operator", "version": 2}),
        );
        let account = jwt(
            &self.operator,
            &self.account.public_key(),
            "hookrelay",
            json!({
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
                },
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2,
            }),
        );
        let system = jwt(
            &self.operator,
            &self.system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2}),
        );
        format!(
            "operator: {operator}\nsystem_account: {system_key}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system_key}: {system}\n  {account_key}: {account}\n}}\n",
            system_key = self.system.public_key(),
            account_key = self.account.public_key(),
        )
    }

    /// A `.creds` file's text for a new user `name` of the account, as `nsc` writes it.
    pub fn user_creds(&self, name: &str) -> String {
        let user = KeyPair::new_user();
        let token = jwt(
            &self.account,
            &user.public_key(),
            name,
            json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2,
            }),
        );
        let seed = user.seed().expect("a seed");
        format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        )
    }
}

/// A NATS JWT (`ed25519-nkey`) issued by `issuer` for `subject`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": now,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let signed = format!(
        "{}.{}",
        encode(&json!({"typ": "JWT", "alg": "ed25519-nkey"})),
        encode(&claims)
    );
    let signature = issuer.sign(signed.as_bytes()).expect("signed");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A stack on a NATS that asks for one kind of secret, given by the stack's settings: for tests
/// that run a binary and look for the secret in everything it printed.
pub struct SecretStack {
    pub stack: crate::Stack,
    /// How the secret is given (`nats.password`, `nats.credentials_file`, …).
    pub how: &'static str,
    /// What must never be printed.
    pub secret: String,
    /// Whether the secret is wrong: the server refuses it, and the binary must fail to start.
    pub refused: bool,
    _files: tempfile::TempDir,
}

/// One stack per way of giving NATS a secret: a password in `nats.password` and in `nats.url`,
/// a token file, an nkey seed file, a `.creds` file (operator mode), and a wrong password in
/// `nats.url` (its binaries must stop at start-up).
pub async fn stacks_with_each_secret(config: Option<&Path>) -> Vec<SecretStack> {
    use crate::{NatsServer, Stack};
    let mut stacks = Vec::new();
    let unique = || uuid::Uuid::new_v4().simple().to_string();
    let password_server = |password: &str| {
        NatsServer::start_with_config(&format!(
            "authorization {{ user: ops, password: \"{password}\" }}"
        ))
    };

    let files = tempfile::tempdir().expect("a directory");
    let password = format!("pw-{}", unique());
    let nats = password_server(&password);
    let env = [
        ("HOOKRELAY__NATS__USER", "ops"),
        ("HOOKRELAY__NATS__PASSWORD", password.as_str()),
    ];
    let stack = Stack::on(nats, config, &env).await;
    stacks.push(SecretStack {
        stack,
        how: "nats.password",
        secret: password,
        refused: false,
        _files: files,
    });

    for refused in [false, true] {
        let files = tempfile::tempdir().expect("a directory");
        let password = format!("pw-{}", unique());
        let nats = password_server(&password);
        let url = |password: &str| {
            nats.url()
                .replace("nats://", &format!("nats://ops:{password}@"))
        };
        let (right, wrong) = (url(&password), url(&format!("wrong-{}", unique())));
        let mut stack = Stack::on(nats, config, &[("HOOKRELAY__NATS__URL", &right)]).await;
        let mut secret = password;
        if refused {
            // The stack's own view connected; its binaries get the wrong password.
            secret = wrong
                .split([':', '@'])
                .nth(2)
                .expect("a password")
                .to_owned();
            stack.env.insert("HOOKRELAY__NATS__URL".into(), wrong);
        }
        stacks.push(SecretStack {
            stack,
            how: if refused {
                "a wrong password in nats.url"
            } else {
                "a password in nats.url"
            },
            secret,
            refused,
            _files: files,
        });
    }

    let files = tempfile::tempdir().expect("a directory");
    let token = format!("token-{}", unique());
    let nats = NatsServer::start_with_config(&format!("authorization {{ token: \"{token}\" }}"));
    let token_file = write_file(files.path(), "token", &token);
    let token_file = token_file.display().to_string();
    let stack = Stack::on(
        nats,
        config,
        &[("HOOKRELAY__NATS__TOKEN_FILE", &token_file)],
    )
    .await;
    stacks.push(SecretStack {
        stack,
        how: "nats.token_file",
        secret: token,
        refused: false,
        _files: files,
    });

    let files = tempfile::tempdir().expect("a directory");
    let (public, seed) = nkey_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users: [ {{ nkey: {public} }} ] }}"
    ));
    let seed_file = write_file(files.path(), "user.nk", &seed);
    let seed_file = seed_file.display().to_string();
    let stack = Stack::on(
        nats,
        config,
        &[("HOOKRELAY__NATS__NKEY_SEED_FILE", &seed_file)],
    )
    .await;
    stacks.push(SecretStack {
        stack,
        how: "nats.nkey_seed_file",
        secret: seed,
        refused: false,
        _files: files,
    });

    let files = tempfile::tempdir().expect("a directory");
    let operator = Operator::new();
    let nats = NatsServer::start_with_config(&operator.server_config());
    let creds = operator.user_creds("hookrelay");
    let seed = (creds.lines())
        .find(|l| l.starts_with("SU"))
        .expect("a seed");
    let creds_file = write_file(files.path(), "user.creds", &creds);
    let creds_file = creds_file.display().to_string();
    let stack = Stack::on(
        nats,
        config,
        &[("HOOKRELAY__NATS__CREDENTIALS_FILE", &creds_file)],
    )
    .await;
    stacks.push(SecretStack {
        stack,
        how: "nats.credentials_file",
        secret: seed.to_owned(),
        refused: false,
        _files: files,
    });
    stacks
}

impl SecretStack {
    /// Fails the test if any of `lines` holds the secret.
    pub fn assert_not_in(&self, lines: &[String]) {
        for line in lines {
            assert!(
                !line.contains(&self.secret),
                "the secret of {} was printed: {line}",
                self.how
            );
        }
    }
}

/// Runs the service `binary` on each of [`stacks_with_each_secret`] (until it logs `ready`,
/// then stopped as SIGTERM stops it; or, given a wrong password, until it gives up) and fails
/// the test if anything it printed holds the secret, or if a refused start-up does not say
/// NATS's reason and the setting.
pub async fn assert_service_never_prints_secrets(binary: &Path, ready: &str) {
    for secured in stacks_with_each_secret(None).await {
        let (stack, how) = (&secured.stack, secured.how);
        let printed = if secured.refused {
            let run = crate::process::run(binary, &stack.config, &stack.env, &[]).await;
            assert!(!run.success, "{how}: {} started", binary.display());
            let printed = format!("{}{}", run.stdout, run.stderr);
            assert!(
                printed.contains("authorization violation") && printed.contains("nats.url"),
                "{how}: {printed}"
            );
            printed.lines().map(str::to_owned).collect()
        } else {
            let mut process = crate::Process::start(binary, &stack.config, &stack.env, ready).await;
            assert_eq!(process.terminate().await, Some(0), "{how}: a clean stop");
            process.lines_where(|_| true)
        };
        secured.assert_not_in(&printed);
    }
}

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

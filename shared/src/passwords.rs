//! Passwords of the console's local users: argon2id hashes (PHC strings), made by `hookrelayctl
//! console hash-password` and checked by the console; and the first sign-in of a console with
//! no user and no Okta configured (a new `docker compose up`): the user `admin`, whose password
//! `hookrelayctl console initial-password` makes, prints once and stores only as a hash in the
//! console's bucket. No password is ever logged or kept in plain text.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_nats::jetstream::{self, kv};

use crate::config::ConsoleSettings;

/// The user of the first sign-in.
pub const FIRST_USER: &str = "admin";
/// Its key in the console's bucket.
const FIRST_KEY: &str = "first-sign-in";

/// The argon2id hash of `password` with a fresh salt, as a PHC string (OWASP's parameters:
/// 19 MiB, 2 passes, 1 lane).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2's default parameters hash any password")
        .to_string()
}

/// Whether `password` matches `hash`; a hash that does not parse matches nothing.
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `hash` is an argon2id PHC string the console can check.
pub fn is_argon2id(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| parsed.algorithm.as_str() == "argon2id")
}

/// A new password for the first sign-in: 20 characters from 57 unambiguous ones (about 117
/// bits).
pub fn generate() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| {
            // Rejection sampling: no character more likely than another.
            loop {
                let byte = (OsRng.next_u32() & 0xff) as usize;
                if byte < 256 - 256 % ALPHABET.len() {
                    break char::from(ALPHABET[byte % ALPHABET.len()]);
                }
            }
        })
        .collect()
}

/// Opens (or creates) the console's bucket, `console.bucket`.
pub async fn bucket(
    js: &jetstream::Context,
    settings: &ConsoleSettings,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    crate::broker::key_value(
        js,
        &crate::broker::Bucket {
            name: &settings.bucket,
            description: "hookrelay console: the first sign-in's password hash",
            max_age: Duration::ZERO,
            replicas,
            history: 1,
        },
    )
    .await
}

/// Stores the hash of the first sign-in's password, replacing any earlier one.
pub async fn set_first(store: &kv::Store, hash: &str) -> anyhow::Result<()> {
    (store.put(FIRST_KEY, hash.to_owned().into()).await)
        .map_err(|e| anyhow::anyhow!("storing the first sign-in's password hash: {e}"))?;
    Ok(())
}

/// The hash of the first sign-in's password, once one was made.
pub async fn first(store: &kv::Store) -> anyhow::Result<Option<String>> {
    let value = (store.get(FIRST_KEY).await)
        .map_err(|e| anyhow::anyhow!("reading the first sign-in's password hash: {e}"))?;
    Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(is_argon2id(&hash));
        assert!(verify(&hash, "correct horse"));
        assert!(!verify(&hash, "correct hors"));
        assert!(!verify("not a hash", "correct horse"));
        assert!(!is_argon2id(
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c))
        );
    }
}

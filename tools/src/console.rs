//! `hookrelayctl console`: what the web console's sign-in needs from an operator. A password
//! hash for a local user (`hash-password`, from standard input, so the password is in no
//! shell history or process list), and the first sign-in's password of a console with no user
//! and no Okta configured (`initial-password`, printed once, stored only as a hash).

use std::io::Read as _;

use anyhow::Context as _;
use hookrelay::Settings;
use hookrelay::passwords;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Read a password from standard input and print its argon2id hash, for a
    /// `[[console.users]]` entry's `password_hash`.
    HashPassword,
    /// Make a new password for the console's first sign-in (user `admin`, an operator) and
    /// print it; any earlier one stops working. Only for a console with no `[[console.users]]`
    /// and no `[console.oidc]`.
    InitialPassword,
}

impl Command {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        match self {
            Command::HashPassword => {
                let mut input = String::new();
                std::io::stdin()
                    .read_to_string(&mut input)
                    .context("reading the password from standard input")?;
                // The line's end is not part of it (`echo pw | …`, or typed and Enter).
                let password = input.strip_suffix('\n').unwrap_or(&input);
                let password = password.strip_suffix('\r').unwrap_or(password);
                if password.is_empty() {
                    anyhow::bail!("no password on standard input");
                }
                if password.chars().count() < 12 {
                    eprintln!("warning: a password of fewer than 12 characters is easy to guess");
                }
                println!("{}", passwords::hash(password));
            }
            Command::InitialPassword => {
                if !settings.console.first_sign_in() {
                    anyhow::bail!(
                        "this configuration has console users or sign-in with Okta: the first \
                         sign-in is off (sign in as a configured user)"
                    );
                }
                let js = crate::connect(settings).await?;
                let store =
                    passwords::bucket(&js, &settings.console, settings.nats.replicas).await?;
                let password = passwords::generate();
                passwords::set_first(&store, &passwords::hash(&password)).await?;
                println!("user:     {}", passwords::FIRST_USER);
                println!("password: {password}");
                eprintln!(
                    "Sign in to the console with these (an operator). They work until you run \
                     this again; add [[console.users]] or [console.oidc] to your configuration \
                     for people of your own."
                );
            }
        }
        Ok(true)
    }
}

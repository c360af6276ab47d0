//! `hookrelayctl hooks`: the Okta event hook that delivers to the receiver, managed through
//! Okta's Management API (steps 3–4 of the guide, and what breaks later: a new tunnel URL, a
//! secret to rotate). Defaults come from the configuration: the subscribers' event types, the
//! receiver's header, secret and path. Errors say what Okta said; no secret is printed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args as ClapArgs, Subcommand};
use hookrelay::Settings;
use hookrelay::config::OktaAccess;
use hookrelay::okta::hooks::{EventHook, EventHooks};
use secrecy::{ExposeSecret as _, SecretString};

#[derive(Subcommand)]
pub enum Command {
    /// List the org's event hooks.
    List {
        /// One JSON object per line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Create a hook that delivers to the receiver, verify it, and print its id and status.
    Create(Create),
    /// Ask Okta to verify a hook (it calls the receiver with a challenge).
    Verify {
        id: String,
    },
    /// Point a hook (by id or name) at a new URL, verify it and make sure it is active.
    SetUrl(SetUrl),
    Activate {
        id: String,
    },
    Deactivate {
        id: String,
    },
    /// Delete a hook (Okta deletes only INACTIVE hooks: deactivate it first).
    Delete {
        id: String,
    },
    /// Give a hook a new random secret without a refused delivery: add it to
    /// receiver.auth.secret_file, wait until the receiver accepts it, update and verify the
    /// hook, then remove the old secrets from the file.
    RotateSecret(RotateSecret),
}

#[derive(ClapArgs)]
pub struct Create {
    /// The public base URL (`https://abc.ngrok.app`; the receiver's path is added) or the full
    /// hook URL.
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "hookrelay")]
    pub name: String,
    /// Event types to deliver; repeatable. Default: the configured subscribers'.
    #[arg(long = "event-type")]
    pub event_types: Vec<String>,
}

#[derive(ClapArgs)]
pub struct SetUrl {
    /// The hook's id, or its name.
    pub hook: String,
    /// The public base URL or the full hook URL.
    #[arg(
        long,
        required_unless_present = "from_ngrok",
        conflicts_with = "from_ngrok"
    )]
    pub url: Option<String>,
    /// Read the public URL from ngrok's local API at this address (`http://tunnel:4040`),
    /// waiting up to a minute for the tunnel to be up.
    #[arg(long)]
    pub from_ngrok: Option<String>,
    /// Create the hook (named as given) when there is none.
    #[arg(long)]
    pub create: bool,
    /// Exit 0, doing nothing, when Okta API access is not configured (for compose's one-shot).
    #[arg(long)]
    pub optional: bool,
}

#[derive(ClapArgs)]
pub struct RotateSecret {
    pub id: String,
    /// How long the old secrets stay accepted after Okta verified the new one, for deliveries
    /// already on their way.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
}

impl Command {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<bool> {
        // docker-compose.yml hands the one-shot the tunnel's NGROK_AUTHTOKEN: empty, the tunnel
        // stopped at once and no URL will come, so this says what the tunnel said.
        if let Command::SetUrl(args) = &self
            && args.from_ngrok.is_some()
            && std::env::var("NGROK_AUTHTOKEN").is_ok_and(|token| token.trim().is_empty())
        {
            let why = "NGROK_AUTHTOKEN is not set, so there is no tunnel and no URL for the hook. \
                       Put NGROK_AUTHTOKEN=<your ngrok authtoken> in .env beside \
                       docker-compose.yml (or export it), then run docker compose --profile \
                       tunnel up again.";
            if args.optional {
                println!("{why}");
                return Ok(true);
            }
            bail!(why);
        }
        if let Command::SetUrl(args) = &self
            && args.optional
            && !crate::okta_settings(settings).is_configured()
        {
            println!(
                "Okta API access is not configured (OKTA_ORG_URL and OKTA_API_TOKEN in .env): \
                 the hook's URL is left to you"
            );
            return Ok(true);
        }
        let hooks = EventHooks::new(&okta_access(settings)?)?;
        match self {
            Command::List { json } => {
                let list = hooks.list().await?;
                for hook in &list {
                    if json {
                        println!("{}", serde_json::to_string(&listed(hook))?);
                    } else {
                        println!("{}", line(hook));
                    }
                }
                if !json {
                    eprintln!(
                        "{} event {}",
                        list.len(),
                        plural(list.len(), "hook", "hooks")
                    );
                }
                Ok(true)
            }
            Command::Create(args) => {
                let url = hook_url(settings, &args.url)?;
                let event_types = if args.event_types.is_empty() {
                    subscribed_types(settings)
                } else {
                    args.event_types
                };
                let (header, secret) = receiver_secret(settings)?;
                let hook = EventHook::new(&args.name, &url, event_types, &header, secret);
                let created = hooks.create(&hook).await?;
                println!("created {}", line(&created));
                verify_and_activate(&hooks, &created.id).await
            }
            Command::Verify { id } => verify_and_activate(&hooks, &id).await,
            Command::SetUrl(args) => {
                let given = match (&args.url, &args.from_ngrok) {
                    (Some(url), _) => url.clone(),
                    (None, Some(api)) => ngrok_public_url(api).await?,
                    (None, None) => bail!("give --url or --from-ngrok"),
                };
                let url = hook_url(settings, &given)?;
                let (header, secret) = receiver_secret(settings)?;
                let list = hooks.list().await?;
                let found = (list.iter()).find(|h| h.id == args.hook || h.name == args.hook);
                let id = match found {
                    Some(hook) if hook.channel.config.uri == url => {
                        println!("unchanged {}", line(hook));
                        hook.id.clone()
                    }
                    Some(hook) => {
                        let mut changed = hook.clone();
                        changed.channel.config.uri = url;
                        changed.set_secret(&header, secret);
                        let updated = hooks.update(&hook.id, &changed).await?;
                        println!("updated {}", line(&updated));
                        updated.id
                    }
                    None if args.create => {
                        let types = subscribed_types(settings);
                        let hook = EventHook::new(&args.hook, &url, types, &header, secret);
                        let created = hooks.create(&hook).await?;
                        println!("created {}", line(&created));
                        created.id
                    }
                    None => bail!(
                        "no event hook has the id or name {:?} (--create makes one)",
                        args.hook
                    ),
                };
                verify_and_activate(&hooks, &id).await
            }
            Command::Activate { id } => {
                println!("{}", line(&hooks.lifecycle(&id, "activate").await?));
                Ok(true)
            }
            Command::Deactivate { id } => {
                println!("{}", line(&hooks.lifecycle(&id, "deactivate").await?));
                Ok(true)
            }
            Command::Delete { id } => {
                hooks.delete(&id).await.with_context(|| {
                    format!(
                        "deleting {id} (an ACTIVE hook: `hookrelayctl hooks deactivate {id}` first)"
                    )
                })?;
                println!("deleted {id}");
                Ok(true)
            }
            Command::RotateSecret(args) => rotate(settings, &hooks, args).await,
        }
    }
}

/// The `[okta]` section's access; `OKTA_API_TOKEN` wins over it, as for `backfill`.
fn okta_access(settings: &Settings) -> anyhow::Result<OktaAccess> {
    crate::okta_settings(settings).access().context(
        "Okta API access: set okta.org_url and either okta.api_token (or OKTA_API_TOKEN) or an \
         API service app (okta.client_id, okta.key_id, okta.private_key_file) with the scope \
         okta.eventHooks.manage",
    )
}

/// The public URL (https where there is one) of the first tunnel ngrok's local API lists, once
/// there is one.
async fn ngrok_public_url(api: &str) -> anyhow::Result<String> {
    let http = crate::http_client(Duration::from_secs(3))?;
    let tunnels = format!("{}/api/tunnels", api.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed: Option<serde_json::Value> = match http.get(&tunnels).send().await {
            Ok(answer) => answer.json().await.ok(),
            Err(_) => None,
        };
        let urls: Vec<String> = (listed.iter())
            .flat_map(|l| l["tunnels"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["public_url"].as_str().map(str::to_owned))
            .collect();
        // ngrok v3 lists only https; older agents list http beside it.
        let https = urls.iter().find(|url| url.starts_with("https://"));
        let public = https.or(urls.first()).cloned();
        if let Some(url) = public {
            println!("ngrok's public URL: {url}");
            return Ok(url);
        }
        if Instant::now() > deadline {
            bail!("ngrok's API at {tunnels} listed no tunnel within a minute");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `--url` as the hook's URL: a bare base gets the receiver's path.
fn hook_url(settings: &Settings, given: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(given.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        .with_context(|| format!("--url {given:?} is not a URL such as https://abc.ngrok.app"))?;
    if url.path() == "/" {
        url.set_path(&settings.receiver.path);
    }
    if url.scheme() == "http" {
        eprintln!("warning: Okta only calls https URLs; {url} is plain http");
    }
    Ok(url.to_string())
}

/// The receiver's header and the secret Okta should send (its first accepted secret).
fn receiver_secret(settings: &Settings) -> anyhow::Result<(String, SecretString)> {
    let auth = &settings.receiver.auth;
    let secret = (auth.accepted_secrets()?.into_iter().next()).context(
        "the receiver has no secret to give Okta: set receiver.auth.secret \
         (HOOKRELAY__RECEIVER__AUTH__SECRET) or receiver.auth.secret_file",
    )?;
    Ok((auth.header.clone(), secret))
}

/// The configured subscribers' event types, each once.
fn subscribed_types(settings: &Settings) -> Vec<String> {
    let mut types: Vec<String> = (settings.worker.subscribers.iter())
        .flat_map(|s| s.event_types.iter().cloned())
        .collect();
    types.sort();
    types.dedup();
    types
}

/// Verifies the hook and activates it if it is not active; prints where it stands.
async fn verify_and_activate(hooks: &EventHooks, id: &str) -> anyhow::Result<bool> {
    let hook = match hooks.lifecycle(id, "verify").await {
        Ok(hook) => hook,
        Err(e) => {
            eprintln!(
                "error: Okta could not verify {id}: {e}\n(is the receiver reachable at the \
                 hook's URL, with the same secret? then `hookrelayctl hooks verify {id}`)"
            );
            return Ok(false);
        }
    };
    let hook = if hook.status == "ACTIVE" {
        hook
    } else {
        hooks.lifecycle(id, "activate").await?
    };
    println!("{}", line(&hook));
    Ok(true)
}

/// `id  name  status  verification  uri  (n event types)`.
fn line(hook: &EventHook) -> String {
    let types = hook.events.items.len();
    format!(
        "{}  {}  {}  {}  {}  ({} event {})",
        hook.id,
        hook.name,
        hook.status,
        hook.verification_status,
        hook.channel.config.uri,
        types,
        plural(types, "type", "types")
    )
}

fn listed(hook: &EventHook) -> serde_json::Value {
    serde_json::json!({
        "id": hook.id,
        "name": hook.name,
        "status": hook.status,
        "verification_status": hook.verification_status,
        "uri": hook.channel.config.uri,
        "event_types": hook.events.items,
    })
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// How long to wait for the receiver to accept a new secret (it re-reads its file each second).
const RELOAD_PATIENCE: Duration = Duration::from_secs(30);

async fn rotate(
    settings: &Settings,
    hooks: &EventHooks,
    args: RotateSecret,
) -> anyhow::Result<bool> {
    let auth = &settings.receiver.auth;
    let Some(file) = &auth.secret_file else {
        bail!(
            "rotate-secret needs receiver.auth.secret_file: the receiver re-reads that file, so \
             a secret can be added and removed without a restart"
        );
    };
    let hook = hooks.get(&args.id).await?;
    let new = SecretString::from(random_secret());
    let old =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    write_secrets(
        file,
        &format!("{}{}\n", with_newline(&old), new.expose_secret()),
    )?;
    println!("added a new secret to {}", file.display());

    // Okta stops delivering from the update until it verifies the hook: update only once the
    // receiver answers a verification with the new secret.
    let http = crate::http_client(Duration::from_secs(3))?;
    let deadline = Instant::now() + RELOAD_PATIENCE;
    loop {
        let challenge = "hookrelayctl-rotate";
        let answer = (http.get(&hook.channel.config.uri))
            .header("x-okta-verification-challenge", challenge)
            .header(&auth.header, new.expose_secret())
            .send()
            .await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the receiver at {} did not accept the new secret within {RELOAD_PATIENCE:?} \
                 (does it read {}?); the hook is unchanged, the file has both secrets",
                hook.channel.config.uri,
                file.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("the receiver accepts the new secret");

    let mut changed = hook.clone();
    changed.set_secret(&auth.header, new.clone());
    hooks.update(&hook.id, &changed).await?;
    if !verify_and_activate(hooks, &hook.id).await? {
        bail!(
            "the hook has the new secret but Okta could not verify it; {} keeps the old and the \
             new secret",
            file.display()
        );
    }
    println!(
        "Okta uses the new secret; the old ones stay accepted for {:?}",
        args.grace
    );
    let mut progress = crate::progress::Progress::new();
    while let Some(left) = args.grace.checked_sub(progress.elapsed()) {
        progress.tick(|| format!("old secrets still accepted: {}s left", left.as_secs()));
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        if left.is_zero() {
            break;
        }
    }
    write_secrets(file, &format!("{}\n", new.expose_secret()))?;
    let removed = old.lines().filter(|l| !l.trim().is_empty()).count();
    println!(
        "removed {removed} old {} from {}",
        plural(removed, "secret", "secrets"),
        file.display()
    );
    Ok(true)
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// 32 random bytes, base64url: a header value with 256 bits of entropy.
fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes the secret file in place: a mounted file cannot be replaced by a rename. The receiver
/// keeps its secrets if it reads a half-written file that lists none.
fn write_secrets(file: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))
}

//! Sign-in with a name and password: the `[[console.users]]` of the configuration, or, when no
//! user and no Okta is configured, the first sign-in's `admin` (`hookrelay::passwords`). A wrong
//! name and a wrong password get the same answer and take the same time; a client that keeps
//! failing is slowed down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use hookrelay::config::{ConsoleUser, Role};
use hookrelay::passwords;
use secrecy::ExposeSecret as _;

/// Failures a client may have before it must wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait, and how long failures are remembered.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Clients remembered at most (the oldest are forgotten first).
const MAX_CLIENTS: usize = 10_000;

/// Who may sign in with a password.
pub struct Passwords {
    users: Vec<ConsoleUser>,
    /// The console's bucket, for the first sign-in's password (`None`: users are configured).
    first: Option<kv::Store>,
    /// A hash checked for an unknown name, so that it takes as long as a known one.
    decoy: String,
    throttle: Throttle,
}

impl Passwords {
    pub fn new(users: Vec<ConsoleUser>, first: Option<kv::Store>) -> Self {
        Passwords {
            users,
            first,
            decoy: passwords::hash("not anyone's password"),
            throttle: Throttle::default(),
        }
    }

    /// Whether the console is in its first sign-in (no user, no Okta configured).
    pub fn is_first_sign_in(&self) -> bool {
        self.first.is_some()
    }

    /// The user and role that `name` and `password` sign in as, if they do.
    pub async fn check(self: &Arc<Self>, name: &str, password: &str) -> Option<(String, Role)> {
        let (user, hash) = match (&self.first, self.find(name)) {
            (Some(store), _) if name.eq_ignore_ascii_case(passwords::FIRST_USER) => {
                let hash = passwords::first(store).await.ok().flatten();
                let user = hash
                    .is_some()
                    .then(|| (passwords::FIRST_USER.to_owned(), Role::Operator));
                (user, hash.unwrap_or_else(|| self.decoy.clone()))
            }
            (_, Some(user)) => (
                Some((user.name.clone(), user.role)),
                user.password_hash.expose_secret().to_owned(),
            ),
            _ => (None, self.decoy.clone()),
        };
        let password = password.to_owned();
        // About 50 ms of one core: not on the runtime's threads.
        let matches = tokio::task::spawn_blocking(move || passwords::verify(&hash, &password))
            .await
            .unwrap_or(false);
        user.filter(|_| matches)
    }

    fn find(&self, name: &str) -> Option<&ConsoleUser> {
        (self.first.is_none())
            .then(|| {
                self.users
                    .iter()
                    .find(|u| u.name.eq_ignore_ascii_case(name))
            })
            .flatten()
    }

    /// `Err(wait)` while `client` must wait before trying again.
    pub fn may_try(&self, client: IpAddr) -> Result<(), Duration> {
        self.throttle.may_try(client, Instant::now())
    }

    /// Notes a failed sign-in of `client`.
    pub fn failed(&self, client: IpAddr) {
        self.throttle.failed(client, Instant::now());
    }

    /// Forgets `client`'s failures after it signed in.
    pub fn succeeded(&self, client: IpAddr) {
        self.throttle
            .clients
            .lock()
            .expect("not poisoned")
            .remove(&client);
    }
}

/// Failed sign-ins by client: after [`FREE_FAILURES`], each further try waits twice as long as
/// the one before (1 s, 2 s, 4 s, … at most [`MAX_WAIT`]).
#[derive(Default)]
struct Throttle {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    until: Option<Instant>,
}

impl Throttle {
    fn may_try(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let clients = self.clients.lock().expect("not poisoned");
        match clients.get(&client).and_then(|f| f.until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    fn failed(&self, client: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().expect("not poisoned");
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            let oldest = clients
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        let failures = clients.entry(client).or_insert(Failures {
            count: 0,
            last: now,
            until: None,
        });
        if now.duration_since(failures.last) > MAX_WAIT {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        failures.until = (failures.count >= FREE_FAILURES).then(|| {
            let doublings = (failures.count - FREE_FAILURES).min(20);
            now + Duration::from_secs(1 << doublings).min(MAX_WAIT)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_keeps_failing_waits_longer_each_time() {
        let throttle = Throttle::default();
        let client: IpAddr = "192.0.2.7".parse().expect("an address");
        let other: IpAddr = "192.0.2.8".parse().expect("an address");
        let start = Instant::now();
        for _ in 0..4 {
            throttle.failed(client, start);
            assert!(
                throttle.may_try(client, start).is_ok(),
                "the first failures are free"
            );
        }
        throttle.failed(client, start);
        assert_eq!(throttle.may_try(client, start), Err(Duration::from_secs(1)));
        assert!(throttle.may_try(other, start).is_ok(), "per client");
        let later = start + Duration::from_secs(2);
        assert!(throttle.may_try(client, later).is_ok());
        throttle.failed(client, later);
        assert_eq!(throttle.may_try(client, later), Err(Duration::from_secs(2)));
        for _ in 0..30 {
            throttle.failed(client, later);
        }
        assert_eq!(
            throttle.may_try(client, later),
            Err(MAX_WAIT),
            "at most 15 minutes"
        );
        // A quarter of an hour without failing: forgotten.
        let much_later = later + MAX_WAIT + Duration::from_secs(1);
        throttle.failed(client, much_later);
        assert!(throttle.may_try(client, much_later).is_ok());
    }
}

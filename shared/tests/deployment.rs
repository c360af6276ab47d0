//! The deployment files, checked without Docker: every `HOOKRELAY__…` variable the compose file
//! sets loads into a valid configuration, and the compose file and Dockerfile agree with the
//! configuration and with each other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookrelay::Settings;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file");
    YamlLoader::load_from_str(&text)
        .expect("compose file is YAML")
        .remove(0)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(!service.is_badvalue(), "service {name} exists");
    service
}

/// Compose's `${NAME:-default}`, resolved as compose does when `NAME` is unset.
fn interpolate_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${…}") + start;
        let inner = &rest[start + 2..end];
        out.push_str(
            inner
                .split_once(":-")
                .map(|(_, default)| default)
                .unwrap_or(""),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment(service: &Yaml) -> HashMap<String, String> {
    let env = service["environment"]
        .as_hash()
        .expect("environment is a map");
    env.iter()
        .map(|(key, value)| {
            let value = match value {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("unexpected environment value {other:?}"),
            };
            let key = key.as_str().expect("a string key").to_string();
            (key, interpolate_defaults(&value))
        })
        .collect()
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn settings_of(service: &Yaml) -> Settings {
    let env = environment(service);
    for key in env.keys().filter(|k| k.starts_with("HOOKRELAY")) {
        assert!(
            key.starts_with("HOOKRELAY__"),
            "{key} uses the HOOKRELAY__ prefix"
        );
    }
    Settings::load_from(Some(&root().join("config/default.toml")), Some(env))
        .expect("the compose environment loads into valid settings")
}

#[test]
fn receiver_environment_is_a_valid_receiver_configuration() {
    let compose = compose();
    let receiver = service(&compose, "receiver");
    let settings = settings_of(receiver);
    let secrets = settings
        .validate_receiver()
        .expect("the compose file supplies the secret");
    assert!(
        secrets.iter().all(hookrelay::config::is_demo_secret),
        "the compose file supplies the guide's demo secret by default"
    );
    assert_eq!(settings.nats.url, "nats://nats:4222");
    assert_eq!(strings(&receiver["command"]), ["receiver"]);

    let ports = strings(&receiver["ports"]);
    let published = format!("8082:{}", settings.receiver.listen.port());
    assert_eq!(
        ports,
        [published],
        "only the hook port is published, as 8082"
    );
    assert!(
        settings.receiver.listen.ip().is_unspecified(),
        "the hook port is reachable from outside the container"
    );
    assert!(
        settings.receiver.admin_listen.ip().is_loopback(),
        "the admin port stays inside the container"
    );
}

#[test]
fn worker_environment_is_a_valid_configuration() {
    let compose = compose();
    let worker = service(&compose, "worker");
    let settings = settings_of(worker);
    assert_eq!(settings.nats.url, "nats://nats:4222");
    assert_eq!(strings(&worker["command"]), ["worker"]);
    assert!(
        worker["ports"].is_badvalue(),
        "the worker publishes no port"
    );
    let grace = worker["stop_grace_period"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .expect("a stop grace period in seconds, like 40s");
    assert!(
        grace > settings.worker.shutdown_grace,
        "docker waits longer than the worker's own shutdown grace"
    );
}

#[test]
fn services_wait_for_a_healthy_broker_and_check_their_own_health() {
    let compose = compose();
    for name in ["receiver", "worker"] {
        let service = service(&compose, name);
        assert_eq!(
            service["depends_on"]["nats"]["condition"].as_str(),
            Some("service_healthy"),
            "{name} waits for NATS"
        );
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            ["CMD", name, "health"]
        );
        assert_eq!(service["restart"].as_str(), Some("unless-stopped"));
        assert_eq!(
            service["build"].as_str(),
            Some("."),
            "{name} builds the Dockerfile"
        );
    }
    let nats = service(&compose, "nats");
    assert!(
        !nats["healthcheck"]["test"].is_badvalue(),
        "NATS has a health check"
    );
    let command = strings(&nats["command"]);
    assert!(
        command.iter().any(|arg| arg == "--jetstream"),
        "JetStream is on"
    );
    let store = command
        .iter()
        .skip_while(|arg| *arg != "--store_dir")
        .nth(1)
        .expect("a store directory");
    let volumes = strings(&nats["volumes"]);
    let volume = volumes
        .iter()
        .find_map(|v| v.strip_suffix(&format!(":{store}")))
        .expect("the store directory is a volume");
    assert!(
        !compose["volumes"][volume].is_badvalue(),
        "{volume} is a named volume"
    );
}

#[test]
fn the_tunnel_profile_runs_ngrok_against_the_receiver() {
    let compose = compose();
    let tunnel = service(&compose, "tunnel");
    assert_eq!(
        strings(&tunnel["profiles"]),
        ["tunnel"],
        "only with --profile tunnel"
    );
    let receiver = settings_of(service(&compose, "receiver"));
    let command = strings(&tunnel["command"]);
    assert_eq!(command[0], "http");
    assert_eq!(
        command[1],
        format!("receiver:{}", receiver.receiver.listen.port()),
        "ngrok forwards to the receiver's hook port"
    );
    let token = tunnel["environment"]["NGROK_AUTHTOKEN"]
        .as_str()
        .expect("NGROK_AUTHTOKEN is passed");
    assert!(
        token.starts_with("${NGROK_AUTHTOKEN:?"),
        "compose refuses to start the tunnel without a token: {token}"
    );
    assert_eq!(
        strings(&tunnel["ports"]),
        ["127.0.0.1:4040:4040"],
        "the inspector shows secret headers: loopback only"
    );
    assert_eq!(
        tunnel["depends_on"]["receiver"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn every_service_checks_its_health_and_restarts() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services");
    for (name, service) in services {
        let name = name.as_str().expect("a name");
        assert!(
            !service["healthcheck"]["test"].is_badvalue(),
            "{name} has a health check"
        );
        assert_eq!(
            service["restart"].as_str(),
            Some("unless-stopped"),
            "{name} restarts"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_ships_the_config_it_points_at() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let runtime = text.rsplit("\nFROM ").next().expect("a runtime stage");
    assert!(
        runtime.contains("USER nonroot"),
        "the runtime stage runs as non-root"
    );
    for (package, binary) in [
        ("receiver", "receiver"),
        ("worker", "worker"),
        ("hookrelay-tools", "hookrelayctl"),
    ] {
        assert!(text.contains(&format!("-p {package}")), "{binary} is built");
        assert!(
            text.contains(&format!("target/release/{binary}")),
            "{binary} is installed in the build stage"
        );
        assert!(
            runtime.contains(&format!("/usr/local/bin/{binary}")),
            "{binary} is in the image"
        );
    }
    assert!(text.contains("--locked"), "the build uses Cargo.lock");
    let config = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENV HOOKRELAY_CONFIG="))
        .expect("the image says where its configuration is");
    assert!(
        runtime.contains(&format!("COPY config/default.toml {config}")),
        "the image ships {config}"
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target"),
        "target/ stays out of the context"
    );
}

#[test]
fn compose_defaults_are_interpolated_like_compose() {
    assert_eq!(interpolate_defaults("${X:-a b}"), "a b");
    assert_eq!(interpolate_defaults("pre ${X:-1} ${Y} post"), "pre 1  post");
}

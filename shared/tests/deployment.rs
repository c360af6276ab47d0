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

/// The compose file as compose reads it when none of the variables it names is set.
fn compose() -> Yaml {
    compose_with(&HashMap::new())
}

/// The compose file interpolated with `env`, as compose does before it looks at anything else
/// (profiles included): a `${NAME:?message}` whose variable is missing fails the whole file.
fn compose_with(env: &HashMap<&str, &str>) -> Yaml {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).expect("compose file");
    let yaml = YamlLoader::load_from_str(&text)
        .expect("compose file is YAML")
        .remove(0);
    interpolate_yaml(&yaml, env).unwrap_or_else(|e| panic!("compose refuses the file: {e}"))
}

fn interpolate_yaml(yaml: &Yaml, env: &HashMap<&str, &str>) -> Result<Yaml, String> {
    Ok(match yaml {
        Yaml::String(s) => Yaml::String(interpolate(s, env)?),
        Yaml::Array(items) => Yaml::Array(
            items
                .iter()
                .map(|item| interpolate_yaml(item, env))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(map) => Yaml::Hash(
            map.iter()
                .map(|(k, v)| Ok((interpolate_yaml(k, env)?, interpolate_yaml(v, env)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Compose's interpolation of one string: `$$` is a literal `$`; `$NAME` and `${NAME}`; with
/// `:-`/`-` a default (when unset or empty / when unset), `:+`/`+` a replacement (when set and
/// non-empty / when set), `:?`/`?` an error (when unset or empty / when unset).
fn interpolate(value: &str, env: &HashMap<&str, &str>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {value}"))?;
            let expression = &braced[..end];
            rest = &braced[end + 1..];
            let name_end = expression
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expression.len());
            let (name, operator) = expression.split_at(name_end);
            let set = env.get(name).copied();
            let non_empty = set.filter(|v| !v.is_empty());
            let (op, word) = [":-", ":+", ":?", "-", "+", "?"]
                .into_iter()
                .find_map(|op| operator.strip_prefix(op).map(|word| (op, word)))
                .unwrap_or(("", operator));
            out.push_str(&match op {
                "" if word.is_empty() => set.unwrap_or("").to_string(),
                ":-" => non_empty.unwrap_or(word).to_string(),
                "-" => set.unwrap_or(word).to_string(),
                ":+" => non_empty.map_or("", |_| word).to_string(),
                "+" => set.map_or("", |_| word).to_string(),
                ":?" => non_empty
                    .ok_or_else(|| format!("{name}: {word}"))?
                    .to_string(),
                "?" => set.ok_or_else(|| format!("{name}: {word}"))?.to_string(),
                _ => {
                    return Err(format!(
                        "invalid interpolation ${{{expression}}} in {value}"
                    ));
                }
            });
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(env.get(&rest[..end]).copied().unwrap_or(""));
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(!service.is_badvalue(), "service {name} exists");
    service
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
            (key, value)
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
    // /metrics and /readyz answer on the compose network, for the monitoring profile's
    // Prometheus; only the hook port is published (above).
    assert_eq!(settings.receiver.admin_listen.port(), 9082);
    assert!(settings.receiver.admin_listen.ip().is_unspecified());
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
fn the_reconciler_is_idle_by_default_and_reads_okta_access_from_the_env_file() {
    let idle = settings_of(service(&compose(), "reconciler"));
    assert_eq!(idle.nats.url, "nats://nats:4222");
    assert!(
        !idle.okta.is_configured(),
        "without OKTA_ORG_URL and OKTA_API_TOKEN it has nothing to do"
    );
    let configured = compose_with(&HashMap::from([
        ("OKTA_ORG_URL", "https://dev-123456.okta.com"),
        ("OKTA_API_TOKEN", "00abc"),
    ]));
    let reconciler = service(&configured, "reconciler");
    assert_eq!(strings(&reconciler["command"]), ["reconciler"]);
    let access = settings_of(reconciler)
        .okta
        .access()
        .expect("the compose variables configure Okta API access");
    assert_eq!(access.org_url.as_str(), "https://dev-123456.okta.com/");
    assert!(
        reconciler["ports"].is_badvalue(),
        "the reconciler publishes no port"
    );
}

#[test]
fn the_console_is_reached_on_this_hosts_loopback_only() {
    let compose = compose();
    let console = service(&compose, "console");
    let settings = settings_of(console);
    assert_eq!(settings.nats.url, "nats://nats:4222");
    assert_eq!(strings(&console["command"]), ["console"]);
    assert_eq!(
        strings(&console["ports"]),
        [format!("127.0.0.1:8090:{}", settings.console.listen.port())],
        "published on loopback only"
    );
    assert!(
        settings.console.listen.ip().is_unspecified(),
        "reachable from the host's port"
    );
    assert_eq!(settings.console.url, "http://localhost:8090");
    assert!(
        settings.console.first_sign_in(),
        "a new stack signs in with initial-password"
    );
    assert_eq!(settings.console.admin_listen.port(), 9085);
    let with_url = compose_with(&HashMap::from([(
        "HOOKRELAY_CONSOLE_URL",
        "https://hookrelay.example.com",
    )]));
    let settings = settings_of(service(&with_url, "console"));
    assert!(
        settings.console.secure_cookies(),
        "behind TLS: Secure cookies"
    );
}

#[test]
fn services_wait_for_a_healthy_broker_and_check_their_own_health() {
    let compose = compose();
    for name in ["receiver", "worker", "reconciler", "console"] {
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
fn the_monitoring_profile_scrapes_every_admin_port_and_loads_the_alerts_and_dashboard() {
    let compose = compose();
    let prometheus = service(&compose, "prometheus");
    let grafana = service(&compose, "grafana");
    for (name, service, port) in [("prometheus", prometheus, 9090), ("grafana", grafana, 3000)] {
        assert_eq!(strings(&service["profiles"]), ["monitoring"], "{name}");
        assert_eq!(
            strings(&service["ports"]),
            [format!("127.0.0.1:{port}:{port}")],
            "{name} on loopback only"
        );
    }
    let mounts = strings(&prometheus["volumes"]);
    assert!(
        mounts.contains(&"./deploy/prometheus:/etc/prometheus:ro".to_owned()),
        "{mounts:?}"
    );

    // Each scrape job's DNS name and port are a service and its admin port.
    let text = std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml"))
        .expect("prometheus.yml");
    let config = YamlLoader::load_from_str(&text).expect("YAML").remove(0);
    let jobs = config["scrape_configs"].as_vec().expect("scrape_configs");
    let admin = |name: &str| {
        let settings = settings_of(service(&compose, name));
        match name {
            "receiver" => settings.receiver.admin_listen,
            "worker" => settings.worker.admin_listen,
            "console" => settings.console.admin_listen,
            _ => settings.reconciler.admin_listen,
        }
    };
    let mut scraped = Vec::new();
    for job in jobs {
        let sd = &job["dns_sd_configs"][0];
        let name = sd["names"][0].as_str().expect("a name");
        let listen = admin(name);
        assert!(
            listen.ip().is_unspecified(),
            "{name}'s admin port answers on the network"
        );
        assert_eq!(
            sd["port"].as_i64(),
            Some(i64::from(listen.port())),
            "{name}"
        );
        assert_eq!(
            job["job_name"].as_str(),
            Some(format!("hookrelay-{name}").as_str())
        );
        scraped.push(name.to_owned());
    }
    assert_eq!(scraped, ["receiver", "worker", "reconciler", "console"]);
    assert_eq!(strings(&config["rule_files"]), ["alerts.yml"]);

    let mounts = strings(&grafana["volumes"]);
    for mount in [
        "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
        "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro",
    ] {
        assert!(mounts.contains(&mount.to_owned()), "{mounts:?}");
    }
    let provider = std::fs::read_to_string(
        root().join("deploy/grafana/provisioning/dashboards/hookrelay.yml"),
    )
    .expect("the dashboard provider");
    assert!(
        provider.contains("path: /etc/grafana/dashboards"),
        "{provider}"
    );
}

#[test]
fn the_compose_file_loads_with_no_variable_set() {
    let compose = compose_with(&HashMap::new());
    for name in [
        "nats",
        "receiver",
        "worker",
        "reconciler",
        "console",
        "tunnel",
    ] {
        service(&compose, name);
    }
}

/// Runs the tunnel container's entrypoint and command as the container would, with the
/// environment compose gives it when the host has `host_env`, and an `ngrok` that only prints
/// its arguments first on PATH. Returns (exit code, stdout, stderr).
fn run_tunnel_entrypoint(host_env: &HashMap<&str, &str>) -> (i32, String, String) {
    let compose = compose_with(host_env);
    let tunnel = service(&compose, "tunnel");
    let entrypoint = strings(&tunnel["entrypoint"]);
    let command = strings(&tunnel["command"]);
    let stub = tempfile::tempdir().expect("a directory for the ngrok stub");
    let ngrok = stub.path().join("ngrok");
    std::fs::write(&ngrok, "#!/bin/sh\necho \"ngrok $*\"\n").expect("stub written");
    std::fs::set_permissions(&ngrok, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("stub executable");
    let output = std::process::Command::new(&entrypoint[0])
        .args(&entrypoint[1..])
        .args(&command)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", stub.path().display()))
        .envs(environment(tunnel))
        .output()
        .expect("the entrypoint runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_tunnel_refuses_to_start_without_a_token_and_runs_ngrok_with_one() {
    let (code, stdout, stderr) = run_tunnel_entrypoint(&HashMap::new());
    // A clean stop, which its restart policy does not restart: it says so once.
    assert_eq!(code, 0, "no token: a clean stop, not a failure to restart");
    let compose = compose();
    assert_eq!(
        service(&compose, "tunnel")["restart"].as_str(),
        Some("on-failure")
    );
    assert!(stdout.is_empty(), "ngrok is not started: {stdout}");
    assert!(
        stderr.contains("NGROK_AUTHTOKEN is not set") && stderr.contains(".env"),
        "the refusal says what to set and where: {stderr}"
    );

    let (code, stdout, stderr) =
        run_tunnel_entrypoint(&HashMap::from([("NGROK_AUTHTOKEN", "2abc_token")]));
    assert_eq!(code, 0, "with a token ngrok runs: {stderr}");
    assert_eq!(stdout.trim(), "ngrok http receiver:8082 --log stdout");
}

#[test]
fn every_service_checks_its_health_and_restarts() {
    let compose = compose();
    let services = compose["services"].as_hash().expect("services");
    for (name, service) in services {
        let name = name.as_str().expect("a name");
        if service["restart"].as_str() == Some("no") {
            // A one-shot (hook-url): it runs once after what it depends on is healthy.
            assert!(
                !service["depends_on"].is_badvalue(),
                "{name} waits for something"
            );
            continue;
        }
        assert!(
            !service["healthcheck"]["test"].is_badvalue(),
            "{name} has a health check"
        );
        // The tunnel stops for good without a token (exit 0), and restarts if ngrok fails.
        let restart = if name == "tunnel" {
            "on-failure"
        } else {
            "unless-stopped"
        };
        assert_eq!(
            service["restart"].as_str(),
            Some(restart),
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
    // Numeric: Kubernetes' runAsNonRoot cannot check a user name.
    let user = (runtime.lines())
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    let (uid, gid) = user.trim().split_once(':').unwrap_or((user.trim(), "0"));
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0) && gid.parse::<u32>().is_ok(),
        "the runtime stage runs as a numeric non-root user, not {user:?}"
    );
    for (package, binary) in [
        ("receiver", "receiver"),
        ("worker", "worker"),
        ("reconciler", "reconciler"),
        ("console", "console"),
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
    assert!(
        !text.lines().any(|l| l.starts_with("# syntax=")),
        "BuildKit's built-in frontend builds it: no frontend image to pull from a registry"
    );
    assert!(
        !runtime.lines().any(|l| l.starts_with("EXPOSE")),
        "the image exposes no port (the worker has none); compose publishes the receiver's"
    );
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
fn compose_interpolation_is_modelled_like_compose() {
    let env = HashMap::from([("SET", "v"), ("EMPTY", "")]);
    let ok = |s: &str| interpolate(s, &env).expect("interpolates");
    assert_eq!(ok("${X:-a b}"), "a b");
    assert_eq!(ok("pre ${X:-1} ${Y} $SET post"), "pre 1  v post");
    assert_eq!(ok("${EMPTY:-d} ${EMPTY-d} ${SET:-d}"), "d  v");
    assert_eq!(ok("${SET:+r} ${EMPTY:+r} ${EMPTY+r} ${X+r}"), "r  r ");
    assert_eq!(ok("$$HOME $${SET}"), "$HOME ${SET}");
    assert_eq!(ok("${SET:?m} ${EMPTY?m}"), "v ");
    assert!(interpolate("${X:?set X}", &env).is_err());
    assert!(interpolate("${EMPTY:?set it}", &env).is_err());
    assert!(interpolate("${X?m}", &env).is_err());
    assert!(interpolate("${X", &env).is_err());
}

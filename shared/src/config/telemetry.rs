//! `[telemetry]`: traces exported with OpenTelemetry (OTLP), configured the standard way. Every
//! key has its standard environment variable, which wins over the file: `endpoint` is
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `service_name` is `OTEL_SERVICE_NAME`, and so on. With no
//! endpoint anywhere, tracing is off: no exporter, no span made for it, no header sent.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigError;

/// Where and how traces are exported.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL (`http://collector:4318` for
    /// OTLP/HTTP, which appends `/v1/traces`; `http://collector:4317` for gRPC).
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the traces URL itself, used as it is.
    pub traces_endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf` (the default) or `grpc`.
    pub protocol: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2` sent with every export (an API
    /// key: a secret, never printed).
    pub headers: SecretString,
    /// `OTEL_SERVICE_NAME`: empty, each process names itself (`hookrelay-receiver`, …).
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,…` added to every span's resource.
    pub resource_attributes: String,
    /// `OTEL_TRACES_SAMPLER`: `parentbased_always_on` (the default), `always_on`,
    /// `always_off`, `traceidratio`, `parentbased_traceidratio`, …
    pub sampler: String,
    /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of a ratio sampler, 0 to 1.
    pub sampler_arg: String,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export at most; more are dropped (and
    /// counted), never waited for.
    pub bsp_max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`: how long a batch waits for more spans.
    #[serde(with = "humantime_serde")]
    pub bsp_schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export at most.
    pub bsp_max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT`: how long an export may take before its spans are dropped.
    #[serde(with = "humantime_serde")]
    pub bsp_export_timeout: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            endpoint: String::new(),
            traces_endpoint: String::new(),
            protocol: String::new(),
            headers: SecretString::default(),
            service_name: String::new(),
            resource_attributes: String::new(),
            sampler: String::new(),
            sampler_arg: String::new(),
            bsp_max_queue_size: 2048,
            bsp_schedule_delay: Duration::from_secs(5),
            bsp_max_export_batch_size: 512,
            bsp_export_timeout: Duration::from_secs(30),
        }
    }
}

/// The protocol traces are exported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// [`TelemetrySettings`] with the environment applied over the file: what the exporter uses.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The traces URL, in full (`…/v1/traces` appended to a base endpoint for OTLP/HTTP).
    pub traces_endpoint: String,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(String, SecretString)>,
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Option<(String, Option<String>)>,
    pub max_queue_size: usize,
    pub schedule_delay: Duration,
    pub max_export_batch_size: usize,
    pub export_timeout: Duration,
}

/// `key=value,key2=value2`, values URL-decoded as the specification says.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match u8::from_str_radix(&String::from_utf8_lossy(hex), 16) {
                Ok(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TelemetrySettings {
    /// The settings as they apply, `env` (the process environment in a service) winning over
    /// the file; `None` when no endpoint is set anywhere: tracing is off.
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Telemetry>, ConfigError> {
        let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        // The specification's switch for all of it.
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let pick = |key: &str, file: &str| env(key).or((!file.is_empty()).then(|| file.to_owned()));
        let protocol = match pick("OTEL_EXPORTER_OTLP_PROTOCOL", &self.protocol).as_deref() {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "telemetry.protocol",
                    format!(
                        "`{other}` is not `http/protobuf` or `grpc` (OTLP/JSON is not supported)"
                    ),
                ));
            }
        };
        let traces = pick("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &self.traces_endpoint);
        let base = pick("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint);
        let traces_endpoint = match (traces, base) {
            (Some(traces), _) => traces,
            (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, Some(base)) => base,
            (None, None) => return Ok(None),
        };
        if reqwest::Url::parse(&traces_endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .is_none()
        {
            return Err(ConfigError::invalid(
                "telemetry.endpoint",
                format!("`{traces_endpoint}` is not an http(s) URL (OTEL_EXPORTER_OTLP_ENDPOINT)"),
            ));
        }
        let headers = env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or(env("OTEL_EXPORTER_OTLP_HEADERS"))
            .unwrap_or_else(|| self.headers.expose_secret().to_owned());
        let number = |key: &str, file: usize| -> Result<usize, ConfigError> {
            match env(key) {
                None => Ok(file),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::invalid(key, format!("`{v}` is not a whole number"))),
            }
        };
        // The BSP durations are milliseconds in the environment, as the specification says.
        let millis = |key: &str, file: Duration| -> Result<Duration, ConfigError> {
            match env(key) {
                None => Ok(file),
                Some(v) => v.trim().parse().map(Duration::from_millis).map_err(|_| {
                    ConfigError::invalid(key, format!("`{v}` is not a number of milliseconds"))
                }),
            }
        };
        let max_queue_size = number("OTEL_BSP_MAX_QUEUE_SIZE", self.bsp_max_queue_size)?;
        let max_export_batch_size = number(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            self.bsp_max_export_batch_size,
        )?;
        if max_queue_size == 0 || max_export_batch_size == 0 {
            return Err(ConfigError::invalid(
                "telemetry.bsp_max_queue_size",
                "the queue and the export batch must hold at least one span",
            ));
        }
        let sampler = pick("OTEL_TRACES_SAMPLER", &self.sampler)
            .map(|s| (s, pick("OTEL_TRACES_SAMPLER_ARG", &self.sampler_arg)));
        let mut resource_attributes = pairs(&self.resource_attributes);
        if let Some(text) = env("OTEL_RESOURCE_ATTRIBUTES") {
            let from_env = pairs(&text);
            resource_attributes.retain(|(k, _)| !from_env.iter().any(|(e, _)| e == k));
            resource_attributes.extend(from_env);
        }
        Ok(Some(Telemetry {
            traces_endpoint,
            protocol,
            headers: pairs(&headers)
                .into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
            service_name: pick("OTEL_SERVICE_NAME", &self.service_name),
            resource_attributes,
            sampler,
            max_queue_size,
            schedule_delay: millis("OTEL_BSP_SCHEDULE_DELAY", self.bsp_schedule_delay)?,
            max_export_batch_size: max_export_batch_size.min(max_queue_size),
            export_timeout: millis("OTEL_BSP_EXPORT_TIMEOUT", self.bsp_export_timeout)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(file: &TelemetrySettings, env: &[(&str, &str)]) -> Option<Telemetry> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        file.resolve(|k| env.get(k).cloned()).expect("valid")
    }

    #[test]
    fn nothing_set_is_off_and_the_environment_wins_over_the_file() {
        assert!(resolve(&TelemetrySettings::default(), &[]).is_none(), "off");
        let file = TelemetrySettings {
            endpoint: "http://file:4318/".into(),
            service_name: "from-file".into(),
            resource_attributes: "deployment.environment=staging,team=iam".into(),
            headers: SecretString::from("x-api-key=file"),
            ..TelemetrySettings::default()
        };
        let t = resolve(&file, &[]).expect("on");
        assert_eq!(t.traces_endpoint, "http://file:4318/v1/traces");
        assert_eq!(t.service_name.as_deref(), Some("from-file"));
        assert_eq!(t.headers[0].1.expose_secret(), "file");
        let t = resolve(
            &file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_SERVICE_NAME", "from-env"),
                ("OTEL_RESOURCE_ATTRIBUTES", "team=okta%20ops"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t"),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ],
        )
        .expect("on");
        assert_eq!(t.traces_endpoint, "http://env:4318/v1/traces");
        assert_eq!(t.service_name.as_deref(), Some("from-env"));
        assert_eq!(
            t.resource_attributes,
            [
                ("deployment.environment".to_owned(), "staging".to_owned()),
                ("team".to_owned(), "okta ops".to_owned())
            ]
        );
        assert_eq!(t.headers[0].1.expose_secret(), "Bearer t");
        assert_eq!(t.schedule_delay, Duration::from_millis(200));
        assert_eq!((t.max_queue_size, t.max_export_batch_size), (64, 64));
        let t = resolve(
            &file,
            &[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:4318/custom",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .expect("on");
        assert_eq!(
            t.traces_endpoint, "http://traces:4318/custom",
            "used as it is"
        );
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        let grpc = resolve(&file, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).expect("on");
        assert_eq!(
            grpc.traces_endpoint, "http://file:4318/",
            "gRPC has no path"
        );
        assert!(
            resolve(&file, &[("OTEL_SDK_DISABLED", "true")]).is_none(),
            "switched off"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let file = TelemetrySettings {
            endpoint: "http://c:4318".into(),
            ..TelemetrySettings::default()
        };
        for (key, value, named) in [
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "telemetry.protocol",
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "collector:4318",
                "telemetry.endpoint",
            ),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "OTEL_BSP_MAX_QUEUE_SIZE"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "5s", "OTEL_BSP_EXPORT_TIMEOUT"),
        ] {
            let env: HashMap<String, String> = [(key.to_owned(), value.to_owned())].into();
            let error = file.resolve(|k| env.get(k).cloned()).expect_err(key);
            assert!(error.to_string().contains(named), "{key}: {error}");
        }
    }
}

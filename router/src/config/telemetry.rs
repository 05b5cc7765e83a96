//! The `[telemetry]` table: where the router exports OpenTelemetry traces (OTLP over
//! HTTP/protobuf), the service name it reports, and the share of traces it keeps. Without the
//! table the router exports none and builds no spans.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// The path OTLP/HTTP receivers take traces on, added to an `otlp_endpoint` given without one.
const TRACES_PATH: &str = "/v1/traces";

/// The `[telemetry]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where spans are POSTed (OTLP over HTTP, protobuf): the collector's
    /// `http://host:4318/v1/traces`. A URL without a path gets `/v1/traces`.
    #[serde(deserialize_with = "otlp_endpoint")]
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute of every span.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of new traces kept, 0.0 to 1.0. A request that carries a `traceparent`
    /// follows its sender's sampling decision instead.
    #[serde(default = "default_sampling", deserialize_with = "sampling")]
    pub sampling: f64,
}

fn default_service_name() -> String {
    "webhook-router".to_owned()
}

fn default_sampling() -> f64 {
    1.0
}

/// `telemetry.otlp_endpoint`: an `http://` or `https://` URL with a host; `/v1/traces` added
/// when it has no path.
fn otlp_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    let uri: http::Uri = text
        .parse()
        .map_err(|e| D::Error::custom(format!("otlp_endpoint = {text:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(D::Error::custom(format!(
            "otlp_endpoint = {text:?} must be an http:// or https:// URL with a host, \
             e.g. \"http://127.0.0.1:4318\""
        )));
    }
    if uri.path() == "/" && !text.ends_with('/') {
        return Ok(format!("{text}{TRACES_PATH}"));
    }
    if uri.path() == "/" {
        return Ok(format!("{}{TRACES_PATH}", text.trim_end_matches('/')));
    }
    Ok(text)
}

/// `telemetry.sampling`: a ratio from 0.0 to 1.0.
fn sampling<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(D::Error::custom(format!(
            "sampling = {value} is out of range: must be between 0.0 and 1.0"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    const ROUTE: &str = "[destinations.ci]\nurl = \"http://127.0.0.1:9000/ci\"\n\
                         [[routes]]\nid = \"r\"\npath = \"/r\"\ndestinations = [\"ci\"]\n";

    /// A valid config with `table` as its `[telemetry]` (from line 6).
    fn parse(table: &str) -> Result<Config, String> {
        let text = format!("{SERVER}\n[telemetry]\n{table}\n{ROUTE}");
        Config::parse(&text, Path::new("test.toml")).map_err(|errors| errors.to_string())
    }

    #[test]
    fn telemetry_is_off_without_the_table_and_takes_defaults_with_it() {
        let off =
            Config::parse(&format!("{SERVER}{ROUTE}"), Path::new("test.toml")).expect("valid");
        assert!(off.telemetry.is_none());
        let on = parse("otlp_endpoint = \"http://127.0.0.1:4318\"\n").expect("valid");
        let telemetry = on.telemetry.expect("[telemetry]");
        assert_eq!(telemetry.otlp_endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(telemetry.service_name, "webhook-router");
        assert!((telemetry.sampling - 1.0).abs() < f64::EPSILON);
        let given = parse(
            "otlp_endpoint = \"https://collector/otlp/traces\"\nservice_name = \"edge\"\nsampling = 0.25\n",
        )
        .expect("valid")
        .telemetry
        .expect("[telemetry]");
        assert_eq!(given.otlp_endpoint, "https://collector/otlp/traces");
        assert_eq!(given.service_name, "edge");
        assert!((given.sampling - 0.25).abs() < f64::EPSILON);
    }

    #[test]
    fn telemetry_errors_name_the_line_and_key() {
        for (table, expected) in [
            (
                "otlp_endpoint = \"http://h:4318\"\nsampling = 1.5\n",
                "test.toml:7:12: telemetry: sampling = 1.5 is out of range",
            ),
            (
                "otlp_endpoint = \"grpc://h:4317\"\n",
                "test.toml:6:17: telemetry: otlp_endpoint = \"grpc://h:4317\" must be an http://",
            ),
            (
                "otlp_endpoint = \"http://h:4318\"\nsample = 0.5\n",
                "unknown field `sample`",
            ),
            ("service_name = \"x\"\n", "missing field `otlp_endpoint`"),
        ] {
            let error = parse(table).expect_err(table);
            assert!(error.contains(expected), "{table}: {error}");
        }
    }
}

//! A minimal webhook-router plugin: tags JSON events with a header and forwards them; drops
//! events whose body is not JSON.
//!
//! Config (all optional):
//!
//! ```json
//! { "header": "x-processed-by", "value": "plugin-template" }
//! ```
//!
//! Copy this crate, rename it in `Cargo.toml`, and change [`Template::handle`].

use serde::Deserialize;
use webhook_router_sdk::serde_json::Value;
use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, log, verdict};

/// The plugin's config: the route's `config = { ... }`, as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the header to add.
    #[serde(default = "default_header")]
    pub header: String,
    /// Its value.
    #[serde(default = "default_value")]
    pub value: String,
}

fn default_header() -> String {
    "x-processed-by".to_owned()
}

fn default_value() -> String {
    "plugin-template".to_owned()
}

/// The configured plugin: built once by `configure`, then used for every event.
#[derive(Debug)]
pub struct Template {
    config: Config,
}

impl Plugin for Template {
    fn configure(config: Value) -> Result<Self, String> {
        let config: Config = webhook_router_sdk::from_config(config)?;
        if config.header.trim().is_empty() {
            return Err("header must not be empty".into());
        }
        log::debug!("adding {}: {}", config.header, config.value);
        Ok(Self { config })
    }

    fn handle(&self, event: Event) -> Result<Verdict, String> {
        // Any JSON will do; deserialize into your own struct to read fields.
        if event.json::<Value>().is_err() {
            return Ok(verdict::drop("the body is not JSON"));
        }
        let event = event.with_header(&self.config.header, self.config.value.clone());
        Ok(verdict::forward(event))
    }
}

// Makes `Template` the component's `configure` and `handle`.
export_plugin!(Template);

#[cfg(test)]
mod tests {
    use super::*;
    use webhook_router_sdk::serde_json::json;

    #[test]
    fn tags_json_events() {
        let plugin = Template::configure(json!({"value": "me"})).unwrap();
        let event = Event::from_body(r#"{"ok": true}"#);
        let Verdict::Forward(event) = plugin.handle(event).unwrap() else {
            panic!("not forwarded");
        };
        assert_eq!(event.header("X-Processed-By"), Some("me"));
    }

    #[test]
    fn drops_other_bodies() {
        let plugin = Template::configure(json!({})).unwrap();
        let verdict = plugin.handle(Event::from_body("a=b")).unwrap();
        assert_eq!(verdict, verdict::drop("the body is not JSON"));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Template::configure(json!({"header": " "})).is_err());
        assert!(Template::configure(json!({"headr": "x"})).is_err());
    }
}

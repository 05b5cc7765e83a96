//! The [`Plugin`] trait and the glue behind [`export_plugin!`](crate::export_plugin).

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Event, Verdict};

/// A filter plugin: built once from its configuration, then asked about each event.
///
/// Export the type with [`export_plugin!`](crate::export_plugin).
pub trait Plugin: Sized + 'static {
    /// Builds the plugin from the route's `config` table, as JSON. A route without `config`
    /// gives an empty object (`{}`), so a config struct whose fields all have defaults works
    /// without one.
    ///
    /// An error fails `webhook-router check` and startup with its message: say what is wrong
    /// and where (for example `json[2]: "regex" is not a valid regex: …`).
    fn configure(config: Value) -> Result<Self, String>;

    /// Decides what happens to one event. An error is a plugin failure: the route's
    /// `on_plugin_error` applies.
    fn handle(&self, event: Event) -> Result<Verdict, String>;
}

/// Deserializes a plugin's `config` into `T`, with an error message fit for
/// [`Plugin::configure`].
///
/// Tip: `#[serde(deny_unknown_fields)]` on `T` turns a misspelled key into an error at
/// `webhook-router check` instead of a silently ignored setting.
pub fn from_config<T: DeserializeOwned>(config: Value) -> Result<T, String> {
    serde_json::from_value(config).map_err(|e| format!("invalid config: {e}"))
}

thread_local! {
    /// The configured plugin, set by `configure`. Components are single-threaded.
    static INSTANCE: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

/// The `configure` export: parses `config_json` (empty or `null` means `{}`), builds `P` and
/// keeps it for [`handle`]. A failed `configure` leaves the plugin unconfigured.
pub fn configure<P: Plugin>(config_json: &str) -> Result<(), String> {
    install_panic_hook();
    INSTANCE.with(|instance| instance.borrow_mut().take());
    let config = match config_json.trim() {
        "" | "null" => Value::Object(serde_json::Map::new()),
        json => serde_json::from_str(json).map_err(|e| format!("config is not valid JSON: {e}"))?,
    };
    let plugin: Rc<dyn Any> = Rc::new(P::configure(config)?);
    INSTANCE.with(|instance| *instance.borrow_mut() = Some(plugin));
    Ok(())
}

/// The `handle` export: passes `event` to the configured `P`.
pub fn handle<P: Plugin>(event: Event) -> Result<Verdict, String> {
    // Cloned out so that the plugin runs without the cell borrowed.
    let plugin = INSTANCE
        .with(|instance| instance.borrow().clone())
        .ok_or_else(|| {
            "the plugin is not configured: `configure` must succeed before `handle`".to_owned()
        })?;
    let plugin = plugin
        .downcast::<P>()
        .map_err(|_| "the configured plugin is of another type".to_owned())?;
    plugin.handle(event)
}

/// Sends panic messages to the router's log: with `panic = "abort"` the instance then traps.
fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::log::error(format!("plugin panicked: {info}"));
            }));
        });
    }
}

/// Exports a [`Plugin`] type as the component's `configure` and `handle`. Use it once per
/// plugin crate, at item level.
///
/// `configure` stores the built plugin for the following `handle` calls (a later `configure`
/// replaces it); `handle` before a successful `configure` is an error.
///
/// On targets other than `wasm32` it exports nothing (the glue is still type-checked), so
/// plugin crates build and run their unit tests natively.
///
/// ```
/// use webhook_router_sdk::{Event, Plugin, Verdict, export_plugin, serde_json::Value, verdict};
///
/// struct PassThrough;
///
/// impl Plugin for PassThrough {
///     fn configure(_config: Value) -> Result<Self, String> {
///         Ok(PassThrough)
///     }
///     fn handle(&self, event: Event) -> Result<Verdict, String> {
///         Ok(verdict::forward(event))
///     }
/// }
///
/// export_plugin!(PassThrough);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            #[allow(dead_code)]
            struct WebhookRouterPluginExports;

            impl $crate::bindings::Guest for WebhookRouterPluginExports {
                fn configure(
                    config_json: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::configure::<$plugin>(&config_json)
                }

                fn handle(
                    event: $crate::Event,
                ) -> ::core::result::Result<$crate::Verdict, ::std::string::String> {
                    $crate::__private::handle::<$plugin>(event)
                }
            }

            #[cfg(target_arch = "wasm32")]
    $crate::bindings::__export!(WebhookRouterPluginExports with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict;

    struct Tagger {
        tag: String,
    }

    impl Plugin for Tagger {
        fn configure(config: Value) -> Result<Self, String> {
            let tag = config
                .get("tag")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            if tag == "bad" {
                return Err("bad tag".into());
            }
            Ok(Tagger { tag })
        }

        fn handle(&self, event: Event) -> Result<Verdict, String> {
            Ok(verdict::forward(event.with_header("x-tag", &self.tag)))
        }
    }

    struct Other;

    impl Plugin for Other {
        fn configure(_: Value) -> Result<Self, String> {
            Ok(Other)
        }
        fn handle(&self, _: Event) -> Result<Verdict, String> {
            Ok(verdict::drop("other"))
        }
    }

    fn tag_of(verdict: Verdict) -> String {
        match verdict {
            Verdict::Forward(event) => event.header("x-tag").unwrap().to_owned(),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    // One test: the instance is per thread and the steps depend on each other.
    #[test]
    fn configure_then_handle() {
        let err = handle::<Tagger>(Event::from_body("")).unwrap_err();
        assert!(err.contains("not configured"), "{err}");

        configure::<Tagger>("").unwrap();
        assert_eq!(
            tag_of(handle::<Tagger>(Event::from_body("")).unwrap()),
            "default"
        );
        configure::<Tagger>("null").unwrap();
        configure::<Tagger>(r#"{"tag": "t1"}"#).unwrap();
        assert_eq!(
            tag_of(handle::<Tagger>(Event::from_body("")).unwrap()),
            "t1"
        );

        let err = handle::<Other>(Event::from_body("")).unwrap_err();
        assert!(err.contains("another type"), "{err}");

        let err = configure::<Tagger>("{").unwrap_err();
        assert!(err.starts_with("config is not valid JSON"), "{err}");
        assert!(handle::<Tagger>(Event::from_body("")).is_err());

        assert_eq!(
            configure::<Tagger>(r#"{"tag": "bad"}"#).unwrap_err(),
            "bad tag"
        );
        assert!(handle::<Tagger>(Event::from_body("")).is_err());
    }

    #[test]
    fn from_config_errors() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            a: u32,
        }
        let err = from_config::<C>(serde_json::json!({"b": 1})).unwrap_err();
        assert!(
            err.starts_with("invalid config: unknown field `b`"),
            "{err}"
        );
    }
}

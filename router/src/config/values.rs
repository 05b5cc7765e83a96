//! Human-friendly config values: durations ("10s"), sizes ("1MiB"), `${ENV}` strings and secrets.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A duration written as a human string such as `"250ms"`, `"10s"` or `"10m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"10s\" or \"5m\""
                ))
            })
    }
}

/// A byte size written as `"1MiB"`, `"512KiB"`, `"64KB"` or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|size| ByteSize(size.as_u64()))
                    .map_err(|e| {
                        E::custom(format!("invalid size {v:?} ({e}); write e.g. \"1MiB\""))
                    })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A string in which `${NAME}` is replaced by the environment variable `NAME` at load time.
///
/// A missing variable is an error that names the variable (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(de::Error::custom)
    }
}

/// A secret value (token, signing key). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret's text, for the code that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let EnvString(value) = EnvString::deserialize(deserializer)?;
        if value.is_empty() {
            return Err(de::Error::custom(
                "secret is empty (is its environment variable set to an empty value?)",
            ));
        }
        Ok(Secret(value))
    }
}

/// Replaces every `${NAME}` in `raw` using `lookup`; `$$` stands for a literal `$`.
pub(crate) fn expand_env(
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$$` for a literal `$`)".to_owned())?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn expands_variables_and_escapes() {
        assert_eq!(expand_env("a${TOKEN}b", lookup).as_deref(), Ok("as3cretb"));
        assert_eq!(expand_env("cost $$5", lookup).as_deref(), Ok("cost $5"));
        assert_eq!(expand_env("plain $x", lookup).as_deref(), Ok("plain $x"));
    }

    #[test]
    fn missing_variable_names_it_without_values() {
        let error = expand_env("${NOPE}", lookup).unwrap_err();
        assert_eq!(error, "environment variable NOPE is not set");
        assert!(expand_env("${OPEN", lookup).is_err());
        assert!(expand_env("${BAD-NAME}", lookup).is_err());
    }

    #[test]
    fn sizes_and_durations_parse_human_strings() {
        #[derive(Deserialize)]
        struct Sample {
            size: ByteSize,
            bytes: ByteSize,
            wait: HumanDuration,
        }
        let sample: Sample =
            toml::from_str("size = \"1MiB\"\nbytes = 2048\nwait = \"250ms\"").unwrap();
        assert_eq!(sample.size, ByteSize(1024 * 1024));
        assert_eq!(sample.bytes, ByteSize(2048));
        assert_eq!(sample.wait, HumanDuration(Duration::from_millis(250)));
        assert!(toml::from_str::<Sample>("size = \"lots\"\nbytes = 1\nwait = \"1s\"").is_err());
    }

    #[test]
    fn secret_debug_hides_value() {
        let secret = Secret("hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}

//! Generic HMAC: for senders without a preset. The signature is read from a configured header,
//! after an optional prefix (e.g. `sha256=`), as hex or base64; it is the HMAC (SHA-1, SHA-256 or
//! SHA-512) of a signed content built from a template of `{body}` and, with a timestamp header,
//! `{timestamp}` (default `{body}`, or `{timestamp}.{body}` with a timestamp header).

use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_base64_with, decode_hex};
use super::{VerifyError, Window, header};

/// How the signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hex.
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Body,
    Timestamp,
}

/// A configured generic HMAC scheme.
#[derive(Debug, Clone)]
pub struct GenericScheme {
    header: String,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: String,
    timestamp_header: Option<String>,
    content: Vec<Part>,
}

impl GenericScheme {
    /// A scheme reading `header`; `signed_content` is a template of `{body}` and `{timestamp}`.
    pub fn new(
        header: &str,
        algorithm: Algorithm,
        encoding: Encoding,
        prefix: &str,
        timestamp_header: Option<&str>,
        signed_content: Option<&str>,
    ) -> Result<GenericScheme, String> {
        let valid_name = |name: &str| http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !valid_name(header) {
            return Err(format!("header {header:?} is not a valid header name"));
        }
        if let Some(name) = timestamp_header.filter(|name| !valid_name(name)) {
            return Err(format!(
                "timestamp_header {name:?} is not a valid header name"
            ));
        }
        let template = signed_content.unwrap_or(if timestamp_header.is_some() {
            "{timestamp}.{body}"
        } else {
            "{body}"
        });
        let content = parse_template(template)?;
        if content.iter().filter(|p| **p == Part::Body).count() != 1 {
            return Err("signed_content must contain {body} exactly once".to_owned());
        }
        let uses_timestamp = content.contains(&Part::Timestamp);
        if uses_timestamp != timestamp_header.is_some() {
            return Err(
                "signed_content uses {timestamp} exactly when timestamp_header is set".to_owned(),
            );
        }
        Ok(GenericScheme {
            header: header.to_ascii_lowercase(),
            algorithm,
            encoding,
            prefix: prefix.to_owned(),
            timestamp_header: timestamp_header.map(str::to_ascii_lowercase),
            content,
        })
    }

    /// Whether the scheme signs a timestamp (`timestamp_header` is set).
    pub fn signs_timestamp(&self) -> bool {
        self.timestamp_header.is_some()
    }

    /// The request's signature, decoded, and its timestamp if the scheme has one.
    fn read<'h>(&self, headers: &'h HeaderMap) -> Result<(MacBytes, Option<&'h str>), VerifyError> {
        let value = header(headers, &self.header)?.trim();
        let timestamp = match &self.timestamp_header {
            Some(name) => Some(header(headers, name)?.trim()),
            None => None,
        };
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or(VerifyError::Malformed)?;
        let signature = match self.encoding {
            Encoding::Hex => decode_hex(encoded)?,
            Encoding::Base64 => decode_base64_with(&STANDARD, encoded)?,
        };
        Ok((signature, timestamp))
    }

    /// What the headers alone decide: a well-formed signature, and the timestamp (if the
    /// scheme has one) within the window.
    pub fn precheck(&self, headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
        match self.read(headers)? {
            (_, Some(timestamp)) => window.check(timestamp),
            (_, None) => Ok(()),
        }
    }

    /// Checks a request.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &[Vec<u8>],
        window: Window,
    ) -> Result<(), VerifyError> {
        let (signature, timestamp) = self.read(headers)?;
        let parts: Vec<&[u8]> = self
            .content
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_bytes(),
                Part::Body => body,
                Part::Timestamp => timestamp.unwrap_or_default().as_bytes(),
            })
            .collect();
        if !any_matches(self.algorithm, keys, &parts, &[signature]) {
            return Err(VerifyError::Mismatch);
        }
        match timestamp {
            Some(timestamp) => window.check(timestamp),
            None => Ok(()),
        }
    }
}

/// Splits a template into text, `{body}` and `{timestamp}`; other `{...}` are errors.
fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("signed_content {template:?} has an unclosed {{"))?;
        parts.push(match &rest[open + 1..open + close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            other => return Err(format!("signed_content: unknown placeholder {{{other}}}")),
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::verify::test_support::{at, headers};

    const SECRET: &[u8] = b"generic-secret";
    const BODY: &[u8] = br#"{"event":"order.created","id":42}"#;

    fn window() -> Window {
        Window {
            now: at(1_700_000_123),
            tolerance: Duration::from_secs(300),
        }
    }

    #[test]
    fn sha512_hex_with_prefix_and_timestamp() {
        // Python: "sha512=" + hmac.new(SECRET, b"1700000123:" + BODY, hashlib.sha512).hexdigest()
        let scheme = GenericScheme::new(
            "X-Signature",
            Algorithm::Sha512,
            Encoding::Hex,
            "sha512=",
            Some("X-Timestamp"),
            Some("{timestamp}:{body}"),
        )
        .unwrap();
        let h = headers(&[
            (
                "x-signature",
                "sha512=44b0e85992c4f58065cecc22b95e0a72d5fbf6295a376cb789c4fcb2061e62cd0ec76e84b23e4c4e3f3666d4f6b8347ac5fe5dbee97517675b1c6341a8f45c91",
            ),
            ("x-timestamp", "1700000123"),
        ]);
        assert_eq!(
            scheme.verify(&h, BODY, &[SECRET.to_vec()], window()),
            Ok(())
        );
        assert_eq!(
            scheme.verify(&h, b"{}", &[SECRET.to_vec()], window()),
            Err(VerifyError::Mismatch)
        );
        let late = Window {
            now: at(1_700_000_123 + 301),
            ..window()
        };
        assert_eq!(
            scheme.verify(&h, BODY, &[SECRET.to_vec()], late),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn sha1_base64_over_the_body() {
        // Python: base64.b64encode(hmac.new(SECRET, BODY, hashlib.sha1).digest())
        let scheme =
            GenericScheme::new("x-sig", Algorithm::Sha1, Encoding::Base64, "", None, None).unwrap();
        let h = headers(&[("x-sig", "TdFyIaRIzbOpTyYGBK5ytEiMB/Q=")]);
        assert_eq!(
            scheme.verify(&h, BODY, &[SECRET.to_vec()], window()),
            Ok(())
        );
        assert_eq!(
            scheme.verify(&headers(&[]), BODY, &[SECRET.to_vec()], window()),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn templates_are_checked_when_configured() {
        let new = |timestamp: Option<&str>, content: Option<&str>| {
            GenericScheme::new(
                "x-sig",
                Algorithm::Sha256,
                Encoding::Hex,
                "",
                timestamp,
                content,
            )
        };
        assert!(new(None, Some("{timestamp}.{body}")).is_err());
        assert!(new(Some("x-ts"), Some("{body}")).is_err());
        assert!(new(None, Some("{body}{body}")).is_err());
        assert!(new(None, Some("{nope}{body}")).is_err());
        assert!(new(None, Some("{body")).is_err());
        assert!(new(Some("x-ts"), None).is_ok());
        assert!(
            GenericScheme::new(
                "bad header",
                Algorithm::Sha256,
                Encoding::Hex,
                "",
                None,
                None
            )
            .is_err()
        );
    }
}

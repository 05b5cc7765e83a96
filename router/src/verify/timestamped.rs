//! Signature headers that carry a timestamp and one or more hex signatures under named keys,
//! e.g. Stripe's `t=<unix>,v1=<hex>,v1=<hex>` and Paddle's `ts=<unix>;h1=<hex>`: the HMAC-SHA256
//! of `<timestamp><join><body>`, checked against every signature (several appear while a sender
//! rotates its secret), then the timestamp against the replay window. Unknown keys are ignored.

use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_hex};
use super::{VerifyError, Window, header};

/// How one sender writes such a header.
#[derive(Debug, Clone, Copy)]
pub struct TimestampedScheme {
    /// The header's name (lower case).
    pub header: &'static str,
    /// What separates the entries (`,` or `;`).
    pub separator: char,
    /// The timestamp entry's key (`t`, `ts`).
    pub timestamp_key: &'static str,
    /// The signature entries' key (`v1`, `h1`).
    pub signature_key: &'static str,
    /// What joins the timestamp and the body in the signed text (`.`, `:`).
    pub join: &'static [u8],
}

/// The parts of such a header.
#[derive(Debug, PartialEq, Eq)]
pub struct TimestampedSignature<'a> {
    /// The signed timestamp, as sent.
    pub timestamp: &'a str,
    /// The decoded signatures.
    pub signatures: Vec<MacBytes>,
}

impl TimestampedScheme {
    /// Parses a header value: a timestamp and at least one signature, at most
    /// [`MAX_SIGNATURE_ENTRIES`](super::MAX_SIGNATURE_ENTRIES) entries in all, or `Malformed`.
    pub fn parse<'a>(&self, value: &'a str) -> Result<TimestampedSignature<'a>, VerifyError> {
        if value.split(self.separator).count() > super::MAX_SIGNATURE_ENTRIES {
            return Err(VerifyError::Malformed);
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in value.split(self.separator) {
            let (key, value) = item.trim().split_once('=').ok_or(VerifyError::Malformed)?;
            if key == self.timestamp_key {
                timestamp = Some(value);
            } else if key == self.signature_key {
                signatures.push(decode_hex(value)?);
            }
        }
        let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
        if signatures.is_empty() {
            return Err(VerifyError::Malformed);
        }
        Ok(TimestampedSignature {
            timestamp,
            signatures,
        })
    }

    /// What the headers alone decide: the header is there and well-formed, and its timestamp
    /// within the window.
    pub fn precheck(&self, headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
        window.check(self.parse(header(headers, self.header)?)?.timestamp)
    }

    /// Checks a request signed this way with one of `keys`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        keys: &[Vec<u8>],
        window: Window,
    ) -> Result<(), VerifyError> {
        let parsed = self.parse(header(headers, self.header)?)?;
        let signed = [parsed.timestamp.as_bytes(), self.join, body];
        if !any_matches(Algorithm::Sha256, keys, &signed, &parsed.signatures) {
            return Err(VerifyError::Mismatch);
        }
        window.check(parsed.timestamp)
    }
}

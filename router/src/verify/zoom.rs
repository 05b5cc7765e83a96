//! Zoom: `x-zm-signature: v0=<hex>`, the HMAC-SHA256 of `v0:<x-zm-request-timestamp>:<body>`
//! keyed with the app's secret token; the signed timestamp is checked against the tolerance.
//!
//! Zoom checks an endpoint with a signed `endpoint.url_validation` event whose
//! `payload.plainToken` must be answered, within seconds, with
//! `{"plainToken": ..., "encryptedToken": hex(HMAC-SHA256(secret, plainToken))}`; with
//! `challenge = true` the router answers it itself, with the secret that signed the request.

use http::HeaderMap;

use super::mac::{self, Algorithm};
use super::{VerifyError, Window, header};

/// The signature and timestamp of a Zoom request.
fn read(headers: &HeaderMap) -> Result<(mac::MacBytes, &str), VerifyError> {
    let signature = header(headers, "x-zm-signature")?;
    let timestamp = header(headers, "x-zm-request-timestamp")?.trim();
    Ok((mac::decode_prefixed_hex(signature, "v0=")?, timestamp))
}

/// The configured secret that signed this request, if any did.
fn signing_key<'k>(headers: &HeaderMap, body: &[u8], keys: &'k [Vec<u8>]) -> Option<&'k [u8]> {
    let (signature, timestamp) = read(headers).ok()?;
    let signed = [b"v0:", timestamp.as_bytes(), b":", body];
    keys.iter()
        .find(|key| mac::equal(&mac::hmac(Algorithm::Sha256, key, &signed), &signature))
        .map(Vec::as_slice)
}

/// What the headers alone decide: a well-formed signature, and a timestamp within the window.
pub fn precheck(headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
    window.check(read(headers)?.1)
}

/// Checks a Zoom event.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    window: Window,
) -> Result<(), VerifyError> {
    let (_, timestamp) = read(headers)?;
    if signing_key(headers, body, keys).is_none() {
        return Err(VerifyError::Mismatch);
    }
    window.check(timestamp)
}

/// The answer to an `endpoint.url_validation` event, if `body` is one; call it on verified
/// requests only.
pub fn challenge(headers: &HeaderMap, body: &[u8], keys: &[Vec<u8>]) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    if json.get("event")? != "endpoint.url_validation" {
        return None;
    }
    let plain = json.pointer("/payload/plainToken")?.as_str()?;
    let key = signing_key(headers, body, keys)?;
    let encrypted = hex::encode(mac::hmac(Algorithm::Sha256, key, &[plain.as_bytes()]));
    Some(serde_json::json!({ "plainToken": plain, "encryptedToken": encrypted }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{headers, window};

    const SECRET: &[u8] = b"zoom_secret_token";
    const BODY: &[u8] = br#"{"event":"meeting.started","event_ts":1700000000000,"payload":{"account_id":"D8cJuqWVQ623CI4Q8yQK0Q"}}"#;
    /// Python: hmac.new(SECRET, b"v0:1700000000:" + BODY, hashlib.sha256).hexdigest()
    const SIGNATURE: &str = "v0=0f4b23dfce0bf1ce61352523c9e9133cd48b3c8435a49e4f001e34c34718d7b9";
    const VALIDATION: &[u8] = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1700000000000,"event":"endpoint.url_validation"}"#;
    /// Python: hmac.new(SECRET, b"v0:1700000000:" + VALIDATION, hashlib.sha256).hexdigest()
    const VALIDATION_SIGNATURE: &str =
        "v0=7afc53d89f55168faba704b1f6035b06c120e54bb82a59246551861cf64abaa5";
    /// Python: hmac.new(SECRET, b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    const ENCRYPTED: &str = "bd48235863f4a6323ccc4963c594908b7c97f88b4a6a95278f4f093690b12726";

    fn request(signature: &str) -> HeaderMap {
        headers(&[
            ("x-zm-signature", signature),
            ("x-zm-request-timestamp", "1700000000"),
        ])
    }

    #[test]
    fn an_independently_computed_vector_verifies_as_of_its_time() {
        let keys = [b"old".to_vec(), SECRET.to_vec()];
        let h = request(SIGNATURE);
        assert_eq!(verify(&h, BODY, &keys, window(1_700_000_100)), Ok(()));
        assert_eq!(
            verify(&h, BODY, &keys, window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&h, &BODY[1..], &keys, window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&request("0f4b23df"), BODY, &keys, window(1_700_000_000)),
            Err(VerifyError::Malformed)
        );
        let no_timestamp = headers(&[("x-zm-signature", SIGNATURE)]);
        assert_eq!(
            verify(&no_timestamp, BODY, &keys, window(1_700_000_000)),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn the_url_validation_is_answered_with_the_secret_that_signed_it() {
        let keys = [b"old".to_vec(), SECRET.to_vec()];
        let h = request(VALIDATION_SIGNATURE);
        assert_eq!(verify(&h, VALIDATION, &keys, window(1_700_000_000)), Ok(()));
        assert_eq!(
            challenge(&h, VALIDATION, &keys),
            Some(serde_json::json!({
                "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
                "encryptedToken": ENCRYPTED,
            }))
        );
        assert_eq!(challenge(&request(SIGNATURE), BODY, &keys), None);
    }
}

//! Discord interactions: `X-Signature-Ed25519: <hex>`, the ed25519 signature of
//! `<X-Signature-Timestamp><body>` made with the application's key; the route holds the
//! application's public key (`public_key`, hex, as the developer portal shows it). The signed
//! timestamp is checked against the tolerance.
//!
//! Discord checks a new endpoint with a `PING` (an interaction of `type` 1) that must be
//! answered `{"type": 1}`; with `challenge = true` the router answers it itself.

use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderMap;

use super::{VerifyError, Window, header};

/// An application's public key, from its hex form.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .map_err(|_| "public_key is not hex".to_owned())?
        .try_into()
        .map_err(|_| "public_key is 32 bytes (64 hex digits)".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "public_key is not a valid ed25519 key".to_owned())
}

/// The interaction's signature and timestamp.
fn read(headers: &HeaderMap) -> Result<(Signature, &str), VerifyError> {
    let signature = header(headers, "x-signature-ed25519")?;
    let timestamp = header(headers, "x-signature-timestamp")?.trim();
    let signature = super::mac::decode_hex(signature.trim())
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(VerifyError::Malformed)?;
    Ok((signature, timestamp))
}

/// What the headers alone decide: a well-formed signature, and a timestamp within the window.
pub fn precheck(headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
    window.check(read(headers)?.1)
}

/// Checks a Discord interaction.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    key: &VerifyingKey,
    window: Window,
) -> Result<(), VerifyError> {
    let (signature, timestamp) = read(headers)?;
    let content = [timestamp.as_bytes(), body].concat();
    key.verify_strict(&content, &signature)
        .map_err(|_| VerifyError::Mismatch)?;
    window.check(timestamp)
}

/// The answer to a `PING` interaction, if `body` is one. A webhook *event* (signed the same way,
/// with an `event` object) whose `type` is 1 is an event, not a ping: it is delivered.
pub fn challenge(body: &[u8]) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    (json.get("type")? == 1 && json.get("event").is_none())
        .then(|| serde_json::json!({ "type": 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{headers, window};

    /// ed25519 with the seed 00 01 .. 1f, computed with Python's `cryptography`:
    /// Ed25519PrivateKey.from_private_bytes(bytes(range(32))).sign(b"1700000000" + BODY).hex()
    const PUBLIC: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
    const BODY: &[u8] =
        br#"{"id":"1209912400921006080","type":2,"application_id":"1209912400921006081"}"#;
    const SIGNATURE: &str = "0d2aa6d0a6cb487b520c99905125c913fdd8033421e167fb8dce76d34a71fafe024075d90db7690b0e55541d4bc6762fac6d1acda3448abbb29ae9e0886b1f09";

    fn request(timestamp: &str) -> HeaderMap {
        headers(&[
            ("x-signature-ed25519", SIGNATURE),
            ("x-signature-timestamp", timestamp),
        ])
    }

    #[test]
    fn an_independently_computed_signature_verifies_as_of_its_time() {
        let key = parse_public_key(PUBLIC).unwrap();
        assert_eq!(
            verify(&request("1700000000"), BODY, &key, window(1_700_000_100)),
            Ok(())
        );
        assert_eq!(
            verify(&request("1700000000"), BODY, &key, window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&request("1700000001"), BODY, &key, window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                &request("1700000000"),
                &BODY[1..],
                &key,
                window(1_700_000_000)
            ),
            Err(VerifyError::Mismatch)
        );
        let other = parse_public_key(&"00".repeat(32)).unwrap();
        assert_eq!(
            verify(&request("1700000000"), BODY, &other, window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        let short = headers(&[
            ("x-signature-ed25519", "abcd"),
            ("x-signature-timestamp", "1700000000"),
        ]);
        assert_eq!(
            verify(&short, BODY, &key, window(1_700_000_000)),
            Err(VerifyError::Malformed)
        );
        let no_timestamp = headers(&[("x-signature-ed25519", SIGNATURE)]);
        assert_eq!(
            verify(&no_timestamp, BODY, &key, window(1_700_000_000)),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn public_keys_and_pings_are_read_as_documented() {
        assert!(parse_public_key("zz").is_err());
        assert!(parse_public_key("abcd").is_err());
        assert_eq!(
            challenge(br#"{"type":1,"id":"x"}"#),
            Some(serde_json::json!({ "type": 1 }))
        );
        assert_eq!(challenge(BODY), None);
        assert_eq!(challenge(b"not json"), None);
        // A webhook event of type 1 carries an `event` object: delivered, never answered.
        assert_eq!(
            challenge(br#"{"version":1,"application_id":"1","type":1,"event":{"type":"APPLICATION_AUTHORIZED"}}"#),
            None
        );
    }
}

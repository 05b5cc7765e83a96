//! Linear: `Linear-Signature: <hex>`, the HMAC-SHA256 of the raw body keyed with the webhook's
//! signing secret. The time of sending is in the signed body, as `webhookTimestamp` (Unix
//! milliseconds), and is checked against the tolerance.

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_hex};
use super::{VerifyError, Window, header};

/// The decoded signature.
fn signature(headers: &HeaderMap) -> Result<MacBytes, VerifyError> {
    decode_hex(header(headers, "linear-signature")?.trim())
}

/// What the headers alone decide: a hex signature is there (the timestamp is in the body).
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    signature(headers).map(drop)
}

/// Checks a Linear webhook: the signature, then the signed `webhookTimestamp`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    window: Window,
) -> Result<(), VerifyError> {
    let signature = signature(headers)?;
    if !any_matches(Algorithm::Sha256, keys, &[body], &[signature]) {
        return Err(VerifyError::Mismatch);
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| VerifyError::Malformed)?;
    let millis = json
        .get("webhookTimestamp")
        .and_then(serde_json::Value::as_u64)
        .ok_or(VerifyError::Malformed)?;
    let sent = UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .ok_or(VerifyError::Stale)?;
    window.check_time(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{headers, window};

    const SECRET: &[u8] = b"lin_wh_test_secret";
    const BODY: &[u8] = br#"{"action":"create","type":"Issue","data":{"id":"2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"},"webhookTimestamp":1700000000123}"#;
    /// Python: hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    const SIGNATURE: &str = "8b3e30102a2504812fd9abb365009d95430c995427a7817c11a4e3116f640332";

    #[test]
    fn an_independently_computed_vector_verifies_as_of_its_body_timestamp() {
        let h = headers(&[("linear-signature", SIGNATURE)]);
        let keys = [b"old".to_vec(), SECRET.to_vec()];
        assert_eq!(verify(&h, BODY, &keys, window(1_700_000_000)), Ok(()));
        assert_eq!(verify(&h, BODY, &keys, window(1_700_000_300)), Ok(()));
        assert_eq!(
            verify(&h, BODY, &keys, window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&h, &BODY[1..], &keys, window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &keys, window(1_700_000_000)),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn a_signed_body_without_its_timestamp_is_malformed() {
        // Python: hmac.new(SECRET, b'{"action":"create"}', hashlib.sha256).hexdigest()
        let body = br#"{"action":"create"}"#;
        let h = headers(&[(
            "linear-signature",
            "74926b1f5585e27bb047ea53199f0911bd883901cd0ccf3665d35cd55fcf627e",
        )]);
        assert_eq!(
            verify(&h, body, &[SECRET.to_vec()], window(1_700_000_000)),
            Err(VerifyError::Malformed)
        );
    }
}

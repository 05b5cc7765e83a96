//! Intercom: `X-Hub-Signature: sha1=<hex>`, the HMAC-SHA1 of the raw body keyed with the app's
//! client secret. Intercom signs no timestamp, so there is no replay window: dedup on the
//! notification `id` in the body drops Intercom's own retries only.

use http::HeaderMap;

use super::mac::{Algorithm, check_prefixed_hex, decode_prefixed_hex};
use super::{VerifyError, header};

/// What the headers alone decide: a well-formed signature is there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    decode_prefixed_hex(header(headers, "x-hub-signature")?, "sha1=").map(drop)
}

/// Checks an Intercom notification.
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &[Vec<u8>]) -> Result<(), VerifyError> {
    let value = header(headers, "x-hub-signature")?;
    check_prefixed_hex(Algorithm::Sha1, value, "sha1=", &[body], keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{assert_only_genuine, headers};

    const SECRET: &[u8] = b"intercom_client_secret";
    const BODY: &[u8] = br#"{"type":"notification_event","id":"notif_ccd8a4d2-7d33-4e27-9d7a-5e8e8b4b2c1f","topic":"conversation.user.created"}"#;
    /// Python: hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    const SIGNATURE: &str = "sha1=58f08b2c9a360c17365c130a9939d859584bc808";

    #[test]
    fn an_independently_computed_vector_verifies_and_forgeries_do_not() {
        let h = headers(&[("x-hub-signature", SIGNATURE)]);
        assert_only_genuine(verify, &h, BODY, SECRET);
        let unprefixed = headers(&[("x-hub-signature", &SIGNATURE[5..])]);
        assert_eq!(
            verify(&unprefixed, BODY, &[SECRET.to_vec()]),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[SECRET.to_vec()]),
            Err(VerifyError::MissingHeader)
        );
    }
}

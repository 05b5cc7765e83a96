//! Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with
//! the webhook's secret. Bitbucket signs no timestamp, so there is no replay window: dedup on
//! `X-Request-UUID` drops Bitbucket's own retries only.

use http::HeaderMap;

use super::mac::{Algorithm, check_prefixed_hex, decode_prefixed_hex};
use super::{VerifyError, header};

/// What the headers alone decide: a well-formed signature is there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    decode_prefixed_hex(header(headers, "x-hub-signature")?, "sha256=").map(drop)
}

/// Checks a Bitbucket Cloud webhook.
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &[Vec<u8>]) -> Result<(), VerifyError> {
    let value = header(headers, "x-hub-signature")?;
    check_prefixed_hex(Algorithm::Sha256, value, "sha256=", &[body], keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{assert_only_genuine, headers};

    const SECRET: &[u8] = b"bitbucket-secret";
    const BODY: &[u8] = br#"{"event":"order.created","id":42}"#;
    /// Python: hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    const SIGNATURE: &str =
        "sha256=44f49dfb4d4620bb4c738dcc87003e7f9eab149bdb57d056d362ee65aa3cbea5";

    #[test]
    fn an_independently_computed_vector_verifies_and_forgeries_do_not() {
        let h = headers(&[("x-hub-signature", SIGNATURE)]);
        assert_only_genuine(verify, &h, BODY, SECRET);
        // A SHA-1 signature is not what Bitbucket sends.
        let sha1 = headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert_eq!(
            verify(&sha1, BODY, &[SECRET.to_vec()]),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[SECRET.to_vec()]),
            Err(VerifyError::MissingHeader)
        );
    }
}

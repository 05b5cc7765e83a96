//! Shopify: `X-Shopify-Hmac-Sha256: <base64>`, the HMAC-SHA256 of the raw body keyed with the
//! app's client secret; Shopify's event webhooks send it as `shopify-hmac-sha256`, which is read
//! when the `X-` header is absent. Shopify signs no timestamp and no webhook id, so there is no
//! replay window: dedup on `X-Shopify-Webhook-Id` drops Shopify's own retries only.

use http::HeaderMap;

use super::mac::{Algorithm, check_base64, decode_base64};
use super::{VerifyError, header};

/// The signature header's value, under either name.
fn value(headers: &HeaderMap) -> Result<&str, VerifyError> {
    header(headers, "x-shopify-hmac-sha256").or_else(|_| header(headers, "shopify-hmac-sha256"))
}

/// What the headers alone decide: a base64 signature is there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    decode_base64(value(headers)?).map(drop)
}

/// Checks a Shopify webhook.
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &[Vec<u8>]) -> Result<(), VerifyError> {
    check_base64(Algorithm::Sha256, value(headers)?, &[body], keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{assert_only_genuine, headers};

    const SECRET: &[u8] = b"shpss_test_3f9a1c";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    /// Python: base64.b64encode(hmac.new(SECRET, BODY, hashlib.sha256).digest())
    const SIGNATURE: &str = "lRMR4YDe3mfJgSeV3qTeNs+7A9yWd2nXq12HKAqRVWo=";

    #[test]
    fn an_independently_computed_vector_verifies_and_forgeries_do_not() {
        let h = headers(&[("x-shopify-hmac-sha256", SIGNATURE)]);
        assert_eq!(verify(&h, BODY, &[SECRET.to_vec()]), Ok(()));
        assert_only_genuine(verify, &h, BODY, SECRET);
        let bad = headers(&[("x-shopify-hmac-sha256", "not base64!")]);
        assert_eq!(
            verify(&bad, BODY, &[SECRET.to_vec()]),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[SECRET.to_vec()]),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn event_webhooks_sign_under_the_unprefixed_header() {
        let h = headers(&[("shopify-hmac-sha256", SIGNATURE)]);
        assert_eq!(verify(&h, BODY, &[SECRET.to_vec()]), Ok(()));
        assert_eq!(
            verify(&h, &BODY[1..], &[SECRET.to_vec()]),
            Err(VerifyError::Mismatch)
        );
    }
}

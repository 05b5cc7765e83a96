//! Square: `X-Square-HmacSha256-Signature: <base64>`, the HMAC-SHA256, keyed with the
//! subscription's signature key, of the notification URL (as configured on the route) followed
//! by the raw body. Square signs no timestamp, so there is no replay window: dedup on the
//! `event_id` in the body drops Square's own retries only.

use http::HeaderMap;

use super::mac::{Algorithm, check_base64, decode_base64};
use super::{VerifyError, header};

/// What the headers alone decide: a base64 signature is there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    decode_base64(header(headers, "x-square-hmacsha256-signature")?).map(drop)
}

/// Checks a Square notification posted to the notification `url`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    url: &str,
) -> Result<(), VerifyError> {
    let value = header(headers, "x-square-hmacsha256-signature")?;
    check_base64(Algorithm::Sha256, value, &[url.as_bytes(), body], keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::headers;

    const KEY: &[u8] = b"sq_sig_key_test";
    const URL: &str = "https://example.com/hooks/square";
    const BODY: &[u8] = br#"{"merchant_id":"6SSW7HV8K2ST5","type":"payment.created","event_id":"13b867cf-db3d-4b1c-90b6-2f32a9d78124"}"#;
    /// Python: base64.b64encode(hmac.new(KEY, URL.encode() + BODY, hashlib.sha256).digest())
    const SIGNATURE: &str = "dielh+n0N5yIVW+Y9LIkoy6KEoBj2rIqd2JmMMfYbWQ=";

    #[test]
    fn an_independently_computed_vector_verifies_and_forgeries_do_not() {
        let h = headers(&[("x-square-hmacsha256-signature", SIGNATURE)]);
        assert_eq!(
            verify(&h, BODY, &[b"old".to_vec(), KEY.to_vec()], URL),
            Ok(())
        );
        assert_eq!(
            verify(&h, BODY, &[KEY.to_vec()], "https://example.com/hooks/other"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, &BODY[1..], &[KEY.to_vec()], URL),
            Err(VerifyError::Mismatch)
        );
        let bad = headers(&[("x-square-hmacsha256-signature", "%%")]);
        assert_eq!(
            verify(&bad, BODY, &[KEY.to_vec()], URL),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[KEY.to_vec()], URL),
            Err(VerifyError::MissingHeader)
        );
    }
}

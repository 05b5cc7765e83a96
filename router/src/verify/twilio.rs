//! Twilio: `X-Twilio-Signature: <base64>`, the HMAC-SHA1, keyed with the account's auth token,
//! of the full public URL Twilio requested (as configured on the route, query string included)
//! followed by every form parameter of the body, sorted, each as name then value. Twilio signs
//! no timestamp, so there is no replay window: dedup on `I-Twilio-Idempotency-Token` drops
//! Twilio's own retries only.
//!
//! Only form-encoded bodies (`application/x-www-form-urlencoded`, what Twilio's voice and
//! messaging webhooks post) are covered: the public URL is fixed in the config, and so cannot
//! carry the per-request `bodySHA256` Twilio adds for JSON bodies.

use http::HeaderMap;

use super::mac::{Algorithm, check_base64, decode_base64};
use super::{VerifyError, header};

/// What Twilio signs: `url`, then each form parameter of `body` as name and value, sorted.
pub fn signed_content(url: &str, body: &[u8]) -> Vec<u8> {
    let mut parameters: Vec<_> = form_urlencoded::parse(body).collect();
    parameters.sort();
    let mut content = Vec::with_capacity(url.len() + body.len());
    content.extend_from_slice(url.as_bytes());
    for (name, value) in parameters {
        content.extend_from_slice(name.as_bytes());
        content.extend_from_slice(value.as_bytes());
    }
    content
}

/// What the headers alone decide: a base64 signature is there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    decode_base64(header(headers, "x-twilio-signature")?).map(drop)
}

/// Checks a Twilio request posted to the public `url`.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    url: &str,
) -> Result<(), VerifyError> {
    let value = header(headers, "x-twilio-signature")?;
    check_base64(Algorithm::Sha1, value, &[&signed_content(url, body)], keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::headers;

    /// Twilio's documented example ("Webhooks security"): auth token, URL, parameters and the
    /// signature Twilio shows; recomputed with Python's hmac as well.
    const TOKEN: &[u8] = b"12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const BODY: &[u8] = b"Digits=1234&To=%2B18005551212&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030";
    const SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn twilios_published_example_verifies_whatever_the_parameter_order() {
        let h = headers(&[("x-twilio-signature", SIGNATURE)]);
        assert_eq!(
            verify(&h, BODY, &[b"old".to_vec(), TOKEN.to_vec()], URL),
            Ok(())
        );
        let sorted = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        assert_eq!(verify(&h, sorted, &[TOKEN.to_vec()], URL), Ok(()));
    }

    #[test]
    fn another_url_value_or_token_is_a_mismatch() {
        let h = headers(&[("x-twilio-signature", SIGNATURE)]);
        assert_eq!(
            verify(
                &h,
                BODY,
                &[TOKEN.to_vec()],
                "https://mycompany.com/myapp.php"
            ),
            Err(VerifyError::Mismatch)
        );
        let changed = b"Digits=1235&To=%2B18005551212&CallSid=CA1234567890ABCDE&From=%2B12349013030&Caller=%2B12349013030";
        assert_eq!(
            verify(&h, changed, &[TOKEN.to_vec()], URL),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, BODY, &[b"54321".to_vec()], URL),
            Err(VerifyError::Mismatch)
        );
        let bad = headers(&[("x-twilio-signature", "not base64!")]);
        assert_eq!(
            verify(&bad, BODY, &[TOKEN.to_vec()], URL),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[TOKEN.to_vec()], URL),
            Err(VerifyError::MissingHeader)
        );
    }
}

//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, the HMAC-SHA256 of
//! `<t>.<body>` keyed with the endpoint secret (`whsec_...`, used as text). Several `v1` entries
//! appear while Stripe rotates a secret; other schemes (`v0`) are ignored.

use http::HeaderMap;

use super::mac::{Algorithm, any_matches};
use super::{VerifyError, Window, header};

/// The parts of a `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub struct StripeSignature<'a> {
    /// The signed timestamp, as sent.
    pub timestamp: &'a str,
    /// The decoded `v1` signatures.
    pub signatures: Vec<Vec<u8>>,
}

/// Parses a `Stripe-Signature` header value.
pub fn parse(value: &str) -> Result<StripeSignature<'_>, VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let (key, value) = item.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        match key {
            "t" => timestamp = Some(value),
            "v1" => signatures.push(hex::decode(value).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    Ok(StripeSignature {
        timestamp,
        signatures,
    })
}

/// Checks a Stripe event.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    window: Window,
) -> Result<(), VerifyError> {
    let parsed = parse(header(headers, "stripe-signature")?)?;
    let signed = [parsed.timestamp.as_bytes(), b".", body];
    if !any_matches(Algorithm::Sha256, keys, &signed, &parsed.signatures) {
        return Err(VerifyError::Mismatch);
    }
    window.check(parsed.timestamp)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::verify::test_support::{at, headers};

    const SECRET: &str = "whsec_stripe_test_7Tz3kQ";
    const BODY: &[u8] =
        br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    /// Python: hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    const V1: &str = "90f838d7e9fbd82e1ba10a5bbbbc7d4f07d3e57709ee980f5a0cb459e2800b42";

    fn window(now: u64) -> Window {
        Window {
            now: at(now),
            tolerance: Duration::from_secs(300),
        }
    }

    fn keys(secrets: &[&str]) -> Vec<Vec<u8>> {
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn an_independently_computed_vector_verifies() {
        let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={V1},v0=abcd"))]);
        assert_eq!(
            verify(&h, BODY, &keys(&[SECRET]), window(1_700_000_100)),
            Ok(())
        );
        let rotated = headers(&[(
            "stripe-signature",
            &format!("t=1700000000,v1={},v1={V1}", "00".repeat(32)),
        )]);
        assert_eq!(
            verify(
                &rotated,
                BODY,
                &keys(&["other", SECRET]),
                window(1_700_000_000)
            ),
            Ok(())
        );
    }

    #[test]
    fn forgeries_and_replays_are_refused() {
        let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={V1}"))]);
        let mut flipped = BODY.to_vec();
        flipped[10] ^= 1;
        assert_eq!(
            verify(&h, &flipped, &keys(&[SECRET]), window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, BODY, &keys(&["whsec_wrong"]), window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, BODY, &keys(&[SECRET]), window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        // A forged timestamp breaks the signature.
        let moved = headers(&[("stripe-signature", &format!("t=1700000500,v1={V1}"))]);
        assert_eq!(
            verify(&moved, BODY, &keys(&[SECRET]), window(1_700_000_500)),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn headers_without_a_timestamp_or_signature_are_malformed() {
        for bad in ["", "t=1", "v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(parse(bad), Err(VerifyError::Malformed), "{bad:?}");
        }
    }
}

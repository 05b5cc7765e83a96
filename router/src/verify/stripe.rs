//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, the HMAC-SHA256 of
//! `<t>.<body>` keyed with the endpoint secret (`whsec_...`, used as text). Several `v1` entries
//! appear while Stripe rotates a secret; other schemes (`v0`) are ignored.

use super::timestamped::TimestampedScheme;

/// How Stripe writes its signature header.
pub const SCHEME: TimestampedScheme = TimestampedScheme {
    header: "stripe-signature",
    separator: ',',
    timestamp_key: "t",
    signature_key: "v1",
    join: b".",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::VerifyError;
    use crate::verify::test_support::{headers, window};

    const SECRET: &str = "whsec_stripe_test_7Tz3kQ";
    const BODY: &[u8] =
        br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    /// Python: hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    const V1: &str = "90f838d7e9fbd82e1ba10a5bbbbc7d4f07d3e57709ee980f5a0cb459e2800b42";

    fn keys(secrets: &[&str]) -> Vec<Vec<u8>> {
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn more_than_eight_entries_are_malformed() {
        let many = format!("t=1,{}", ["v1=00"; 8].join(","));
        assert_eq!(SCHEME.parse(&many), Err(VerifyError::Malformed));
        let eight = format!("t=1,{}", ["v1=00"; 7].join(","));
        assert_eq!(SCHEME.parse(&eight).map(|p| p.signatures.len()), Ok(7));
    }

    #[test]
    fn an_independently_computed_vector_verifies() {
        let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={V1},v0=abcd"))]);
        assert_eq!(
            SCHEME.verify(&h, BODY, &keys(&[SECRET]), window(1_700_000_100)),
            Ok(())
        );
        let rotated = headers(&[(
            "stripe-signature",
            &format!("t=1700000000,v1={},v1={V1}", "00".repeat(32)),
        )]);
        assert_eq!(
            SCHEME.verify(
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
            SCHEME.verify(&h, &flipped, &keys(&[SECRET]), window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            SCHEME.verify(&h, BODY, &keys(&["whsec_wrong"]), window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            SCHEME.verify(&h, BODY, &keys(&[SECRET]), window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        // A forged timestamp breaks the signature.
        let moved = headers(&[("stripe-signature", &format!("t=1700000500,v1={V1}"))]);
        assert_eq!(
            SCHEME.verify(&moved, BODY, &keys(&[SECRET]), window(1_700_000_500)),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn headers_without_a_timestamp_or_signature_are_malformed() {
        for bad in ["", "t=1", "v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(SCHEME.parse(bad), Err(VerifyError::Malformed), "{bad:?}");
        }
    }
}

//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`, the HMAC-SHA256 of
//! `<ts>:<body>` keyed with the notification destination's secret key (used as text). Several
//! `h1` entries appear while Paddle rotates a secret; any one matching passes. The signed `ts`
//! is checked against the tolerance.

use super::timestamped::TimestampedScheme;

/// How Paddle writes its signature header.
pub const SCHEME: TimestampedScheme = TimestampedScheme {
    header: "paddle-signature",
    separator: ';',
    timestamp_key: "ts",
    signature_key: "h1",
    join: b":",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::VerifyError;
    use crate::verify::test_support::{headers, window};

    const SECRET: &[u8] = b"pdl_ntfset_01h8bx_test";
    const BODY: &[u8] =
        br#"{"event_id":"evt_01h8bxcfmq1ahyw9ycn81nsvk7","event_type":"subscription.created"}"#;
    /// Python: hmac.new(SECRET, b"1700000000:" + BODY, hashlib.sha256).hexdigest()
    const H1: &str = "216fd9651f0bd5f880083a25602ba4be3f97298514fffade12ad26485a47482d";

    #[test]
    fn an_independently_computed_vector_verifies_as_of_its_time() {
        let h = headers(&[("paddle-signature", &format!("ts=1700000000;h1={H1}"))]);
        assert_eq!(
            SCHEME.verify(&h, BODY, &[SECRET.to_vec()], window(1_700_000_100)),
            Ok(())
        );
        let rotated = headers(&[(
            "paddle-signature",
            &format!("ts=1700000000;h1={};h1={H1}", "00".repeat(32)),
        )]);
        assert_eq!(
            SCHEME.verify(
                &rotated,
                BODY,
                &[b"old".to_vec(), SECRET.to_vec()],
                window(1_700_000_000)
            ),
            Ok(())
        );
        assert_eq!(
            SCHEME.verify(&h, BODY, &[SECRET.to_vec()], window(1_700_000_301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            SCHEME.verify(&h, &BODY[1..], &[SECRET.to_vec()], window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        let moved = headers(&[("paddle-signature", &format!("ts=1700000001;h1={H1}"))]);
        assert_eq!(
            SCHEME.verify(&moved, BODY, &[SECRET.to_vec()], window(1_700_000_000)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            SCHEME.verify(
                &headers(&[]),
                BODY,
                &[SECRET.to_vec()],
                window(1_700_000_000)
            ),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn headers_without_a_timestamp_or_signature_are_malformed() {
        for bad in ["", "ts=1", "h1=00", "ts=1;h1=zz", "ts=1,h1=00"] {
            assert_eq!(SCHEME.parse(bad), Err(VerifyError::Malformed), "{bad:?}");
        }
    }
}

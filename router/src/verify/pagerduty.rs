//! PagerDuty (v3 webhooks): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, the HMAC-SHA256 of
//! the raw body keyed with the subscription's secret; several entries appear while PagerDuty
//! rotates a secret, and any one matching passes. PagerDuty signs no timestamp, so there is no
//! replay window: dedup on the `event.id` in the body drops PagerDuty's own retries only.

use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_hex};
use super::{VerifyError, header};

/// The decoded `v1` signatures of an `X-PagerDuty-Signature` value; other versions are skipped.
pub fn parse(value: &str) -> Result<Vec<MacBytes>, VerifyError> {
    if value.split(',').count() > super::MAX_SIGNATURE_ENTRIES {
        return Err(VerifyError::Malformed);
    }
    let mut signatures = Vec::new();
    for entry in value.split(',') {
        let (version, encoded) = entry.trim().split_once('=').ok_or(VerifyError::Malformed)?;
        if version == "v1" {
            signatures.push(decode_hex(encoded)?);
        }
    }
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    Ok(signatures)
}

/// What the headers alone decide: well-formed signatures are there.
pub fn precheck(headers: &HeaderMap) -> Result<(), VerifyError> {
    parse(header(headers, "x-pagerduty-signature")?).map(drop)
}

/// Checks a PagerDuty v3 webhook.
pub fn verify(headers: &HeaderMap, body: &[u8], keys: &[Vec<u8>]) -> Result<(), VerifyError> {
    let signatures = parse(header(headers, "x-pagerduty-signature")?)?;
    if any_matches(Algorithm::Sha256, keys, &[body], &signatures) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::headers;

    const BODY: &[u8] =
        br#"{"event":{"id":"01DEN1HFHR6FB3FPU8OE2U1LJR","event_type":"incident.triggered"}}"#;
    /// Python: hmac.new(b"pd_secret_new", BODY, hashlib.sha256).hexdigest()
    const NEW: &str = "98624b34aeecea88fa76efd47ad476df82cb35d9c5b341d9b00529e4735659d4";
    /// Python: hmac.new(b"pd_secret_old", BODY, hashlib.sha256).hexdigest()
    const OLD: &str = "44287e2a98ac250d26b8743f3e7b099adb8edea1f0e10420d718e95c90f1b74b";

    #[test]
    fn more_than_eight_entries_are_malformed() {
        let many = ["v1=00"; 9].join(",");
        assert_eq!(parse(&many), Err(VerifyError::Malformed));
        assert_eq!(parse(&["v1=00"; 8].join(",")).map(|s| s.len()), Ok(8));
    }

    #[test]
    fn any_of_several_entries_may_match_any_secret() {
        let h = headers(&[("x-pagerduty-signature", &format!("v1={OLD},v1={NEW}"))]);
        assert_eq!(verify(&h, BODY, &[b"pd_secret_new".to_vec()]), Ok(()));
        assert_eq!(verify(&h, BODY, &[b"pd_secret_old".to_vec()]), Ok(()));
        let one = headers(&[("x-pagerduty-signature", &format!("v1={NEW}, v2=abcd"))]);
        assert_eq!(
            verify(&one, BODY, &[b"x".to_vec(), b"pd_secret_new".to_vec()]),
            Ok(())
        );
        assert_eq!(
            verify(&h, &BODY[1..], &[b"pd_secret_new".to_vec()]),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, BODY, &[b"pd_secret_other".to_vec()]),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&headers(&[]), BODY, &[b"pd_secret_new".to_vec()]),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn headers_without_a_v1_entry_are_malformed() {
        for bad in ["", "v1", "v2=abcd", "v1=zz", NEW] {
            assert_eq!(parse(bad), Err(VerifyError::Malformed), "{bad:?}");
        }
    }
}

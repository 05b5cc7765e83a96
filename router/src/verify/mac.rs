//! HMAC and constant-time comparison, shared by every scheme.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Hash functions an HMAC signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA1 (legacy senders only).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// HMAC of the concatenation of `parts` under `key`.
pub fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// Whether `expected` equals `given`, in time that does not depend on where they differ.
pub fn equal(expected: &[u8], given: &[u8]) -> bool {
    expected.ct_eq(given).into()
}

/// Whether any key's HMAC of `parts` equals one of `signatures` (already decoded).
pub fn any_matches(
    algorithm: Algorithm,
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    signatures: &[Vec<u8>],
) -> bool {
    keys.iter().any(|key| {
        let expected = hmac(algorithm, key, parts);
        signatures.iter().any(|given| equal(&expected, given))
    })
}

/// Decodes a `<prefix><hex>` signature value (e.g. `sha256=ab12...`), or `Malformed`.
pub fn decode_prefixed_hex(value: &str, prefix: &str) -> Result<Vec<u8>, super::VerifyError> {
    value
        .trim()
        .strip_prefix(prefix)
        .and_then(|hex_signature| hex::decode(hex_signature).ok())
        .ok_or(super::VerifyError::Malformed)
}

/// Checks a `<prefix><hex>` signature value against the HMAC of the concatenated `parts` under
/// any of `keys`: `Malformed` without the prefix or valid hex, `Mismatch` if no key matches.
pub fn check_prefixed_hex(
    algorithm: Algorithm,
    value: &str,
    prefix: &str,
    parts: &[&[u8]],
    keys: &[Vec<u8>],
) -> Result<(), super::VerifyError> {
    let signature = decode_prefixed_hex(value, prefix)?;
    if any_matches(algorithm, keys, parts, &[signature]) {
        Ok(())
    } else {
        Err(super::VerifyError::Mismatch)
    }
}

/// Decodes a base64 signature value, or `Malformed`.
pub fn decode_base64(value: &str) -> Result<Vec<u8>, super::VerifyError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| super::VerifyError::Malformed)
}

/// Checks a base64 signature value against the HMAC of the concatenated `parts` under any of
/// `keys`: `Malformed` if it is not base64, `Mismatch` if no key matches.
pub fn check_base64(
    algorithm: Algorithm,
    value: &str,
    parts: &[&[u8]],
    keys: &[Vec<u8>],
) -> Result<(), super::VerifyError> {
    let signature = decode_base64(value)?;
    if any_matches(algorithm, keys, parts, &[signature]) {
        Ok(())
    } else {
        Err(super::VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_concatenated() {
        let whole = hmac(Algorithm::Sha256, b"k", &[b"a.b"]);
        assert_eq!(hmac(Algorithm::Sha256, b"k", &[b"a", b".", b"b"]), whole);
        assert_eq!(whole.len(), 32);
        assert_eq!(hmac(Algorithm::Sha1, b"k", &[b"x"]).len(), 20);
        assert_eq!(hmac(Algorithm::Sha512, b"k", &[b"x"]).len(), 64);
    }

    #[test]
    fn comparison_needs_equal_length_and_content() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"ab"));
    }
}

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

/// Bytes in the longest MAC any scheme computes (HMAC-SHA512), and so in the longest
/// signature that can match one.
pub const MAX_MAC_BYTES: usize = 64;

/// A computed MAC or a decoded signature, held on the stack: checking a request allocates
/// neither.
#[derive(Clone, Copy)]
pub struct MacBytes {
    bytes: [u8; MAX_MAC_BYTES],
    len: usize,
}

impl MacBytes {
    /// Fills a value of `len` bytes (at most [`MAX_MAC_BYTES`]) with `fill`, or `None` if it
    /// is longer or `fill` fails.
    fn filled(len: usize, fill: impl FnOnce(&mut [u8]) -> bool) -> Option<Self> {
        let mut bytes = [0; MAX_MAC_BYTES];
        let slot = bytes.get_mut(..len)?;
        fill(slot).then_some(Self { bytes, len })
    }
}

impl std::ops::Deref for MacBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl AsRef<[u8]> for MacBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for MacBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacBytes({})", hex::encode(&**self))
    }
}

impl PartialEq for MacBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for MacBytes {}

/// HMAC of the concatenation of `parts` under `key`; each part (the body among them) is fed to
/// the MAC where it lies, none is copied.
pub fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> MacBytes {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> MacBytes {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        let output = mac.finalize().into_bytes();
        MacBytes::filled(output.len(), |slot| {
            slot.copy_from_slice(&output);
            true
        })
        .expect("no MAC is longer than HMAC-SHA512's")
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
pub fn any_matches<S: AsRef<[u8]>>(
    algorithm: Algorithm,
    keys: &[Vec<u8>],
    parts: &[&[u8]],
    signatures: &[S],
) -> bool {
    keys.iter().any(|key| {
        let expected = hmac(algorithm, key, parts);
        signatures
            .iter()
            .any(|given| equal(&expected, given.as_ref()))
    })
}

/// Decodes a hex signature into a stack buffer, or `Malformed` (not hex, or longer than any
/// MAC: it could match none).
pub fn decode_hex(encoded: &str) -> Result<MacBytes, super::VerifyError> {
    let encoded = encoded.as_bytes();
    if !encoded.len().is_multiple_of(2) {
        return Err(super::VerifyError::Malformed);
    }
    MacBytes::filled(encoded.len() / 2, |slot| {
        hex::decode_to_slice(encoded, slot).is_ok()
    })
    .ok_or(super::VerifyError::Malformed)
}

/// Decodes a `<prefix><hex>` signature value (e.g. `sha256=ab12...`), or `Malformed`.
pub fn decode_prefixed_hex(value: &str, prefix: &str) -> Result<MacBytes, super::VerifyError> {
    let encoded = value
        .trim()
        .strip_prefix(prefix)
        .ok_or(super::VerifyError::Malformed)?;
    decode_hex(encoded)
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

/// Decodes a base64 signature value into a stack buffer, or `Malformed` (not base64, or
/// longer than any MAC).
pub fn decode_base64(value: &str) -> Result<MacBytes, super::VerifyError> {
    decode_base64_with(&base64::engine::general_purpose::STANDARD, value.trim())
}

/// Decodes `encoded` with `engine` into a stack buffer, or `Malformed` (not in the engine's
/// alphabet and padding, or longer than any MAC).
pub fn decode_base64_with(
    engine: &impl base64::Engine,
    encoded: &str,
) -> Result<MacBytes, super::VerifyError> {
    let mut bytes = [0; MAX_MAC_BYTES];
    let len = engine
        .decode_slice(encoded, &mut bytes)
        .map_err(|_| super::VerifyError::Malformed)?;
    Ok(MacBytes { bytes, len })
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
    fn signatures_decode_on_the_stack_up_to_the_longest_mac() {
        let longest = "ab".repeat(MAX_MAC_BYTES);
        assert_eq!(decode_hex(&longest).map(|m| m.len()), Ok(MAX_MAC_BYTES));
        assert_eq!(
            &*decode_prefixed_hex(" v0=0aFf ", "v0=").unwrap(),
            [0x0a, 0xff]
        );
        for bad in [format!("{longest}ab"), "abc".to_owned(), "zz".to_owned()] {
            assert_eq!(decode_hex(&bad), Err(super::super::VerifyError::Malformed));
        }
        let sha512 = hmac(Algorithm::Sha512, b"k", &[b"x"]);
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&*sha512);
        assert_eq!(decode_base64(&encoded), Ok(sha512));
        let too_long = base64::engine::general_purpose::STANDARD.encode([1; MAX_MAC_BYTES + 1]);
        assert_eq!(
            decode_base64(&too_long),
            Err(super::super::VerifyError::Malformed)
        );
    }

    #[test]
    fn comparison_needs_equal_length_and_content() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"ab"));
    }
}

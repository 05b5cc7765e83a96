//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body. The legacy
//! `X-Hub-Signature: sha1=<hex>` is accepted only when configured (`allow_sha1 = true`) and the
//! SHA-256 header is absent. GitHub signs no timestamp and no delivery id, so there is no
//! replay window: dedup on `X-GitHub-Delivery` drops GitHub's own redeliveries, not a captured
//! request re-posted with a new id.

use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_prefixed_hex};
use super::{VerifyError, header};

/// The delivery's signature, decoded, and the hash it was made with.
pub fn signature(
    headers: &HeaderMap,
    allow_sha1: bool,
) -> Result<(Algorithm, MacBytes), VerifyError> {
    let (algorithm, value, prefix) = match header(headers, "x-hub-signature-256") {
        Ok(value) => (Algorithm::Sha256, value, "sha256="),
        Err(missing) if !allow_sha1 => return Err(missing),
        Err(_) => (
            Algorithm::Sha1,
            header(headers, "x-hub-signature")?,
            "sha1=",
        ),
    };
    Ok((algorithm, decode_prefixed_hex(value, prefix)?))
}

/// Checks a GitHub delivery.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    allow_sha1: bool,
) -> Result<(), VerifyError> {
    let (algorithm, signature) = signature(headers, allow_sha1)?;
    if any_matches(algorithm, keys, &[body], &[signature]) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::headers;

    const SECRET: &str = "It's a Secret to Everybody";
    /// GitHub's documented example ("Validating webhook deliveries").
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn keys(secrets: &[&str]) -> Vec<Vec<u8>> {
        secrets.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn githubs_published_vector_verifies() {
        let h = headers(&[("x-hub-signature-256", SIGNATURE)]);
        assert_eq!(
            verify(&h, b"Hello, World!", &keys(&[SECRET]), false),
            Ok(())
        );
        // Rotation: the right secret second still passes.
        assert_eq!(
            verify(&h, b"Hello, World!", &keys(&["old", SECRET]), false),
            Ok(())
        );
    }

    #[test]
    fn forgeries_are_refused_with_their_reason() {
        let h = headers(&[("x-hub-signature-256", SIGNATURE)]);
        assert_eq!(
            verify(&h, b"Hello, World?", &keys(&[SECRET]), false),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&h, b"Hello, World!", &keys(&["wrong"]), false),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&headers(&[]), b"x", &keys(&[SECRET]), false),
            Err(VerifyError::MissingHeader)
        );
        for bad in [
            "757107ea",
            "sha256=zz",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d",
        ] {
            let h = headers(&[("x-hub-signature-256", bad)]);
            assert_eq!(
                verify(&h, b"Hello, World!", &keys(&[SECRET]), false),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn legacy_sha1_only_when_allowed() {
        // Python: hmac.new(SECRET, b"Hello, World!", hashlib.sha1).hexdigest()
        let h = headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert_eq!(
            verify(&h, b"Hello, World!", &keys(&[SECRET]), false),
            Err(VerifyError::MissingHeader)
        );
        assert_eq!(verify(&h, b"Hello, World!", &keys(&[SECRET]), true), Ok(()));
    }
}

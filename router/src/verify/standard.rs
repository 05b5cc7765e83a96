//! Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`, `webhook-timestamp`
//! and `webhook-signature`, a space-separated list of `v1,<base64>` (HMAC-SHA256, `whsec_`
//! secrets) and `v1a,<base64>` (ed25519, `whpk_` public keys) signatures of
//! `<id>.<timestamp>.<body>`. Svix sends the same headers as `svix-id`, `svix-timestamp` and
//! `svix-signature`; either name is read. The router verifies them on the way in and, with a
//! destination's `sign`, writes them on the way out ([`StandardSigner`]).
//!
//! The base64 after `whsec_`, `whpk_` and `whsk_` may leave out its trailing `=` padding, as
//! senders' dashboards and the reference libraries allow.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac as _};
use http::HeaderMap;

use super::mac::{self, Algorithm, MacBytes};
use super::{VerifyError, Window, header};

/// A key that can check Standard Webhooks signatures.
#[derive(Clone)]
pub enum StandardKey {
    /// `whsec_<base64>`: an HMAC-SHA256 key, for `v1` signatures.
    Hmac(Vec<u8>),
    /// `whpk_<base64>`: an ed25519 public key, for `v1a` signatures.
    Ed25519(VerifyingKey),
}

impl StandardKey {
    /// Parses a `whsec_` secret or a `whpk_` public key.
    pub fn parse(text: &str) -> Result<StandardKey, String> {
        if let Some(encoded) = text.strip_prefix("whsec_") {
            let key = decode(encoded, "whsec_")?;
            if key.is_empty() {
                return Err("the whsec_ secret is empty".to_owned());
            }
            Ok(StandardKey::Hmac(key))
        } else if let Some(encoded) = text.strip_prefix("whpk_") {
            let bytes: [u8; 32] = decode(encoded, "whpk_")?
                .try_into()
                .map_err(|_| "a whpk_ public key is 32 bytes".to_owned())?;
            VerifyingKey::from_bytes(&bytes)
                .map(StandardKey::Ed25519)
                .map_err(|_| "the whpk_ public key is not a valid ed25519 key".to_owned())
        } else {
            Err("a Standard Webhooks secret starts with whsec_ (HMAC) or whpk_ (ed25519 public key)"
                .to_owned())
        }
    }
}

impl std::fmt::Debug for StandardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.write_str(match self {
            Self::Hmac(_) => "StandardKey::Hmac(***)",
            Self::Ed25519(_) => "StandardKey::Ed25519(..)",
        })
    }
}

/// Standard base64 that takes its trailing padding or leaves it out, for keys.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode(encoded: &str, prefix: &str) -> Result<Vec<u8>, String> {
    KEY_BASE64
        .decode(encoded)
        .map_err(|_| format!("the part after {prefix} is not base64"))
}

/// Header `name` (`id`, `timestamp` or `signature`) under its `webhook-` or `svix-` name.
fn either_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    header(headers, &format!("webhook-{name}"))
        .or_else(|_| header(headers, &format!("svix-{name}")))
}

/// `<id>.<timestamp>.<body>`: what Standard Webhooks signs.
fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The signatures of a `webhook-signature` header, by version; unknown versions are skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Signatures {
    /// Decoded `v1` (HMAC-SHA256) signatures.
    pub v1: Vec<MacBytes>,
    /// Decoded `v1a` (ed25519) signatures.
    pub v1a: Vec<MacBytes>,
}

/// Parses a `webhook-signature` header value.
pub fn parse(value: &str) -> Result<Signatures, VerifyError> {
    if value.split_ascii_whitespace().count() > super::MAX_SIGNATURE_ENTRIES {
        return Err(VerifyError::Malformed);
    }
    let mut signatures = Signatures::default();
    for entry in value.split_ascii_whitespace() {
        let (version, encoded) = entry.split_once(',').ok_or(VerifyError::Malformed)?;
        let list = match version {
            "v1" => &mut signatures.v1,
            "v1a" => &mut signatures.v1a,
            _ => continue,
        };
        list.push(mac::decode_base64_with(&STANDARD, encoded)?);
    }
    if signatures.v1.is_empty() && signatures.v1a.is_empty() {
        return Err(VerifyError::Malformed);
    }
    Ok(signatures)
}

/// The request's id, timestamp and signatures, checked against the window: what the headers
/// alone decide.
fn read(headers: &HeaderMap, window: Window) -> Result<(&str, &str, Signatures), VerifyError> {
    let id = either_header(headers, "id")?;
    let timestamp = either_header(headers, "timestamp")?.trim();
    let signatures = parse(either_header(headers, "signature")?)?;
    window.check(timestamp)?;
    Ok((id, timestamp, signatures))
}

/// What the headers alone decide: the three headers are there, the signatures well-formed and
/// the timestamp within the window.
pub fn precheck(headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
    read(headers, window).map(drop)
}

/// Checks a Standard Webhooks request (`webhook-*` or `svix-*` headers): the timestamp first,
/// then any key against any signature of its kind.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[StandardKey],
    window: Window,
) -> Result<(), VerifyError> {
    let (id, timestamp, signatures) = read(headers, window)?;
    // The MAC is fed the parts where they lie; ed25519 needs the message whole, copied once.
    let parts = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    let content = std::cell::OnceCell::new();
    let matched = keys.iter().any(|key| match key {
        StandardKey::Hmac(secret) => {
            let expected = mac::hmac(Algorithm::Sha256, secret, &parts);
            signatures
                .v1
                .iter()
                .any(|given| mac::equal(&expected, given))
        }
        StandardKey::Ed25519(public) => signatures.v1a.iter().any(|given| {
            ed25519_dalek::Signature::from_slice(given).is_ok_and(|signature| {
                let content = content.get_or_init(|| signed_content(id, timestamp, body));
                public.verify_strict(content, &signature).is_ok()
            })
        }),
    });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A key that can write Standard Webhooks signatures.
#[derive(Clone)]
enum SigningSecret {
    /// `whsec_`: writes `v1,<base64>`. Keyed once: each signature clones the keyed state
    /// instead of hashing the key again.
    Hmac(Box<Hmac<sha2::Sha256>>),
    /// `whsk_`: an ed25519 secret key (32-byte seed), writes `v1a,<base64>`.
    Ed25519(Box<SigningKey>),
}

/// Signs outbound deliveries the Standard Webhooks way, one signature per secret, so a receiver
/// can rotate.
#[derive(Clone)]
pub struct StandardSigner {
    secrets: Vec<SigningSecret>,
}

impl std::fmt::Debug for StandardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardSigner")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl StandardSigner {
    /// A signer with `whsec_` (HMAC) and `whsk_` (ed25519) secrets.
    pub fn new(secrets: &[&str]) -> Result<StandardSigner, String> {
        if secrets.is_empty() {
            return Err("at least one secret is needed".to_owned());
        }
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, text)| parse_signing_secret(text).map_err(|e| format!("secrets[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StandardSigner { secrets })
    }

    /// The `webhook-signature` value for event `id` sent at Unix second `timestamp`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        // HMAC reads `id.timestamp.body` in parts, without a copy of the body; ed25519 signs
        // one contiguous message, built only if a secret needs it.
        let mut content = None;
        // "v1," and 44 base64 characters per HMAC signature, "v1a," and 88 per ed25519 one.
        let mut value = String::with_capacity(self.secrets.len() * 93);
        for secret in &self.secrets {
            if !value.is_empty() {
                value.push(' ');
            }
            match secret {
                SigningSecret::Hmac(keyed) => {
                    let mut mac = Hmac::clone(keyed);
                    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
                        mac.update(part);
                    }
                    value.push_str("v1,");
                    STANDARD.encode_string(mac.finalize().into_bytes(), &mut value);
                }
                SigningSecret::Ed25519(key) => {
                    let content =
                        content.get_or_insert_with(|| signed_content(id, &timestamp, body));
                    value.push_str("v1a,");
                    STANDARD.encode_string(key.sign(content).to_bytes(), &mut value);
                }
            }
        }
        value
    }
}

fn parse_signing_secret(text: &str) -> Result<SigningSecret, String> {
    if let Some(encoded) = text.strip_prefix("whsec_") {
        let key = decode(encoded, "whsec_")?;
        if key.is_empty() {
            return Err("the whsec_ secret is empty".to_owned());
        }
        Ok(SigningSecret::Hmac(Box::new(
            <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(&key)
                .map_err(|_| "HMAC takes keys of any length".to_owned())?,
        )))
    } else if let Some(encoded) = text.strip_prefix("whsk_") {
        let seed: [u8; 32] = decode(encoded, "whsk_")?
            .get(..32)
            .and_then(|seed| seed.try_into().ok())
            .ok_or_else(|| "a whsk_ secret key holds a 32-byte ed25519 seed".to_owned())?;
        Ok(SigningSecret::Ed25519(Box::new(SigningKey::from_bytes(
            &seed,
        ))))
    } else {
        Err("a signing secret starts with whsec_ (HMAC) or whsk_ (ed25519 secret key)".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::verify::test_support::{at, headers};

    /// The Standard Webhooks reference libraries' vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const V1: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    /// ed25519 with the seed 00 01 .. 1f, computed with Python's `cryptography`:
    /// Ed25519PrivateKey.from_private_bytes(bytes(range(32))).sign(b"<ID>.<TIMESTAMP>." + BODY)
    const PUBLIC: &str = "whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    const V1A: &str = "v1a,yoUrgEkc12aGqm0n4Sydmdz55xJfTz4AsAgieHFjmkR7LJtqVCZOQYzvvHjI5kAey+r4iaBGxTFRrl2iBQxtDQ==";

    fn request(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", ID),
            ("webhook-timestamp", &TIMESTAMP.to_string()),
            ("webhook-signature", signature),
        ])
    }

    fn keys(texts: &[&str]) -> Vec<StandardKey> {
        texts
            .iter()
            .map(|t| StandardKey::parse(t).unwrap())
            .collect()
    }

    fn as_of(seconds: u64) -> Window {
        Window {
            now: at(seconds),
            tolerance: Duration::from_secs(300),
        }
    }

    #[test]
    fn the_reference_vector_verifies_as_of_its_timestamp() {
        assert_eq!(
            verify(&request(V1), BODY, &keys(&[SECRET]), as_of(TIMESTAMP)),
            Ok(())
        );
        assert_eq!(
            verify(&request(V1), BODY, &keys(&[SECRET]), as_of(TIMESTAMP + 301)),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn more_than_eight_entries_are_malformed_before_any_check() {
        let many = [V1A; 1000].join(" ");
        assert_eq!(
            verify(&request(&many), BODY, &keys(&[PUBLIC]), as_of(TIMESTAMP)),
            Err(VerifyError::Malformed)
        );
        // Eight entries, the genuine one last, still verify.
        let eight = format!("{} {V1}", ["v1,AAAA"; 7].join(" "));
        assert_eq!(
            verify(&request(&eight), BODY, &keys(&[SECRET]), as_of(TIMESTAMP)),
            Ok(())
        );
    }

    #[test]
    fn an_ed25519_v1a_signature_verifies_beside_v1() {
        let both = format!("{V1} {V1A}");
        assert_eq!(
            verify(&request(V1A), BODY, &keys(&[PUBLIC]), as_of(TIMESTAMP)),
            Ok(())
        );
        assert_eq!(
            verify(
                &request(&both),
                BODY,
                &keys(&["whsec_b3RoZXI=", PUBLIC]),
                as_of(TIMESTAMP)
            ),
            Ok(())
        );
        let mut flipped = BODY.to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            verify(&request(V1A), &flipped, &keys(&[PUBLIC]), as_of(TIMESTAMP)),
            Err(VerifyError::Mismatch)
        );
        // A v1a signature is not checked against an HMAC secret, nor v1 against a public key.
        assert_eq!(
            verify(&request(V1A), BODY, &keys(&[SECRET]), as_of(TIMESTAMP)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&request(V1), BODY, &keys(&[PUBLIC]), as_of(TIMESTAMP)),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn the_signer_reproduces_both_vectors() {
        let seed = STANDARD.encode((0u8..32).collect::<Vec<u8>>());
        let signer = StandardSigner::new(&[SECRET, &format!("whsk_{seed}")]).unwrap();
        assert_eq!(signer.sign(ID, TIMESTAMP, BODY), format!("{V1} {V1A}"));
    }

    #[test]
    fn svix_header_names_carry_the_same_signature() {
        let svix = headers(&[
            ("svix-id", ID),
            ("svix-timestamp", &TIMESTAMP.to_string()),
            ("svix-signature", V1),
        ]);
        assert_eq!(
            verify(&svix, BODY, &keys(&[SECRET]), as_of(TIMESTAMP)),
            Ok(())
        );
        assert_eq!(
            verify(&svix, b"{}", &keys(&[SECRET]), as_of(TIMESTAMP)),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&svix, BODY, &keys(&[SECRET]), as_of(TIMESTAMP + 301)),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn whsec_secrets_without_base64_padding_are_accepted() {
        // "old-secret" is b2xkLXNlY3JldA== in base64; senders' dashboards may show it unpadded.
        let unpadded = keys(&["whsec_b2xkLXNlY3JldA"]);
        let padded = keys(&["whsec_b2xkLXNlY3JldA=="]);
        let (StandardKey::Hmac(a), StandardKey::Hmac(b)) = (&unpadded[0], &padded[0]) else {
            panic!("HMAC keys");
        };
        assert_eq!(a, b"old-secret");
        assert_eq!(a, b);
        assert!(StandardSigner::new(&["whsec_b2xkLXNlY3JldA"]).is_ok());
        // Padding may be left out, not made up: what is not base64 still is not.
        assert!(StandardKey::parse("whsec_b2xk LXNl").is_err());
    }

    #[test]
    fn bad_keys_and_headers_are_refused() {
        assert!(StandardKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(StandardKey::parse("whsec_!!!").is_err());
        assert!(StandardKey::parse("whpk_AAAA").is_err());
        assert!(StandardSigner::new(&["whsk_AAAA"]).is_err());
        for bad in ["", "v1", "v1,***", "v2,AAAA"] {
            assert_eq!(parse(bad), Err(VerifyError::Malformed), "{bad:?}");
        }
        let missing = headers(&[("webhook-id", ID)]);
        assert_eq!(
            verify(&missing, BODY, &keys(&[SECRET]), as_of(TIMESTAMP)),
            Err(VerifyError::MissingHeader)
        );
    }
}

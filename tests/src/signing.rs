//! Test-side signers: each sender's scheme written from its public documentation, apart from
//! the router's own verifier (`router/src/verify/`), so a shared mistake cannot pass unseen.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The HMAC-SHA256 of `message` keyed with `key`, in hex.
pub fn hex_hmac_sha256(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(key, message))
}

/// The public URL the tests configure for `preset`s that sign it (twilio, square): where the
/// sender believes it posts, in front of the router.
pub fn public_url(preset: &str) -> String {
    format!("https://hooks.example.com/hooks/{preset}?source=test")
}

/// The ed25519 key of a 32-byte `seed` written in hex (the Discord tests' "secret").
fn signing_key(seed: &str) -> SigningKey {
    let seed: [u8; 32] = hex::decode(seed)
        .expect("a hex seed")
        .try_into()
        .expect("32 bytes");
    SigningKey::from_bytes(&seed)
}

/// The public key, in hex, of the ed25519 key with `seed` (hex).
pub fn public_key_hex(seed: &str) -> String {
    hex::encode(signing_key(seed).verifying_key().to_bytes())
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Headers a sender would add to `body`, signed with `secret` at Unix second `timestamp`.
/// `preset` names the router preset, or a sender variant of one (`svix`, `shopify-events`).
pub fn sign(preset: &str, secret: &str, body: &[u8], timestamp: u64) -> Vec<(String, String)> {
    let t = timestamp.to_string();
    let pair = |name: &str, value: String| (name.to_owned(), value);
    match preset {
        "github" => vec![pair(
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(secret.as_bytes(), body))
            ),
        )],
        "stripe" => {
            let signed = [t.as_bytes(), b".", body].concat();
            vec![pair(
                "stripe-signature",
                format!(
                    "t={t},v1={}",
                    hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                ),
            )]
        }
        "shopify" => vec![pair(
            "x-shopify-hmac-sha256",
            STANDARD.encode(hmac_sha256(secret.as_bytes(), body)),
        )],
        // Shopify's event webhooks: the same signature without the `X-` prefix.
        "shopify-events" => vec![pair(
            "shopify-hmac-sha256",
            STANDARD.encode(hmac_sha256(secret.as_bytes(), body)),
        )],
        "slack" => {
            let signed = [b"v0:", t.as_bytes(), b":", body].concat();
            vec![
                pair(
                    "x-slack-signature",
                    format!(
                        "v0={}",
                        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                    ),
                ),
                pair("x-slack-request-timestamp", t),
            ]
        }
        // Standard Webhooks under its own header names, and as Svix sends it (`svix-*`).
        "standard-webhooks" | "svix" => {
            let key = STANDARD
                .decode(secret.trim_start_matches("whsec_"))
                .expect("a whsec_ secret");
            let id = format!("msg_{timestamp}");
            let signed = [id.as_bytes(), b".", t.as_bytes(), b".", body].concat();
            let prefix = if preset == "svix" { "svix" } else { "webhook" };
            vec![
                pair(
                    &format!("{prefix}-signature"),
                    format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed))),
                ),
                pair(&format!("{prefix}-id"), id),
                pair(&format!("{prefix}-timestamp"), t),
            ]
        }
        // The generic preset as the tests configure it: `X-Signature: sha256=<hex>` over
        // `<X-Timestamp>.<body>`.
        "hmac" => {
            let signed = [t.as_bytes(), b".", body].concat();
            vec![
                pair(
                    "x-signature",
                    format!(
                        "sha256={}",
                        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                    ),
                ),
                pair("x-timestamp", t),
            ]
        }
        "gitlab" => vec![pair("x-gitlab-token", secret.to_owned())],
        "bitbucket" => vec![pair(
            "x-hub-signature",
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(secret.as_bytes(), body))
            ),
        )],
        "intercom" => vec![pair(
            "x-hub-signature",
            format!("sha1={}", hex::encode(hmac_sha1(secret.as_bytes(), body))),
        )],
        // The public URL, then the form parameters sorted by name (then value), each as
        // name and value.
        "twilio" => {
            let form = reqwest::Url::parse(&format!(
                "http://form.invalid/?{}",
                String::from_utf8_lossy(body)
            ))
            .expect("a form body");
            let mut parameters: Vec<(String, String)> = form.query_pairs().into_owned().collect();
            parameters.sort();
            let mut signed = public_url(preset);
            for (name, value) in parameters {
                signed.push_str(&name);
                signed.push_str(&value);
            }
            vec![pair(
                "x-twilio-signature",
                STANDARD.encode(hmac_sha1(secret.as_bytes(), signed.as_bytes())),
            )]
        }
        "discord" => {
            let signed = [t.as_bytes(), body].concat();
            vec![
                pair(
                    "x-signature-ed25519",
                    hex::encode(signing_key(secret).sign(&signed).to_bytes()),
                ),
                pair("x-signature-timestamp", t),
            ]
        }
        // The timestamp is the body's `webhookTimestamp`: the test writes it there.
        "linear" => vec![pair(
            "linear-signature",
            hex::encode(hmac_sha256(secret.as_bytes(), body)),
        )],
        "paddle" => {
            let signed = [t.as_bytes(), b":", body].concat();
            vec![pair(
                "paddle-signature",
                format!(
                    "ts={t};h1={}",
                    hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                ),
            )]
        }
        "zoom" => {
            let signed = [b"v0:", t.as_bytes(), b":", body].concat();
            vec![
                pair(
                    "x-zm-signature",
                    format!(
                        "v0={}",
                        hex::encode(hmac_sha256(secret.as_bytes(), &signed))
                    ),
                ),
                pair("x-zm-request-timestamp", t),
            ]
        }
        "square" => {
            let signed = [public_url(preset).as_bytes(), body].concat();
            vec![pair(
                "x-square-hmacsha256-signature",
                STANDARD.encode(hmac_sha256(secret.as_bytes(), &signed)),
            )]
        }
        // Two entries, as while PagerDuty rotates: one from a retired secret, then the real one.
        "pagerduty" => vec![pair(
            "x-pagerduty-signature",
            format!(
                "v1={},v1={}",
                hex::encode(hmac_sha256(b"retired-secret", body)),
                hex::encode(hmac_sha256(secret.as_bytes(), body))
            ),
        )],
        other => panic!("no test signer for {other}"),
    }
}

/// Checks a Standard Webhooks delivery as a receiver would: whether a `v1` entry of
/// `webhook-signature` is the HMAC-SHA256, keyed with `secret` (`whsec_<base64>`), of
/// `<webhook-id>.<webhook-timestamp>.<body>`.
pub fn standard_signature_valid(headers: &http::HeaderMap, body: &[u8], secret: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signatures)) = (
        text("webhook-id"),
        text("webhook-timestamp"),
        text("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    signatures.split(' ').any(|entry| entry == expected)
}

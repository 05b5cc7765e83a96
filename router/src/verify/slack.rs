//! Slack: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of
//! `v0:<X-Slack-Request-Timestamp>:<body>` keyed with the app's signing secret.
//!
//! Slack checks an Events API endpoint with a signed `url_verification` event whose
//! `challenge` must be echoed back; with `challenge = true` the router answers it itself.

use http::HeaderMap;

use super::mac::{Algorithm, MacBytes, any_matches, decode_prefixed_hex};
use super::{VerifyError, Window, header};

/// The request's signature, decoded, and its timestamp.
fn read(headers: &HeaderMap) -> Result<(MacBytes, &str), VerifyError> {
    let signature = header(headers, "x-slack-signature")?;
    let timestamp = header(headers, "x-slack-request-timestamp")?.trim();
    Ok((decode_prefixed_hex(signature, "v0=")?, timestamp))
}

/// What the headers alone decide: a well-formed signature, and a timestamp within the window.
pub fn precheck(headers: &HeaderMap, window: Window) -> Result<(), VerifyError> {
    window.check(read(headers)?.1)
}

/// Checks a Slack request.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    window: Window,
) -> Result<(), VerifyError> {
    let (signature, timestamp) = read(headers)?;
    let signed = [b"v0:", timestamp.as_bytes(), b":", body];
    if !any_matches(Algorithm::Sha256, keys, &signed, &[signature]) {
        return Err(VerifyError::Mismatch);
    }
    window.check(timestamp)
}

/// The answer to a `url_verification` event, if `body` is one: `{"challenge": ...}`.
pub fn challenge(body: &[u8]) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    if json.get("type")? != "url_verification" {
        return None;
    }
    let challenge = json.get("challenge")?.as_str()?;
    Some(serde_json::json!({ "challenge": challenge }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::{headers, window};

    /// Slack's documented example ("Verifying requests from Slack"), recomputed with Python's
    /// hmac: hmac.new(SECRET, b"v0:1531420618:" + BODY, hashlib.sha256).hexdigest().
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_example_verifies_as_of_its_time() {
        let h = headers(&[
            ("x-slack-signature", SIGNATURE),
            ("x-slack-request-timestamp", "1531420618"),
        ]);
        assert_eq!(
            verify(&h, BODY, &[SECRET.to_vec()], window(1_531_420_618)),
            Ok(())
        );
        assert_eq!(
            verify(&h, BODY, &[SECRET.to_vec()], window(1_531_420_618 + 301)),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(
                &h,
                &BODY[..BODY.len() - 1],
                &[SECRET.to_vec()],
                window(1_531_420_618)
            ),
            Err(VerifyError::Mismatch)
        );
        let no_timestamp = headers(&[("x-slack-signature", SIGNATURE)]);
        assert_eq!(
            verify(
                &no_timestamp,
                BODY,
                &[SECRET.to_vec()],
                window(1_531_420_618)
            ),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn the_url_verification_challenge_is_signed_and_echoed() {
        // Slack's documented url_verification event, signed with the example's secret.
        // Python: hmac.new(SECRET, b"v0:1531420618:" + body, hashlib.sha256).hexdigest()
        let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let h = headers(&[
            (
                "x-slack-signature",
                "v0=f9bd80929259f3f6d5fe3a3186c453c89cd1ad4862815a15837584f31c993652",
            ),
            ("x-slack-request-timestamp", "1531420618"),
        ]);
        assert_eq!(
            verify(&h, body, &[SECRET.to_vec()], window(1_531_420_618)),
            Ok(())
        );
        assert_eq!(
            challenge(body),
            Some(serde_json::json!({
                "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
            }))
        );
        assert_eq!(challenge(BODY), None);
        assert_eq!(
            challenge(br#"{"type":"event_callback","challenge":"x"}"#),
            None
        );
    }
}

//! GitLab: `X-Gitlab-Token: <token>`, the webhook's secret token sent as it is. GitLab signs
//! nothing: the token proves the sender knows the secret, not that the body is unchanged, and
//! there is no timestamp, so rely on TLS as well. The token is compared in constant time, after
//! hashing both sides, so that not even its length shows.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::mac::equal;
use super::{VerifyError, header};

/// Checks a GitLab webhook's token against every configured secret.
pub fn verify(headers: &HeaderMap, keys: &[Vec<u8>]) -> Result<(), VerifyError> {
    let token = Sha256::digest(header(headers, "x-gitlab-token")?.as_bytes());
    if keys.iter().any(|key| equal(&Sha256::digest(key), &token)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::headers;

    /// The token as GitLab's "Secret token" field holds it and sends it.
    const TOKEN: &str = "glwht-7Xk2pQ9sVbN4mR8cT1zY";

    #[test]
    fn the_configured_token_passes_and_any_other_does_not() {
        let keys = [b"old".to_vec(), TOKEN.as_bytes().to_vec()];
        let h = headers(&[("x-gitlab-token", TOKEN)]);
        assert_eq!(verify(&h, &keys), Ok(()));
        for wrong in [
            "glwht-7Xk2pQ9sVbN4mR8cT1zZ",
            "glwht-7Xk2pQ9sVbN4mR8cT1z",
            "",
        ] {
            let h = headers(&[("x-gitlab-token", wrong)]);
            assert_eq!(verify(&h, &keys), Err(VerifyError::Mismatch), "{wrong:?}");
        }
        assert_eq!(
            verify(&headers(&[]), &keys),
            Err(VerifyError::MissingHeader)
        );
    }
}

//! The admin console: `GET /console` (the page) and its script and style sheet under
//! `/console/`, embedded in the binary from `console/` beside this file, so the console is
//! versioned with the router and needs nothing at build time or run time.
//!
//! The page itself is served without the admin token (it holds no data); every call it makes
//! to the admin API sends the token as an `Authorization` header from the tab's session
//! storage. Each asset is served with a strict `Content-Security-Policy` (same-origin script,
//! style and requests only; no inline script or style, no other origin, no framing),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::reply::{self, ResponseBody};

/// The policy every console asset is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's files: request path, content type, contents.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/console",
        "text/html; charset=utf-8",
        include_bytes!("console/index.html"),
    ),
    (
        "/console/console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/console.js"),
    ),
    (
        "/console/console.css",
        "text/css; charset=utf-8",
        include_bytes!("console/console.css"),
    ),
];

/// Whether `path` is the console's (`/console` or under `/console/`).
pub(super) fn owns(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// Serves one of the console's files (`/console/` is the page too).
pub(super) fn handle(method: &Method, path: &str) -> Response<ResponseBody> {
    if method != Method::GET {
        return reply::error(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let path = if path == "/console/" {
        "/console"
    } else {
        path
    };
    let Some((_, content_type, body)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return reply::error(StatusCode::NOT_FOUND, "not found");
    };
    let mut answer = reply::with_type(StatusCode::OK, content_type, Bytes::from_static(body));
    let headers = answer.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_carries_the_strict_headers_and_others_are_not_found() {
        for path in [
            "/console",
            "/console/",
            "/console/console.js",
            "/console/console.css",
        ] {
            let answer = handle(&Method::GET, path);
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            let headers = answer.headers();
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        }
        assert_eq!(
            handle(&Method::GET, "/console/../metrics").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&Method::POST, "/console").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn the_assets_have_no_inline_script_or_style_no_other_origin_and_no_html_sink() {
        for (path, _, body) in ASSETS {
            let text = std::str::from_utf8(body).expect("utf-8");
            for banned in [
                "<script>",
                "<style",
                "style=",
                "onclick=",
                "onload=",
                "onsubmit=",
                "http://",
                "https://",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "localStorage",
            ] {
                assert!(!text.contains(banned), "{path} contains {banned:?}");
            }
        }
    }
}

//! Cross-site request forgery protection: a per-session secret, masked
//! per-response tokens, and the `Origin` / `Sec-Fetch-Site` check.
//!
//! Each session holds a 128-bit secret (its record's
//! [`CsrfSecret`], replaced at every login). A token handed to a page is
//! `base64url(mask ‖ mask ⊕ secret)` with a fresh random mask every time,
//! so no two responses carry the same bytes and a compression side channel
//! (BREACH) learns nothing about the secret.
//!
//! Unsafe requests (every method but GET, HEAD, OPTIONS and TRACE) must
//! carry a token — in the `X-CSRF-Token` header or the `csrf_token` form
//! field, never in the query string — that unmasks to their session's
//! secret, and, as defence in depth, must not come from another site
//! according to `Sec-Fetch-Site`, or failing that `Origin`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use tessera_core::CsrfSecret;

use crate::Headers;

/// The default request header carrying the token.
pub const DEFAULT_CSRF_HEADER: &str = "x-csrf-token";
/// The default form field carrying the token.
pub const DEFAULT_CSRF_FIELD: &str = "csrf_token";

const SECRET_LEN: usize = 16;

/// Why an unsafe request was refused (always `403 Forbidden`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrfError {
    /// The browser says the request was started by another site.
    #[error("cross-site request refused: {evidence}")]
    CrossSite {
        /// What gave it away (`Sec-Fetch-Site: cross-site`, or the `Origin`).
        evidence: String,
    },
    /// No token in the header or the form field.
    #[error(
        "the request carries no CSRF token (send it in the {header} header or the {field} form field)"
    )]
    MissingToken {
        /// The header name expected.
        header: String,
        /// The form field expected.
        field: String,
    },
    /// The request has no session, so no token can be valid.
    #[error("the request has no session to check its CSRF token against; load the form again")]
    NoSession,
    /// The token does not belong to this session (stale page, forged, or
    /// from before login).
    #[error("the CSRF token does not match this session; load the form again")]
    InvalidToken,
}

/// Whether requests with this method change state and need a token.
pub fn is_unsafe(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// A masked token for `secret`: different on every call.
pub fn mask(secret: &CsrfSecret) -> Result<String, getrandom::Error> {
    let secret = secret.expose();
    let mut pad = [0u8; SECRET_LEN];
    getrandom::fill(&mut pad)?;
    let mut token = [0u8; 2 * SECRET_LEN];
    token[..SECRET_LEN].copy_from_slice(&pad);
    for (i, byte) in secret.iter().enumerate() {
        token[SECRET_LEN + i] = byte ^ pad[i];
    }
    Ok(URL_SAFE_NO_PAD.encode(token))
}

/// Whether a presented masked token unmasks to `secret` (constant time).
pub fn verify(secret: &CsrfSecret, presented: &str) -> bool {
    if presented.len() > 128 {
        return false;
    }
    let Ok(token) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
        return false;
    };
    if token.len() != 2 * SECRET_LEN {
        return false;
    }
    let mut unmasked = [0u8; SECRET_LEN];
    for i in 0..SECRET_LEN {
        unmasked[i] = token[i] ^ token[SECRET_LEN + i];
    }
    unmasked.ct_eq(secret.expose()).into()
}

/// The `Sec-Fetch-Site` / `Origin` check. `trusted` are extra origins
/// (`scheme://host[:port]`) allowed to post, e.g. a sibling front end.
pub fn check_origin(headers: &dyn Headers, trusted: &[String]) -> Result<(), CsrfError> {
    let origin = headers.get("origin").map(str::trim);
    let trusted_origin = || origin.is_some_and(|o| trusted.iter().any(|t| t == o));
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ if trusted_origin() => Ok(()),
            other => Err(CsrfError::CrossSite {
                evidence: format!("Sec-Fetch-Site: {other}"),
            }),
        };
    }
    let Some(origin) = origin else {
        // Neither header: an older browser or a non-browser client; the
        // token alone decides.
        return Ok(());
    };
    let host = headers.get("host");
    let origin_authority = origin.split_once("://").map(|(_, authority)| authority);
    if origin_authority.is_some() && origin_authority == host || trusted_origin() {
        return Ok(());
    }
    Err(CsrfError::CrossSite {
        evidence: format!("Origin: {origin}"),
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn masked_tokens_differ_and_verify() {
        let secret = CsrfSecret::from_bytes([7; 16]);
        let a = mask(&secret).expect("entropy");
        let b = mask(&secret).expect("entropy");
        assert_ne!(a, b);
        assert!(verify(&secret, &a) && verify(&secret, &b));
        let other = CsrfSecret::from_bytes([8; 16]);
        assert!(!verify(&other, &a));
        assert!(!verify(&secret, ""));
        assert!(!verify(&secret, "garbage!"));
        assert!(!verify(&secret, &"A".repeat(1000)));
        // The unmasked secret itself is not a valid token.
        assert!(!verify(&secret, &URL_SAFE_NO_PAD.encode(secret.expose())));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn fetch_metadata_and_origin_decide_cross_site() {
        let trusted = vec!["https://admin.example".to_owned()];
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-origin")]), &trusted).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "none")]), &trusted).is_ok());
        assert!(check_origin(&headers(&[("sec-fetch-site", "cross-site")]), &trusted).is_err());
        assert!(check_origin(&headers(&[("sec-fetch-site", "same-site")]), &trusted).is_err());
        assert!(
            check_origin(
                &headers(&[
                    ("sec-fetch-site", "same-site"),
                    ("origin", "https://admin.example")
                ]),
                &trusted
            )
            .is_ok()
        );
        let same_host = headers(&[
            ("origin", "http://localhost:7451"),
            ("host", "localhost:7451"),
        ]);
        assert!(check_origin(&same_host, &trusted).is_ok());
        let other_host = headers(&[("origin", "http://127.0.0.1:9"), ("host", "localhost:7451")]);
        assert!(check_origin(&other_host, &trusted).is_err());
        assert!(check_origin(&headers(&[("origin", "null"), ("host", "a")]), &trusted).is_err());
        assert!(check_origin(&headers(&[]), &trusted).is_ok());
    }
}

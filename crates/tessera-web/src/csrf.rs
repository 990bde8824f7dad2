//! Cross-site request forgery protection: a per-session secret, masked
//! per-response tokens, and the `Origin` / `Sec-Fetch-Site` check.
//!
//! Each session holds a 128-bit secret (its record's
//! [`CsrfSecret`], replaced at every login). Before a session exists (a
//! sign-in form shown to a visitor), the secret is stateless instead
//! ([`PreSessionCsrf`]): an HMAC of a random nonce kept in a cookie of its
//! own, so that showing a form stores nothing. A token handed to a page is
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
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tessera_core::CsrfSecret;

use crate::Headers;
use crate::cookies::{CookieAttributes, CookieTooLarge};

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
    /// The request has no session because the page was served over plain
    /// HTTP from a host other than localhost, where browsers drop the
    /// `Secure` session cookie: loading the form again never helps.
    #[error(
        "the request has no session: the page at {origin} is served over plain HTTP, where browsers drop the Secure session cookie `{cookie}` (only localhost is exempt); serve it over HTTPS, or for development over plain HTTP configure the layer with .secure(false) and a cookie name without the __Host- prefix, like .cookie_name(\"tessera\")"
    )]
    SecureCookieOverHttp {
        /// The page's origin, as the request's `Origin` (or `Referer`) gave it.
        origin: String,
        /// The session cookie's name.
        cookie: String,
    },
    /// The token does not belong to this session (stale page, forged, or
    /// from before login).
    #[error("the CSRF token does not match this session; load the form again")]
    InvalidToken,
}

/// The stateless CSRF secret of a visitor without a session: the
/// HMAC-SHA256, under a key of the layer, of a 128-bit random nonce that
/// the browser keeps in a cookie of its own (the session cookie's name
/// with `-csrf` appended, same attributes). A form page shown to a
/// visitor thus stores nothing; the token it carries is valid only with
/// that cookie, which another site can neither read nor set (`__Host-`),
/// and forging a pair takes the key.
///
/// Several instances of one site must share the key
/// (`.csrf_key(…)` on the layer builder); otherwise each draws its own at
/// start, and a sign-in form served by one fails on another (the user
/// loads it again).
#[derive(Clone)]
pub struct PreSessionCsrf {
    key: [u8; 32],
    attributes: CookieAttributes,
}

impl std::fmt::Debug for PreSessionCsrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreSessionCsrf")
            .field("cookie", &self.attributes.name)
            .finish_non_exhaustive()
    }
}

/// The length of a pre-session nonce.
const NONCE_LEN: usize = 16;

impl PreSessionCsrf {
    /// Pre-session tokens under `key`, with a cookie named after the
    /// session cookie of `session_cookie` and carrying its attributes.
    pub fn new(key: [u8; 32], session_cookie: &CookieAttributes) -> Self {
        let mut attributes = session_cookie.clone();
        attributes.name = format!("{}-csrf", session_cookie.name);
        Self { key, attributes }
    }

    /// The nonce cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.attributes.name
    }

    /// The nonce the request's cookie carries, if readable.
    pub fn read_nonce(&self, headers: &dyn Headers) -> Option<[u8; NONCE_LEN]> {
        let value = crate::cookies::cookie_value(headers, &self.attributes.name)?;
        URL_SAFE_NO_PAD.decode(value).ok()?.try_into().ok()
    }

    /// A fresh nonce.
    pub fn new_nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        Ok(nonce)
    }

    /// The `Set-Cookie` value that gives the browser `nonce`.
    pub fn set_cookie(&self, nonce: &[u8; NONCE_LEN]) -> Result<String, CookieTooLarge> {
        self.attributes
            .set_cookie(&self.attributes.name, &URL_SAFE_NO_PAD.encode(nonce))
    }

    /// The `Set-Cookie` value removing the nonce cookie.
    pub fn removal(&self) -> String {
        self.attributes.removal(&self.attributes.name)
    }

    /// The secret tokens are masked from for `nonce`.
    pub fn secret(&self, nonce: &[u8; NONCE_LEN]) -> CsrfSecret {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"tessera pre-session csrf v1\0");
        mac.update(nonce);
        let digest = mac.finalize().into_bytes();
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&digest[..SECRET_LEN]);
        CsrfSecret::from_bytes(secret)
    }
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

/// Why a request with a CSRF token has no session: when the cookie is
/// `Secure` and the page came over plain HTTP from a host other than
/// localhost (its `Origin`, or failing that its `Referer`, says so), the
/// browser never stored the cookie; otherwise the session is missing or
/// over and the form is stale.
pub fn no_session(headers: &dyn Headers, secure_cookie: bool, cookie: &str) -> CsrfError {
    let page = headers
        .get("origin")
        .filter(|origin| *origin != "null")
        .or_else(|| headers.get("referer"))
        .map(str::trim);
    let Some(rest) = page.and_then(|page| page.strip_prefix("http://")) else {
        return CsrfError::NoSession;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
    .to_ascii_lowercase();
    let local = host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host.starts_with("127.");
    if !secure_cookie || local {
        return CsrfError::NoSession;
    }
    CsrfError::SecureCookieOverHttp {
        origin: format!("http://{authority}"),
        cookie: cookie.to_owned(),
    }
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

    #[test]
    fn a_missing_session_over_plain_http_says_why() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, http::HeaderValue::from_static(value));
            }
            map
        };
        let lan = headers(&[("origin", "http://192.168.1.20:3000")]);
        let err = no_session(&lan, true, "__Host-tessera");
        assert_eq!(
            err,
            CsrfError::SecureCookieOverHttp {
                origin: "http://192.168.1.20:3000".into(),
                cookie: "__Host-tessera".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("plain HTTP") && text.contains(".secure(false)"),
            "{text}"
        );
        let referer = headers(&[("referer", "http://app.docker.internal/login?x=1")]);
        assert!(matches!(
            no_session(&referer, true, "__Host-tessera"),
            CsrfError::SecureCookieOverHttp { origin, .. } if origin == "http://app.docker.internal"
        ));
        for local in [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://app.localhost",
        ] {
            let local = headers(&[("origin", local)]);
            assert_eq!(
                no_session(&local, true, "__Host-tessera"),
                CsrfError::NoSession
            );
        }
        let https = headers(&[("origin", "https://app.example.com")]);
        assert_eq!(
            no_session(&https, true, "__Host-tessera"),
            CsrfError::NoSession
        );
        assert_eq!(
            no_session(&lan, false, "tessera"),
            CsrfError::NoSession,
            "no Secure attribute"
        );
        assert_eq!(
            no_session(&headers(&[]), true, "__Host-tessera"),
            CsrfError::NoSession
        );
    }
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

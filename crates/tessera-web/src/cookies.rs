//! Cookie controllers: how the session credential (a token, or a sealed
//! session) is read from `Cookie` headers and written as `Set-Cookie`,
//! kept apart from the session logic.
//!
//! Every cookie is written with the attributes of `docs/tokens-and-cookies.md`: `Secure`,
//! `HttpOnly`, `SameSite=Lax` (or `Strict`), `Path=/`, no `Domain`, no
//! `Max-Age`/`Expires` (a browser-session cookie; the server enforces the
//! timeouts). A cookie never exceeds [`MAX_COOKIE_BYTES`]: a credential that
//! would not fit is refused with [`CookieTooLarge`] instead of being sent to
//! a browser that would silently drop it.
//!
//! `Set-Cookie` values are built with the `cookie` crate; `Cookie` headers
//! are scanned directly for our names (on every request, so without
//! allocating for other cookies). Reading is forgiving in the only safe way: a request whose session cookie
//! is missing, duplicated, oversized, not UTF-8 or otherwise unreadable
//! simply carries no credential ([`Presented::Unreadable`]), and is served
//! as an anonymous visitor.

use cookie::{Cookie, SameSite as CookieSameSite};

use crate::Headers;

/// Largest cookie (`name=value`) the library writes; browsers drop larger ones.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The `SameSite` attribute of the session cookie. `None` is not offered:
/// it would send the session with cross-site requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent with top-level navigations from other sites, not with their
    /// subrequests or cross-site POSTs (the default).
    #[default]
    Lax,
    /// Never sent with requests started by another site.
    Strict,
}

/// The attributes every session cookie gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttributes {
    /// The cookie's name (`__Host-tessera` by default).
    pub name: String,
    /// `SameSite=Lax` or `Strict`.
    pub same_site: SameSite,
    /// The `Secure` attribute (required by the `__Host-` and `__Secure-` prefixes).
    pub secure: bool,
}

impl Default for CookieAttributes {
    fn default() -> Self {
        Self {
            name: "__Host-tessera".to_owned(),
            same_site: SameSite::Lax,
            secure: true,
        }
    }
}

impl CookieAttributes {
    pub(crate) fn set_cookie(&self, name: &str, value: &str) -> Result<String, CookieTooLarge> {
        let size = name.len() + 1 + value.len();
        if size > MAX_COOKIE_BYTES {
            return Err(CookieTooLarge {
                size,
                limit: MAX_COOKIE_BYTES,
            });
        }
        let cookie = Cookie::build((name, value))
            .path("/")
            .secure(self.secure)
            .http_only(true)
            .same_site(self.cookie_same_site())
            .build();
        Ok(cookie.to_string())
    }

    pub(crate) fn removal(&self, name: &str) -> String {
        let cookie = Cookie::build((name, ""))
            .path("/")
            .secure(self.secure)
            .http_only(true)
            .same_site(self.cookie_same_site())
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build();
        cookie.to_string()
    }

    fn cookie_same_site(&self) -> CookieSameSite {
        match self.same_site {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
        }
    }
}

/// A credential too large for the cookies allowed to carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session needs {size} bytes of cookie, the limit is {limit}; store less in it, or allow more cookie chunks"
)]
pub struct CookieTooLarge {
    /// Bytes needed.
    pub size: usize,
    /// Bytes allowed.
    pub limit: usize,
}

/// What a request presented as its session credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No session cookie.
    Nothing,
    /// A readable credential, carried by `cookies` cookies.
    Credential {
        /// The credential text.
        value: String,
        /// How many session cookies the request carried (to remove stale ones).
        cookies: usize,
    },
    /// Session cookies that cannot be read: duplicated, oversized, not
    /// UTF-8, or an incomplete set of chunks. The request is anonymous.
    Unreadable {
        /// What was wrong, for logs.
        problem: &'static str,
        /// How many session cookies the request carried.
        cookies: usize,
    },
}

impl Presented {
    /// How many session cookies the request carried.
    pub fn cookie_count(&self) -> usize {
        match self {
            Presented::Nothing => 0,
            Presented::Credential { cookies, .. } | Presented::Unreadable { cookies, .. } => {
                *cookies
            }
        }
    }
}

/// How the session credential travels in cookies. The layer calls it; the
/// session logic never sees cookie names or attributes. `Set-Cookie`
/// values are returned as text that is always a valid header value.
pub trait CookieController: Send + Sync + 'static {
    /// The credential a request presented in its `Cookie` headers.
    fn read(&self, headers: &dyn Headers) -> Presented;

    /// `Set-Cookie` values that store `credential`, replacing the
    /// `presented` session cookies of the request (at most one per name).
    fn set(&self, credential: &str, presented: usize) -> Result<Vec<String>, CookieTooLarge>;

    /// `Set-Cookie` values that remove the session cookies (at least the
    /// main one, and the `presented` ones).
    fn remove(&self, presented: usize) -> Vec<String>;

    /// The longest credential [`set`](Self::set) accepts.
    fn capacity(&self) -> usize;
}

/// Every `name=value` pair of the request's `Cookie` headers, as raw
/// bytes (a hand-rolled scan: this runs on every request, and only our own
/// names matter). Pairs without `=` are skipped.
fn cookie_pairs(headers: &dyn Headers) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .all("cookie")
        .into_iter()
        .flat_map(|header| header.split(|b| *b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
        })
}

/// The value of cookie `name` in the request's `Cookie` headers (the first
/// one, when readable text).
pub(crate) fn cookie_value(headers: &dyn Headers, name: &str) -> Option<String> {
    cookie_pairs(headers).find_map(|(found, value)| {
        (found == name.as_bytes())
            .then(|| std::str::from_utf8(value).ok())
            .flatten()
            .filter(|value| !value.is_empty() && value.len() <= 4096)
            .map(|value| value.trim_matches('"').to_owned())
    })
}

fn is_credential_text(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One cookie holding a session token (server-side sessions).
#[derive(Debug, Clone)]
pub struct SingleCookie {
    attributes: CookieAttributes,
}

impl SingleCookie {
    /// A controller writing one cookie with these attributes.
    pub fn new(attributes: CookieAttributes) -> Self {
        Self { attributes }
    }
}

impl CookieController for SingleCookie {
    fn read(&self, headers: &dyn Headers) -> Presented {
        let name = self.attributes.name.as_bytes();
        let mut cookies = 0;
        let mut found: &[u8] = &[];
        for (pair_name, value) in cookie_pairs(headers) {
            if pair_name == name {
                cookies += 1;
                found = value;
            }
        }
        match cookies {
            0 => return Presented::Nothing,
            1 => {}
            _ => {
                return Presented::Unreadable {
                    problem: "duplicated session cookie",
                    cookies,
                };
            }
        }
        match std::str::from_utf8(found) {
            Ok(value) if value.len() <= self.capacity() && is_credential_text(value) => {
                Presented::Credential {
                    value: value.to_owned(),
                    cookies,
                }
            }
            _ => Presented::Unreadable {
                problem: "session cookie is oversized, not UTF-8 or not credential text",
                cookies,
            },
        }
    }

    fn set(&self, credential: &str, _presented: usize) -> Result<Vec<String>, CookieTooLarge> {
        Ok(vec![
            self.attributes
                .set_cookie(&self.attributes.name, credential)?,
        ])
    }

    fn remove(&self, _presented: usize) -> Vec<String> {
        vec![self.attributes.removal(&self.attributes.name)]
    }

    fn capacity(&self) -> usize {
        MAX_COOKIE_BYTES - self.attributes.name.len() - 1
    }
}

/// A credential split across numbered cookies (sealed client-side
/// sessions): `NAME` holds `COUNT.` and the first part, `NAME.1`,
/// `NAME.2`, … the rest, up to `max_cookies` cookies.
#[derive(Debug, Clone)]
pub struct ChunkedCookie {
    attributes: CookieAttributes,
    max_cookies: usize,
}

impl ChunkedCookie {
    /// A controller writing up to `max_cookies` cookies (at least 1, at most 9).
    pub fn new(attributes: CookieAttributes, max_cookies: usize) -> Self {
        Self {
            attributes,
            max_cookies: max_cookies.clamp(1, 9),
        }
    }

    fn chunk_name(&self, index: usize) -> String {
        if index == 0 {
            self.attributes.name.clone()
        } else {
            format!("{}.{index}", self.attributes.name)
        }
    }

    /// Bytes of credential cookie `index` can hold.
    fn chunk_capacity(&self, index: usize) -> usize {
        let prefix = if index == 0 { 2 } else { 0 }; // "N."
        MAX_COOKIE_BYTES - self.chunk_name(index).len() - 1 - prefix
    }
}

impl CookieController for ChunkedCookie {
    fn read(&self, headers: &dyn Headers) -> Presented {
        let name = self.attributes.name.as_bytes();
        // parts[i]: the values of cookie `NAME` (i = 0) or `NAME.i`.
        let mut parts: [Vec<&[u8]>; 10] = Default::default();
        for (pair_name, value) in cookie_pairs(headers) {
            let Some(rest) = pair_name.strip_prefix(name) else {
                continue;
            };
            match rest {
                [] => parts[0].push(value),
                [b'.', digit] if digit.is_ascii_digit() => {
                    parts[usize::from(digit - b'0')].push(value);
                }
                _ => {}
            }
        }
        let Some(last) = parts.iter().rposition(|p| !p.is_empty()) else {
            return Presented::Nothing;
        };
        let cookies = last + 1;
        let unreadable = |problem| Presented::Unreadable { problem, cookies };
        if parts.iter().any(|values| values.len() > 1) {
            return unreadable("duplicated session cookie");
        }
        let Some(first) = parts[0].first().and_then(|v| std::str::from_utf8(v).ok()) else {
            return unreadable("session cookie parts without a readable first part");
        };
        let Some((count, first_part)) = first.split_once('.') else {
            return unreadable("session cookie without a part count");
        };
        let count = match count.parse::<usize>() {
            Ok(count) if (1..=self.max_cookies).contains(&count) => count,
            _ => return unreadable("session cookie part count out of range"),
        };
        if first_part.len() > self.capacity() {
            return unreadable("session cookie is oversized");
        }
        let mut value = first_part.to_owned();
        for part in &parts[1..count] {
            match part.first().and_then(|v| std::str::from_utf8(v).ok()) {
                Some(part) if value.len() + part.len() <= self.capacity() => value.push_str(part),
                Some(_) => return unreadable("session cookie is oversized"),
                None => return unreadable("session cookie part missing or not UTF-8"),
            }
        }
        if !is_credential_text(&value) {
            return unreadable("session cookie is not credential text");
        }
        Presented::Credential { value, cookies }
    }

    fn set(&self, credential: &str, presented: usize) -> Result<Vec<String>, CookieTooLarge> {
        let too_large = CookieTooLarge {
            size: credential.len(),
            limit: self.capacity(),
        };
        if credential.len() > self.capacity() || !credential.is_ascii() {
            return Err(too_large);
        }
        let mut parts = Vec::new();
        let mut rest = credential;
        let mut index = 0;
        while !rest.is_empty() || parts.is_empty() {
            let take = rest.len().min(self.chunk_capacity(index));
            let (part, tail) = rest.split_at(take);
            parts.push(part);
            rest = tail;
            index += 1;
        }
        let count = parts.len();
        let mut headers = Vec::with_capacity(count.max(presented));
        for (index, part) in parts.iter().enumerate() {
            let value = if index == 0 {
                format!("{count}.{part}")
            } else {
                (*part).to_owned()
            };
            headers.push(
                self.attributes
                    .set_cookie(&self.chunk_name(index), &value)?,
            );
        }
        for index in count..presented {
            headers.push(self.attributes.removal(&self.chunk_name(index)));
        }
        Ok(headers)
    }

    fn remove(&self, presented: usize) -> Vec<String> {
        (0..presented.max(1))
            .map(|index| self.attributes.removal(&self.chunk_name(index)))
            .collect()
    }

    fn capacity(&self) -> usize {
        (0..self.max_cookies).map(|i| self.chunk_capacity(i)).sum()
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header::COOKIE};

    use super::*;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(
                COOKIE,
                HeaderValue::from_bytes(cookie).expect("header bytes"),
            );
        }
        headers
    }

    #[test]
    fn set_cookie_has_every_attribute_and_no_lifetime() {
        let controller = SingleCookie::new(CookieAttributes::default());
        let set = controller.set("tss_abc", 0).expect("fits");
        assert_eq!(set.len(), 1);
        let text = &set[0];
        assert!(text.starts_with("__Host-tessera=tss_abc"), "{text}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(text.contains(attribute), "{attribute} missing in {text}");
        }
        for absent in ["Domain", "Max-Age", "Expires"] {
            assert!(!text.contains(absent), "{absent} present in {text}");
        }
        let removal = controller.remove(1);
        let removal = &removal[0];
        assert!(removal.contains("Max-Age=0") && removal.contains("Path=/"));
    }

    #[test]
    fn garbage_duplicates_and_non_utf8_are_unreadable_not_errors() {
        let controller = SingleCookie::new(CookieAttributes::default());
        assert_eq!(controller.read(&headers(&[b"other=1"])), Presented::Nothing);
        assert_eq!(controller.read(&headers(&[b";;;==;"])), Presented::Nothing);
        assert!(matches!(
            controller.read(&headers(&[b"__Host-tessera=a; __Host-tessera=b"])),
            Presented::Unreadable { cookies: 2, .. }
        ));
        assert!(matches!(
            controller.read(&headers(&[b"__Host-tessera=a", b"__Host-tessera=b"])),
            Presented::Unreadable { cookies: 2, .. }
        ));
        assert!(matches!(
            controller.read(&headers(&[b"__Host-tessera=tss_\xff\xfe; x=1"])),
            Presented::Unreadable { .. }
        ));
        let huge = format!("__Host-tessera={}", "a".repeat(5000));
        assert!(matches!(
            controller.read(&headers(&[huge.as_bytes()])),
            Presented::Unreadable { .. }
        ));
        assert_eq!(
            controller.read(&headers(&[b"x=\xff; __Host-tessera=tss_ok"])),
            Presented::Credential {
                value: "tss_ok".into(),
                cookies: 1
            }
        );
    }

    #[test]
    fn chunks_round_trip_and_stale_chunks_are_removed() {
        let controller = ChunkedCookie::new(CookieAttributes::default(), 4);
        let credential = "A".repeat(9000);
        let set = controller.set(&credential, 4).expect("fits in 3");
        // Three parts plus the removal of the stale fourth.
        assert_eq!(set.len(), 4);
        assert!(set[3].contains("Max-Age=0"));
        let cookie_header: Vec<String> = set[..3]
            .iter()
            .map(|text| {
                assert!(text.split(';').next().expect("pair").len() <= MAX_COOKIE_BYTES);
                text.split(';').next().expect("pair").to_owned()
            })
            .collect();
        let joined = cookie_header.join("; ");
        assert_eq!(
            controller.read(&headers(&[joined.as_bytes()])),
            Presented::Credential {
                value: credential,
                cookies: 3
            }
        );
        let too_big = "A".repeat(controller.capacity() + 1);
        assert!(controller.set(&too_big, 0).is_err());
        assert!(
            controller
                .set(&"A".repeat(controller.capacity()), 0)
                .is_ok()
        );
    }

    /// Found by the `cookie_header` fuzz target: a credential longer than
    /// the controller writes (a single cookie of 4082–4096 value bytes, or a
    /// first chunk alone over the capacity) was read as valid.
    #[test]
    fn a_credential_read_is_never_larger_than_the_controller_writes() {
        let single = SingleCookie::new(CookieAttributes::default());
        let at_capacity = format!("__Host-tessera={}", "A".repeat(single.capacity()));
        assert!(matches!(
            single.read(&headers(&[at_capacity.as_bytes()])),
            Presented::Credential { .. }
        ));
        let over = format!("__Host-tessera={}", "A".repeat(single.capacity() + 1));
        assert!(matches!(
            single.read(&headers(&[over.as_bytes()])),
            Presented::Unreadable { .. }
        ));

        let chunked = ChunkedCookie::new(CookieAttributes::default(), 2);
        let over = format!("__Host-tessera=1.{}", "A".repeat(chunked.capacity() + 1));
        assert!(matches!(
            chunked.read(&headers(&[over.as_bytes()])),
            Presented::Unreadable { .. }
        ));
        let full = "A".repeat(chunked.capacity());
        let set = chunked.set(&full, 0).expect("fits");
        let pairs: Vec<&str> = set
            .iter()
            .map(|v| v.split(';').next().expect("pair"))
            .collect();
        assert_eq!(
            chunked.read(&headers(&[pairs.join("; ").as_bytes()])),
            Presented::Credential {
                value: full,
                cookies: 2
            }
        );
    }

    #[test]
    fn incomplete_or_inconsistent_chunks_are_unreadable() {
        let controller = ChunkedCookie::new(CookieAttributes::default(), 4);
        for bad in [
            &b"__Host-tessera=2.abc"[..],
            b"__Host-tessera.1=abc",
            b"__Host-tessera=abc",
            b"__Host-tessera=7.abc",
            b"__Host-tessera=0.abc",
            b"__Host-tessera=1.abc; __Host-tessera=1.abd",
        ] {
            assert!(
                matches!(
                    controller.read(&headers(&[bad])),
                    Presented::Unreadable { .. }
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A stale extra part beyond the count is ignored (and later removed).
        assert_eq!(
            controller.read(&headers(&[b"__Host-tessera=1.abc; __Host-tessera.1=zzz"])),
            Presented::Credential {
                value: "abc".into(),
                cookies: 2
            }
        );
    }
}

//! Every setting of a session layer: cookie attributes, sealing, CSRF,
//! client addresses; nonsense refused when the layer is built.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::sealed::KeyRing;
use tessera_core::{ClientInfo, SessionManager};

use crate::Headers;
use crate::client_ip::TrustedProxies;
use crate::cookies::{ChunkedCookie, CookieAttributes, CookieController, SameSite, SingleCookie};
use crate::csrf::{DEFAULT_CSRF_FIELD, DEFAULT_CSRF_HEADER, PreSessionCsrf};
use crate::dbsc::DbscSettings;
use crate::import::LegacySessions;

/// Default number of cookies a sealed session may span.
pub const DEFAULT_MAX_COOKIES: usize = 4;
/// Default largest form body read to find the CSRF field (1 MiB).
pub const DEFAULT_MAX_FORM_BYTES: usize = 1024 * 1024;

/// What a CSRF exemption sees of a request.
pub struct ExemptCheck<'a> {
    /// The method, upper case.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a dyn Headers,
}

impl fmt::Debug for ExemptCheck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExemptCheck")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A predicate choosing requests exempt from the CSRF check.
pub type CsrfExempt = Arc<dyn Fn(&ExemptCheck<'_>) -> bool + Send + Sync>;

/// A layer's settings, built by [`WebConfigBuilder`] and shared by every
/// request.
pub struct WebConfig {
    pub(crate) manager: SessionManager,
    pub(crate) cookies: Arc<dyn CookieController>,
    pub(crate) cookie_name: String,
    pub(crate) secure_cookie: bool,
    pub(crate) csrf_enabled: bool,
    pub(crate) csrf_header: String,
    pub(crate) csrf_field: String,
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) csrf_exempt: Option<CsrfExempt>,
    pub(crate) max_form_bytes: usize,
    pub(crate) client_ip_header: Option<String>,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) reject_guessing: bool,
    pub(crate) sign_in_page: Option<String>,
    pub(crate) dbsc: Option<DbscSettings>,
    pub(crate) import: Option<Arc<dyn LegacySessions>>,
    pub(crate) pre_session_csrf: Option<PreSessionCsrf>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("cookie_name", &self.cookie_name)
            .field("sealed", &self.manager.is_sealed())
            .field("csrf", &self.csrf_enabled)
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// The manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// How the credential is written to and read from cookies.
    pub fn cookies(&self) -> &dyn CookieController {
        &*self.cookies
    }

    /// The largest urlencoded form body read to find the CSRF field.
    pub fn max_form_bytes(&self) -> usize {
        self.max_form_bytes
    }

    /// What the client tells about itself: its address (the connection's
    /// peer; with a client IP header, the right-most address in it that no
    /// trusted proxy added, believed only from a trusted proxy) and its
    /// `User-Agent`.
    pub fn client_info(&self, headers: &dyn Headers, peer: Option<IpAddr>) -> ClientInfo {
        let ip = match self.client_ip_header.as_deref() {
            Some(name) => self.trusted_proxies.client_ip(peer, headers, name),
            None => peer,
        };
        ClientInfo::new(ip, headers.get("user-agent"))
    }

    /// Whether a request must pass the CSRF check: CSRF protection is on,
    /// the method is unsafe and no exemption matches.
    pub fn csrf_applies(&self, request: &ExemptCheck<'_>) -> bool {
        self.csrf_enabled
            && crate::csrf::is_unsafe(request.method)
            && !self
                .csrf_exempt
                .as_ref()
                .is_some_and(|exempt| exempt(request))
    }

    /// The CSRF token a request carries in its header, after checking that
    /// the request is not cross-site. `Ok(None)`: look in the form body
    /// ([`wants_form_body`](Self::wants_form_body)).
    pub fn csrf_token_from_headers(
        &self,
        headers: &dyn Headers,
    ) -> Result<Option<String>, crate::csrf::CsrfError> {
        crate::csrf::check_origin(headers, &self.trusted_origins)?;
        Ok(headers.get(&self.csrf_header).map(str::to_owned))
    }

    /// Whether the token may be in the body: an urlencoded form.
    pub fn wants_form_body(&self, headers: &dyn Headers) -> bool {
        headers.get("content-type").is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
    }

    /// The CSRF field of an urlencoded form body.
    pub fn csrf_token_from_form(&self, body: &[u8]) -> Option<String> {
        form_urlencoded::parse(body)
            .find(|(name, _)| name == self.csrf_field.as_str())
            .map(|(_, value)| value.into_owned())
    }

    /// The error for a request that carried no token at all.
    pub fn missing_csrf_token(&self) -> crate::csrf::CsrfError {
        crate::csrf::CsrfError::MissingToken {
            header: self.csrf_header.clone(),
            field: self.csrf_field.clone(),
        }
    }

    /// Where a failed request goes instead of its error, if it is a signed-out
    /// visit of a page and a sign-in page is set
    /// ([`WebConfigBuilder::sign_in_page`]): the `Location` of a
    /// `303 See Other`, carrying the page asked for as `next`.
    /// `target` is the request's path and query, `error_code` the failure's
    /// [`Error::code`](crate::Error::code).
    pub fn sign_in_redirect(
        &self,
        method: &str,
        target: &str,
        headers: &dyn Headers,
        error_code: &str,
    ) -> Option<String> {
        let page = self.sign_in_page.as_deref()?;
        let signed_out = matches!(
            error_code,
            "not_authenticated" | "invalid_session" | "reauthentication_required"
        );
        let wants_html = headers
            .get("accept")
            .is_some_and(|accept| accept.to_ascii_lowercase().contains("text/html"));
        if !signed_out || !wants_html || !matches!(method, "GET" | "HEAD") {
            return None;
        }
        let next: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
        let join = if page.contains('?') { '&' } else { '?' };
        Some(format!("{page}{join}next={next}"))
    }

    /// Whether a sign-in page is set ([`WebConfigBuilder::sign_in_page`]).
    pub fn has_sign_in_page(&self) -> bool {
        self.sign_in_page.is_some()
    }

    /// Device-bound sessions, when the layer serves them.
    pub fn dbsc(&self) -> Option<&DbscSettings> {
        self.dbsc.as_ref()
    }

    /// The stateless CSRF tokens of visitors without a session (`None`
    /// with CSRF off).
    pub fn pre_session_csrf(&self) -> Option<&PreSessionCsrf> {
        self.pre_session_csrf.as_ref()
    }

    /// Whether a client the manager flags as guessing is refused (429).
    pub fn rejects_guessing(&self) -> bool {
        self.reject_guessing
    }
}

/// What a framework integration builds from a checked [`WebConfig`].
pub trait FromWebConfig: Sized {
    /// The layer (or middleware) over these settings.
    fn from_web_config(config: Arc<WebConfig>) -> Self;
}

impl FromWebConfig for Arc<WebConfig> {
    fn from_web_config(config: Arc<WebConfig>) -> Self {
        config
    }
}

/// A layer configuration that contradicts itself, refused by
/// [`WebConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerConfigError {
    /// The cookie name is empty or has characters a cookie name cannot have.
    #[error("`{0}` is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    InvalidCookieName(String),
    /// A `__Host-` or `__Secure-` cookie without `Secure`: browsers would refuse it.
    #[error(
        "the cookie name `{name}` has the {prefix} prefix, which requires the Secure attribute; keep secure(true) or choose another name (for development over plain HTTP: .secure(false) with a name like `tessera`)"
    )]
    PrefixNeedsSecure {
        /// The cookie name.
        name: String,
        /// The prefix.
        prefix: &'static str,
    },
    /// A sealed session may span 1 to 9 cookies.
    #[error("max_cookies must be between 1 and 9, got {0}")]
    MaxCookies(usize),
    /// The sign-in page is not a path on this site.
    #[error(
        "sign-in page `{0}` must be a path on this site starting with one `/`, like /login (no scheme, host or `//`)"
    )]
    InvalidSignInPage(String),
    /// The CSRF header name is not a valid header name.
    #[error("`{0}` is not a valid header name for the CSRF token")]
    InvalidCsrfHeader(String),
    /// The CSRF form field name is empty.
    #[error("the CSRF form field name must not be empty")]
    EmptyCsrfField,
    /// A trusted origin is not `scheme://host[:port]`.
    #[error(
        "trusted origin `{0}` must be scheme://host[:port] with no path, like https://app.example.com"
    )]
    InvalidTrustedOrigin(String),
    /// The client IP header is not a valid header name.
    #[error("`{0}` is not a valid header name for the client IP")]
    InvalidClientIpHeader(String),
    /// The manager cannot seal sessions over its store.
    #[error("sealed sessions: {0}")]
    Sealing(#[from] tessera_core::ConfigError),
    /// The operating system gave no randomness for the pre-session CSRF key.
    #[error("no randomness from the operating system for the CSRF key: {0}")]
    Entropy(getrandom::Error),
}

/// Builds a layer's settings; every setting starts at the secure default.
/// `T` is what [`build`](Self::build) returns (the framework's layer).
pub struct WebConfigBuilder<T> {
    manager: SessionManager,
    attributes: CookieAttributes,
    sealing: Option<KeyRing>,
    max_cookies: usize,
    controller: Option<Arc<dyn CookieController>>,
    csrf_enabled: bool,
    csrf_header: String,
    csrf_field: String,
    trusted_origins: Vec<String>,
    csrf_exempt: Option<CsrfExempt>,
    max_form_bytes: usize,
    client_ip_header: Option<String>,
    trusted_proxies: TrustedProxies,
    reject_guessing: bool,
    sign_in_page: Option<String>,
    dbsc: Option<DbscSettings>,
    import: Option<Arc<dyn LegacySessions>>,
    csrf_key: Option<[u8; 32]>,
    target: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for WebConfigBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfigBuilder")
            .field("attributes", &self.attributes)
            .field("sealed", &self.sealing.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: FromWebConfig> WebConfigBuilder<T> {
    /// Every default: `__Host-tessera` cookie, `SameSite=Lax`, sessions in
    /// the manager's store, CSRF protection on.
    pub fn new(manager: SessionManager) -> Self {
        Self {
            manager,
            attributes: CookieAttributes::default(),
            sealing: None,
            max_cookies: DEFAULT_MAX_COOKIES,
            controller: None,
            csrf_enabled: true,
            csrf_header: DEFAULT_CSRF_HEADER.to_owned(),
            csrf_field: DEFAULT_CSRF_FIELD.to_owned(),
            trusted_origins: Vec::new(),
            csrf_exempt: None,
            max_form_bytes: DEFAULT_MAX_FORM_BYTES,
            client_ip_header: None,
            trusted_proxies: TrustedProxies::default(),
            reject_guessing: false,
            sign_in_page: None,
            dbsc: None,
            import: None,
            csrf_key: None,
            target: PhantomData,
        }
    }

    /// Keeps sessions in the cookie itself, sealed with the newest key of
    /// `keys` (client-side sessions) instead of in the manager's store. The
    /// store then holds only the revocation epochs. Handlers do not change.
    pub fn sealed(mut self, keys: KeyRing) -> Self {
        self.sealing = Some(keys);
        self
    }

    /// How many numbered cookies a sealed session may span (default 4,
    /// at most 9). A session that needs more is refused with an error.
    pub fn max_cookies(mut self, count: usize) -> Self {
        self.max_cookies = count;
        self
    }

    /// The cookie name (default `__Host-tessera`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.attributes.name = name.into();
        self
    }

    /// `SameSite=Lax` (default) or `Strict`.
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.attributes.same_site = same_site;
        self
    }

    /// The `Secure` attribute (default on). Turning it off is refused for
    /// `__Host-` and `__Secure-` names: for development over plain HTTP on
    /// another host than `localhost`, use `.secure(false)` with a name
    /// without the prefix.
    pub fn secure(mut self, secure: bool) -> Self {
        self.attributes.secure = secure;
        self
    }

    /// Replaces the cookie controller (how the credential is written to cookies).
    pub fn cookie_controller(mut self, controller: impl CookieController) -> Self {
        self.controller = Some(Arc::new(controller));
        self
    }

    /// Turns the CSRF check off (default on). Only for apps whose unsafe
    /// requests are protected otherwise.
    pub fn csrf(mut self, enabled: bool) -> Self {
        self.csrf_enabled = enabled;
        self
    }

    /// The key of the stateless CSRF tokens given to visitors without a
    /// session ([`PreSessionCsrf`]); default: drawn at random when the
    /// layer is built. Give every instance of a site the same key, or a
    /// sign-in form served by one instance fails on another.
    pub fn csrf_key(mut self, key: [u8; 32]) -> Self {
        self.csrf_key = Some(key);
        self
    }

    /// The header carrying the CSRF token (default `X-CSRF-Token`).
    pub fn csrf_header(mut self, name: impl Into<String>) -> Self {
        self.csrf_header = name.into();
        self
    }

    /// The form field carrying the CSRF token (default `csrf_token`).
    pub fn csrf_field(mut self, name: impl Into<String>) -> Self {
        self.csrf_field = name.into();
        self
    }

    /// An origin (`scheme://host[:port]`) of another site allowed to send
    /// unsafe requests (they still need a valid token).
    pub fn trusted_origin(mut self, origin: impl Into<String>) -> Self {
        self.trusted_origins.push(origin.into());
        self
    }

    /// Exempts the requests `exempt` selects from the CSRF check (webhooks
    /// authenticated otherwise, say).
    pub fn csrf_exempt(
        mut self,
        exempt: impl Fn(&ExemptCheck<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.csrf_exempt = Some(Arc::new(exempt));
        self
    }

    /// Largest urlencoded form body read to find the CSRF field (default 1 MiB).
    pub fn max_form_bytes(mut self, limit: usize) -> Self {
        self.max_form_bytes = limit;
        self
    }

    /// Takes the client IP from this header (set by a trusted reverse proxy,
    /// e.g. `X-Forwarded-For` or `X-Real-IP`) instead of the connection's
    /// peer address: the right-most address in it that no trusted proxy
    /// added, and only when the peer is a trusted proxy
    /// ([`trusted_proxies`](Self::trusted_proxies)).
    pub fn client_ip_header(mut self, name: impl Into<String>) -> Self {
        self.client_ip_header = Some(name.into());
        self
    }

    /// The reverse proxies whose client IP header is believed (default:
    /// loopback only).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Refuses (429) requests carrying a session cookie from an IP the
    /// manager flags as guessing tokens (default off: users behind one NAT
    /// would share the refusal; the manager reports `token_guessing`
    /// events either way, and `manager.is_guessing(ip)` lets the
    /// application slow such a client down).
    pub fn reject_guessing(mut self, reject: bool) -> Self {
        self.reject_guessing = reject;
        self
    }

    /// Sends signed-out visitors of pages to a sign-in page: a `GET` or
    /// `HEAD` that accepts HTML and fails with `not_authenticated`,
    /// `invalid_session` or `reauthentication_required` is answered with
    /// `303 See Other` to `path?next=<the page asked for>` instead of a
    /// plain-text 401/403. Other requests (scripts, forms) keep the error.
    /// `path` is a path on this site (`/login`).
    pub fn sign_in_page(mut self, path: impl Into<String>) -> Self {
        self.sign_in_page = Some(path.into());
        self
    }

    /// Turns on device-bound sessions (DBSC, `docs/dbsc.md`): a login
    /// offers browsers that support it to bind the session to a device
    /// key, the layer serves the registration and refresh endpoints, and a
    /// bound session is authenticated only with its short-lived bound
    /// cookie. Browsers without DBSC are served as before.
    pub fn device_binding(mut self, settings: DbscSettings) -> Self {
        self.dbsc = Some(settings);
        self
    }

    /// Accepts, once, the cookies of the session library the app used
    /// before, exchanging each for a Tessera session with its data (see
    /// [`crate::import`] and the `tessera-import` crate's readers).
    pub fn import_from(mut self, reader: impl LegacySessions) -> Self {
        self.import = Some(Arc::new(reader));
        self
    }

    /// Builds the layer, refusing settings that contradict each other.
    pub fn build(self) -> Result<T, LayerConfigError> {
        let name = &self.attributes.name;
        if name.is_empty() || !name.bytes().all(is_cookie_name_byte) {
            return Err(LayerConfigError::InvalidCookieName(name.clone()));
        }
        for prefix in ["__Host-", "__Secure-"] {
            if name.starts_with(prefix) && !self.attributes.secure {
                return Err(LayerConfigError::PrefixNeedsSecure {
                    name: name.clone(),
                    prefix,
                });
            }
        }
        if !(1..=9).contains(&self.max_cookies) {
            return Err(LayerConfigError::MaxCookies(self.max_cookies));
        }
        if let Some(page) = &self.sign_in_page
            && !is_local_path(page)
        {
            return Err(LayerConfigError::InvalidSignInPage(page.clone()));
        }
        if http::HeaderName::try_from(self.csrf_header.as_str()).is_err() {
            return Err(LayerConfigError::InvalidCsrfHeader(self.csrf_header));
        }
        if self.csrf_field.is_empty() {
            return Err(LayerConfigError::EmptyCsrfField);
        }
        for origin in &self.trusted_origins {
            let valid = origin.split_once("://").is_some_and(|(scheme, authority)| {
                !scheme.is_empty() && !authority.is_empty() && !authority.contains('/')
            });
            if !valid {
                return Err(LayerConfigError::InvalidTrustedOrigin(origin.clone()));
            }
        }
        if let Some(header) = &self.client_ip_header
            && http::HeaderName::try_from(header.as_str()).is_err()
        {
            return Err(LayerConfigError::InvalidClientIpHeader(header.clone()));
        }
        let dbsc = match self.dbsc {
            Some(mut dbsc) => {
                dbsc.secure = self.attributes.secure;
                dbsc.same_site = self.attributes.same_site;
                let name = &dbsc.cookie_name;
                if name.is_empty()
                    || !name.bytes().all(is_cookie_name_byte)
                    || *name == self.attributes.name
                {
                    return Err(LayerConfigError::InvalidCookieName(name.clone()));
                }
                if name.starts_with("__Host-") && !dbsc.secure {
                    return Err(LayerConfigError::PrefixNeedsSecure {
                        name: name.clone(),
                        prefix: "__Host-",
                    });
                }
                Some(dbsc)
            }
            None => None,
        };
        let pre_session_csrf = if self.csrf_enabled {
            let key = match self.csrf_key {
                Some(key) => key,
                None => {
                    let mut key = [0u8; 32];
                    getrandom::fill(&mut key).map_err(LayerConfigError::Entropy)?;
                    key
                }
            };
            Some(PreSessionCsrf::new(key, &self.attributes))
        } else {
            None
        };
        let manager = match self.sealing {
            Some(keys) => self.manager.with_sealing(keys, name.as_bytes())?,
            None => self.manager,
        };
        let cookies: Arc<dyn CookieController> = match self.controller {
            Some(controller) => controller,
            None if manager.is_sealed() => Arc::new(ChunkedCookie::new(
                self.attributes.clone(),
                self.max_cookies,
            )),
            None => Arc::new(SingleCookie::new(self.attributes.clone())),
        };
        Ok(T::from_web_config(Arc::new(WebConfig {
            manager,
            cookies,
            secure_cookie: self.attributes.secure,
            cookie_name: self.attributes.name,
            csrf_enabled: self.csrf_enabled,
            csrf_header: self.csrf_header.to_ascii_lowercase(),
            csrf_field: self.csrf_field,
            trusted_origins: self.trusted_origins,
            csrf_exempt: self.csrf_exempt,
            max_form_bytes: self.max_form_bytes,
            client_ip_header: self.client_ip_header.map(|h| h.to_ascii_lowercase()),
            trusted_proxies: self.trusted_proxies,
            reject_guessing: self.reject_guessing,
            sign_in_page: self.sign_in_page,
            dbsc,
            import: self.import,
            pre_session_csrf,
        })))
    }
}

/// RFC 6265 `token` characters.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A path on this site: one leading `/`, never `//` or `/\\` (which
/// browsers read as another host).
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == ' ')
}

#[cfg(test)]
mod tests {
    use tessera_core::MemoryStore;
    use tessera_core::sealed::SealingKey;

    use super::*;

    fn builder() -> WebConfigBuilder<Arc<WebConfig>> {
        WebConfigBuilder::new(
            SessionManager::builder(MemoryStore::new())
                .build()
                .expect("defaults"),
        )
    }

    #[test]
    fn a_sign_in_redirect_is_for_signed_out_page_visits_only() {
        let config = builder()
            .sign_in_page("/login?from=app")
            .build()
            .expect("valid");
        let mut html = http::HeaderMap::new();
        html.insert("accept", http::HeaderValue::from_static("text/html"));
        assert_eq!(
            config.sign_in_redirect("GET", "/a b?c=1&d", &html, "not_authenticated"),
            Some("/login?from=app&next=%2Fa+b%3Fc%3D1%26d".to_owned())
        );
        for code in ["invalid_session", "reauthentication_required"] {
            assert!(
                config.sign_in_redirect("HEAD", "/", &html, code).is_some(),
                "{code}"
            );
        }
        assert_eq!(
            config.sign_in_redirect("POST", "/", &html, "not_authenticated"),
            None
        );
        assert_eq!(
            config.sign_in_redirect("GET", "/", &html, "csrf_no_session"),
            None
        );
        let json = http::HeaderMap::new();
        assert_eq!(
            config.sign_in_redirect("GET", "/", &json, "not_authenticated"),
            None
        );
        let unset = builder().build().expect("defaults");
        assert!(!unset.has_sign_in_page());
        assert_eq!(
            unset.sign_in_redirect("GET", "/", &html, "not_authenticated"),
            None
        );
    }

    #[test]
    fn contradictions_are_refused_at_start() {
        assert!(builder().build().is_ok());
        assert!(matches!(
            builder().secure(false).build(),
            Err(LayerConfigError::PrefixNeedsSecure {
                prefix: "__Host-",
                ..
            })
        ));
        assert!(matches!(
            builder().cookie_name("__Secure-s").secure(false).build(),
            Err(LayerConfigError::PrefixNeedsSecure {
                prefix: "__Secure-",
                ..
            })
        ));
        assert!(builder().cookie_name("plain").secure(false).build().is_ok());
        assert!(matches!(
            builder().cookie_name("bad name;").build(),
            Err(LayerConfigError::InvalidCookieName(_))
        ));
        assert!(matches!(
            builder().max_cookies(0).build(),
            Err(LayerConfigError::MaxCookies(0))
        ));
        assert!(matches!(
            builder().trusted_origin("example.com").build(),
            Err(LayerConfigError::InvalidTrustedOrigin(_))
        ));
        assert!(matches!(
            builder().csrf_header("bad header").build(),
            Err(LayerConfigError::InvalidCsrfHeader(_))
        ));
        let keys = KeyRing::new(SealingKey::new(1, [7; 32]));
        assert!(
            matches!(
                builder().sealed(keys.clone()).build(),
                Err(LayerConfigError::Sealing(
                    tessera_core::ConfigError::VolatileEpochs
                ))
            ),
            "sealed sessions over a memory store's epochs need an opt-in"
        );
        let volatile_ok = SessionManager::builder(MemoryStore::new())
            .allow_volatile_epochs()
            .build()
            .expect("opted in");
        let sealed = WebConfigBuilder::<Arc<WebConfig>>::new(volatile_ok)
            .sealed(keys)
            .max_cookies(9)
            .build()
            .expect("sealed");
        assert!(sealed.manager().is_sealed());
    }
}

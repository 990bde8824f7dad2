//! Building a [`SessionLayer`](crate::SessionLayer): cookie attributes,
//! storage mode (server-side or sealed), CSRF settings; nonsense refused at start.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use tessera_core::SessionManager;
use tessera_core::sealed::KeyRing;

use crate::cookies::{ChunkedCookie, CookieAttributes, CookieController, SameSite, SingleCookie};
use crate::csrf::{DEFAULT_CSRF_FIELD, DEFAULT_CSRF_HEADER};
use crate::layer::SessionLayer;

/// Default number of cookies a sealed session may span.
pub const DEFAULT_MAX_COOKIES: usize = 4;
/// Default largest form body read to find the CSRF field (1 MiB).
pub const DEFAULT_MAX_FORM_BYTES: usize = 1024 * 1024;

/// Where sessions live between requests.
#[derive(Clone)]
pub(crate) enum Storage {
    /// In the manager's store; the cookie holds the token.
    Server,
    /// Sealed into the cookie itself.
    Sealed(Arc<KeyRing>),
}

/// A predicate choosing requests exempt from the CSRF check.
pub type CsrfExempt = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// CSRF settings.
#[derive(Clone)]
pub(crate) struct CsrfSettings {
    pub(crate) enabled: bool,
    pub(crate) header: HeaderName,
    pub(crate) field: String,
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) exempt: Option<CsrfExempt>,
    pub(crate) max_form_bytes: usize,
}

/// Everything the layer's service needs, shared by every request.
pub(crate) struct Shared {
    pub(crate) manager: SessionManager,
    pub(crate) storage: Storage,
    pub(crate) cookies: Arc<dyn CookieController>,
    pub(crate) cookie_name: String,
    pub(crate) csrf: CsrfSettings,
    pub(crate) client_ip_header: Option<HeaderName>,
    pub(crate) reject_guessing: bool,
}

/// A layer configuration that contradicts itself, refused by
/// [`SessionLayerBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerConfigError {
    /// The cookie name is empty or has characters a cookie name cannot have.
    #[error("`{0}` is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)")]
    InvalidCookieName(String),
    /// A `__Host-` or `__Secure-` cookie without `Secure`: browsers would refuse it.
    #[error(
        "the cookie name `{name}` has the {prefix} prefix, which requires the Secure attribute; keep secure(true) or choose another name"
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
}

/// Builds a [`SessionLayer`]; every setting starts at the secure default.
pub struct SessionLayerBuilder {
    manager: SessionManager,
    attributes: CookieAttributes,
    storage: Storage,
    max_cookies: usize,
    controller: Option<Arc<dyn CookieController>>,
    csrf_enabled: bool,
    csrf_header: String,
    csrf_field: String,
    trusted_origins: Vec<String>,
    csrf_exempt: Option<CsrfExempt>,
    max_form_bytes: usize,
    client_ip_header: Option<String>,
    reject_guessing: bool,
}

impl fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("attributes", &self.attributes)
            .field("sealed", &matches!(self.storage, Storage::Sealed(_)))
            .finish_non_exhaustive()
    }
}

impl SessionLayerBuilder {
    pub(crate) fn new(manager: SessionManager) -> Self {
        Self {
            manager,
            attributes: CookieAttributes::default(),
            storage: Storage::Server,
            max_cookies: DEFAULT_MAX_COOKIES,
            controller: None,
            csrf_enabled: true,
            csrf_header: DEFAULT_CSRF_HEADER.to_owned(),
            csrf_field: DEFAULT_CSRF_FIELD.to_owned(),
            trusted_origins: Vec::new(),
            csrf_exempt: None,
            max_form_bytes: DEFAULT_MAX_FORM_BYTES,
            client_ip_header: None,
            reject_guessing: true,
        }
    }

    /// Keeps sessions in the cookie itself, sealed with the newest key of
    /// `keys` (client-side sessions) instead of in the manager's store. The
    /// store then holds only the per-subject revocation epochs.
    pub fn sealed(mut self, keys: KeyRing) -> Self {
        self.storage = Storage::Sealed(Arc::new(keys));
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
    /// `__Host-` and `__Secure-` names.
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
    pub fn csrf_exempt(mut self, exempt: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        self.csrf_exempt = Some(Arc::new(exempt));
        self
    }

    /// Largest urlencoded form body read to find the CSRF field (default 1 MiB).
    pub fn max_form_bytes(mut self, limit: usize) -> Self {
        self.max_form_bytes = limit;
        self
    }

    /// Takes the client IP from this header (set by a trusted reverse proxy,
    /// e.g. `X-Real-IP`) instead of the connection's peer address.
    pub fn client_ip_header(mut self, name: impl Into<String>) -> Self {
        self.client_ip_header = Some(name.into());
        self
    }

    /// Refuses (429) requests carrying a session cookie from an IP the
    /// manager flags as guessing tokens (default on).
    pub fn reject_guessing(mut self, reject: bool) -> Self {
        self.reject_guessing = reject;
        self
    }

    /// Builds the layer, refusing settings that contradict each other.
    pub fn build(self) -> Result<SessionLayer, LayerConfigError> {
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
        let header = HeaderName::try_from(self.csrf_header.as_str())
            .map_err(|_| LayerConfigError::InvalidCsrfHeader(self.csrf_header.clone()))?;
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
        let client_ip_header = self
            .client_ip_header
            .map(|h| {
                HeaderName::try_from(h.as_str())
                    .map_err(|_| LayerConfigError::InvalidClientIpHeader(h))
            })
            .transpose()?;
        let cookies: Arc<dyn CookieController> = match (self.controller, &self.storage) {
            (Some(controller), _) => controller,
            (None, Storage::Server) => Arc::new(SingleCookie::new(self.attributes.clone())),
            (None, Storage::Sealed(_)) => Arc::new(ChunkedCookie::new(
                self.attributes.clone(),
                self.max_cookies,
            )),
        };
        Ok(SessionLayer::from_shared(Arc::new(Shared {
            manager: self.manager,
            storage: self.storage,
            cookies,
            cookie_name: self.attributes.name,
            csrf: CsrfSettings {
                enabled: self.csrf_enabled,
                header,
                field: self.csrf_field,
                trusted_origins: self.trusted_origins,
                exempt: self.csrf_exempt,
                max_form_bytes: self.max_form_bytes,
            },
            client_ip_header,
            reject_guessing: self.reject_guessing,
        })))
    }
}

/// RFC 6265 `token` characters.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use tessera_core::MemoryStore;
    use tessera_core::sealed::SealingKey;

    use super::*;

    fn builder() -> SessionLayerBuilder {
        SessionLayerBuilder::new(
            SessionManager::builder(MemoryStore::new())
                .build()
                .expect("defaults"),
        )
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
        assert!(builder().sealed(keys).max_cookies(9).build().is_ok());
    }
}

//! actix-session's Redis store (`RedisSessionStore`): one string per
//! session, named by the session key that the cookie carries encrypted
//! (or signed) with the app's `Key`, holding the JSON of a map from each
//! data key to its value's JSON text.

use std::collections::HashMap;
use std::sync::Arc;

use cookie::{Cookie, CookieJar, Key};
use redis::aio::ConnectionManager;
use serde_json::{Map, Value};
use tessera_web::import::{ImportFuture, Imported, LegacySessions};

/// How actix-session protected its cookie (`CookieContentSecurity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CookieContentSecurity {
    /// Encrypted (actix-session's default).
    #[default]
    Private,
    /// Signed.
    Signed,
}

/// Accepts, once, a cookie actix-session set over its Redis store, and
/// hands over the session's data.
#[derive(Clone)]
pub struct ActixSessionRedis {
    connection: ConnectionManager,
    key: Arc<Key>,
    security: CookieContentSecurity,
    cookie_name: Arc<str>,
    key_prefix: Arc<str>,
    subject_key: Option<Arc<str>>,
}

impl std::fmt::Debug for ActixSessionRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActixSessionRedis")
            .field("security", &self.security)
            .field("cookie_name", &self.cookie_name)
            .field("key_prefix", &self.key_prefix)
            .field("subject_key", &self.subject_key)
            .finish_non_exhaustive()
    }
}

/// The master key is shorter than the 64 bytes actix-web's `Key` has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actix-session's key must be the 64 bytes of `Key::master()`, got {0} bytes")]
pub struct KeyTooShort(pub usize);

impl ActixSessionRedis {
    /// Reads the records over `connection`; `master_key` is the 64 bytes
    /// of the `actix_web::cookie::Key` the app gave `SessionMiddleware`
    /// (`key.master()`). Cookie `id`, encrypted, keys without prefix:
    /// actix-session's defaults.
    pub fn new(connection: ConnectionManager, master_key: &[u8]) -> Result<Self, KeyTooShort> {
        let key = Key::try_from(master_key).map_err(|_| KeyTooShort(master_key.len()))?;
        Ok(Self {
            connection,
            key: Arc::new(key),
            security: CookieContentSecurity::Private,
            cookie_name: "id".into(),
            key_prefix: "".into(),
            subject_key: None,
        })
    }

    /// How the cookie was protected (`cookie_content_security`; default private).
    pub fn content_security(mut self, security: CookieContentSecurity) -> Self {
        self.security = security;
        self
    }

    /// The cookie name given to `cookie_name` (default `id`).
    pub fn cookie_name(mut self, name: &str) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The prefix the store's `cache_keygen` put before the session key.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The data key holding the signed-in user (a string or a number): the
    /// Tessera session is then signed in as that subject.
    pub fn subject_key(mut self, key: &str) -> Self {
        self.subject_key = Some(key.into());
        self
    }

    /// The session key inside the cookie, when the cookie opens under the key.
    fn session_key(&self, cookie_value: &str) -> Option<String> {
        // actix-web percent-encodes cookie values (base64's `+`, `/`, `=`).
        let original =
            Cookie::parse_encoded(format!("{}={cookie_value}", self.cookie_name)).ok()?;
        let mut jar = CookieJar::new();
        jar.add_original(original.into_owned());
        let cookie = match self.security {
            CookieContentSecurity::Private => jar.private(&self.key).get(&self.cookie_name),
            CookieContentSecurity::Signed => jar.signed(&self.key).get(&self.cookie_name),
        }?;
        let session_key = cookie.value();
        // actix-session's keys are 64 alphanumeric characters.
        (session_key.len() == 64 && session_key.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| session_key.to_owned())
    }
}

impl LegacySessions for ActixSessionRedis {
    fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn take<'a>(&'a self, cookie_value: &'a str) -> ImportFuture<'a> {
        Box::pin(async move {
            let Some(session_key) = self.session_key(cookie_value) else {
                return Ok(None);
            };
            let key = format!("{}{session_key}", self.key_prefix);
            let Some(bytes) = crate::take(&self.connection, &key).await? else {
                return Ok(None);
            };
            let state: HashMap<String, String> = match serde_json::from_slice(&bytes) {
                Ok(state) => state,
                Err(err) => {
                    tracing::warn!(error = %err, "an old actix-session record could not be read; the visitor starts anew");
                    return Ok(None);
                }
            };
            // Each value is the JSON text of what the app inserted.
            let data: Map<String, Value> = state
                .into_iter()
                .map(|(key, text)| {
                    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (key, value)
                })
                .collect();
            let subject = crate::subject_of(&data, self.subject_key.as_deref());
            Ok(Some(Imported::new(data, subject)))
        })
    }
}

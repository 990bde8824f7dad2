//! tower-sessions' Redis store (`tower-sessions-redis-store`): one string
//! per session, named by the session id the cookie carries, holding the
//! MessagePack of `Record { id, data, expiry_date }`.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use tessera_core::store::StoreError;
use tessera_web::import::{ImportFuture, Imported, LegacySessions};

/// The record tower-sessions-core serialises; only the data is kept
/// (Redis expired the record at its `expiry_date` already).
#[derive(Deserialize)]
struct Record {
    #[allow(dead_code)]
    id: IgnoredAny,
    data: HashMap<String, Value>,
    #[allow(dead_code)]
    expiry_date: IgnoredAny,
}

/// Accepts, once, a cookie tower-sessions set over its Redis store
/// (plain cookie, the library's default), and hands over the session's data.
#[derive(Clone)]
pub struct TowerSessionsRedis {
    connection: ConnectionManager,
    cookie_name: Arc<str>,
    key_prefix: Arc<str>,
    subject_key: Option<Arc<str>>,
}

impl std::fmt::Debug for TowerSessionsRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerSessionsRedis")
            .field("cookie_name", &self.cookie_name)
            .field("key_prefix", &self.key_prefix)
            .field("subject_key", &self.subject_key)
            .finish_non_exhaustive()
    }
}

impl TowerSessionsRedis {
    /// Reads the records over `connection`, from the cookie `id` (tower-sessions'
    /// default name), keys without prefix (the store's only layout).
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            cookie_name: "id".into(),
            key_prefix: "".into(),
            subject_key: None,
        }
    }

    /// Connects to the Redis server tower-sessions used.
    pub async fn connect(client: redis::Client) -> Result<Self, StoreError> {
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|err| StoreError::unavailable("connect to the old session store", err))?;
        Ok(Self::new(connection))
    }

    /// The cookie name given to `SessionManagerLayer::with_name` (default `id`).
    pub fn cookie_name(mut self, name: &str) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// A prefix before the id in Redis keys, for a store wrapped to add one.
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
}

/// Whether `value` is a tower-sessions id: 16 bytes in 22 base64url characters.
fn is_session_id(value: &str) -> bool {
    value.len() == 22
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl LegacySessions for TowerSessionsRedis {
    fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn take<'a>(&'a self, cookie_value: &'a str) -> ImportFuture<'a> {
        Box::pin(async move {
            if !is_session_id(cookie_value) {
                return Ok(None);
            }
            let key = format!("{}{cookie_value}", self.key_prefix);
            let Some(bytes) = crate::take(&self.connection, &key).await? else {
                return Ok(None);
            };
            let record: Record = match rmp_serde::from_slice(&bytes) {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(error = %err, "an old tower-sessions record could not be read; the visitor starts anew");
                    return Ok(None);
                }
            };
            let data = record.data.into_iter().collect();
            let subject = crate::subject_of(&data, self.subject_key.as_deref());
            Ok(Some(Imported::new(data, subject)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_session_id;

    #[test]
    fn only_well_formed_ids_name_a_key() {
        assert!(is_session_id("AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(is_session_id("abc-_0123456789xyzABCD"));
        for forged in [
            "",
            "short",
            "tessera:epoch:global0000",
            "AAAAAAAAAAAAAAAAAAAAA*",
            "AAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!is_session_id(forged), "{forged}");
        }
    }
}

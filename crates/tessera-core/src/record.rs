//! The session record stores keep: the application's data, the
//! authentication state, every deadline, the client it belongs to, and the
//! hashes of its current and previous token.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::token::{SessionId, TokenHash};

/// Session data: a JSON object, kept as its compact JSON text so a million
/// sessions stay small in memory and clone cheaply. Parse it once per
/// request with [`to_map`](Self::to_map).
#[derive(Clone)]
pub struct SessionData(Box<str>);

/// Why a value cannot be session data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Session data must be a JSON object (`{…}`).
    #[error("session data must be a JSON object, got {found}")]
    NotAnObject {
        /// The JSON type that was given.
        found: &'static str,
    },
    /// The data could not be serialised or parsed.
    #[error("session data is not valid JSON: {0}")]
    Json(String),
}

impl SessionData {
    /// The empty object `{}`.
    pub fn empty() -> Self {
        Self("{}".into())
    }

    /// Data from a JSON object.
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, DataError> {
        serde_json::to_string(map)
            .map(|text| Self(text.into_boxed_str()))
            .map_err(|e| DataError::Json(e.to_string()))
    }

    /// Data from any JSON value, which must be an object.
    pub fn from_value(value: &Value) -> Result<Self, DataError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            other => Err(DataError::NotAnObject {
                found: json_type_name(other),
            }),
        }
    }

    /// Data from JSON text, which must hold an object.
    pub fn from_json(text: &str) -> Result<Self, DataError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| DataError::Json(e.to_string()))?;
        Self::from_value(&value)
    }

    /// Data from text a store kept (written by [`SessionData::as_json`]);
    /// not parsed here: a damaged text surfaces when it is read.
    pub(crate) fn from_stored(text: Box<str>) -> Self {
        Self(text)
    }

    /// The data as a JSON object (empty if the stored text is damaged).
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The data as a JSON value (always an object).
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// One field, deserialised; `None` when absent or of another type.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.to_map()
            .remove(key)
            .and_then(|value| serde_json::from_value(value).ok())
    }

    /// The compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// Size of the JSON text in bytes (what the data limit counts).
    pub fn len_bytes(&self) -> usize {
        self.0.len()
    }
}

/// The name of a JSON value's type, for error messages.
pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Default for SessionData {
    fn default() -> Self {
        Self::empty()
    }
}

impl PartialEq for SessionData {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.to_map() == other.to_map()
    }
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionData({} bytes)", self.len_bytes())
    }
}

impl Serialize for SessionData {
    /// Writes the JSON text as it is (an object), without building values.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&serde_json::value::RawValue>(&self.0) {
            Ok(raw) => raw.serialize(serializer),
            // A damaged stored text shows as an empty object, as `to_map` reads it.
            Err(_) => Map::new().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SessionData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// How strongly a session's subject authenticated: 0 while anonymous, 1
/// for a password, 2 for multi-factor; apps may define higher levels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct AuthLevel(pub u8);

impl AuthLevel {
    /// Not signed in.
    pub const ANONYMOUS: AuthLevel = AuthLevel(0);
    /// Signed in with a password (the default of a login).
    pub const PASSWORD: AuthLevel = AuthLevel(1);
    /// Signed in with a second factor.
    pub const MULTI_FACTOR: AuthLevel = AuthLevel(2);

    /// The level as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl From<u8> for AuthLevel {
    fn from(level: u8) -> Self {
        AuthLevel(level)
    }
}

impl fmt::Display for AuthLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a client told us about itself when it made a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Longest User-Agent kept for display; longer ones are cut (binding hashes the whole).
pub const MAX_USER_AGENT_BYTES: usize = 512;

impl ClientInfo {
    /// Client info from an IP and a User-Agent.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        Self {
            ip,
            user_agent: user_agent.map(str::to_owned),
        }
    }

    /// The binding fingerprint of this client: a hash of its User-Agent and
    /// its IP prefix (/24 for IPv4, /48 for IPv6).
    pub fn binding(&self) -> ClientBinding {
        ClientBinding {
            user_agent_hash: self.user_agent.as_deref().map(|ua| {
                let digest = Sha256::digest(ua.as_bytes());
                let mut short = [0u8; 16];
                short.copy_from_slice(&digest[..16]);
                u128::from_be_bytes(short)
            }),
            ip_prefix: self.ip.map(ip_prefix),
        }
    }

    /// A copy fit for storage and display: User-Agent cut at a character
    /// boundary to [`MAX_USER_AGENT_BYTES`].
    pub fn for_display(&self) -> ClientInfo {
        let user_agent = self.user_agent.as_deref().map(|ua| {
            let mut end = ua.len().min(MAX_USER_AGENT_BYTES);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
        ClientInfo {
            ip: self.ip,
            user_agent,
        }
    }
}

/// The network prefix client binding compares: /24 for IPv4, /48 for IPv6.
pub(crate) fn ip_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return ip_prefix(IpAddr::V4(v4));
            }
            let mut octets = v6.octets();
            octets[6..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// What a session remembers of the client that created it, to notice a token
/// used from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientBinding {
    /// First 128 bits of SHA-256 of the User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_hash: Option<u128>,
    /// The IP prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_prefix: Option<IpAddr>,
}

impl ClientBinding {
    /// Whether a request's binding contradicts this one. A session bound
    /// to a User-Agent mismatches a request without one (dropping the
    /// header must not evade the binding); an IP prefix the request does
    /// not carry is not compared.
    pub fn mismatches(&self, presented: &ClientBinding) -> bool {
        let ua = matches!(self.user_agent_hash, Some(a) if presented.user_agent_hash != Some(a));
        let ip = matches!((self.ip_prefix, presented.ip_prefix), (Some(a), Some(b)) if a != b);
        ua || ip
    }
}

/// What a compare-and-swap write compares: the data version and the hash
/// of the current token. Renewal changes the token but not the version, a
/// data change the version but not the token; a write made on the strength
/// of an older reading of the record is refused after either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revision {
    /// The record's version.
    pub version: u64,
    /// The hash of its current token.
    pub token: TokenHash,
}

impl Revision {
    /// The 40 bytes a stored record keeps at a fixed place (see
    /// [`codec`](crate::codec)): the version big-endian, then the hash.
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.version.to_be_bytes());
        out[8..].copy_from_slice(&self.token.0);
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes) back.
    pub fn from_bytes(bytes: &[u8; 40]) -> Self {
        let mut version = [0u8; 8];
        version.copy_from_slice(&bytes[..8]);
        let mut token = [0u8; 32];
        token.copy_from_slice(&bytes[8..]);
        Self {
            version: u64::from_be_bytes(version),
            token: TokenHash(token),
        }
    }
}

/// The token a session had before its last rotation, kept so that
/// requests still in flight with it are recognised, and so that its reuse
/// after the grace gives its theft away.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PreviousToken {
    /// SHA-256 of the previous token.
    pub(crate) hash: TokenHash,
    /// When it was replaced.
    pub(crate) rotated_at: Timestamp,
    /// Until when it still resolves after its successor was presented;
    /// `None` when it died at once (login, step-up).
    pub(crate) grace_until: Option<Timestamp>,
    /// The successor, sealed so that only the previous token opens it,
    /// while the successor has not been presented yet.
    pub(crate) successor: Option<[u8; 32]>,
}

impl fmt::Debug for PreviousToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousToken")
            .field("hash", &self.hash)
            .field("rotated_at", &self.rotated_at)
            .field("grace_until", &self.grace_until)
            .field("successor_unconfirmed", &self.successor.is_some())
            .finish()
    }
}

/// A session as stores keep it and the manager hands it out.
///
/// The manager creates and changes records; stores keep them as the
/// [`codec`](crate::codec) encodes them. Times are in milliseconds; the
/// idle deadline is derived (`last_seen_at + idle_timeout`), so touching a
/// session writes one field.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The public id, stable across rotation.
    pub id: SessionId,
    /// The authenticated user, `None` while anonymous.
    pub subject: Option<String>,
    /// Strength of the authentication.
    pub auth_level: AuthLevel,
    /// When the subject last authenticated.
    pub authenticated_at: Option<Timestamp>,
    /// The application's data.
    pub data: SessionData,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the session was last used (as last written; see `touch_after`).
    pub last_seen_at: Timestamp,
    /// When the current token was issued (renewal counts from here).
    pub token_issued_at: Timestamp,
    /// This session's idle timeout in milliseconds.
    pub idle_timeout_ms: u64,
    /// The absolute deadline; rotation never moves it.
    pub absolute_expires_at: Timestamp,
    /// Incremented by every data or authentication change (compare-and-swap).
    pub version: u64,
    /// The global revocation epoch the session was created in.
    pub epoch: u64,
    /// The creating (or logging-in) client, for display ("your sessions").
    pub client: Option<Box<ClientInfo>>,
    /// The creating (or logging-in) client's binding fingerprint.
    pub binding: Option<Box<ClientBinding>>,
    /// SHA-256 of the current token.
    pub(crate) token: TokenHash,
    /// The token before the last rotation.
    pub(crate) previous: Option<Box<PreviousToken>>,
    /// The secret CSRF tokens of this session are masked from; new at every login.
    pub(crate) csrf_secret: CsrfSecret,
}

/// A session's CSRF secret: 128 random bits. `Debug` is redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CsrfSecret(pub(crate) [u8; 16]);

impl CsrfSecret {
    /// A secret from its bytes (for tests and for tools that keep one).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The secret's bytes, for masking CSRF tokens.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret(…redacted)")
    }
}

impl SessionRecord {
    /// This session's idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The idle deadline: `last_seen_at + idle_timeout`.
    pub fn idle_expires_at(&self) -> Timestamp {
        self.last_seen_at.plus(self.idle_timeout())
    }

    /// The earlier of the idle and absolute deadlines: when the session ends.
    pub fn expires_at(&self) -> Timestamp {
        self.idle_expires_at().min(self.absolute_expires_at)
    }

    /// What a compare-and-swap write of this record compares.
    pub fn revision(&self) -> Revision {
        Revision {
            version: self.version,
            token: self.token,
        }
    }

    /// The secret this session's CSRF tokens are masked from.
    pub fn csrf_secret(&self) -> &CsrfSecret {
        &self.csrf_secret
    }

    /// Whether the subject is signed in.
    pub fn is_authenticated(&self) -> bool {
        self.subject.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_must_be_an_object() {
        assert!(SessionData::from_value(&serde_json::json!({"a": 1})).is_ok());
        assert_eq!(
            SessionData::from_value(&serde_json::json!([1])),
            Err(DataError::NotAnObject { found: "an array" })
        );
        assert!(SessionData::from_json("{").is_err());
        let data: Result<SessionData, _> = serde_json::from_str("42");
        assert!(data.is_err());
    }

    #[test]
    fn data_get_reads_typed_fields() {
        let data = SessionData::from_json(r#"{"user_id": 7, "name": "ann"}"#).expect("object");
        assert_eq!(data.get::<u64>("user_id"), Some(7));
        assert_eq!(data.get::<String>("name").as_deref(), Some("ann"));
        assert_eq!(data.get::<u64>("name"), None);
        assert_eq!(SessionData::empty().as_json(), "{}");
    }

    #[test]
    fn ip_prefixes_are_24_and_48_bits() {
        let v4: IpAddr = "203.0.113.77".parse().expect("ip");
        assert_eq!(ip_prefix(v4), "203.0.113.0".parse::<IpAddr>().expect("ip"));
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().expect("ip");
        assert_eq!(ip_prefix(v6), "2001:db8:1::".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn binding_compares_only_what_both_carry() {
        let home = ClientInfo::new(Some("10.1.2.3".parse().expect("ip")), Some("Firefox"));
        let same_net = ClientInfo::new(Some("10.1.2.99".parse().expect("ip")), Some("Firefox"));
        let other_net = ClientInfo::new(Some("10.9.9.9".parse().expect("ip")), Some("Firefox"));
        let other_ua = ClientInfo::new(Some("10.1.2.3".parse().expect("ip")), Some("curl"));
        let nothing = ClientInfo::default();
        assert!(!home.binding().mismatches(&same_net.binding()));
        assert!(home.binding().mismatches(&other_net.binding()));
        assert!(home.binding().mismatches(&other_ua.binding()));
        let no_ip = ClientInfo::new(None, Some("Firefox"));
        assert!(!home.binding().mismatches(&no_ip.binding()));
        assert!(!nothing.binding().mismatches(&home.binding()));
    }

    #[test]
    fn a_stripped_user_agent_is_a_binding_mismatch() {
        let home = ClientInfo::new(Some("10.1.2.3".parse().expect("ip")), Some("Firefox"));
        let stripped = ClientInfo::new(Some("10.1.2.3".parse().expect("ip")), None);
        assert!(home.binding().mismatches(&stripped.binding()));
        assert!(home.binding().mismatches(&ClientInfo::default().binding()));
    }

    #[test]
    fn long_user_agents_are_cut_at_char_boundaries() {
        let ua = "é".repeat(400);
        let stored = ClientInfo::new(None, Some(&ua)).for_display();
        let kept = stored.user_agent.expect("ua");
        assert!(kept.len() <= MAX_USER_AGENT_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn csrf_secrets_do_not_show_in_debug() {
        let secret = CsrfSecret([0xAB; 16]);
        assert!(!format!("{secret:?}").to_lowercase().contains("ab"));
    }
}

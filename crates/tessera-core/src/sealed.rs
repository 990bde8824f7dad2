//! Sealed client-side sessions: the session record encrypted into the
//! credential itself with XChaCha20-Poly1305 under a [`KeyRing`] (the
//! format is the contract of `docs/tokens-and-cookies.md`).
//!
//! The sealed text of format 2 is `base64url(2 ‖ key id ‖ nonce ‖
//! ciphertext ‖ tag)`: the format byte, the id of the key that sealed it
//! (LEB128), a random 24-byte nonce, and the AEAD output. The header and
//! a caller context (the cookie name) are authenticated as associated
//! data, so a seal cannot be moved to another cookie or relabelled with
//! another key id. The plaintext carries only what validation and the
//! application need: id, CSRF secret, deadlines, versions, epochs, subject,
//! authentication, binding fingerprint and data, in compact binary.
//!
//! Seals of format 1 (a 4-byte key id and a JSON record) still open, so
//! sessions sealed before the upgrade last until their deadlines.
//!
//! The newest key of the ring seals; every key of the ring opens, so keys
//! rotate without signing anyone out: put the new key first, keep the old
//! one until the longest session sealed with it has expired (the absolute
//! timeout), then drop it. A seal whose key has left the ring does not open.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::Deserialize;

use crate::clock::Timestamp;
use crate::codec::{Reader, write_bytes, write_ip, write_signed, write_unsigned};
use crate::record::{AuthLevel, ClientBinding, ClientInfo, CsrfSecret, SessionData, SessionRecord};
use crate::token::{SessionId, TokenError, TokenHash, random};

/// The seal format [`KeyRing::seal`] writes.
pub const SEAL_FORMAT: u8 = 2;
const LEGACY_FORMAT: u8 = 1;
const LEGACY_KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Largest sealed text [`KeyRing::open`] looks at; anything longer is
/// refused before decoding (64 KiB of data plus the record's own fields).
pub const MAX_SEALED_LEN: usize = 192 * 1024;

/// A session as it travels inside a seal: the record plus the subject's
/// revocation epoch when it was sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSession {
    /// The session record, with every deadline.
    pub record: SessionRecord,
    /// The subject's revocation epoch when the session was sealed (0 while
    /// anonymous); the session is dead once the store's epoch moved past it.
    pub subject_epoch: u64,
}

/// One 256-bit sealing key with its id. `Debug` shows only the id.
#[derive(Clone)]
pub struct SealingKey {
    id: u32,
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    /// A key from 32 secret bytes.
    pub fn new(id: u32, secret: [u8; 32]) -> Self {
        Self {
            id,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&secret)),
        }
    }

    /// A fresh random key from the OS CSPRNG.
    pub fn generate(id: u32) -> Result<Self, TokenError> {
        Ok(Self::new(id, random()?))
    }

    /// A key from 32 bytes written in base64url or standard base64 (padding optional).
    pub fn from_base64(id: u32, text: &str) -> Result<Self, KeyRingError> {
        let text = text.trim().trim_end_matches('=');
        let decoded = URL_SAFE_NO_PAD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| KeyRingError::NotBase64 { id })?;
        let secret: [u8; 32] =
            decoded
                .try_into()
                .map_err(|bytes: Vec<u8>| KeyRingError::WrongLength {
                    id,
                    len: bytes.len(),
                })?;
        Ok(Self::new(id, secret))
    }

    /// The key's id, written into every seal it makes.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a key ring cannot be built. No variant shows key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// Two keys share an id, so a seal could not name its key.
    #[error("two sealing keys have the id {id}; every key needs its own id")]
    DuplicateId {
        /// The shared id.
        id: u32,
    },
    /// A key is not base64.
    #[error("sealing key {id} is not base64 or base64url")]
    NotBase64 {
        /// The key's id.
        id: u32,
    },
    /// A key does not have 32 bytes.
    #[error(
        "sealing key {id} has {len} bytes; a key has exactly 32 (generate one with `openssl rand -base64 32`)"
    )]
    WrongLength {
        /// The key's id.
        id: u32,
        /// Its length in bytes.
        len: usize,
    },
    /// A key-ring entry is not `ID:KEY`.
    #[error(
        "key ring entry {position} is not ID:BASE64KEY (an id, a colon, then the key); write the entries newest first, separated by commas"
    )]
    Syntax {
        /// The entry's position in the description, from 1.
        position: usize,
    },
    /// A key-ring description names no key.
    #[error("the key ring is empty; give at least one ID:BASE64KEY")]
    Empty,
}

/// Why a sealed text did not open. Every case means "no session": the
/// caller treats the request as anonymous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not base64url, too short or too long.
    #[error("the sealed session is malformed")]
    Malformed,
    /// Written in a seal format this build does not know.
    #[error("the sealed session has format {format}; this build reads formats 1 and {SEAL_FORMAT}")]
    UnknownFormat {
        /// The format byte found.
        format: u8,
    },
    /// Sealed with a key that is not (or no longer) in the ring.
    #[error(
        "the sealed session names key {key_id}, which is not in the key ring (retired or never known)"
    )]
    UnknownKey {
        /// The key id found.
        key_id: u32,
    },
    /// The authentication tag does not verify: tampered, truncated, moved to
    /// another cookie, or forged.
    #[error("the sealed session does not verify (tampered or forged)")]
    Forged,
    /// Verified, but the record inside cannot be read.
    #[error("the sealed session's record cannot be read: {0}")]
    Record(String),
}

/// Why a session could not be sealed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The OS CSPRNG failed to give a nonce.
    #[error(transparent)]
    Entropy(#[from] TokenError),
    /// Encryption failed (only for absurdly large records).
    #[error("cannot encrypt the session record")]
    Encrypt,
}

/// Sealing keys, newest first: the first seals, all of them open.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<SealingKey>,
}

impl KeyRing {
    /// A ring with one key, which seals.
    pub fn new(current: SealingKey) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// Adds an older key that still opens seals but no longer makes them.
    pub fn with_previous(mut self, key: SealingKey) -> Result<Self, KeyRingError> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(KeyRingError::DuplicateId { id: key.id });
        }
        self.keys.push(key);
        Ok(self)
    }

    /// Reads `ID:BASE64KEY[,ID:BASE64KEY…]`, newest (sealing) key first —
    /// the form used by command-line flags and environment variables.
    /// Errors name entries by position, never by content.
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        let mut ring: Option<KeyRing> = None;
        let entries = spec.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let syntax = || KeyRingError::Syntax {
                position: index + 1,
            };
            let (id, key) = entry.split_once(':').ok_or_else(syntax)?;
            let id: u32 = id.trim().parse().map_err(|_| syntax())?;
            let key = SealingKey::from_base64(id, key)?;
            ring = Some(match ring {
                None => KeyRing::new(key),
                Some(ring) => ring.with_previous(key)?,
            });
        }
        ring.ok_or(KeyRingError::Empty)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> u32 {
        self.keys[0].id
    }

    /// Every key id, newest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Seals a session with the newest key. `context` (e.g. the cookie name)
    /// must be given again to open it.
    pub fn seal(&self, session: &SealedSession, context: &[u8]) -> Result<String, SealError> {
        let plaintext = encode_plain(session);
        let key = &self.keys[0];
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut header = vec![SEAL_FORMAT];
        write_unsigned(&mut header, u64::from(key.id));
        let aad = associated_data(&header, context);
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut sealed = header;
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a sealed session made by any key of the ring with the same `context`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<SealedSession, OpenError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Malformed)?;
        let (key_id, header_len) = match bytes.first() {
            Some(&SEAL_FORMAT) => {
                let mut reader = Reader {
                    bytes: &bytes,
                    at: 1,
                };
                let id = reader.unsigned().map_err(|_| OpenError::Malformed)?;
                let id = u32::try_from(id).map_err(|_| OpenError::Malformed)?;
                (id, reader.at)
            }
            Some(&LEGACY_FORMAT) => {
                let id_bytes = bytes
                    .get(1..1 + LEGACY_KEY_ID_LEN)
                    .ok_or(OpenError::Malformed)?;
                let mut id = [0u8; LEGACY_KEY_ID_LEN];
                id.copy_from_slice(id_bytes);
                (u32::from_be_bytes(id), 1 + LEGACY_KEY_ID_LEN)
            }
            Some(&format) => return Err(OpenError::UnknownFormat { format }),
            None => return Err(OpenError::Malformed),
        };
        if bytes.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(OpenError::UnknownKey { key_id })?;
        let (header, rest) = bytes.split_at(header_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(header, context);
        let plaintext = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Forged)?;
        if header[0] == LEGACY_FORMAT {
            decode_legacy(&plaintext)
        } else {
            decode_plain(&plaintext).map_err(|e| OpenError::Record(e.to_string()))
        }
    }
}

fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

const S_SUBJECT: u8 = 1;
const S_AUTHENTICATED_AT: u8 = 1 << 1;
const S_BINDING_UA: u8 = 1 << 2;
const S_BINDING_IP: u8 = 1 << 3;

fn encode_plain(session: &SealedSession) -> Vec<u8> {
    let record = &session.record;
    let mut out = Vec::with_capacity(64 + record.data.len_bytes());
    out.extend_from_slice(&record.id.0);
    out.extend_from_slice(&record.csrf_secret.0);
    let binding_ua = record.binding.as_ref().and_then(|b| b.user_agent_hash);
    let binding_ip = record.binding.as_ref().and_then(|b| b.ip_prefix);
    let mut flags = 0;
    for (present, flag) in [
        (record.subject.is_some(), S_SUBJECT),
        (record.authenticated_at.is_some(), S_AUTHENTICATED_AT),
        (binding_ua.is_some(), S_BINDING_UA),
        (binding_ip.is_some(), S_BINDING_IP),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.push(flags);
    let created = record.created_at.0;
    write_signed(&mut out, created);
    write_signed(&mut out, record.token_issued_at.0.wrapping_sub(created));
    write_signed(&mut out, record.last_seen_at.0.wrapping_sub(created));
    write_signed(&mut out, record.absolute_expires_at.0.wrapping_sub(created));
    write_unsigned(&mut out, record.idle_timeout_ms);
    write_unsigned(&mut out, record.epoch);
    write_unsigned(&mut out, session.subject_epoch);
    write_unsigned(&mut out, record.version);
    out.push(record.auth_level.0);
    if let Some(at) = record.authenticated_at {
        write_signed(&mut out, at.0.wrapping_sub(created));
    }
    if let Some(subject) = &record.subject {
        write_bytes(&mut out, subject.as_bytes());
    }
    if let Some(hash) = binding_ua {
        out.extend_from_slice(&hash.to_be_bytes());
    }
    if let Some(ip) = binding_ip {
        write_ip(&mut out, ip);
    }
    out.extend_from_slice(record.data.as_json().as_bytes());
    out
}

fn decode_plain(bytes: &[u8]) -> Result<SealedSession, crate::store::StoreError> {
    let mut reader = Reader { bytes, at: 0 };
    let id = SessionId(reader.array()?);
    let csrf = CsrfSecret(reader.array()?);
    let flags = reader.byte()?;
    let created = reader.signed()?;
    let token_issued = created.wrapping_add(reader.signed()?);
    let last_seen = created.wrapping_add(reader.signed()?);
    let absolute = created.wrapping_add(reader.signed()?);
    let idle_timeout_ms = reader.unsigned()?;
    let epoch = reader.unsigned()?;
    let subject_epoch = reader.unsigned()?;
    let version = reader.unsigned()?;
    let auth_level = AuthLevel(reader.byte()?);
    let authenticated_at = (flags & S_AUTHENTICATED_AT != 0)
        .then(|| reader.signed().map(|d| Timestamp(created.wrapping_add(d))))
        .transpose()?;
    let subject = (flags & S_SUBJECT != 0)
        .then(|| reader.text())
        .transpose()?;
    let binding_ua = (flags & S_BINDING_UA != 0)
        .then(|| reader.array::<16>().map(u128::from_be_bytes))
        .transpose()?;
    let binding_ip = (flags & S_BINDING_IP != 0)
        .then(|| reader.ip())
        .transpose()?;
    let data = std::str::from_utf8(&bytes[reader.at..])
        .map_err(|_| crate::store::StoreError::corrupt("sealed data is not UTF-8"))?;
    let binding = (binding_ua.is_some() || binding_ip.is_some()).then(|| {
        Box::new(ClientBinding {
            user_agent_hash: binding_ua,
            ip_prefix: binding_ip,
        })
    });
    Ok(SealedSession {
        record: SessionRecord {
            id,
            subject,
            auth_level,
            authenticated_at,
            data: SessionData::from_stored(data.into()),
            created_at: Timestamp(created),
            last_seen_at: Timestamp(last_seen),
            token_issued_at: Timestamp(token_issued),
            idle_timeout_ms,
            absolute_expires_at: Timestamp(absolute),
            version,
            epoch,
            client: None,
            binding,
            token: TokenHash([0; 32]),
            previous: None,
            csrf_secret: csrf,
        },
        subject_epoch,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyPlain {
    #[allow(dead_code)]
    v: u8,
    session: LegacySession,
    subject_epoch: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacySession {
    id: SessionId,
    subject: Option<String>,
    auth_level: u8,
    authenticated_at: Option<Timestamp>,
    data: SessionData,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    token_issued_at: Timestamp,
    idle_timeout_ms: u64,
    absolute_expires_at: Timestamp,
    version: u64,
    epoch: u64,
    #[serde(default)]
    client: Option<Box<ClientInfo>>,
    #[serde(default)]
    binding: Option<Box<ClientBinding>>,
}

/// The session-data key under which format 1 kept its CSRF secret.
const LEGACY_CSRF_KEY: &str = "__tessera_csrf";

/// A format 1 seal's JSON record. Its CSRF secret (in the data) is
/// replaced by one derived from the session id, stable across requests.
fn decode_legacy(plaintext: &[u8]) -> Result<SealedSession, OpenError> {
    let old: LegacyPlain =
        serde_json::from_slice(plaintext).map_err(|e| OpenError::Record(e.to_string()))?;
    let s = old.session;
    let mut data = s.data.to_map();
    let csrf = match data.remove(LEGACY_CSRF_KEY) {
        Some(serde_json::Value::String(secret)) => legacy_csrf(secret.as_bytes()),
        _ => legacy_csrf(&s.id.0),
    };
    let data = SessionData::from_map(&data).map_err(|e| OpenError::Record(e.to_string()))?;
    Ok(SealedSession {
        record: SessionRecord {
            id: s.id,
            subject: s.subject,
            auth_level: AuthLevel(s.auth_level),
            authenticated_at: s.authenticated_at,
            data,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            token_issued_at: s.token_issued_at,
            idle_timeout_ms: s.idle_timeout_ms,
            absolute_expires_at: s.absolute_expires_at,
            version: s.version,
            epoch: s.epoch,
            client: s.client,
            binding: s.binding,
            token: TokenHash([0; 32]),
            previous: None,
            csrf_secret: csrf,
        },
        subject_epoch: old.subject_epoch,
    })
}

fn legacy_csrf(seed: &[u8]) -> CsrfSecret {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed);
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&digest[..16]);
    CsrfSecret(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SealedSession {
        SealedSession {
            record: SessionRecord {
                id: SessionId([7; 16]),
                subject: Some("alice".into()),
                auth_level: AuthLevel(1),
                authenticated_at: Some(Timestamp(5)),
                data: SessionData::from_json(r#"{"n":1}"#).expect("object"),
                created_at: Timestamp(1),
                last_seen_at: Timestamp(2),
                token_issued_at: Timestamp(3),
                idle_timeout_ms: 1000,
                absolute_expires_at: Timestamp(10_000),
                version: 4,
                epoch: 0,
                client: None,
                binding: Some(Box::new(
                    ClientInfo::new(Some("10.0.0.1".parse().expect("ip")), Some("UA")).binding(),
                )),
                token: TokenHash([0; 32]),
                previous: None,
                csrf_secret: CsrfSecret([3; 16]),
            },
            subject_epoch: 3,
        }
    }

    fn ring(id: u32, byte: u8) -> KeyRing {
        KeyRing::new(SealingKey::new(id, [byte; 32]))
    }

    #[test]
    fn seals_round_trip_and_differ_every_time() {
        let ring = ring(1, 9);
        let a = ring.seal(&session(), b"c").expect("seal");
        let b = ring.seal(&session(), b"c").expect("seal");
        assert_ne!(a, b, "a fresh nonce per seal");
        assert_eq!(ring.open(&a, b"c").expect("open"), session());
        assert!(
            a.len() < 180,
            "a small signed-in seal is {} characters",
            a.len()
        );
    }

    #[test]
    fn tampering_context_and_unknown_keys_are_refused() {
        let ring = ring(1, 9);
        let sealed = ring.seal(&session(), b"cookie-a").expect("seal");
        assert_eq!(ring.open(&sealed, b"cookie-b"), Err(OpenError::Forged));
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            ring.open(&URL_SAFE_NO_PAD.encode(&bytes), b"cookie-a"),
            Err(OpenError::Forged)
        );
        // Relabelling the key id is caught by the header in the associated data.
        let other = ring
            .clone()
            .with_previous(SealingKey::new(2, [9; 32]))
            .expect("ring");
        let mut relabelled = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        relabelled[1] = 2;
        assert_eq!(
            other.open(&URL_SAFE_NO_PAD.encode(&relabelled), b"cookie-a"),
            Err(OpenError::Forged)
        );
        assert_eq!(
            self::ring(5, 1).open(&sealed, b"cookie-a"),
            Err(OpenError::UnknownKey { key_id: 1 })
        );
        assert_eq!(ring.open("", b"x"), Err(OpenError::Malformed));
        assert_eq!(ring.open("%%%", b"x"), Err(OpenError::Malformed));
        assert_eq!(
            ring.open(&"A".repeat(MAX_SEALED_LEN + 1), b"x"),
            Err(OpenError::Malformed)
        );
        let mut unknown_format = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        unknown_format[0] = 9;
        assert_eq!(
            ring.open(&URL_SAFE_NO_PAD.encode(&unknown_format), b"cookie-a"),
            Err(OpenError::UnknownFormat { format: 9 })
        );
    }

    #[test]
    fn a_format_1_seal_still_opens() {
        // Sealed by the format 1 code: header 1 ‖ key id 4 bytes BE, JSON plaintext.
        let key = SealingKey::new(1, [9; 32]);
        let plaintext = br#"{"v":1,"session":{"id":"BwcHBwcHBwcHBwcHBwcHBw","subject":"alice","auth_level":1,"authenticated_at":5,"data":{"n":1,"__tessera_csrf":"abc"},"created_at":1,"last_seen_at":2,"token_issued_at":3,"idle_timeout_ms":1000,"absolute_expires_at":10000,"version":4,"epoch":0},"subject_epoch":3}"#;
        let header = [1u8, 0, 0, 0, 1];
        let nonce = [4u8; NONCE_LEN];
        let aad = associated_data(&header, b"c");
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("encrypt");
        let mut sealed = header.to_vec();
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        let opened = KeyRing::new(key)
            .open(&URL_SAFE_NO_PAD.encode(sealed), b"c")
            .expect("format 1 opens");
        assert_eq!(opened.record.id, SessionId([7; 16]));
        assert_eq!(opened.subject_epoch, 3);
        assert_eq!(opened.record.data.as_json(), r#"{"n":1}"#);
        assert_eq!(opened.record.csrf_secret, legacy_csrf(b"abc"));
    }

    #[test]
    fn rotation_keeps_old_seals_open_until_the_key_is_dropped() {
        let old = ring(1, 1);
        let sealed_old = old.seal(&session(), b"c").expect("seal");
        let rotated = KeyRing::new(SealingKey::new(2, [2; 32]))
            .with_previous(SealingKey::new(1, [1; 32]))
            .expect("ring");
        assert_eq!(rotated.current_id(), 2);
        assert_eq!(rotated.open(&sealed_old, b"c").expect("open"), session());
        let sealed_new = rotated.seal(&session(), b"c").expect("seal");
        assert!(old.open(&sealed_new, b"c").is_err());
        let retired = ring(2, 2);
        assert_eq!(
            retired.open(&sealed_old, b"c"),
            Err(OpenError::UnknownKey { key_id: 1 })
        );
    }

    #[test]
    fn key_ring_descriptions_are_checked_and_errors_show_no_key() {
        let key = URL_SAFE_NO_PAD.encode([3u8; 32]);
        let ring = KeyRing::parse(&format!("2:{key}, 1:{key}")).expect("ring");
        assert_eq!(ring.key_ids(), vec![2, 1]);
        assert_eq!(
            KeyRing::parse(&format!("1:{key},1:{key}")).err(),
            Some(KeyRingError::DuplicateId { id: 1 })
        );
        assert_eq!(KeyRing::parse("").err(), Some(KeyRingError::Empty));
        assert_eq!(
            KeyRing::parse("1:AAAA").err(),
            Some(KeyRingError::WrongLength { id: 1, len: 3 })
        );
        let padded = base64::engine::general_purpose::STANDARD.encode([4u8; 32]);
        assert!(KeyRing::parse(&format!("7:{padded}")).is_ok());
        // A key without its `ID:` prefix, a bad id, a bad key: no message
        // or debug output carries any of the key's characters.
        let secret = "h3zT+Q2wLkq9vX8mN4bR7cY1pF6sJ0dG5aE2uI3oK9w=";
        for spec in [
            secret.to_owned(),
            format!("x{secret}:{secret}"),
            format!("1:{key},{secret}"),
            format!("3:{}", &secret[..20]),
        ] {
            let err = KeyRing::parse(&spec).expect_err("refused");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(
                    !shown.contains(&secret[..12]) && !shown.contains(&key[..12]),
                    "`{shown}` shows key material"
                );
            }
        }
        assert!(!format!("{:?}", SealingKey::new(1, [1; 32])).contains("cipher"));
    }
}

//! Sealed client-side sessions: the session record encrypted into the
//! cookie with XChaCha20-Poly1305 under a [`KeyRing`].
//!
//! The sealed text is `base64url(format ‖ key id ‖ nonce ‖ ciphertext ‖ tag)`:
//! one format byte (1), the 4-byte big-endian id of the key that sealed it,
//! a random 24-byte nonce, and the AEAD output. The header and a caller
//! context (the cookie name) are authenticated as associated data, so a seal
//! cannot be moved to another cookie or relabelled with another key id.
//!
//! The newest key of the ring seals; every key of the ring opens, so keys
//! rotate without signing anyone out: put the new key first, keep the old
//! one until the longest session sealed with it has expired (the absolute
//! timeout), then drop it. A seal whose key has left the ring does not open.
//!
//! The plaintext is the versioned record `{"v":1,"session":{…},"subject_epoch":n}`;
//! every deadline of the session travels inside the seal, and the
//! [`SessionManager`](crate::SessionManager) applies the same policy to it as
//! to a stored record (see [`SessionManager::validate_client_side`](crate::SessionManager::validate_client_side)).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::record::Session;
use crate::token::TokenError;

/// The seal format [`KeyRing::seal`] writes.
pub const SEAL_FORMAT: u8 = 1;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a seal adds to the plaintext record before base64url.
const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Largest sealed text [`KeyRing::open`] looks at; anything longer is
/// refused before decoding (64 KiB of data plus the record's own fields).
pub const MAX_SEALED_LEN: usize = 192 * 1024;

/// A session as it travels inside a seal: the record plus the subject's
/// revocation epoch when it was sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSideSession {
    /// The session record, with every deadline.
    pub session: Session,
    /// The subject's revocation epoch when the session was sealed (0 while
    /// anonymous); the session is dead once the store's epoch moved past it.
    pub subject_epoch: u64,
}

#[derive(Serialize)]
struct PlainV1<'a> {
    v: u8,
    session: &'a Session,
    subject_epoch: u64,
}

#[derive(Deserialize)]
struct Versioned {
    v: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeV1 {
    #[allow(dead_code)]
    v: u8,
    session: Session,
    subject_epoch: u64,
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
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| TokenError::Entropy)?;
        Ok(Self::new(id, secret))
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

/// Why a key ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// A key-ring description is not `ID:KEY[,ID:KEY…]`.
    #[error(
        "cannot read the key ring entry `{entry}`: write ID:BASE64KEY, newest first, separated by commas"
    )]
    Syntax {
        /// The entry that could not be read (its key part is not shown).
        entry: String,
    },
    /// A key-ring description names no key.
    #[error("the key ring is empty; give at least one ID:BASE64KEY")]
    Empty,
}

/// Why a sealed text did not open. Every case means "no session": the
/// caller treats the request as anonymous.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not base64url, too short or too long.
    #[error("the sealed session is malformed")]
    Malformed,
    /// Written in a seal format this build does not know.
    #[error("the sealed session has format {format}; this build reads format {SEAL_FORMAT}")]
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
    /// Verified, but the record inside cannot be read (written by a newer build?).
    #[error("the sealed session's record cannot be read: {0}")]
    Record(String),
}

/// Why a session could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The record could not be serialised.
    #[error("cannot serialise the session record: {0}")]
    Encode(String),
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
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        let mut ring: Option<KeyRing> = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let syntax = || KeyRingError::Syntax {
                entry: entry.split(':').next().unwrap_or_default().to_owned() + ":…",
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

    /// Length of the sealed text for a plaintext record of `plaintext_len` bytes.
    pub fn sealed_len(plaintext_len: usize) -> usize {
        ((plaintext_len + OVERHEAD) * 4).div_ceil(3)
    }

    /// Seals a session with the newest key. `context` (e.g. the cookie name)
    /// must be given again to open it.
    pub fn seal(&self, record: &ClientSideSession, context: &[u8]) -> Result<String, SealError> {
        let plaintext = serde_json::to_vec(&PlainV1 {
            v: SEAL_FORMAT,
            session: &record.session,
            subject_epoch: record.subject_epoch,
        })
        .map_err(|e| SealError::Encode(e.to_string()))?;
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| TokenError::Entropy)?;
        let header = header(key.id);
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
        let mut sealed = Vec::with_capacity(OVERHEAD + plaintext.len());
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a sealed session made by any key of the ring with the same `context`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<ClientSideSession, OpenError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Malformed)?;
        if bytes.len() < OVERHEAD {
            return Err(OpenError::Malformed);
        }
        if bytes[0] != SEAL_FORMAT {
            return Err(OpenError::UnknownFormat { format: bytes[0] });
        }
        let (header_bytes, rest) = bytes.split_at(HEADER_LEN);
        let mut id_bytes = [0u8; KEY_ID_LEN];
        id_bytes.copy_from_slice(&header_bytes[1..]);
        let key_id = u32::from_be_bytes(id_bytes);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(OpenError::UnknownKey { key_id })?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = associated_data(header_bytes, context);
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
        decode_record(&plaintext)
    }
}

fn header(key_id: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = SEAL_FORMAT;
    header[1..].copy_from_slice(&key_id.to_be_bytes());
    header
}

fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

fn decode_record(plaintext: &[u8]) -> Result<ClientSideSession, OpenError> {
    let Versioned { v } =
        serde_json::from_slice(plaintext).map_err(|e| OpenError::Record(e.to_string()))?;
    if v != SEAL_FORMAT {
        return Err(OpenError::Record(format!(
            "record version {v} is not known to this build"
        )));
    }
    let record: DecodeV1 =
        serde_json::from_slice(plaintext).map_err(|e| OpenError::Record(e.to_string()))?;
    Ok(ClientSideSession {
        session: record.session,
        subject_epoch: record.subject_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::record::SessionData;
    use crate::token::SessionId;

    fn record() -> ClientSideSession {
        ClientSideSession {
            session: Session {
                id: SessionId([7; 16]),
                subject: Some("alice".into()),
                auth_level: 1,
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
                binding: None,
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
        let a = ring.seal(&record(), b"c").expect("seal");
        let b = ring.seal(&record(), b"c").expect("seal");
        assert_ne!(a, b, "a fresh nonce per seal");
        assert_eq!(ring.open(&a, b"c").expect("open"), record());
        let plain_len = serde_json::to_vec(&PlainV1 {
            v: 1,
            session: &record().session,
            subject_epoch: 3,
        })
        .expect("json")
        .len();
        assert_eq!(KeyRing::sealed_len(plain_len), a.len());
    }

    #[test]
    fn tampering_context_and_unknown_keys_are_refused() {
        let ring = ring(1, 9);
        let sealed = ring.seal(&record(), b"cookie-a").expect("seal");
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
        relabelled[4] = 2;
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
    fn rotation_keeps_old_seals_open_until_the_key_is_dropped() {
        let old = ring(1, 1);
        let sealed_old = old.seal(&record(), b"c").expect("seal");
        let rotated = KeyRing::new(SealingKey::new(2, [2; 32]))
            .with_previous(SealingKey::new(1, [1; 32]))
            .expect("ring");
        assert_eq!(rotated.current_id(), 2);
        assert_eq!(rotated.open(&sealed_old, b"c").expect("open"), record());
        let sealed_new = rotated.seal(&record(), b"c").expect("seal");
        assert!(old.open(&sealed_new, b"c").is_err());
        let retired = ring(2, 2);
        assert_eq!(
            retired.open(&sealed_old, b"c"),
            Err(OpenError::UnknownKey { key_id: 1 })
        );
    }

    #[test]
    fn key_ring_descriptions_are_checked() {
        let key = URL_SAFE_NO_PAD.encode([3u8; 32]);
        let ring = KeyRing::parse(&format!("2:{key}, 1:{key}")).expect("ring");
        assert_eq!(ring.key_ids(), vec![2, 1]);
        assert_eq!(
            KeyRing::parse(&format!("1:{key},1:{key}")).err(),
            Some(KeyRingError::DuplicateId { id: 1 })
        );
        assert_eq!(KeyRing::parse("").err(), Some(KeyRingError::Empty));
        assert!(matches!(
            KeyRing::parse("x:abc"),
            Err(KeyRingError::Syntax { .. })
        ));
        assert_eq!(
            KeyRing::parse("1:AAAA").err(),
            Some(KeyRingError::WrongLength { id: 1, len: 3 })
        );
        let padded = base64::engine::general_purpose::STANDARD.encode([4u8; 32]);
        assert!(KeyRing::parse(&format!("7:{padded}")).is_ok());
        assert!(!format!("{:?}", SealingKey::new(1, [1; 32])).contains("cipher"));
    }
}

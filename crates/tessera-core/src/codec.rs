//! The stored form of a [`SessionRecord`]: compact, versioned bytes that
//! every store keeps as they are (`docs/writing-a-store.md`).
//!
//! Format 2, written by [`encode`]:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | format (`2`) |
//! | 1–8 | version, `u64` big-endian ┐ the [`Revision`] a |
//! | 9–40 | SHA-256 of the current token ┘ compare-and-swap compares |
//! | 41–48 | `last_seen_at`, `i64` milliseconds big-endian |
//! | 49–56 | the forget deadline the manager gave, `i64` milliseconds big-endian |
//! | 57–72 | session id |
//! | 73–88 | CSRF secret |
//! | 89– | flags, then LEB128 integers and length-prefixed fields, then the data's JSON text to the end |
//!
//! The first 57 bytes sit at fixed places so that a store (or its
//! server-side script) can compare a revision ([`REVISION`]), move
//! `last_seen_at` and the forget deadline ([`LAST_SEEN`], [`FORGET_AT`])
//! or check the deadline without decoding the rest.
//!
//! [`decode`] reads format 2 and the JSON records of format 1
//! (`{"v":1,"session":{…}}`) that stores wrote before it; see
//! [`decode_legacy`].

use std::net::IpAddr;
use std::ops::Range;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::record::{
    AuthLevel, ClientBinding, ClientInfo, CsrfSecret, PreviousToken, Revision, SessionData,
    SessionRecord,
};
use crate::store::StoreError;
use crate::token::{SessionId, TokenHash};

/// The format [`encode`] writes.
pub const FORMAT: u8 = 2;
/// Where an encoded record keeps its [`Revision::to_bytes`].
pub const REVISION: Range<usize> = 1..41;
/// Where an encoded record keeps `last_seen_at` (`i64` ms, big-endian).
pub const LAST_SEEN: Range<usize> = 41..49;
/// Where an encoded record keeps its forget deadline (`i64` ms, big-endian).
pub const FORGET_AT: Range<usize> = 49..57;
const ID: Range<usize> = 57..73;
const CSRF: Range<usize> = 73..89;
const FIXED: usize = 89;

const F_SUBJECT: u8 = 1;
const F_AUTHENTICATED_AT: u8 = 1 << 1;
const F_PREVIOUS: u8 = 1 << 2;
const F_CLIENT_IP: u8 = 1 << 3;
const F_CLIENT_UA: u8 = 1 << 4;
const F_BINDING_UA: u8 = 1 << 5;
const F_BINDING_IP: u8 = 1 << 6;

const P_GRACE: u8 = 1;
const P_SUCCESSOR: u8 = 1 << 1;

/// Encodes a record, with the deadline after which its store may forget
/// it, in the current format.
pub fn encode(record: &SessionRecord, forget_at: Timestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + 48 + record.data.len_bytes());
    out.push(FORMAT);
    out.extend_from_slice(&record.revision().to_bytes());
    out.extend_from_slice(&record.last_seen_at.0.to_be_bytes());
    out.extend_from_slice(&forget_at.0.to_be_bytes());
    out.extend_from_slice(&record.id.0);
    out.extend_from_slice(&record.csrf_secret.0);
    let client_ip = record.client.as_ref().and_then(|c| c.ip);
    let client_ua = record.client.as_ref().and_then(|c| c.user_agent.as_deref());
    let binding_ua = record.binding.as_ref().and_then(|b| b.user_agent_hash);
    let binding_ip = record.binding.as_ref().and_then(|b| b.ip_prefix);
    let mut flags = 0;
    for (present, flag) in [
        (record.subject.is_some(), F_SUBJECT),
        (record.authenticated_at.is_some(), F_AUTHENTICATED_AT),
        (record.previous.is_some(), F_PREVIOUS),
        (client_ip.is_some(), F_CLIENT_IP),
        (client_ua.is_some(), F_CLIENT_UA),
        (binding_ua.is_some(), F_BINDING_UA),
        (binding_ip.is_some(), F_BINDING_IP),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.push(flags);
    let created = record.created_at;
    write_signed(&mut out, created.0);
    write_signed(&mut out, record.token_issued_at.0.wrapping_sub(created.0));
    write_signed(
        &mut out,
        record.absolute_expires_at.0.wrapping_sub(created.0),
    );
    write_unsigned(&mut out, record.idle_timeout_ms);
    write_unsigned(&mut out, record.epoch);
    out.push(record.auth_level.0);
    if let Some(at) = record.authenticated_at {
        write_signed(&mut out, at.0.wrapping_sub(created.0));
    }
    if let Some(subject) = &record.subject {
        write_bytes(&mut out, subject.as_bytes());
    }
    if let Some(previous) = &record.previous {
        out.extend_from_slice(&previous.hash.0);
        write_signed(&mut out, previous.rotated_at.0.wrapping_sub(created.0));
        let mut pflags = 0;
        if previous.grace_until.is_some() {
            pflags |= P_GRACE;
        }
        if previous.successor.is_some() {
            pflags |= P_SUCCESSOR;
        }
        out.push(pflags);
        if let Some(until) = previous.grace_until {
            write_signed(&mut out, until.0.wrapping_sub(previous.rotated_at.0));
        }
        if let Some(successor) = &previous.successor {
            out.extend_from_slice(successor);
        }
    }
    if let Some(ip) = client_ip {
        write_ip(&mut out, ip);
    }
    if let Some(ua) = client_ua {
        write_bytes(&mut out, ua.as_bytes());
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

/// Decodes a record of any format a store may hold. A format 1 record
/// does not know its token's hash (it was the key it was stored under):
/// pass that key as `legacy_key`.
pub fn decode(bytes: &[u8], legacy_key: Option<&TokenHash>) -> Result<SessionRecord, StoreError> {
    match bytes.first() {
        Some(&FORMAT) => decode_v2(bytes),
        Some(b'{') => {
            let key = legacy_key.ok_or_else(|| {
                StoreError::corrupt(
                    "a format 1 record was read without the key it was stored under",
                )
            })?;
            decode_legacy(bytes, key)
        }
        Some(other) => Err(StoreError::corrupt(format!(
            "record format {other} is not one this build reads (it writes {FORMAT}); upgrade Tessera"
        ))),
        None => Err(StoreError::corrupt("empty session record")),
    }
}

/// The forget deadline of an encoded record, read without decoding it.
pub fn forget_at_of(bytes: &[u8]) -> Option<Timestamp> {
    if bytes.first() != Some(&FORMAT) || bytes.len() < FIXED {
        return None;
    }
    Some(Timestamp(i64::from_be_bytes(fixed(&bytes[FORGET_AT]))))
}

/// Moves an encoded record's `last_seen_at` and forget deadline forward
/// (never back), in place: a touch. `false` if the bytes are no record of
/// the current format.
pub fn touch_in_place(bytes: &mut [u8], last_seen_at: Timestamp, forget_at: Timestamp) -> bool {
    if bytes.first() != Some(&FORMAT) || bytes.len() < FIXED {
        return false;
    }
    for (range, value) in [(LAST_SEEN, last_seen_at), (FORGET_AT, forget_at)] {
        let slot = &mut bytes[range];
        if i64::from_be_bytes(fixed(slot)) < value.0 {
            slot.copy_from_slice(&value.0.to_be_bytes());
        }
    }
    true
}

/// The revision of an encoded record, read without decoding it.
pub fn revision_of(bytes: &[u8]) -> Option<Revision> {
    if bytes.first() != Some(&FORMAT) || bytes.len() < FIXED {
        return None;
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&bytes[1..9]);
    let mut token = [0u8; 32];
    token.copy_from_slice(&bytes[9..41]);
    Some(Revision {
        version: u64::from_be_bytes(version),
        token: TokenHash(token),
    })
}

fn decode_v2(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    if bytes.len() < FIXED + 1 {
        return Err(StoreError::corrupt("session record is truncated"));
    }
    let revision = revision_of(bytes).ok_or_else(|| StoreError::corrupt("bad record header"))?;
    let mut reader = Reader { bytes, at: FIXED };
    let last_seen = i64::from_be_bytes(fixed(&bytes[LAST_SEEN]));
    let id = SessionId(fixed(&bytes[ID]));
    let csrf = CsrfSecret(fixed(&bytes[CSRF]));
    let flags = reader.byte()?;
    let created = reader.signed()?;
    let token_issued = created.wrapping_add(reader.signed()?);
    let absolute = created.wrapping_add(reader.signed()?);
    let idle_timeout_ms = reader.unsigned()?;
    let epoch = reader.unsigned()?;
    let auth_level = AuthLevel(reader.byte()?);
    let authenticated_at = (flags & F_AUTHENTICATED_AT != 0)
        .then(|| {
            reader
                .signed()
                .map(|at| Timestamp(created.wrapping_add(at)))
        })
        .transpose()?;
    let subject = (flags & F_SUBJECT != 0)
        .then(|| reader.text())
        .transpose()?;
    let previous = if flags & F_PREVIOUS != 0 {
        let hash = TokenHash(reader.array()?);
        let rotated_at = Timestamp(created.wrapping_add(reader.signed()?));
        let pflags = reader.byte()?;
        let grace_until = (pflags & P_GRACE != 0)
            .then(|| {
                reader
                    .signed()
                    .map(|at| Timestamp(rotated_at.0.wrapping_add(at)))
            })
            .transpose()?;
        let successor = (pflags & P_SUCCESSOR != 0)
            .then(|| reader.array())
            .transpose()?;
        Some(Box::new(PreviousToken {
            hash,
            rotated_at,
            grace_until,
            successor,
        }))
    } else {
        None
    };
    let client_ip = (flags & F_CLIENT_IP != 0)
        .then(|| reader.ip())
        .transpose()?;
    let client_ua = (flags & F_CLIENT_UA != 0)
        .then(|| reader.text())
        .transpose()?;
    let binding_ua = (flags & F_BINDING_UA != 0)
        .then(|| reader.array::<16>().map(u128::from_be_bytes))
        .transpose()?;
    let binding_ip = (flags & F_BINDING_IP != 0)
        .then(|| reader.ip())
        .transpose()?;
    let data = std::str::from_utf8(&bytes[reader.at..])
        .map_err(|_| StoreError::corrupt("session data is not UTF-8"))?;
    let client = (client_ip.is_some() || client_ua.is_some()).then(|| {
        Box::new(ClientInfo {
            ip: client_ip,
            user_agent: client_ua,
        })
    });
    let binding = (binding_ua.is_some() || binding_ip.is_some()).then(|| {
        Box::new(ClientBinding {
            user_agent_hash: binding_ua,
            ip_prefix: binding_ip,
        })
    });
    Ok(SessionRecord {
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
        version: revision.version,
        epoch,
        client,
        binding,
        token: revision.token,
        previous,
        csrf_secret: csrf,
    })
}

/// The session id of an encoded record, read without decoding the rest.
pub fn id_of(bytes: &[u8]) -> Option<SessionId> {
    if bytes.first() != Some(&FORMAT) || bytes.len() < FIXED {
        return None;
    }
    Some(SessionId(fixed(&bytes[ID])))
}

/// The subject of an encoded record, read without decoding the rest;
/// `None` for an anonymous or unreadable record.
pub fn subject_of(bytes: &[u8]) -> Option<&str> {
    if bytes.first() != Some(&FORMAT) {
        return None;
    }
    let mut reader = Reader { bytes, at: FIXED };
    let flags = reader.byte().ok()?;
    if flags & F_SUBJECT == 0 {
        return None;
    }
    for _ in 0..5 {
        reader.unsigned().ok()?;
    }
    reader.byte().ok()?;
    if flags & F_AUTHENTICATED_AT != 0 {
        reader.unsigned().ok()?;
    }
    let len = usize::try_from(reader.unsigned().ok()?).ok()?;
    std::str::from_utf8(reader.slice(len).ok()?).ok()
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// A format 1 record as stores wrote it: `{"v":1,"session":{…}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyEntry {
    v: u32,
    #[serde(default)]
    session: Option<LegacySession>,
    #[serde(default)]
    #[allow(dead_code)]
    tombstone: Option<serde_json::Value>,
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

/// Decodes a format 1 record (JSON, keyed by the SHA-256 of its token)
/// into a current record whose token is that key. A format 1 tombstone (a
/// rotated-away token) is reported as [`StoreError::Invalid`]: it carries
/// no session.
pub fn decode_legacy(bytes: &[u8], key: &TokenHash) -> Result<SessionRecord, StoreError> {
    let entry: LegacyEntry = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(format!("bad format 1 record: {e}")))?;
    if entry.v != 1 {
        return Err(StoreError::corrupt(format!(
            "record format {} is not one this build reads",
            entry.v
        )));
    }
    let Some(old) = entry.session else {
        return Err(StoreError::Invalid {
            message: "a format 1 tombstone holds no session".into(),
        });
    };
    let mut data = old.data.to_map();
    data.remove(LEGACY_CSRF_KEY);
    let data = SessionData::from_map(&data).map_err(|e| StoreError::corrupt(e.to_string()))?;
    // The CSRF secret follows from the token's hash (known to the store
    // only), so that every node converting the record agrees on it.
    let mut hasher = Sha256::new();
    hasher.update(b"tessera legacy csrf\0");
    hasher.update(key.0);
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(SessionRecord {
        id: old.id,
        subject: old.subject,
        auth_level: AuthLevel(old.auth_level),
        authenticated_at: old.authenticated_at,
        data,
        created_at: old.created_at,
        last_seen_at: old.last_seen_at,
        token_issued_at: old.token_issued_at,
        idle_timeout_ms: old.idle_timeout_ms,
        absolute_expires_at: old.absolute_expires_at,
        version: old.version,
        epoch: old.epoch,
        client: old.client,
        binding: old.binding,
        token: *key,
        previous: None,
        csrf_secret: CsrfSecret(fixed(&digest[..16])),
    })
}

pub(crate) fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn write_signed(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_unsigned(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Reads the variable part of an encoded record; every read is checked.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    fn truncated() -> StoreError {
        StoreError::corrupt("session record is truncated")
    }

    pub(crate) fn byte(&mut self) -> Result<u8, StoreError> {
        let byte = *self.bytes.get(self.at).ok_or_else(Self::truncated)?;
        self.at += 1;
        Ok(byte)
    }

    pub(crate) fn unsigned(&mut self) -> Result<u64, StoreError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(StoreError::corrupt(
            "an integer in the session record is too long",
        ))
    }

    pub(crate) fn signed(&mut self) -> Result<i64, StoreError> {
        let raw = self.unsigned()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    pub(crate) fn slice(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        let end = self.at.checked_add(len).ok_or_else(Self::truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or_else(Self::truncated)?;
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(fixed(self.slice(N)?))
    }

    pub(crate) fn text(&mut self) -> Result<String, StoreError> {
        let len = usize::try_from(self.unsigned()?).map_err(|_| Self::truncated())?;
        let bytes = self.slice(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| StoreError::corrupt("text in the session record is not UTF-8"))
    }

    pub(crate) fn ip(&mut self) -> Result<IpAddr, StoreError> {
        match self.byte()? {
            4 => Ok(IpAddr::from(self.array::<4>()?)),
            6 => Ok(IpAddr::from(self.array::<16>()?)),
            other => Err(StoreError::corrupt(format!(
                "unknown address family {other} in the session record"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_700_050_000_000);

    fn record() -> SessionRecord {
        SessionRecord {
            id: SessionId([1; 16]),
            subject: Some("alice".into()),
            auth_level: AuthLevel(2),
            authenticated_at: Some(Timestamp(1_700_000_000_500)),
            data: SessionData::from_json(r#"{"n":1,"name":"ünï"}"#).expect("object"),
            created_at: Timestamp(1_700_000_000_000),
            last_seen_at: Timestamp(1_700_000_060_000),
            token_issued_at: Timestamp(1_700_000_030_000),
            idle_timeout_ms: 1_800_000,
            absolute_expires_at: Timestamp(1_700_043_200_000),
            version: 4,
            epoch: 3,
            client: Some(Box::new(ClientInfo::new(
                Some("2001:db8::1".parse().expect("ip")),
                Some("Firefox/140"),
            ))),
            binding: Some(Box::new(
                ClientInfo::new(Some("10.0.0.1".parse().expect("ip")), Some("Firefox/140"))
                    .binding(),
            )),
            token: TokenHash([7; 32]),
            previous: Some(Box::new(PreviousToken {
                hash: TokenHash([6; 32]),
                rotated_at: Timestamp(1_700_000_030_000),
                grace_until: Some(Timestamp(1_700_000_040_000)),
                successor: Some([5; 32]),
            })),
            csrf_secret: CsrfSecret([9; 16]),
        }
    }

    #[test]
    fn round_trips_every_field() {
        let full = record();
        assert_eq!(decode(&encode(&full, T), None).expect("decode"), full);
        let mut bare = record();
        bare.subject = None;
        bare.authenticated_at = None;
        bare.auth_level = AuthLevel::ANONYMOUS;
        bare.previous = None;
        bare.client = None;
        bare.binding = None;
        bare.data = SessionData::empty();
        let bytes = encode(&bare, T);
        assert_eq!(decode(&bytes, None).expect("decode"), bare);
        assert!(
            bytes.len() < 120,
            "an anonymous record is {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn the_fixed_header_holds_revision_and_last_seen() {
        let full = record();
        let mut bytes = encode(&full, T);
        assert_eq!(subject_of(&bytes), Some("alice"));
        assert_eq!(&bytes[REVISION], &full.revision().to_bytes());
        assert_eq!(revision_of(&bytes), Some(full.revision()));
        assert_eq!(&bytes[LAST_SEEN], &full.last_seen_at.0.to_be_bytes());
        assert_eq!(forget_at_of(&bytes), Some(T));
        let later = Timestamp(full.last_seen_at.0 + 5);
        assert!(touch_in_place(&mut bytes, later, Timestamp(T.0 + 5)));
        assert!(
            touch_in_place(&mut bytes, Timestamp(0), Timestamp(0)),
            "never back"
        );
        let touched = decode(&bytes, None).expect("decode");
        assert_eq!(touched.last_seen_at, later);
        assert_eq!(forget_at_of(&bytes), Some(Timestamp(T.0 + 5)));
        assert_eq!(touched.revision(), full.revision());
    }

    #[test]
    fn a_format_1_record_written_by_hand_still_loads() {
        let stored = br#"{"v":1,"session":{"id":"AQEBAQEBAQEBAQEBAQEBAQ","subject":"alice","auth_level":1,"authenticated_at":5,"data":{"n":1,"__tessera_csrf":"x"},"created_at":1,"last_seen_at":2,"token_issued_at":3,"idle_timeout_ms":1000,"absolute_expires_at":10000,"version":4,"epoch":0}}"#;
        let key = TokenHash([8; 32]);
        let record = decode(stored, Some(&key)).expect("decode");
        assert_eq!(record.id, SessionId([1; 16]));
        assert_eq!(record.token, key);
        assert_eq!(record.version, 4);
        assert_eq!(record.data.as_json(), r#"{"n":1}"#);
        assert!(
            decode(stored, None).is_err(),
            "a legacy record needs its key"
        );
        let tombstone = br#"{"v":1,"tombstone":{"session_id":"AQEBAQEBAQEBAQEBAQEBAQ"}}"#;
        assert!(matches!(
            decode(tombstone, Some(&key)),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn damage_is_corrupt_never_a_panic() {
        let bytes = encode(&record(), T);
        for len in 0..bytes.len() - 10 {
            let _ = decode(&bytes[..len], None);
        }
        assert!(decode(&[], None).is_err());
        assert!(decode(&[99, 1, 2], None).is_err());
        assert!(decode(br#"{"v":99}"#, Some(&TokenHash([0; 32]))).is_err());
        let mut long_varint = bytes[..FIXED].to_vec();
        long_varint.extend([
            0u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert!(decode(&long_varint, None).is_err());
    }
}

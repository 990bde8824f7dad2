//! The versioned stored format (`{"v":1,…}`) for stores that keep records as bytes.
//!
//! Persistent stores encode with [`encode_entry`] and decode with
//! [`decode_entry`], which reads every format version ever written, so
//! records written by an older Tessera keep loading after an upgrade.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::record::{Session, StoredEntry, Tombstone};
use crate::store::StoreError;

/// The format version [`encode_entry`] writes.
pub const CURRENT_FORMAT: u32 = 1;

#[derive(Serialize)]
struct EncodeV1<'a> {
    v: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a Session>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tombstone: Option<&'a Tombstone>,
}

#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeV1 {
    #[allow(dead_code)]
    v: u32,
    #[serde(default)]
    session: Option<Session>,
    #[serde(default)]
    tombstone: Option<Tombstone>,
}

/// Encodes a live session or a tombstone in the current format.
pub fn encode_entry(entry: &StoredEntry) -> Result<Vec<u8>, StoreError> {
    let record = match entry {
        StoredEntry::Live(session) => EncodeV1 {
            v: CURRENT_FORMAT,
            session: Some(session),
            tombstone: None,
        },
        StoredEntry::Tombstone(tombstone) => EncodeV1 {
            v: CURRENT_FORMAT,
            session: None,
            tombstone: Some(tombstone),
        },
    };
    serde_json::to_vec(&record)
        .map_err(|e| StoreError::corrupt(format!("cannot encode session record: {e}")))
}

/// Encodes a live session in the current format.
pub fn encode_session(session: &Session) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EncodeV1 {
        v: CURRENT_FORMAT,
        session: Some(session),
        tombstone: None,
    })
    .map_err(|e| StoreError::corrupt(format!("cannot encode session record: {e}")))
}

/// Decodes a record of any known format version.
pub fn decode_entry(bytes: &[u8]) -> Result<StoredEntry, StoreError> {
    let Versioned { v } = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(format!("record has no format version: {e}")))?;
    match v {
        1 => {
            let record: DecodeV1 = serde_json::from_slice(bytes)
                .map_err(|e| StoreError::corrupt(format!("bad version 1 record: {e}")))?;
            match (record.session, record.tombstone) {
                (Some(session), None) => Ok(StoredEntry::Live(Arc::new(session))),
                (None, Some(tombstone)) => Ok(StoredEntry::Tombstone(tombstone)),
                _ => Err(StoreError::corrupt(
                    "version 1 record holds neither exactly one session nor one tombstone",
                )),
            }
        }
        other => Err(StoreError::corrupt(format!(
            "record format version {other} is newer than this build understands ({CURRENT_FORMAT}); upgrade Tessera"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;
    use crate::record::SessionData;
    use crate::token::{SessionId, TokenHash};

    fn session() -> Session {
        Session {
            id: SessionId([1; 16]),
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
        }
    }

    #[test]
    fn round_trips_sessions_and_tombstones() {
        let live = StoredEntry::Live(Arc::new(session()));
        assert_eq!(
            decode_entry(&encode_entry(&live).expect("encode")).expect("decode"),
            live
        );
        let tomb = StoredEntry::Tombstone(Tombstone {
            session_id: SessionId([2; 16]),
            successor: TokenHash([3; 32]),
            grace_until: None,
            forget_at: Timestamp(9),
        });
        assert_eq!(
            decode_entry(&encode_entry(&tomb).expect("encode")).expect("decode"),
            tomb
        );
    }

    #[test]
    fn a_version_1_record_written_by_hand_still_loads() {
        let stored = br#"{"v":1,"session":{"id":"AQEBAQEBAQEBAQEBAQEBAQ","subject":"alice","auth_level":1,"authenticated_at":5,"data":{"n":1},"created_at":1,"last_seen_at":2,"token_issued_at":3,"idle_timeout_ms":1000,"absolute_expires_at":10000,"version":4,"epoch":0}}"#;
        assert_eq!(
            decode_entry(stored).expect("decode"),
            StoredEntry::Live(Arc::new(session()))
        );
    }

    #[test]
    fn unknown_versions_and_garbage_are_corrupt_not_panics() {
        assert!(decode_entry(br#"{"v":99}"#).is_err());
        assert!(decode_entry(b"\xff\xfe").is_err());
        assert!(decode_entry(br#"{"v":1}"#).is_err());
        assert!(decode_entry(br#"{"v":1,"session":{}}"#).is_err());
    }
}

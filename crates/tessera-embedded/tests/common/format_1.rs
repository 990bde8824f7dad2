//! Writing a database of store format 1 by hand: the tables and JSON
//! records the store wrote before records were keyed by session id, spelled
//! out here on purpose (if the conversion drifts from them, the tests fail).
//! The committed fixture `tests/fixtures/format-1` was written by that
//! store itself; these helpers make files with tokens whose text is known.
#![allow(dead_code)]

use std::path::Path;

use redb::{MultimapTableDefinition, TableDefinition};
use serde_json::{Value, json};
use tessera_core::{SessionId, Timestamp, TokenHash};

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
pub const IDS: TableDefinition<&[u8; 16], &[u8; 32]> = TableDefinition::new("ids");
pub const SUBJECTS: MultimapTableDefinition<&str, &[u8; 16]> =
    MultimapTableDefinition::new("subjects");
pub const SUBJECT_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("subject_epochs");

/// A session as format 1 stored it (`{"v":1,"session":{…}}`).
pub struct OldSession {
    pub id: SessionId,
    pub subject: Option<&'static str>,
    pub data: Value,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub version: u64,
    pub epoch: u64,
}

impl OldSession {
    /// The JSON text format 1 stored, with the defaults of its time: 30
    /// minutes idle, 12 hours absolute, password level when signed in.
    pub fn json(&self) -> Vec<u8> {
        let mut session = json!({
            "id": self.id.to_string(),
            "subject": self.subject,
            "auth_level": if self.subject.is_some() { 1 } else { 0 },
            "authenticated_at": self.subject.map(|_| self.created_at.0),
            "data": self.data,
            "created_at": self.created_at.0,
            "last_seen_at": self.last_seen_at.0,
            "token_issued_at": self.created_at.0,
            "idle_timeout_ms": 30 * 60 * 1000,
            "absolute_expires_at": self.created_at.0 + 12 * 3600 * 1000,
            "version": self.version,
            "epoch": self.epoch,
        });
        if self.subject.is_some() {
            session["client"] = json!({"ip": "203.0.113.9", "user_agent": "Firefox/130.0"});
        }
        serde_json::to_vec(&json!({"v": 1, "session": session})).expect("json")
    }
}

/// A format 1 tombstone: what a rotation left under the replaced token.
pub fn tombstone(id: SessionId, successor: TokenHash, forget_at: Timestamp) -> Vec<u8> {
    serde_json::to_vec(&json!({"v": 1, "tombstone": {
        "session_id": id.to_string(),
        "successor": successor.to_hex(),
        "grace_until": null,
        "forget_at": forget_at.0,
    }}))
    .expect("json")
}

/// What goes into a format 1 file.
#[derive(Default)]
pub struct OldFile {
    /// `None`: no `format_version` in `meta`.
    pub format_version: Option<u64>,
    pub global_epoch: u64,
    /// Live sessions under the hash of their token.
    pub sessions: Vec<(TokenHash, OldSession)>,
    /// Tombstones under the hash of a replaced token.
    pub tombstones: Vec<(TokenHash, Vec<u8>)>,
    pub subject_epochs: Vec<(&'static str, u64)>,
    /// Sessions left out of the id index (damage).
    pub unindexed: Vec<SessionId>,
}

/// Writes `file` as `DIR/sessions.redb`, with the indexes format 1 kept.
pub fn write(dir: &Path, file: &OldFile) {
    std::fs::create_dir_all(dir).expect("data directory");
    let db = redb::Database::create(dir.join("sessions.redb")).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut meta = txn.open_table(META).expect("meta");
        if let Some(version) = file.format_version {
            meta.insert("format_version", version).expect("version");
            meta.insert("global_epoch", file.global_epoch)
                .expect("epoch");
        }
        let mut entries = txn.open_table(ENTRIES).expect("entries");
        let mut ids = txn.open_table(IDS).expect("ids");
        let mut subjects = txn.open_multimap_table(SUBJECTS).expect("subjects");
        for (key, session) in &file.sessions {
            entries
                .insert(&key.0, session.json().as_slice())
                .expect("entry");
            if !file.unindexed.contains(&session.id) {
                ids.insert(&session.id.0, &key.0).expect("id");
            }
            if let Some(subject) = session.subject {
                subjects.insert(subject, &session.id.0).expect("subject");
            }
        }
        for (key, bytes) in &file.tombstones {
            entries.insert(&key.0, bytes.as_slice()).expect("tombstone");
        }
        let mut epochs = txn.open_table(SUBJECT_EPOCHS).expect("subject epochs");
        for (subject, epoch) in &file.subject_epochs {
            epochs.insert(*subject, *epoch).expect("subject epoch");
        }
    }
    txn.commit().expect("commit");
}

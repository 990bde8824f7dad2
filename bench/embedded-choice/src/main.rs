//! Measures redb against SQLite on the embedded session store's workload.
//!
//! Both databases get the same tables (records by token hash, session id →
//! key, subject index), the same record bytes (`tessera_core::codec`) and the
//! same durability: every acknowledged write is fsynced before it returns
//! (redb `Durability::Immediate`; SQLite WAL with `synchronous=FULL`).
//!
//! Phases, each bounded in time: durable create (one per transaction),
//! durable create in groups of 64 per transaction (what group commit
//! achieves under concurrency), load (read + decode by key), update with a
//! compare-and-swap on the version, and rotate (new key, tombstone, id
//! index) — all in one transaction each.
//!
//! Run: `cargo run --release` in this directory, or `bench/embedded-choice.sh`.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};
use rusqlite::{OptionalExtension, params};
use tessera_core::codec::{decode_entry, encode_entry};
use tessera_core::{
    Session, SessionData, SessionId, SessionToken, StoredEntry, Timestamp, TokenHash, Tombstone,
};

type Error = Box<dyn std::error::Error>;

const ENTRIES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("entries");
const IDS: TableDefinition<&[u8; 16], &[u8; 32]> = TableDefinition::new("ids");
const SUBJECTS: MultimapTableDefinition<&str, &[u8; 16]> = MultimapTableDefinition::new("subjects");

/// How long each phase runs.
fn phase_time() -> Duration {
    let secs = std::env::var("PHASE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// The operations the store needs, on one backend.
trait Backend {
    fn name(&self) -> &'static str;
    fn create_many(&mut self, items: &[(TokenHash, Session)]) -> Result<(), Error>;
    fn load(&mut self, key: &TokenHash) -> Result<Option<StoredEntry>, Error>;
    fn update(&mut self, key: &TokenHash, session: &Session, expected: u64) -> Result<bool, Error>;
    fn rotate(
        &mut self,
        old: &TokenHash,
        new: &TokenHash,
        session: &Session,
        expected: u64,
        tombstone: &Tombstone,
    ) -> Result<bool, Error>;
}

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(path: &Path) -> Result<Self, Error> {
        let db = redb::Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(IDS)?;
        txn.open_multimap_table(SUBJECTS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    fn durable_write(&self) -> Result<redb::WriteTransaction, Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }
}

impl Backend for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn create_many(&mut self, items: &[(TokenHash, Session)]) -> Result<(), Error> {
        let txn = self.durable_write()?;
        {
            let mut entries = txn.open_table(ENTRIES)?;
            let mut ids = txn.open_table(IDS)?;
            let mut subjects = txn.open_multimap_table(SUBJECTS)?;
            for (key, session) in items {
                if entries.get(&key.0)?.is_some() || ids.get(&session.id.0)?.is_some() {
                    continue;
                }
                let bytes = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
                entries.insert(&key.0, bytes.as_slice())?;
                ids.insert(&session.id.0, &key.0)?;
                if let Some(subject) = &session.subject {
                    subjects.insert(subject.as_str(), &session.id.0)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn load(&mut self, key: &TokenHash) -> Result<Option<StoredEntry>, Error> {
        let txn = self.db.begin_read()?;
        let entries = txn.open_table(ENTRIES)?;
        let found = entries.get(&key.0)?;
        Ok(match found {
            Some(bytes) => Some(decode_entry(bytes.value())?),
            None => None,
        })
    }

    fn update(&mut self, key: &TokenHash, session: &Session, expected: u64) -> Result<bool, Error> {
        let txn = self.durable_write()?;
        let written = {
            let mut entries = txn.open_table(ENTRIES)?;
            let current = match entries.get(&key.0)? {
                Some(bytes) => decode_entry(bytes.value())?,
                None => return Ok(false),
            };
            match current {
                StoredEntry::Live(stored) if stored.version == expected => {
                    let bytes = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
                    entries.insert(&key.0, bytes.as_slice())?;
                    true
                }
                _ => false,
            }
        };
        txn.commit()?;
        Ok(written)
    }

    fn rotate(
        &mut self,
        old: &TokenHash,
        new: &TokenHash,
        session: &Session,
        expected: u64,
        tombstone: &Tombstone,
    ) -> Result<bool, Error> {
        let txn = self.durable_write()?;
        let written = {
            let mut entries = txn.open_table(ENTRIES)?;
            let mut ids = txn.open_table(IDS)?;
            let current = match entries.get(&old.0)? {
                Some(bytes) => decode_entry(bytes.value())?,
                None => return Ok(false),
            };
            match current {
                StoredEntry::Live(stored) if stored.version == expected => {
                    let live = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
                    let tomb = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
                    entries.insert(&new.0, live.as_slice())?;
                    entries.insert(&old.0, tomb.as_slice())?;
                    ids.insert(&session.id.0, &new.0)?;
                    true
                }
                _ => false,
            }
        };
        txn.commit()?;
        Ok(written)
    }
}

struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    fn open(path: &Path) -> Result<Self, Error> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (key BLOB PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS ids (id BLOB PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS subjects (subject TEXT NOT NULL, id BLOB NOT NULL,
                 PRIMARY KEY (subject, id)) WITHOUT ROWID;",
        )?;
        Ok(Self { conn })
    }

    fn read_entry(tx: &rusqlite::Transaction<'_>, key: &TokenHash) -> Result<Option<StoredEntry>, Error> {
        let bytes: Option<Vec<u8>> = tx
            .prepare_cached("SELECT record FROM entries WHERE key = ?1")?
            .query_row(params![&key.0[..]], |row| row.get(0))
            .optional()?;
        Ok(match bytes {
            Some(bytes) => Some(decode_entry(&bytes)?),
            None => None,
        })
    }
}

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn create_many(&mut self, items: &[(TokenHash, Session)]) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        for (key, session) in items {
            let bytes = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
            let inserted = tx
                .prepare_cached("INSERT OR IGNORE INTO entries (key, record) VALUES (?1, ?2)")?
                .execute(params![&key.0[..], bytes])?;
            if inserted == 0 {
                continue;
            }
            tx.prepare_cached("INSERT INTO ids (id, key) VALUES (?1, ?2)")?
                .execute(params![&session.id.0[..], &key.0[..]])?;
            if let Some(subject) = &session.subject {
                tx.prepare_cached("INSERT INTO subjects (subject, id) VALUES (?1, ?2)")?
                    .execute(params![subject, &session.id.0[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self, key: &TokenHash) -> Result<Option<StoredEntry>, Error> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT record FROM entries WHERE key = ?1")?
            .query_row(params![&key.0[..]], |row| row.get(0))
            .optional()?;
        Ok(match bytes {
            Some(bytes) => Some(decode_entry(&bytes)?),
            None => None,
        })
    }

    fn update(&mut self, key: &TokenHash, session: &Session, expected: u64) -> Result<bool, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let written = match Self::read_entry(&tx, key)? {
            Some(StoredEntry::Live(stored)) if stored.version == expected => {
                let bytes = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
                tx.prepare_cached("UPDATE entries SET record = ?2 WHERE key = ?1")?
                    .execute(params![&key.0[..], bytes])?;
                true
            }
            _ => false,
        };
        tx.commit()?;
        Ok(written)
    }

    fn rotate(
        &mut self,
        old: &TokenHash,
        new: &TokenHash,
        session: &Session,
        expected: u64,
        tombstone: &Tombstone,
    ) -> Result<bool, Error> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let written = match Self::read_entry(&tx, old)? {
            Some(StoredEntry::Live(stored)) if stored.version == expected => {
                let live = encode_entry(&StoredEntry::Live(Arc::new(session.clone())))?;
                let tomb = encode_entry(&StoredEntry::Tombstone(*tombstone))?;
                tx.prepare_cached("INSERT INTO entries (key, record) VALUES (?1, ?2)")?
                    .execute(params![&new.0[..], live])?;
                tx.prepare_cached("UPDATE entries SET record = ?2 WHERE key = ?1")?
                    .execute(params![&old.0[..], tomb])?;
                tx.prepare_cached("UPDATE ids SET key = ?2 WHERE id = ?1")?
                    .execute(params![&session.id.0[..], &new.0[..]])?;
                true
            }
            _ => false,
        };
        tx.commit()?;
        Ok(written)
    }
}

fn sample(n: u64) -> Result<(TokenHash, Session), Error> {
    let now = Timestamp(1_800_000_000_000);
    let key = SessionToken::generate()?.hash();
    let session = Session {
        id: SessionId::generate()?,
        subject: Some(format!("user-{}", n % 1000)),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark","csrf":"abcdefghijklmnop"}"#)?,
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    };
    Ok((key, session))
}

/// Runs `op` until the phase time is over; returns operations per second.
fn timed(mut op: impl FnMut(u64) -> Result<u64, Error>) -> Result<f64, Error> {
    let limit = phase_time();
    let start = Instant::now();
    let mut done = 0u64;
    let mut i = 0u64;
    while start.elapsed() < limit {
        done += op(i)?;
        i += 1;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

fn run(backend: &mut dyn Backend) -> Result<Vec<(&'static str, f64)>, Error> {
    let mut results = Vec::new();
    let mut live: Vec<(TokenHash, Session)> = Vec::new();

    let rate = timed(|i| {
        let item = sample(i)?;
        backend.create_many(std::slice::from_ref(&item))?;
        live.push(item);
        Ok(1)
    })?;
    results.push(("create, 1 per fsync", rate));

    let rate = timed(|i| {
        let group = (0..64).map(|j| sample(i * 64 + j)).collect::<Result<Vec<_>, _>>()?;
        backend.create_many(&group)?;
        live.extend(group);
        Ok(64)
    })?;
    results.push(("create, 64 per fsync", rate));

    let count = live.len() as u64;
    let rate = timed(|i| {
        let (key, _) = &live[(i.wrapping_mul(7919) % count) as usize];
        match backend.load(key)? {
            Some(StoredEntry::Live(_)) => Ok(1),
            other => Err(format!("expected a live session, got {other:?}").into()),
        }
    })?;
    results.push(("load (read + decode)", rate));

    let rate = timed(|i| {
        let slot = (i % count) as usize;
        let (key, session) = &mut live[slot];
        let mut next = session.clone();
        next.version += 1;
        if !backend.update(key, &next, session.version)? {
            return Err("update lost its compare-and-swap".into());
        }
        *session = next;
        Ok(1)
    })?;
    results.push(("update (CAS), 1 per fsync", rate));

    let rate = timed(|i| {
        let slot = (i % count) as usize;
        let (old, session) = live[slot].clone();
        let new = SessionToken::generate()?.hash();
        let tombstone = Tombstone {
            session_id: session.id,
            successor: new,
            grace_until: None,
            forget_at: session.absolute_expires_at,
        };
        if !backend.rotate(&old, &new, &session, session.version, &tombstone)? {
            return Err("rotate lost its compare-and-swap".into());
        }
        live[slot] = (new, session);
        Ok(1)
    })?;
    results.push(("rotate, 1 per fsync", rate));
    Ok(results)
}

fn main() -> Result<(), Error> {
    let dir = tempfile::Builder::new()
        .prefix("tessera-embedded-choice-")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    println!("phase time {:?}, data in {}", phase_time(), dir.path().display());
    // Two rounds in alternating order (redb, sqlite, sqlite, redb), each on a
    // fresh file; the better round of each counts, so that a burst of load
    // from elsewhere on the machine penalises neither side alone.
    let mut best: [Vec<(&'static str, f64)>; 2] = [Vec::new(), Vec::new()];
    for (round, order) in [[0usize, 1], [1, 0]].into_iter().enumerate() {
        for which in order {
            let path = dir.path().join(format!("round{round}-{which}"));
            let mut backend: Box<dyn Backend> = match which {
                0 => Box::new(Redb::open(&path)?),
                _ => Box::new(Sqlite::open(&path)?),
            };
            let results = run(backend.as_mut())?;
            for (name, rate) in &results {
                println!("round {round} {:<7} {name:<28} {rate:>10.0}/s", backend.name());
            }
            if best[which].is_empty() {
                best[which] = results;
            } else {
                for (kept, (_, rate)) in best[which].iter_mut().zip(results) {
                    kept.1 = kept.1.max(rate);
                }
            }
        }
    }
    println!();
    println!("{:<28} {:>12} {:>12}", "best of 2 (ops/s)", "redb", "sqlite");
    for ((name, r), (_, s)) in best[0].iter().zip(&best[1]) {
        println!("{name:<28} {r:>12.0} {s:>12.0}");
    }
    Ok(())
}

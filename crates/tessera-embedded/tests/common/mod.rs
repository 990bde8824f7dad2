//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod format_1;

use std::sync::Arc;
use std::time::Duration;

use tessera_core::testkit::Harness;
use tessera_core::{MemoryStore, Revision, SessionRecord, Timestamp, TokenHash, codec};

/// A fresh record (random id and token) created at `now`, of `subject`,
/// with this idle timeout and a 12-hour absolute one.
pub fn record(now: Timestamp, subject: Option<&str>, idle: Duration) -> SessionRecord {
    let mut record = Harness::new(Arc::new(MemoryStore::new())).sample_record(subject);
    record.created_at = now;
    record.last_seen_at = now;
    record.token_issued_at = now;
    record.authenticated_at = subject.map(|_| now);
    record.idle_timeout_ms = u64::try_from(idle.as_millis()).expect("idle timeout");
    record.absolute_expires_at = now.plus(Duration::from_secs(12 * 3600));
    record
}

/// The hash of a fresh random token.
pub fn token_hash() -> TokenHash {
    record(Timestamp(0), None, Duration::from_secs(1))
        .revision()
        .token
}

/// `record` with another revision (a new token after a rotation, say),
/// written through the codec's fixed layout.
pub fn with_revision(record: &SessionRecord, revision: Revision) -> SessionRecord {
    let mut bytes = codec::encode(record, Timestamp(0));
    bytes[codec::REVISION].copy_from_slice(&revision.to_bytes());
    codec::decode(&bytes, None).expect("decode")
}

/// `record` with a new token (a rotation): same version.
pub fn rotated(record: &SessionRecord, token: TokenHash) -> SessionRecord {
    with_revision(
        record,
        Revision {
            version: record.version,
            token,
        },
    )
}

/// The runtime of a child process that writes to a store.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

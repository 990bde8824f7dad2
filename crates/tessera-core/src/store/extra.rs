//! The two smaller parts of the storage contract: state attached to a
//! session in a keyspace of its own ([`Attachments`]), and an append-only
//! journal of operators' actions ([`Journal`]).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Page, StoreError};
use crate::clock::Timestamp;
use crate::token::SessionId;

/// What an attachment is for; each session has at most one of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AttachmentKind {
    /// The state of a device-bound session (its key, challenges, bound cookie).
    DeviceBinding,
}

impl AttachmentKind {
    /// Every kind, for stores that iterate over them.
    pub const ALL: [AttachmentKind; 1] = [AttachmentKind::DeviceBinding];

    /// A stable one-byte tag for stores that key by bytes.
    pub fn tag(self) -> u8 {
        match self {
            AttachmentKind::DeviceBinding => 1,
        }
    }

    /// A stable short name for stores that key by text.
    pub fn name(self) -> &'static str {
        match self {
            AttachmentKind::DeviceBinding => "dbsc",
        }
    }
}

/// An attachment as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Incremented by every write; what a compare-and-swap compares.
    pub generation: u64,
    /// The attachment's bytes, as its owner encoded them.
    pub value: Vec<u8>,
}

/// The outcome of a conditional attachment write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentWrite {
    /// Written; the attachment's new generation.
    Written {
        /// The generation now stored.
        generation: u64,
    },
    /// The stored generation was not the expected one (`None`: there was
    /// none, or it was forgotten); nothing was written.
    Conflict {
        /// The generation stored.
        current: Option<u64>,
    },
}

/// State kept beside a session in a keyspace of its own, read and written
/// without touching the session's record (so a write of the session's data
/// and a write of its attachment never undo each other), and ended with
/// the session.
///
/// Guarantees: [`store_attachment`](Self::store_attachment) is a
/// compare-and-swap on the generation; nothing is returned once `now`
/// reaches the `forget_at` it was written with; deleting a session (by id,
/// by subject, or by sweeping it) deletes its attachments too.
#[async_trait]
pub trait Attachments: Send + Sync + 'static {
    /// The attachment `kind` of session `id`, or `None`.
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError>;

    /// Writes the attachment if its stored generation is `expected`
    /// (`None`: only if there is none); the new generation is one more
    /// (1 for a new attachment). Kept until `forget_at`.
    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError>;

    /// Removes the attachment `kind` of session `id`; `true` if there was one.
    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError>;
}

/// One entry of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// When it happened.
    pub at: Timestamp,
    /// Random bytes that tell apart entries of the same millisecond (from
    /// several nodes).
    pub nonce: [u8; 8],
    /// The entry, as its writer encoded it.
    pub value: Vec<u8>,
}

/// An append-only journal shared by everyone using the store: what
/// operators did (the admin console's audit log), newest first.
///
/// Guarantees: every appended entry is listed, newest first (ties in
/// order of nonce), until `now` reaches the `forget_at` it was appended
/// with; sweeping removes it after that.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Appends an entry, kept until `forget_at`.
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Up to `limit` entries, newest first, starting at `cursor` (`None`:
    /// the newest).
    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError>;
}

/// A cursor that resumes after `entry` in a journal listed newest first.
pub fn journal_cursor(entry: &JournalEntry) -> String {
    let mut bytes = entry.at.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(&entry.nonce);
    crate::token::hex(&bytes)
}

/// The `(at, nonce)` a [`journal_cursor`] resumes after.
pub fn parse_journal_cursor(text: &str) -> Result<(Timestamp, [u8; 8]), StoreError> {
    let bad = || StoreError::invalid("not a journal cursor of this store");
    if text.len() != 32 || !text.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[..8]);
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&bytes[8..]);
    Ok((Timestamp(i64::from_be_bytes(at)), nonce))
}

/// Whether `entry` comes after the cursor position in newest-first order.
pub fn journal_after(entry: &JournalEntry, cursor: &(Timestamp, [u8; 8])) -> bool {
    (entry.at, entry.nonce) < *cursor
}

#[async_trait]
impl<S: Attachments + ?Sized> Attachments for Arc<S> {
    async fn load_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        now: Timestamp,
    ) -> Result<Option<Attachment>, StoreError> {
        (**self).load_attachment(id, kind, now).await
    }
    async fn store_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
        value: &[u8],
        expected: Option<u64>,
        forget_at: Timestamp,
        now: Timestamp,
    ) -> Result<AttachmentWrite, StoreError> {
        (**self)
            .store_attachment(id, kind, value, expected, forget_at, now)
            .await
    }
    async fn delete_attachment(
        &self,
        id: &SessionId,
        kind: AttachmentKind,
    ) -> Result<bool, StoreError> {
        (**self).delete_attachment(id, kind).await
    }
}

#[async_trait]
impl<S: Journal + ?Sized> Journal for Arc<S> {
    async fn append_journal(
        &self,
        entry: &JournalEntry,
        forget_at: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).append_journal(entry, forget_at).await
    }
    async fn journal_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Page<JournalEntry>, StoreError> {
        (**self).journal_page(cursor, limit, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_cursors_round_trip_and_order_newest_first() {
        let entry = |at, nonce| JournalEntry {
            at: Timestamp(at),
            nonce: [nonce; 8],
            value: Vec::new(),
        };
        let newer = entry(20, 1);
        let older = entry(10, 9);
        let cursor = parse_journal_cursor(&journal_cursor(&newer)).expect("cursor");
        assert_eq!(cursor, (Timestamp(20), [1; 8]));
        assert!(journal_after(&older, &cursor));
        assert!(!journal_after(&newer, &cursor));
        assert!(
            journal_after(&entry(20, 0), &cursor),
            "same time, lower nonce"
        );
        assert!(parse_journal_cursor("zz").is_err());
    }
}

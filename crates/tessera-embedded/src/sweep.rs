//! Removing expired records and stale legacy pointers, in small
//! transactions. `tessera_core::store::spawn_sweeper` runs it periodically.

use tessera_core::store::StoreError;
use tessera_core::{SessionId, Timestamp, TokenHash, codec};

use crate::EmbeddedStore;
use crate::batch::Batch;
use crate::mirror::{live_attachment, live_journal};

/// Most records (or pointers) removed by one transaction, so that a large
/// sweep never holds up the requests queued behind it for long.
pub(crate) const SWEEP_BATCH: usize = 256;

impl EmbeddedStore {
    /// Removes every record that may be forgotten at `now` (with its
    /// subject index entry), then every legacy pointer whose record is gone,
    /// [`SWEEP_BATCH`] per transaction; returns how many records and
    /// pointers went.
    pub(crate) async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError> {
        let (records, pointers) = self.read(|mirror| mirror.expired(now))?;
        let mut removed = 0;
        for chunk in records.chunks(SWEEP_BATCH) {
            let chunk = chunk.to_vec();
            removed += self
                .write(move |batch| sweep_records(batch, &chunk, now))
                .await?;
            // Let requests that arrived meanwhile run before the next chunk.
            tokio::task::yield_now().await;
        }
        // Pointers of records removed just now are found by a second look.
        let pointers = if records.is_empty() {
            pointers
        } else {
            self.read(|mirror| mirror.expired(now).1)?
        };
        for chunk in pointers.chunks(SWEEP_BATCH) {
            let chunk = chunk.to_vec();
            removed += self
                .write(move |batch| sweep_pointers(batch, &chunk, now))
                .await?;
            tokio::task::yield_now().await;
        }
        // Attachments of sessions gone (just now, or by a deletion that
        // raced a write of the attachment) or past their own deadline, and
        // journal entries past theirs.
        let (attachments, journal) = self.read(|mirror| mirror.expired_extras(now))?;
        for chunk in attachments.chunks(SWEEP_BATCH) {
            let chunk = chunk.to_vec();
            removed += self
                .write(move |batch| sweep_attachments(batch, &chunk, now))
                .await?;
            tokio::task::yield_now().await;
        }
        for chunk in journal.chunks(SWEEP_BATCH) {
            let chunk = chunk.to_vec();
            removed += self
                .write(move |batch| sweep_journal(batch, &chunk, now))
                .await?;
            tokio::task::yield_now().await;
        }
        Ok(removed)
    }
}

/// Removes the attachments of `keys` that are still forgotten at `now` or
/// whose session is still gone.
fn sweep_attachments(
    batch: &mut Batch<'_>,
    keys: &[(SessionId, u8)],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for (id, tag) in keys {
        let Some(bytes) = batch.attachment(id, *tag) else {
            continue;
        };
        if live_attachment(bytes, now).is_some() && batch.record(id).is_some() {
            continue;
        }
        batch.remove_attachment(id, *tag)?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes the journal entries of `keys` forgotten at `now`.
fn sweep_journal(
    batch: &mut Batch<'_>,
    keys: &[[u8; 16]],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for key in keys {
        if batch
            .journal_entry(key)
            .is_some_and(|bytes| live_journal(bytes, now).is_none())
        {
            batch.remove_journal(key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes the records of `ids` that are still forgotten at `now` (a touch
/// may have moved a deadline since the scan), with their index entries.
fn sweep_records(
    batch: &mut Batch<'_>,
    ids: &[SessionId],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for id in ids {
        let Some(bytes) = batch.record(id) else {
            continue;
        };
        if batch.live(id, now).is_some() {
            continue;
        }
        let subject = codec::subject_of(bytes).map(Box::<str>::from);
        batch.end_session(id)?;
        if let Some(subject) = subject.as_deref() {
            batch.remove_subject(subject, id);
        }
        removed += 1;
    }
    Ok(removed)
}

/// Removes the legacy pointers of `keys` whose record is gone or forgotten.
fn sweep_pointers(
    batch: &mut Batch<'_>,
    keys: &[TokenHash],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for key in keys {
        let Some(id) = batch.legacy_id(key) else {
            continue;
        };
        if batch.live(&id, now).is_some() {
            continue;
        }
        batch.remove_legacy(key)?;
        removed += 1;
    }
    Ok(removed)
}

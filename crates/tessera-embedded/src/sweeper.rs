//! Removing expired records and tombstones, in small transactions.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Clock, StoreError, StoredEntry, SystemClock, Timestamp, TokenHash};

use crate::EmbeddedStore;
use crate::batch::Batch;

/// Most records removed by one transaction, so that a large sweep never
/// holds up the requests queued behind it for long.
pub(crate) const SWEEP_BATCH: usize = 256;

impl EmbeddedStore {
    /// Runs a sweep every `interval` on the current tokio runtime, with the
    /// system clock. The task ends when the store is closed or every clone
    /// of it is dropped.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_sweeper_with_clock(interval, Arc::new(SystemClock))
    }

    /// As [`spawn_sweeper`](Self::spawn_sweeper), with an explicit clock.
    pub fn spawn_sweeper_with_clock(
        &self,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(shared) = weak.upgrade() else { break };
                let store = EmbeddedStore { shared };
                if store.is_closed() {
                    break;
                }
                match store.sweep(clock.now()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "embedded store swept expired records"),
                    Err(e) if store.is_closed() => {
                        tracing::debug!(error = %e, "embedded store closed during a sweep");
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "embedded store sweep failed"),
                }
            }
        })
    }

    /// Removes every record and tombstone that may be forgotten at `now`,
    /// [`SWEEP_BATCH`] per transaction; returns how many.
    pub(crate) async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError> {
        let expired = self.read(|mirror| mirror.expired_keys(now))?;
        let mut removed = 0;
        for chunk in expired.chunks(SWEEP_BATCH) {
            let chunk = chunk.to_vec();
            removed += self
                .write(move |batch| sweep_chunk(batch, &chunk, now))
                .await?;
            // Let requests that arrived meanwhile run before the next chunk.
            tokio::task::yield_now().await;
        }
        Ok(removed)
    }
}

/// Removes the records of `keys` that are still expired at `now` (a touch
/// may have revived one since the scan), with their index entries.
fn sweep_chunk(
    batch: &mut Batch<'_>,
    keys: &[TokenHash],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for key in keys {
        match batch.entry(key)? {
            Some(StoredEntry::Live(session)) if session.forget_at() <= now => {
                batch.remove_entry(key)?;
                if batch.key_of(&session.id)? == Some(*key) {
                    batch.remove_id(&session.id)?;
                    if let Some(subject) = session.subject.as_deref() {
                        batch.remove_subject(subject, &session.id)?;
                    }
                }
                removed += 1;
            }
            Some(StoredEntry::Tombstone(tombstone)) if tombstone.forget_at <= now => {
                batch.remove_entry(key)?;
                removed += 1;
            }
            _ => {}
        }
    }
    Ok(removed)
}

//! Deleting forgettable records in small batches, alone or from many nodes at once.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::{Clock, StoreError, SystemClock, Timestamp};

use crate::store::PostgresStore;

impl PostgresStore {
    /// Deletes every record whose forget time is not after `now`, one batch
    /// (`sweep_batch` rows, default 500) per short statement. Rows another
    /// sweeper or a writer holds are skipped (`FOR UPDATE SKIP LOCKED`), so
    /// sweepers on several nodes split the work instead of waiting on each
    /// other, and none holds a lock for longer than one batch.
    pub(crate) async fn sweep(&self, now: Timestamp) -> Result<u64, StoreError> {
        let batch = self.inner.sweep_batch;
        let mut removed = 0;
        loop {
            let deleted = self
                .execute(
                    "sweep expired sessions",
                    &self.inner.sql.sweep,
                    &[&now.as_millis(), &batch],
                )
                .await?;
            removed += deleted;
            // A short batch means nothing unlocked is left to sweep.
            if deleted < u64::try_from(batch).unwrap_or(u64::MAX) {
                return Ok(removed);
            }
        }
    }

    /// Runs the sweep every `interval` on the current tokio runtime, with
    /// the system clock. Safe to run on every node. The task ends when every
    /// clone of the store is dropped; failures (database down) are logged
    /// and the next tick tries again.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        self.spawn_sweeper_with_clock(interval, Arc::new(SystemClock))
    }

    /// As [`spawn_sweeper`](Self::spawn_sweeper), with an explicit clock.
    pub fn spawn_sweeper_with_clock(
        &self,
        interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let store = PostgresStore { inner };
                match store.sweep(clock.now()).await {
                    Ok(0) => {}
                    Ok(removed) => {
                        tracing::debug!(removed, "PostgreSQL store swept expired sessions");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "PostgreSQL store sweep failed; retrying next tick");
                    }
                }
            }
        })
    }
}

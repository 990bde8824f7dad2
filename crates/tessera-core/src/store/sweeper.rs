//! The one loop that sweeps a store: [`Maintenance::sweep_expired`] every
//! interval, on the current tokio runtime, until its handle is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::Maintenance;
use crate::clock::{Clock, SystemClock};

/// A running sweeper. Dropping it (or calling [`stop`](Self::stop)) stops
/// the sweeping; keep it as long as the store is in use.
#[derive(Debug)]
#[must_use = "the sweeper stops when this handle is dropped"]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    /// Stops sweeping.
    pub fn stop(self) {}

    /// Whether the loop has ended (only a panic in the store ends it early).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sweeps `store` every `interval` with the system clock: expired records
/// and stale index entries go. Failures (a store that is down) are logged
/// and the next tick tries again. Safe to run on every node sharing a store.
pub fn spawn_sweeper<S: Maintenance>(store: S, interval: Duration) -> Sweeper {
    spawn_sweeper_with_clock(store, interval, Arc::new(SystemClock))
}

/// [`spawn_sweeper`] with an explicit clock (tests move a manual one).
pub fn spawn_sweeper_with_clock<S: Maintenance>(
    store: S,
    interval: Duration,
    clock: Arc<dyn Clock>,
) -> Sweeper {
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.sweep_expired(clock.now()).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept expired sessions"),
                Err(error) => {
                    tracing::warn!(%error, "sweeping expired sessions failed; retrying next tick")
                }
            }
        }
    });
    Sweeper { task }
}

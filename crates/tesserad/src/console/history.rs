//! The last hour of the server's activity, a minute at a time, for the
//! console's charts: snapshots of the metrics' counters taken as each
//! minute starts; a minute's value is the difference to the next one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How many minutes the charts show.
pub const MINUTES: usize = 60;

/// The counters one snapshot holds (totals since the server started;
/// `held` is a gauge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sessions held by the store, for stores that can count.
    pub held: Option<u64>,
    /// Sessions created.
    pub creations: u64,
    /// Validations (API and forward-auth), whatever their outcome.
    pub validations: u64,
    /// Logins.
    pub logins: u64,
    /// API operations that failed (any error code).
    pub failures: u64,
    /// Security events: token reuse, binding mismatches, token guessing.
    pub security_events: u64,
}

impl Counters {
    /// The counters now.
    pub fn read(metrics: &Metrics) -> Self {
        let mut counters = Counters {
            held: metrics.store_records(),
            ..Counters::default()
        };
        for op in metrics.operation_counts() {
            if matches!(op.operation.as_str(), "validate" | "forward_auth") {
                counters.validations += op.count;
            }
            if op.outcome != "ok" {
                counters.failures += op.count;
            }
        }
        for event in metrics.event_counts() {
            match event.kind.as_str() {
                "created" => counters.creations += event.count,
                "logged_in" => counters.logins += event.count,
                "token_reuse" | "binding_mismatch" | "token_guessing" => {
                    counters.security_events += event.count;
                }
                _ => {}
            }
        }
        counters
    }

    fn since(self, earlier: Counters) -> Counters {
        Counters {
            held: self.held,
            creations: self.creations.saturating_sub(earlier.creations),
            validations: self.validations.saturating_sub(earlier.validations),
            logins: self.logins.saturating_sub(earlier.logins),
            failures: self.failures.saturating_sub(earlier.failures),
            security_events: self.security_events.saturating_sub(earlier.security_events),
        }
    }
}

/// Snapshots, one per minute, the newest last.
#[derive(Debug)]
pub struct History {
    started: Instant,
    snapshots: Mutex<VecDeque<(u64, Counters)>>,
}

impl History {
    /// An empty history whose minutes count from `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            snapshots: Mutex::new(VecDeque::new()),
        }
    }

    /// Records `counters` as the start of the minute `now` falls in, unless
    /// that minute has its snapshot already.
    pub fn observe(&self, counters: Counters, now: Instant) {
        let minute = now.duration_since(self.started).as_secs() / 60;
        let Ok(mut snapshots) = self.snapshots.lock() else {
            return;
        };
        if snapshots.back().is_some_and(|(m, _)| *m == minute) {
            return;
        }
        snapshots.push_back((minute, counters));
        while snapshots.len() > MINUTES + 1 {
            snapshots.pop_front();
        }
    }

    /// Per-minute activity, oldest first, the last entry being the minute
    /// in progress (up to `current`); minutes without a snapshot (before
    /// the server started, or a sampler that fell behind) are zero.
    pub fn minutes(&self, current: Counters, now: Instant) -> Vec<Counters> {
        let this_minute = now.duration_since(self.started).as_secs() / 60;
        let snapshots = self.snapshots.lock().map(|s| s.clone()).unwrap_or_default();
        // Always an hour of minutes: in the server's first hour, those
        // before its start are zero (the chart keeps its time scale).
        (0..MINUTES as u64)
            .rev()
            .map(|ago| this_minute.checked_sub(ago))
            .map(|minute| {
                let Some(minute) = minute else {
                    return Counters::default();
                };
                let Some(start) = snapshots.iter().find(|(m, _)| *m == minute) else {
                    return Counters::default();
                };
                let end = snapshots
                    .iter()
                    .find(|(m, _)| *m == minute + 1)
                    .map(|(_, c)| *c)
                    .unwrap_or(current);
                end.since(start.1)
            })
            .collect()
    }

    /// Takes a snapshot every few seconds (so each minute gets one close
    /// to its start) until the history is dropped.
    pub fn spawn_sampler(self: &Arc<Self>, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        let history = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(2));
            loop {
                ticker.tick().await;
                let Some(history) = history.upgrade() else {
                    break;
                };
                history.observe(Counters::read(&metrics), Instant::now());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_minute_counts_what_happened_in_it() {
        let start = Instant::now();
        let history = History::new(start);
        let at = |creations| Counters {
            creations,
            ..Counters::default()
        };
        history.observe(at(0), start);
        history.observe(at(3), start + Duration::from_secs(30));
        history.observe(at(5), start + Duration::from_secs(61));
        let minutes = history.minutes(at(12), start + Duration::from_secs(130));
        assert_eq!(
            minutes.len(),
            MINUTES,
            "an hour, before the server's start too"
        );
        let last = &minutes[MINUTES - 3..];
        assert!(minutes[..MINUTES - 3].iter().all(|m| m.creations == 0));
        assert_eq!(last[0].creations, 5, "minute 0: 0 → 5");
        assert_eq!(
            last[1].creations, 7,
            "minute 1: 5 → now, its end not sampled"
        );
        assert_eq!(last[2].creations, 0, "minute 2 not sampled yet");
        let minutes = history.minutes(at(12), start + Duration::from_secs(100));
        assert_eq!(minutes.len(), MINUTES);
        assert_eq!(
            minutes[MINUTES - 1].creations,
            7,
            "the minute in progress: 5 → 12"
        );
        let later = history.minutes(at(12), start + Duration::from_secs(3 * 3600));
        assert_eq!(later.len(), MINUTES);
        assert!(later.iter().all(|m| m.creations == 0));
    }
}

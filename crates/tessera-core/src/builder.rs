//! The [`SessionManagerBuilder`]: defaults from DESIGN.md §1, refused nonsense.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{BindingPolicy, ConfigError, SessionConfig};
use crate::events::{EventSink, TracingEventSink};
use crate::manager::SessionManager;
use crate::store::SessionStore;

/// Builds a [`SessionManager`]; every setting starts at its documented default.
pub struct SessionManagerBuilder {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
}

impl SessionManagerBuilder {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            config: SessionConfig::default(),
            clock: Arc::new(SystemClock),
            events: Arc::new(TracingEventSink),
        }
    }

    /// Replaces every policy setting at once.
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Idle timeout (default 30 min).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Absolute timeout (default 12 h).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = timeout;
        self
    }

    /// Renewal interval (default 15 min).
    pub fn renew_after(mut self, interval: Duration) -> Self {
        self.config.renew_after = interval;
        self
    }

    /// Rotation grace (default 10 s).
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.config.rotation_grace = grace;
        self
    }

    /// Touch granularity (default 60 s).
    pub fn touch_after(mut self, granularity: Duration) -> Self {
        self.config.touch_after = granularity;
        self
    }

    /// Client binding policy (default `log`).
    pub fn binding(mut self, policy: BindingPolicy) -> Self {
        self.config.binding = policy;
        self
    }

    /// Caps the sessions one subject may hold; login beyond it ends the oldest.
    pub fn max_sessions_per_subject(mut self, cap: NonZeroUsize) -> Self {
        self.config.max_sessions_per_subject = Some(cap);
        self
    }

    /// Longest subject in bytes (default 256).
    pub fn max_subject_bytes(mut self, limit: usize) -> Self {
        self.config.max_subject_bytes = limit;
        self
    }

    /// Largest session data in bytes of compact JSON (default 64 KiB).
    pub fn max_data_bytes(mut self, limit: usize) -> Self {
        self.config.max_data_bytes = limit;
        self
    }

    /// Guessing detection: `threshold` invalid tokens from one IP within `window`.
    pub fn guessing(mut self, threshold: u32, window: Duration) -> Self {
        self.config.guessing_threshold = threshold;
        self.config.guessing_window = window;
        self
    }

    /// How long the global revocation epoch may be cached (default 1 s).
    pub fn epoch_refresh(mut self, interval: Duration) -> Self {
        self.config.epoch_refresh = interval;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Where events go (default: `tracing`).
    pub fn events(mut self, sink: impl EventSink) -> Self {
        self.events = Arc::new(sink);
        self
    }

    /// Where events go, shared.
    pub fn events_shared(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }

    /// Builds the manager, refusing settings that make no sense together.
    pub fn build(self) -> Result<SessionManager, ConfigError> {
        self.config.validate()?;
        Ok(SessionManager::from_parts(
            self.store,
            self.config,
            self.clock,
            self.events,
        ))
    }
}

//! The [`SessionManagerBuilder`]: documented defaults, settings left out
//! derived from those given, contradictions refused.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{BindingPolicy, ConfigError, SessionConfig};
use crate::events::{EventSink, TracingEventSink};
use crate::manager::SessionManager;
use crate::sealed::KeyRing;
use crate::store::SessionStore;

/// The timing settings given explicitly; the others are derived from them.
#[derive(Debug, Clone, Copy, Default)]
struct Given {
    idle_timeout: Option<Duration>,
    anonymous_idle_timeout: Option<Duration>,
    absolute_timeout: Option<Duration>,
    renew_after: Option<Duration>,
    rotation_grace: Option<Duration>,
    renewal_delivery_window: Option<Duration>,
    touch_after: Option<Duration>,
}

/// Builds a [`SessionManager`]; every setting starts at its documented
/// default (`docs/concepts.md`).
///
/// Timing settings left out are derived from the ones given, so that a
/// short idle timeout alone works: touch granularity is at most a quarter
/// of the idle timeout, renewal at most half of it, the grace at most a
/// quarter of the renewal interval, and the absolute timeout at least the
/// idle timeout. Only settings given explicitly can contradict each
/// other, and [`build`](Self::build) then says which.
pub struct SessionManagerBuilder {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    given: Given,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
    sealing: Option<KeyRing>,
}

impl std::fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("config", &self.config)
            .field("sealed", &self.sealing.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionManagerBuilder {
    pub(crate) fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            config: SessionConfig::default(),
            given: Given::default(),
            clock: Arc::new(SystemClock),
            events: Arc::new(TracingEventSink),
            sealing: None,
        }
    }

    /// Idle timeout (default 30 min).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.given.idle_timeout = Some(timeout);
        self
    }

    /// Idle timeout of sessions nobody has signed in to (default 10 min;
    /// never longer than the idle timeout): a visitor's cart or form state
    /// goes sooner than a user's session.
    pub fn anonymous_idle_timeout(mut self, timeout: Duration) -> Self {
        self.given.anonymous_idle_timeout = Some(timeout);
        self
    }

    /// Caps the anonymous sessions created per minute: `per_ip` by one
    /// client IP (IPv6: one /64), `total` by all clients together (default
    /// 60 and 20 000; `None` lifts a cap). A creation beyond a cap fails
    /// with [`SessionError::TooManyAnonymous`](crate::SessionError::TooManyAnonymous).
    pub fn anonymous_creation_caps(
        mut self,
        per_ip: Option<NonZeroU32>,
        total: Option<NonZeroU32>,
    ) -> Self {
        self.config.anonymous_per_ip_per_minute = per_ip;
        self.config.anonymous_per_minute = total;
        self
    }

    /// Absolute timeout (default 12 h, and at least the idle timeout).
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.given.absolute_timeout = Some(timeout);
        self
    }

    /// Renewal interval (default 15 min, at most half the idle timeout).
    pub fn renew_after(mut self, interval: Duration) -> Self {
        self.given.renew_after = Some(interval);
        self
    }

    /// Rotation grace (default 10 s, at most a quarter of the renewal interval).
    pub fn rotation_grace(mut self, grace: Duration) -> Self {
        self.given.rotation_grace = Some(grace);
        self
    }

    /// How long a renewed-away token keeps working until its successor is
    /// presented (default 5 min, and at least the grace).
    pub fn renewal_delivery_window(mut self, window: Duration) -> Self {
        self.given.renewal_delivery_window = Some(window);
        self
    }

    /// Touch granularity (default 60 s, at most a quarter of the idle timeout).
    pub fn touch_after(mut self, granularity: Duration) -> Self {
        self.given.touch_after = Some(granularity);
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

    /// Keeps sessions sealed in the credential itself (client-side
    /// sessions, see [`sealed`](crate::sealed)) instead of in the store,
    /// which then holds only the revocation epochs.
    pub fn sealed(mut self, keys: KeyRing) -> Self {
        self.sealing = Some(keys);
        self
    }

    /// Accepts sealed sessions over a store whose revocation epochs are
    /// lost when it restarts (a memory store, Redis without persistence).
    /// Revoked seals cannot come back even then (a lost global epoch
    /// restarts above every earlier one), but every sealed session ends at
    /// each restart of the store. Refused by default.
    pub fn allow_volatile_epochs(mut self) -> Self {
        self.config.allow_volatile_epochs = true;
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

    /// The settings the manager would get: those given, the others derived.
    pub fn resolved_config(&self) -> SessionConfig {
        let mut config = self.config.clone();
        let given = self.given;
        let defaults = SessionConfig::default();
        let idle = given.idle_timeout.unwrap_or(defaults.idle_timeout);
        config.idle_timeout = idle;
        config.anonymous_idle_timeout = given
            .anonymous_idle_timeout
            .unwrap_or(defaults.anonymous_idle_timeout)
            .min(idle);
        // Touching must come well within the shorter of the two.
        let shortest_idle = idle.min(config.anonymous_idle_timeout);
        config.absolute_timeout = given
            .absolute_timeout
            .unwrap_or_else(|| defaults.absolute_timeout.max(idle));
        config.touch_after = given
            .touch_after
            .unwrap_or_else(|| defaults.touch_after.min(shortest_idle / 4));
        config.renew_after = given
            .renew_after
            .unwrap_or_else(|| defaults.renew_after.min(idle / 2));
        config.rotation_grace = given
            .rotation_grace
            .unwrap_or_else(|| defaults.rotation_grace.min(config.renew_after / 4));
        config.renewal_delivery_window = given.renewal_delivery_window.unwrap_or_else(|| {
            defaults
                .renewal_delivery_window
                .min(config.renew_after)
                .max(config.rotation_grace)
        });
        config
    }

    /// Builds the manager, refusing settings that make no sense together.
    pub fn build(self) -> Result<SessionManager, ConfigError> {
        let config = self.resolved_config();
        config.validate()?;
        if self.sealing.is_some() {
            crate::manager::check_epoch_durability(&*self.store, &config)?;
        }
        Ok(SessionManager::from_parts(
            self.store,
            config,
            self.clock,
            self.events,
            self.sealing,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn builder() -> SessionManagerBuilder {
        SessionManager::builder(MemoryStore::new())
    }

    #[test]
    fn a_short_idle_timeout_alone_works() {
        let manager = builder()
            .idle_timeout(Duration::from_secs(2))
            .build()
            .expect("derived settings fit");
        let config = manager.config();
        assert_eq!(config.touch_after, Duration::from_millis(500));
        assert_eq!(config.renew_after, Duration::from_secs(1));
        assert_eq!(config.rotation_grace, Duration::from_millis(250));
        assert_eq!(config.absolute_timeout, Duration::from_secs(12 * 3600));
    }

    #[test]
    fn a_long_idle_timeout_alone_raises_the_absolute_one() {
        let config = builder()
            .idle_timeout(Duration::from_secs(24 * 3600))
            .resolved_config();
        assert_eq!(config.absolute_timeout, Duration::from_secs(24 * 3600));
        assert_eq!(config.renew_after, Duration::from_secs(15 * 60));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn contradictions_between_given_settings_are_refused() {
        let refused = builder()
            .idle_timeout(Duration::from_secs(2))
            .touch_after(Duration::from_secs(60))
            .build()
            .expect_err("both given");
        assert!(matches!(
            refused,
            ConfigError::TouchNotShorterThanIdle { .. }
        ));
        assert!(refused.to_string().contains("touch_after (60s)"));
    }

    #[test]
    fn defaults_are_kept_when_nothing_is_given() {
        assert_eq!(builder().resolved_config(), SessionConfig::default());
    }
}

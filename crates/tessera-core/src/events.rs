//! Lifecycle and security events, the sink trait that receives them, and
//! detection of token guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::record::AuthLevel;
use crate::token::SessionId;

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RevokeCause {
    /// The holder logged out.
    Logout,
    /// Revoked by its public id (an admin, or "sign out that device").
    ById,
    /// Every session of the subject was revoked.
    Subject,
    /// The per-subject cap evicted it as the oldest.
    SubjectCap,
    /// A rotated-away token was presented after its grace: the token was stolen.
    TokenReuse,
    /// The global epoch moved past the session.
    Global,
}

/// Which deadline ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExpiryKind {
    /// The idle timeout.
    Idle,
    /// The absolute timeout.
    Absolute,
}

/// Something that happened to a session. Tokens never appear in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created.
    Created {
        /// The session.
        session_id: SessionId,
        /// Its subject, if created signed in.
        subject: Option<String>,
    },
    /// A subject logged in or stepped up (the token was replaced).
    LoggedIn {
        /// The session.
        session_id: SessionId,
        /// The subject.
        subject: String,
        /// The authentication level reached.
        auth_level: AuthLevel,
    },
    /// Validation rotated an old token.
    Renewed {
        /// The session.
        session_id: SessionId,
    },
    /// The token was rotated on request.
    Rotated {
        /// The session.
        session_id: SessionId,
    },
    /// A session reached a deadline.
    Expired {
        /// The session.
        session_id: SessionId,
        /// Which deadline.
        kind: ExpiryKind,
    },
    /// A session was revoked.
    Revoked {
        /// The session.
        session_id: SessionId,
        /// The subject, if any.
        subject: Option<String>,
        /// Why.
        cause: RevokeCause,
    },
    /// A rotated-away token came back after its grace; the session was revoked.
    TokenReuse {
        /// The session.
        session_id: SessionId,
        /// The subject, if any.
        subject: Option<String>,
        /// The presenting client's IP, if known.
        ip: Option<IpAddr>,
    },
    /// A request's client did not match the session's creating client.
    BindingMismatch {
        /// The session.
        session_id: SessionId,
        /// The presenting client's IP, if known.
        ip: Option<IpAddr>,
        /// Whether the request was refused (policy `reject`).
        rejected: bool,
    },
    /// One IP presented many invalid tokens within the window.
    TokenGuessing {
        /// The IP.
        ip: IpAddr,
        /// Invalid tokens counted in the current window.
        invalid_tokens: u32,
    },
    /// A session was bound to a device key (DBSC registration).
    DbscRegistered {
        /// The session.
        session_id: SessionId,
        /// The key's algorithm (`ES256`, `RS256`).
        algorithm: &'static str,
    },
    /// A device-bound session's bound cookie was renewed with a proof.
    DbscRefreshed {
        /// The session.
        session_id: SessionId,
    },
    /// A DBSC registration or refresh was refused.
    DbscRefreshFailed {
        /// The session.
        session_id: SessionId,
        /// Why, as a stable name (`bad_signature`, `unknown_challenge`, …).
        reason: &'static str,
    },
    /// A browser sent a request without the bound cookie
    /// (`Secure-Session-Skipped`).
    DbscSkipped {
        /// The session it names, when it is one of ours.
        session_id: Option<SessionId>,
        /// The browser's reason (`unreachable`, `server_error`,
        /// `quota_exceeded`, or `other`).
        reason: &'static str,
    },
    /// An operator acted on sessions through an admin tool (tesserad's
    /// console); the same action is kept in the store's journal.
    AdminAction {
        /// Who acted: the public id of the operator's credential (an API
        /// key id), never the credential.
        actor: String,
        /// What was done, for people (`revoked session …`).
        action: String,
    },
}

impl SessionEvent {
    /// Every kind [`kind`](Self::kind) returns, for tables keyed by kind
    /// (metrics); a new event adds its kind here, next to the match below.
    pub const KINDS: [&'static str; 14] = [
        "created",
        "logged_in",
        "renewed",
        "rotated",
        "expired",
        "revoked",
        "token_reuse",
        "binding_mismatch",
        "token_guessing",
        "dbsc_registered",
        "dbsc_refreshed",
        "dbsc_refresh_failed",
        "dbsc_skipped",
        "admin_action",
    ];

    /// The event's kind as a stable snake_case name (for metrics labels).
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Created { .. } => "created",
            SessionEvent::LoggedIn { .. } => "logged_in",
            SessionEvent::Renewed { .. } => "renewed",
            SessionEvent::Rotated { .. } => "rotated",
            SessionEvent::Expired { .. } => "expired",
            SessionEvent::Revoked { .. } => "revoked",
            SessionEvent::TokenReuse { .. } => "token_reuse",
            SessionEvent::BindingMismatch { .. } => "binding_mismatch",
            SessionEvent::TokenGuessing { .. } => "token_guessing",
            SessionEvent::DbscRegistered { .. } => "dbsc_registered",
            SessionEvent::DbscRefreshed { .. } => "dbsc_refreshed",
            SessionEvent::DbscRefreshFailed { .. } => "dbsc_refresh_failed",
            SessionEvent::DbscSkipped { .. } => "dbsc_skipped",
            SessionEvent::AdminAction { .. } => "admin_action",
        }
    }
}

/// Receives events. Called inline on the request path: keep it cheap
/// (count, log, or hand off to a channel).
pub trait EventSink: Send + Sync + 'static {
    /// Receives one event.
    fn emit(&self, event: &SessionEvent);
}

/// Logs every event with `tracing`: security events at `warn`, the rest at `debug`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEventSink;

impl EventSink for TracingEventSink {
    fn emit(&self, event: &SessionEvent) {
        match event {
            SessionEvent::TokenReuse { .. }
            | SessionEvent::BindingMismatch { .. }
            | SessionEvent::TokenGuessing { .. }
            | SessionEvent::DbscRefreshFailed { .. }
            | SessionEvent::AdminAction { .. } => {
                tracing::warn!(kind = event.kind(), ?event, "session security event");
            }
            _ => tracing::debug!(kind = event.kind(), ?event, "session event"),
        }
    }
}

/// Keeps every event in memory; for tests and debugging.
#[derive(Debug, Clone, Default)]
pub struct CollectingEventSink {
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl CollectingEventSink {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<SessionEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Events so far of one kind (see [`SessionEvent::kind`]).
    pub fn of_kind(&self, kind: &str) -> Vec<SessionEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.kind() == kind)
            .collect()
    }

    /// Forgets every event.
    pub fn clear(&self) {
        if let Ok(mut events) = self.events.lock() {
            events.clear();
        }
    }
}

impl EventSink for CollectingEventSink {
    fn emit(&self, event: &SessionEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}

/// Sends each event to several sinks in turn.
#[derive(Clone, Default)]
pub struct FanOutEventSink(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOutEventSink {
    fn emit(&self, event: &SessionEvent) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}

/// Most IPs tracked at once; past this, stale windows are dropped first and
/// then the table is cleared (bounded memory under a spoofed-IP flood).
const MAX_TRACKED_IPS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started_at: Timestamp,
    invalid: u32,
    reported: bool,
}

/// The address invalid tokens are counted under: an IPv4 address as it
/// is (also when written as IPv6), an IPv6 address by its /64, the
/// smallest network one subscriber gets (an attacker holding a /64 has
/// 2^64 addresses to rotate through).
pub(crate) fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// Counts invalid tokens per client IP (IPv6 per /64) in fixed windows.
#[derive(Debug)]
pub(crate) struct GuessingDetector {
    threshold: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, Window>>,
    /// When an IP last reached the threshold (ms; `i64::MIN` never). No IP
    /// can be guessing once a whole window has passed since, which lets
    /// [`is_guessing`](Self::is_guessing) skip the lock on every request.
    last_report_at: AtomicI64,
}

impl GuessingDetector {
    pub(crate) fn new(threshold: u32, window: Duration) -> Self {
        Self {
            threshold,
            window,
            windows: Mutex::new(HashMap::new()),
            last_report_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Records one invalid token; returns the count when it first reaches the
    /// threshold in the current window (the moment to report).
    pub(crate) fn record_invalid(&self, ip: IpAddr, now: Timestamp) -> Option<u32> {
        let ip = counted_as(ip);
        let Ok(mut windows) = self.windows.lock() else {
            return None;
        };
        if windows.len() >= MAX_TRACKED_IPS && !windows.contains_key(&ip) {
            let window = self.window;
            windows.retain(|_, w| now.since(w.started_at) < window);
            if windows.len() >= MAX_TRACKED_IPS {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert(Window {
            started_at: now,
            invalid: 0,
            reported: false,
        });
        if now.since(entry.started_at) >= self.window {
            *entry = Window {
                started_at: now,
                invalid: 0,
                reported: false,
            };
        }
        entry.invalid = entry.invalid.saturating_add(1);
        if entry.invalid >= self.threshold && !entry.reported {
            entry.reported = true;
            self.last_report_at
                .store(now.as_millis(), Ordering::Release);
            return Some(entry.invalid);
        }
        None
    }

    /// Whether this IP is over the threshold in its current window.
    pub(crate) fn is_guessing(&self, ip: IpAddr, now: Timestamp) -> bool {
        let ip = counted_as(ip);
        let last_report = self.last_report_at.load(Ordering::Acquire);
        if last_report == i64::MIN || now.since(Timestamp(last_report)) >= self.window {
            return false;
        }
        let Ok(windows) = self.windows.lock() else {
            return false;
        };
        windows
            .get(&ip)
            .is_some_and(|w| now.since(w.started_at) < self.window && w.invalid >= self.threshold)
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn ipv6_guessing_is_counted_per_64() {
        let detector = GuessingDetector::new(3, Duration::from_secs(60));
        let now = Timestamp(1_000);
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        // Three addresses of one /64: one guesser.
        assert_eq!(detector.record_invalid(ip("2001:db8:1:2::1"), now), None);
        assert_eq!(detector.record_invalid(ip("2001:db8:1:2::2"), now), None);
        assert_eq!(
            detector.record_invalid(ip("2001:db8:1:2:ffff::3"), now),
            Some(3)
        );
        assert!(detector.is_guessing(ip("2001:db8:1:2::99"), now));
        // The next /64 is someone else.
        assert!(!detector.is_guessing(ip("2001:db8:1:3::1"), now));
        // IPv4 stays per address, also written as IPv6.
        for _ in 0..3 {
            detector.record_invalid(ip("::ffff:192.0.2.1"), now);
        }
        assert!(detector.is_guessing(ip("192.0.2.1"), now));
        assert!(!detector.is_guessing(ip("192.0.2.2"), now));
    }
    use crate::token::SessionId;

    #[test]
    fn every_kind_is_listed_once() {
        let id = SessionId([0; 16]);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let events = [
            SessionEvent::Created {
                session_id: id,
                subject: None,
            },
            SessionEvent::LoggedIn {
                session_id: id,
                subject: "a".into(),
                auth_level: AuthLevel(1),
            },
            SessionEvent::Renewed { session_id: id },
            SessionEvent::Rotated { session_id: id },
            SessionEvent::Expired {
                session_id: id,
                kind: ExpiryKind::Idle,
            },
            SessionEvent::Revoked {
                session_id: id,
                subject: None,
                cause: RevokeCause::Logout,
            },
            SessionEvent::TokenReuse {
                session_id: id,
                subject: None,
                ip: None,
            },
            SessionEvent::BindingMismatch {
                session_id: id,
                ip: None,
                rejected: false,
            },
            SessionEvent::TokenGuessing {
                ip,
                invalid_tokens: 1,
            },
            SessionEvent::DbscRegistered {
                session_id: id,
                algorithm: "ES256",
            },
            SessionEvent::DbscRefreshed { session_id: id },
            SessionEvent::DbscRefreshFailed {
                session_id: id,
                reason: "bad_signature",
            },
            SessionEvent::DbscSkipped {
                session_id: None,
                reason: "unreachable",
            },
            SessionEvent::AdminAction {
                actor: "api key 3f9a0c1d22be".to_owned(),
                action: "signed in to the console".to_owned(),
            },
        ];
        let kinds: Vec<&str> = events.iter().map(SessionEvent::kind).collect();
        assert_eq!(kinds, SessionEvent::KINDS);
    }
}

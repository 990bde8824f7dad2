//! The [`SessionManager`]: every lifecycle rule, in one place
//! (`docs/concepts.md`), for sessions kept in a store and sessions sealed
//! into their credential alike.

mod caps;
mod credential;
mod end;
mod login;
mod resolve;
mod write;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

pub use self::credential::{ActiveSession, Credential};
pub use self::end::MAX_LISTED_SESSIONS;
pub use self::login::{Login, PendingLogin};
pub use self::write::DataChange;
use crate::builder::SessionManagerBuilder;
use crate::clock::{Clock, Timestamp};
use crate::config::{BindingPolicy, SessionConfig};
use crate::error::{InvalidReason, SessionError};
use crate::events::{EventSink, ExpiryKind, GuessingDetector, RevokeCause, SessionEvent};
use crate::record::{AuthLevel, ClientInfo, SessionData, SessionRecord};
use crate::sealed::KeyRing;
use crate::store::SessionStore;

/// How often a conditional write is retried after losing a race before the
/// caller is told about the conflict: the one retry budget of every write.
pub(crate) const MAX_WRITE_ATTEMPTS: usize = 32;

/// How long stores keep a record after it ended, so that a late request
/// learns *why* its session ended (`expired_idle`, `expired_absolute`)
/// instead of `unknown`. Such a record is never valid.
pub const EXPIRED_RETENTION: Duration = Duration::from_secs(5 * 60);

/// When a store may forget a record: the end of its idle or absolute
/// lifetime, whichever comes first, plus [`EXPIRED_RETENTION`]. The one
/// place this deadline is computed; stores receive it.
pub fn forget_at(record: &SessionRecord) -> Timestamp {
    record.expires_at().plus(EXPIRED_RETENTION)
}

/// What to create: everything optional.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewSession {
    /// Create the session already signed in as this subject.
    pub subject: Option<String>,
    /// The authentication level when created signed in (default password).
    pub auth_level: Option<AuthLevel>,
    /// Initial data (default `{}`).
    pub data: Option<SessionData>,
    /// The creating client (for binding and display).
    pub client: Option<ClientInfo>,
    /// A shorter idle timeout for this session.
    pub idle_timeout: Option<Duration>,
    /// A shorter absolute timeout for this session.
    pub absolute_timeout: Option<Duration>,
}

impl NewSession {
    /// An anonymous session with every default.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Sets the creating client.
    pub fn client(mut self, client: ClientInfo) -> Self {
        self.client = Some(client);
        self
    }

    /// Sets the initial data.
    pub fn data(mut self, data: SessionData) -> Self {
        self.data = Some(data);
        self
    }

    /// Creates the session signed in as `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the authentication level of a session created signed in.
    pub fn auth_level(mut self, level: impl Into<AuthLevel>) -> Self {
        self.auth_level = Some(level.into());
        self
    }

    /// A shorter idle timeout for this session.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// A shorter absolute timeout for this session.
    pub fn absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = Some(timeout);
        self
    }
}

/// Sealing settings of a manager whose sessions live in their credential.
#[derive(Debug, Clone)]
pub(crate) struct Sealing {
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) context: Arc<[u8]>,
}

/// The default seal context: the default cookie name.
pub(crate) const DEFAULT_SEAL_CONTEXT: &[u8] = b"__Host-tessera";

/// The session engine: owns every policy decision and talks to one store.
/// Cheap to clone (shared state behind an `Arc`).
///
/// One API serves both kinds of session: with a store-kept session the
/// credential is a token and the record lives in the store; with a sealed
/// one ([`SessionManagerBuilder::sealed`]) the credential is the record,
/// encrypted, and the store keeps only revocation epochs. Callers pass the
/// credential their client presented and hand back whatever
/// [`ActiveSession::issued`] says.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
    guessing: Arc<GuessingDetector>,
    anonymous_caps: Arc<caps::AnonymousCaps>,
    epoch: Arc<EpochCache>,
    sealing: Option<Sealing>,
}

/// The global revocation epoch as last read, shared by the managers of one
/// store built from one builder.
#[derive(Debug)]
struct EpochCache {
    epoch: AtomicU64,
    checked_at: AtomicI64,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.inner.config)
            .field("sealed", &self.inner.sealing.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionManager {
    /// Starts building a manager over `store`.
    pub fn builder(store: impl SessionStore) -> SessionManagerBuilder {
        SessionManagerBuilder::new(Arc::new(store))
    }

    /// Starts building a manager over a shared store.
    pub fn builder_shared(store: Arc<dyn SessionStore>) -> SessionManagerBuilder {
        SessionManagerBuilder::new(store)
    }

    pub(crate) fn from_parts(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
        clock: Arc<dyn Clock>,
        events: Arc<dyn EventSink>,
        keys: Option<KeyRing>,
    ) -> Self {
        let guessing = GuessingDetector::new(config.guessing_threshold, config.guessing_window);
        let anonymous_caps = caps::AnonymousCaps::new(
            config.anonymous_per_ip_per_minute,
            config.anonymous_per_minute,
        );
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                clock,
                events,
                guessing: Arc::new(guessing),
                anonymous_caps: Arc::new(anonymous_caps),
                epoch: Arc::new(EpochCache {
                    epoch: AtomicU64::new(0),
                    checked_at: AtomicI64::new(i64::MIN),
                }),
                sealing: keys.map(|keys| Sealing {
                    keys: Arc::new(keys),
                    context: DEFAULT_SEAL_CONTEXT.into(),
                }),
            }),
        }
    }

    /// This manager, sealing sessions into their credential with `keys`;
    /// `context` (the cookie name) is bound into every seal, so a seal
    /// opens only where it was issued. Store, policy, clock and events are
    /// shared with `self`. Refused over a store that loses its revocation
    /// epochs at a restart, unless the manager was built with
    /// [`allow_volatile_epochs`](SessionManagerBuilder::allow_volatile_epochs).
    pub fn with_sealing(
        &self,
        keys: KeyRing,
        context: &[u8],
    ) -> Result<SessionManager, crate::config::ConfigError> {
        let inner = &self.inner;
        check_epoch_durability(&*inner.store, &inner.config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                config: inner.config.clone(),
                clock: inner.clock.clone(),
                events: inner.events.clone(),
                guessing: inner.guessing.clone(),
                anonymous_caps: inner.anonymous_caps.clone(),
                epoch: inner.epoch.clone(),
                sealing: Some(Sealing {
                    keys: Arc::new(keys),
                    context: context.into(),
                }),
            }),
        })
    }

    /// The policy in force.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store behind the manager.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Whether sessions are sealed into their credential.
    pub fn is_sealed(&self) -> bool {
        self.inner.sealing.is_some()
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.inner.events.emit(&event);
    }

    pub(crate) fn sealing(&self) -> Option<&Sealing> {
        self.inner.sealing.as_ref()
    }

    // ----- input checks -----------------------------------------------------

    /// Whether `subject` is acceptable (not empty, within this manager's
    /// length limit): the check every login applies.
    pub fn check_subject(&self, subject: &str) -> Result<(), SessionError> {
        if subject.is_empty() {
            return Err(SessionError::EmptySubject);
        }
        let limit = self.inner.config.max_subject_bytes;
        if subject.len() > limit {
            return Err(SessionError::SubjectTooLong {
                len: subject.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Whether `data` is within this manager's size limit: the check every
    /// write applies.
    pub fn check_data(&self, data: &SessionData) -> Result<(), SessionError> {
        let limit = self.inner.config.max_data_bytes;
        if data.len_bytes() > limit {
            return Err(SessionError::DataTooLarge {
                size: data.len_bytes(),
                limit,
            });
        }
        Ok(())
    }

    /// Checks that the session authenticated at `level` or above within
    /// `max_age`; otherwise the app should ask the user to authenticate again.
    pub fn require_auth(
        &self,
        session: &SessionRecord,
        level: impl Into<AuthLevel>,
        max_age: Duration,
    ) -> Result<(), SessionError> {
        let level = level.into();
        let now = self.now();
        let fresh = session
            .authenticated_at
            .is_some_and(|at| now.since(at) <= max_age && now >= at);
        if session.subject.is_some() && session.auth_level >= level && fresh {
            return Ok(());
        }
        Err(SessionError::ReauthenticationRequired {
            required_level: level,
            current_level: session.auth_level,
            max_age,
        })
    }

    // ----- shared checks ----------------------------------------------------

    pub(crate) fn check_binding(
        &self,
        session: &SessionRecord,
        client: Option<&ClientInfo>,
    ) -> Result<(), SessionError> {
        let policy = self.inner.config.binding;
        let (Some(bound), Some(client)) = (&session.binding, client) else {
            return Ok(());
        };
        if policy == BindingPolicy::Off || !bound.mismatches(&client.binding()) {
            return Ok(());
        }
        let rejected = policy == BindingPolicy::Reject;
        self.emit(SessionEvent::BindingMismatch {
            session_id: session.id,
            ip: client.ip,
            rejected,
        });
        if rejected {
            return Err(SessionError::invalid(InvalidReason::BindingMismatch));
        }
        Ok(())
    }

    pub(crate) fn count_invalid(&self, ip: Option<IpAddr>, now: Timestamp) {
        let Some(ip) = ip else { return };
        if let Some(invalid_tokens) = self.inner.guessing.record_invalid(ip, now) {
            self.emit(SessionEvent::TokenGuessing { ip, invalid_tokens });
        }
    }

    /// Whether this IP presented more invalid credentials than the guessing
    /// threshold in the current window (callers may rate-limit it).
    pub fn is_guessing(&self, ip: IpAddr) -> bool {
        self.inner.guessing.is_guessing(ip, self.now())
    }

    /// Counts a credential that failed before the manager saw it (a cookie
    /// that could not be read, say) towards the client's guessing score.
    pub fn report_invalid_credential(&self, client: Option<&ClientInfo>) {
        self.count_invalid(client.and_then(|c| c.ip), self.now());
    }

    pub(crate) async fn current_epoch(&self, now: Timestamp) -> Result<u64, SessionError> {
        let cache = &self.inner.epoch;
        let checked_at = cache.checked_at.load(Ordering::Acquire);
        let refresh = self.inner.config.epoch_refresh;
        if checked_at != i64::MIN && now.since(Timestamp(checked_at)) < refresh {
            return Ok(cache.epoch.load(Ordering::Acquire));
        }
        self.fresh_epoch(now).await
    }

    /// The global epoch read from the store now (and remembered).
    pub(crate) async fn fresh_epoch(&self, now: Timestamp) -> Result<u64, SessionError> {
        let epoch = self.inner.store.global_epoch().await?;
        self.remember_epoch(epoch, now);
        Ok(self.inner.epoch.epoch.load(Ordering::Acquire))
    }

    pub(crate) fn remember_epoch(&self, epoch: u64, now: Timestamp) {
        let cache = &self.inner.epoch;
        cache.epoch.fetch_max(epoch, Ordering::AcqRel);
        cache.checked_at.store(now.as_millis(), Ordering::Release);
    }
}

/// Sealed sessions need revocation epochs that survive a restart.
pub(crate) fn check_epoch_durability(
    store: &dyn SessionStore,
    config: &SessionConfig,
) -> Result<(), crate::config::ConfigError> {
    if store.durability() == crate::store::Durability::Volatile && !config.allow_volatile_epochs {
        return Err(crate::config::ConfigError::VolatileEpochs);
    }
    Ok(())
}

/// Whether a session has ended by `now` given the current global epoch:
/// the reason and the event to emit, or `None` while it is valid.
pub(crate) fn ended(
    session: &SessionRecord,
    now: Timestamp,
    global_epoch: u64,
) -> Option<(InvalidReason, SessionEvent)> {
    if session.epoch < global_epoch {
        Some((
            InvalidReason::Revoked,
            SessionEvent::Revoked {
                session_id: session.id,
                subject: session.subject.clone(),
                cause: RevokeCause::Global,
            },
        ))
    } else if now >= session.absolute_expires_at {
        Some((
            InvalidReason::ExpiredAbsolute,
            SessionEvent::Expired {
                session_id: session.id,
                kind: ExpiryKind::Absolute,
            },
        ))
    } else if now >= session.idle_expires_at() {
        Some((
            InvalidReason::ExpiredIdle,
            SessionEvent::Expired {
                session_id: session.id,
                kind: ExpiryKind::Idle,
            },
        ))
    } else {
        None
    }
}

pub(crate) fn per_session_timeout(
    setting: &'static str,
    requested: Option<Duration>,
    limit: Duration,
) -> Result<Duration, SessionError> {
    match requested {
        None => Ok(limit),
        Some(requested) if !requested.is_zero() && requested <= limit => Ok(requested),
        Some(requested) => Err(SessionError::TimeoutNotAllowed {
            setting,
            requested,
            limit,
        }),
    }
}

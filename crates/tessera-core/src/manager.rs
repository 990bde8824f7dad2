//! The [`SessionManager`]: every lifecycle rule of DESIGN.md §1, in one place.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::builder::SessionManagerBuilder;
use crate::clock::{Clock, Timestamp};
use crate::config::{BindingPolicy, SessionConfig};
use crate::error::{InvalidReason, SessionError};
use crate::events::{EventSink, ExpiryKind, GuessingDetector, RevokeCause, SessionEvent};
use crate::record::{ClientInfo, Session, SessionData, StoredEntry, Tombstone};
use crate::store::{CreateOutcome, SessionStore, WriteOutcome};
use crate::token::{SessionId, SessionToken, TokenHash};

/// How often a conditional write is retried after losing a race before the
/// caller is told about the conflict.
const MAX_WRITE_ATTEMPTS: usize = 32;

/// What to create: everything optional.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// Create the session already signed in as this subject.
    pub subject: Option<String>,
    /// The authentication level when created signed in (default 1).
    pub auth_level: Option<u8>,
    /// Initial data (default `{}`).
    pub data: Option<SessionData>,
    /// The creating client (for binding and display).
    pub client: Option<ClientInfo>,
    /// A shorter idle timeout for this session.
    pub idle_timeout: Option<Duration>,
    /// A shorter absolute timeout for this session.
    pub absolute_timeout: Option<Duration>,
}

/// A login or step-up.
#[derive(Debug, Clone)]
pub struct Login {
    /// The authenticated user.
    pub subject: String,
    /// How strongly they authenticated (1 password, 2 multi-factor, …).
    pub auth_level: u8,
    /// Replaces the data when given. Otherwise an anonymous session's data
    /// carries over, and a session of another subject starts empty.
    pub data: Option<SessionData>,
    /// The client logging in; the session is bound to it from now on.
    pub client: Option<ClientInfo>,
}

impl Login {
    /// A password-level (1) login of `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            auth_level: 1,
            data: None,
            client: None,
        }
    }

    /// Sets the authentication level.
    pub fn level(mut self, auth_level: u8) -> Self {
        self.auth_level = auth_level;
        self
    }

    /// Sets the logging-in client.
    pub fn client(mut self, client: ClientInfo) -> Self {
        self.client = Some(client);
        self
    }
}

/// How [`SessionManager::update`] changes the data.
#[derive(Debug, Clone)]
pub enum DataChange {
    /// Replace the whole object.
    Replace(SessionData),
    /// Apply an RFC 7396 JSON merge patch.
    MergePatch(Value),
}

/// A session with a freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The new token: hand it to the client, never log it.
    pub token: SessionToken,
    /// The session.
    pub session: Arc<Session>,
}

impl IssuedSession {
    /// The session as [`SessionManager::update_validated`] takes it, so
    /// that a write right after creation skips reading it back.
    pub fn validated(&self) -> ValidatedSession {
        ValidatedSession::found(self.token.hash(), self.session.clone(), None)
    }
}

/// The outcome of a successful validation.
#[derive(Debug, Clone)]
pub struct ValidatedSession {
    /// The session.
    pub session: Arc<Session>,
    /// Present when validation renewed the token: the client must switch to it.
    pub renewed_token: Option<SessionToken>,
    /// Where the session was found and the record as found, so that
    /// [`SessionManager::update_validated`] can write without reading it
    /// again. Private: only the manager vouches for a record.
    found: Found,
}

#[derive(Debug, Clone)]
struct Found {
    key: TokenHash,
    session: Arc<Session>,
}

impl ValidatedSession {
    fn found(key: TokenHash, session: Arc<Session>, renewed_token: Option<SessionToken>) -> Self {
        Self {
            session: session.clone(),
            renewed_token,
            found: Found { key, session },
        }
    }
}

/// A token resolved to its live session.
struct Resolved {
    key: TokenHash,
    session: Arc<Session>,
    /// Reached through a rotated-away token within its grace.
    via_grace: bool,
}

/// The session engine: owns every policy decision and talks to one store.
/// Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventSink>,
    guessing: GuessingDetector,
    epoch: AtomicU64,
    epoch_checked_at: AtomicI64,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("config", &self.inner.config)
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
    ) -> Self {
        let guessing = GuessingDetector::new(config.guessing_threshold, config.guessing_window);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                clock,
                events,
                guessing,
                epoch: AtomicU64::new(0),
                epoch_checked_at: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// The policy in force.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// The store behind the manager.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.inner.events.emit(&event);
    }

    // ----- create -----------------------------------------------------------

    /// Creates a session and issues its first token.
    pub async fn create(&self, request: NewSession) -> Result<IssuedSession, SessionError> {
        let now = self.now();
        let session = self.new_record(request, now).await?;
        let issued = self.insert_new(session).await?;
        self.emit(SessionEvent::Created {
            session_id: issued.session.id,
            subject: issued.session.subject.clone(),
        });
        if let Some(subject) = issued.session.subject.clone() {
            self.enforce_subject_cap(&subject, &issued.session.id)
                .await?;
        }
        Ok(issued)
    }

    /// A new session record from a request, checked against the policy;
    /// shared by server-side and client-side sessions.
    pub(crate) async fn new_record(
        &self,
        request: NewSession,
        now: Timestamp,
    ) -> Result<Session, SessionError> {
        let config = &self.inner.config;
        let idle = per_session_timeout("idle_timeout", request.idle_timeout, config.idle_timeout)?;
        let absolute = per_session_timeout(
            "absolute_timeout",
            request.absolute_timeout,
            config.absolute_timeout,
        )?;
        if let Some(subject) = &request.subject {
            self.check_subject(subject)?;
        }
        let data = request.data.unwrap_or_default();
        self.check_data(&data)?;
        // Read fresh: a session stamped with an epoch another node has
        // already moved past would be born revoked.
        let epoch = self.fresh_epoch(now).await?;
        let authenticated = request.subject.is_some();
        Ok(Session {
            id: SessionId::generate()?,
            auth_level: if authenticated {
                request.auth_level.unwrap_or(1)
            } else {
                0
            },
            authenticated_at: authenticated.then_some(now),
            subject: request.subject,
            data,
            created_at: now,
            last_seen_at: now,
            token_issued_at: now,
            idle_timeout_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            absolute_expires_at: now.plus(absolute),
            version: 1,
            epoch,
            binding: request.client.as_ref().map(|c| Box::new(c.binding())),
            client: request.client.as_ref().map(|c| Box::new(c.for_display())),
        })
    }

    async fn insert_new(&self, mut session: Session) -> Result<IssuedSession, SessionError> {
        // A collision of 256-bit tokens or 128-bit ids does not happen; the
        // loop only keeps create-if-absent honest if it ever did.
        for _ in 0..4 {
            let token = SessionToken::generate()?;
            match self.inner.store.create(&token.hash(), &session).await? {
                CreateOutcome::Created => {
                    return Ok(IssuedSession {
                        token,
                        session: Arc::new(session),
                    });
                }
                CreateOutcome::AlreadyExists => session.id = SessionId::generate()?,
            }
        }
        Err(SessionError::Store(crate::store::StoreError::Unavailable {
            message: "the store reported every new token and id as already present".into(),
            source: None,
        }))
    }

    // ----- validate ---------------------------------------------------------

    /// Validates a token presented by a client: checks every deadline, the
    /// revocation epoch, reuse and binding, slides the idle deadline, and
    /// renews the token when it is older than `renew_after`.
    pub async fn validate(
        &self,
        token: &str,
        client: Option<&ClientInfo>,
    ) -> Result<ValidatedSession, SessionError> {
        let now = self.now();
        let resolved = self.resolve(token, client, now).await?;
        let config = &self.inner.config;
        let session = &resolved.session;
        // When the renewal loses a race with a concurrent write or renewal,
        // the session was valid a moment ago; the next request renews.
        if !resolved.via_grace
            && now.since(session.token_issued_at) >= config.renew_after
            && let Some(issued) = self
                .rotate_resolved(&resolved, now, Some(config.rotation_grace), |s| s)
                .await?
        {
            self.emit(SessionEvent::Renewed {
                session_id: issued.session.id,
            });
            let key = issued.token.hash();
            return Ok(ValidatedSession::found(
                key,
                issued.session,
                Some(issued.token),
            ));
        }
        if now.since(session.last_seen_at) >= config.touch_after {
            let outcome = self.inner.store.touch(&resolved.key, now, now).await?;
            if outcome == WriteOutcome::Written {
                let mut touched = Session::clone(session);
                touched.last_seen_at = now;
                return Ok(ValidatedSession::found(
                    resolved.key,
                    Arc::new(touched),
                    None,
                ));
            }
        }
        Ok(ValidatedSession::found(
            resolved.key,
            resolved.session,
            None,
        ))
    }

    /// Resolves a token to its live session, applying every check that makes
    /// a session invalid. Shared by every token-taking operation.
    async fn resolve(
        &self,
        token: &str,
        client: Option<&ClientInfo>,
        now: Timestamp,
    ) -> Result<Resolved, SessionError> {
        let ip = client.and_then(|c| c.ip);
        let Ok(token) = SessionToken::parse(token) else {
            self.count_invalid(ip, now);
            return Err(SessionError::invalid(InvalidReason::Malformed));
        };
        self.resolve_key(&token.hash(), ip, client, now).await
    }

    /// [`resolve`](Self::resolve) from the token's hash. `guessing_ip`:
    /// the address to charge an unknown key to (`None` when re-reading a
    /// key this request already resolved).
    async fn resolve_key(
        &self,
        key: &TokenHash,
        guessing_ip: Option<IpAddr>,
        client: Option<&ClientInfo>,
        now: Timestamp,
    ) -> Result<Resolved, SessionError> {
        let key = *key;
        let ip = client.and_then(|c| c.ip);
        let resolved = match self.inner.store.load(&key, now).await? {
            None => {
                self.count_invalid(guessing_ip, now);
                return Err(SessionError::invalid(InvalidReason::Unknown));
            }
            Some(StoredEntry::Live(session)) => Resolved {
                key,
                session,
                via_grace: false,
            },
            Some(StoredEntry::Tombstone(tombstone)) => {
                self.resolve_tombstone(&tombstone, ip, now).await?
            }
        };
        self.check_live(&resolved.session, now).await?;
        self.check_binding(&resolved.session, client)?;
        Ok(resolved)
    }

    async fn resolve_tombstone(
        &self,
        tombstone: &Tombstone,
        ip: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Resolved, SessionError> {
        match tombstone.grace_until {
            // Superseded by login or step-up: dead at once, but harmless to
            // the new session (a request from before login was in flight).
            None => Err(SessionError::invalid(InvalidReason::Revoked)),
            Some(until) if now < until => {
                match self
                    .inner
                    .store
                    .load_by_id(&tombstone.session_id, now)
                    .await?
                {
                    Some((key, session)) => Ok(Resolved {
                        key,
                        session,
                        via_grace: true,
                    }),
                    None => Err(SessionError::invalid(InvalidReason::Revoked)),
                }
            }
            Some(_) => {
                // A rotated-away token after its grace: someone kept a copy.
                let subject = self
                    .inner
                    .store
                    .load_by_id(&tombstone.session_id, now)
                    .await?
                    .and_then(|(_, s)| s.subject.clone());
                let was_live = self.inner.store.delete(&tombstone.session_id).await?;
                self.emit(SessionEvent::TokenReuse {
                    session_id: tombstone.session_id,
                    subject: subject.clone(),
                    ip,
                });
                if was_live {
                    self.emit(SessionEvent::Revoked {
                        session_id: tombstone.session_id,
                        subject,
                        cause: RevokeCause::TokenReuse,
                    });
                }
                Err(SessionError::invalid(InvalidReason::Reused))
            }
        }
    }

    /// Deadlines and the global epoch. An ended session is deleted at once.
    async fn check_live(&self, session: &Session, now: Timestamp) -> Result<(), SessionError> {
        let epoch = self.current_epoch(now).await?;
        let Some((reason, event)) = ended(session, now, epoch) else {
            return Ok(());
        };
        if self.inner.store.delete(&session.id).await? {
            self.emit(event);
        }
        Err(SessionError::invalid(reason))
    }

    pub(crate) fn check_binding(
        &self,
        session: &Session,
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

    /// Whether this IP presented more invalid tokens than the guessing
    /// threshold in the current window (callers may rate-limit it).
    pub fn is_guessing(&self, ip: IpAddr) -> bool {
        self.inner.guessing.is_guessing(ip, self.now())
    }

    pub(crate) async fn current_epoch(&self, now: Timestamp) -> Result<u64, SessionError> {
        let checked_at = self.inner.epoch_checked_at.load(Ordering::Acquire);
        let refresh = self.inner.config.epoch_refresh;
        if checked_at != i64::MIN && now.since(Timestamp(checked_at)) < refresh {
            return Ok(self.inner.epoch.load(Ordering::Acquire));
        }
        self.fresh_epoch(now).await
    }

    /// The global epoch read from the store now (and remembered).
    async fn fresh_epoch(&self, now: Timestamp) -> Result<u64, SessionError> {
        let epoch = self.inner.store.global_epoch().await?;
        self.inner.epoch.fetch_max(epoch, Ordering::AcqRel);
        self.inner
            .epoch_checked_at
            .store(now.as_millis(), Ordering::Release);
        Ok(self.inner.epoch.load(Ordering::Acquire))
    }

    // ----- rotation ---------------------------------------------------------

    /// Moves a resolved session to a new token. `grace` is how long the old
    /// token keeps resolving (`None`: dead at once). Returns `None` when a
    /// concurrent writer got there first.
    async fn rotate_resolved(
        &self,
        resolved: &Resolved,
        now: Timestamp,
        grace: Option<Duration>,
        change: impl FnOnce(Session) -> Session,
    ) -> Result<Option<IssuedSession>, SessionError> {
        let token = SessionToken::generate()?;
        let new_key = token.hash();
        let mut next = change(Session::clone(&resolved.session));
        next.token_issued_at = now;
        next.last_seen_at = now;
        let tombstone = Tombstone {
            session_id: resolved.session.id,
            successor: new_key,
            grace_until: grace.map(|g| now.plus(g)),
            forget_at: resolved.session.absolute_expires_at,
        };
        let outcome = self
            .inner
            .store
            .rotate(
                &resolved.key,
                &new_key,
                &next,
                resolved.session.version,
                &tombstone,
                now,
            )
            .await?;
        Ok((outcome == WriteOutcome::Written).then(|| IssuedSession {
            token,
            session: Arc::new(next),
        }))
    }

    /// Re-reads a session by id after a lost race, re-applying the checks.
    async fn reload(&self, id: &SessionId, now: Timestamp) -> Result<Resolved, SessionError> {
        let Some((key, session)) = self.inner.store.load_by_id(id, now).await? else {
            return Err(SessionError::invalid(InvalidReason::Revoked));
        };
        self.check_live(&session, now).await?;
        Ok(Resolved {
            key,
            session,
            via_grace: false,
        })
    }

    /// Issues a new token for the session (the old one keeps resolving for
    /// `rotation_grace`, then counts as stolen).
    pub async fn rotate(&self, token: &str) -> Result<IssuedSession, SessionError> {
        let now = self.now();
        let mut resolved = self.resolve(token, None, now).await?;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let grace = Some(self.inner.config.rotation_grace);
            if let Some(issued) = self.rotate_resolved(&resolved, now, grace, |s| s).await? {
                self.emit(SessionEvent::Rotated {
                    session_id: issued.session.id,
                });
                return Ok(issued);
            }
            resolved = self.reload(&resolved.session.id, now).await?;
        }
        Err(self.conflict(&resolved.session))
    }

    fn conflict(&self, session: &Session) -> SessionError {
        SessionError::VersionConflict {
            expected: session.version,
            current_version: session.version,
        }
    }

    // ----- login ------------------------------------------------------------

    /// Signs a subject in. Always issues a new token; the presented one (if
    /// any) is dead at once. An absent or invalid token starts a new session.
    pub async fn login(
        &self,
        token: Option<&str>,
        login: Login,
    ) -> Result<IssuedSession, SessionError> {
        self.check_subject(&login.subject)?;
        if let Some(data) = &login.data {
            self.check_data(data)?;
        }
        let now = self.now();
        let existing = match token {
            None => None,
            Some(token) => match self.resolve(token, login.client.as_ref(), now).await {
                Ok(resolved) => Some(resolved),
                Err(SessionError::Invalid { .. }) => None,
                Err(other) => return Err(other),
            },
        };
        let Some(mut resolved) = existing else {
            let issued = self
                .create(NewSession {
                    subject: Some(login.subject.clone()),
                    auth_level: Some(login.auth_level),
                    data: login.data,
                    client: login.client,
                    ..NewSession::default()
                })
                .await?;
            self.emit(SessionEvent::LoggedIn {
                session_id: issued.session.id,
                subject: login.subject,
                auth_level: login.auth_level,
            });
            return Ok(issued);
        };
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let attempt = login.clone();
            let change = |s: Session| apply_login(s, attempt, now);
            if let Some(issued) = self.rotate_resolved(&resolved, now, None, change).await? {
                self.emit(SessionEvent::LoggedIn {
                    session_id: issued.session.id,
                    subject: login.subject.clone(),
                    auth_level: login.auth_level,
                });
                self.enforce_subject_cap(&login.subject, &issued.session.id)
                    .await?;
                return Ok(issued);
            }
            resolved = self.reload(&resolved.session.id, now).await?;
        }
        Err(self.conflict(&resolved.session))
    }

    /// Raises the authentication level of a signed-in session (after a second
    /// factor, say); the token is replaced, as at login.
    pub async fn step_up(
        &self,
        token: &str,
        auth_level: u8,
        client: Option<&ClientInfo>,
    ) -> Result<IssuedSession, SessionError> {
        let now = self.now();
        let resolved = self.resolve(token, client, now).await?;
        let Some(subject) = resolved.session.subject.clone() else {
            return Err(SessionError::NotAuthenticated);
        };
        let mut login = Login::new(subject).level(auth_level);
        login.client = client.cloned();
        self.login(Some(token), login).await
    }

    /// Checks that the session authenticated at `level` or above within
    /// `max_age`; otherwise the app should ask the user to authenticate again.
    pub fn require_auth(
        &self,
        session: &Session,
        level: u8,
        max_age: Duration,
    ) -> Result<(), SessionError> {
        let fresh = session
            .authenticated_at
            .is_some_and(|at| self.now().since(at) <= max_age && self.now() >= at);
        if session.subject.is_some() && session.auth_level >= level && fresh {
            return Ok(());
        }
        Err(SessionError::ReauthenticationRequired {
            required_level: level,
            current_level: session.auth_level,
            max_age,
        })
    }

    async fn enforce_subject_cap(
        &self,
        subject: &str,
        keep: &SessionId,
    ) -> Result<(), SessionError> {
        let Some(cap) = self.inner.config.max_sessions_per_subject else {
            return Ok(());
        };
        let mut sessions = self.list_subject(subject).await?;
        if sessions.len() <= cap.get() {
            return Ok(());
        }
        sessions.retain(|s| s.id != *keep);
        sessions.sort_by_key(|s| (s.created_at, s.id));
        let excess = sessions.len() + 1 - cap.get();
        for old in sessions.into_iter().take(excess) {
            if self.inner.store.delete(&old.id).await? {
                self.emit(SessionEvent::Revoked {
                    session_id: old.id,
                    subject: old.subject.clone(),
                    cause: RevokeCause::SubjectCap,
                });
            }
        }
        Ok(())
    }

    // ----- update -----------------------------------------------------------

    /// Changes the data. With `expected_version`, a compare-and-swap: a
    /// session that changed since is refused with
    /// [`SessionError::VersionConflict`]. Without it, concurrent writers are
    /// retried on the fresh record (merge patches then all apply).
    pub async fn update(
        &self,
        token: &str,
        change: DataChange,
        expected_version: Option<u64>,
        client: Option<&ClientInfo>,
    ) -> Result<Arc<Session>, SessionError> {
        if let DataChange::Replace(data) = &change {
            self.check_data(data)?;
        }
        let now = self.now();
        let resolved = self.resolve(token, client, now).await?;
        self.update_resolved(resolved, &change, expected_version, client, now)
            .await
            .map(|updated| updated.session)
    }

    /// [`update`](Self::update) of a session validated (or created, or
    /// updated) earlier in the same request: the write goes out without
    /// reading the session again. Every check of validation is repeated on
    /// the record in hand (deadlines, revocation epoch, client binding), and
    /// the store's compare-and-swap on its version refuses the write if the
    /// session changed or ended since it was read; then the session is read
    /// again, as [`update`](Self::update) would.
    pub async fn update_validated(
        &self,
        validated: &ValidatedSession,
        change: DataChange,
        expected_version: Option<u64>,
        client: Option<&ClientInfo>,
    ) -> Result<ValidatedSession, SessionError> {
        if let DataChange::Replace(data) = &change {
            self.check_data(data)?;
        }
        let now = self.now();
        let found = &validated.found;
        // The record in hand, while it is the one the manager vouched for
        // and still looks live; otherwise the session is read again through
        // its key, as if the token were presented now (a login that has
        // taken the session over since leaves the key dead, and a record
        // that only looks idle here may have been used elsewhere).
        let in_hand = Arc::ptr_eq(&validated.session, &found.session)
            && ended(&found.session, now, self.current_epoch(now).await?).is_none();
        let resolved = if in_hand {
            self.check_binding(&found.session, client)?;
            Resolved {
                key: found.key,
                session: found.session.clone(),
                via_grace: false,
            }
        } else {
            self.resolve_key(&found.key, None, client, now).await?
        };
        self.update_resolved(resolved, &change, expected_version, client, now)
            .await
    }

    async fn update_resolved(
        &self,
        mut resolved: Resolved,
        change: &DataChange,
        expected_version: Option<u64>,
        client: Option<&ClientInfo>,
        now: Timestamp,
    ) -> Result<ValidatedSession, SessionError> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = &resolved.session;
            if let Some(expected) = expected_version
                && expected != current.version
            {
                return Err(SessionError::VersionConflict {
                    expected,
                    current_version: current.version,
                });
            }
            let mut next = Session::clone(current);
            next.data = match change {
                DataChange::Replace(data) => data.clone(),
                DataChange::MergePatch(patch) => {
                    let mut value = current.data.to_value();
                    json_patch::merge(&mut value, patch);
                    SessionData::from_value(&value)?
                }
            };
            self.check_data(&next.data)?;
            next.version = current.version + 1;
            next.last_seen_at = now;
            match self
                .inner
                .store
                .update(&resolved.key, &next, current.version, now)
                .await?
            {
                WriteOutcome::Written => {
                    return Ok(ValidatedSession::found(resolved.key, Arc::new(next), None));
                }
                WriteOutcome::VersionConflict { current: stored } => {
                    if let Some(expected) = expected_version {
                        return Err(SessionError::VersionConflict {
                            expected,
                            current_version: stored,
                        });
                    }
                }
                WriteOutcome::NotFound => {}
            }
            // Through the key, not the id: a session that moved to another
            // token meanwhile (a login, a step-up) is not this caller's to
            // write, unless the move left this key a grace.
            resolved = self.resolve_key(&resolved.key, None, client, now).await?;
        }
        Err(self.conflict(&resolved.session))
    }

    // ----- ending sessions ----------------------------------------------------

    /// Ends the session of this token. Unknown, malformed or already ended
    /// tokens are not an error (logout is idempotent).
    pub async fn logout(&self, token: &str) -> Result<(), SessionError> {
        let Ok(token) = SessionToken::parse(token) else {
            return Ok(());
        };
        let now = self.now();
        let id = match self.inner.store.load(&token.hash(), now).await? {
            Some(StoredEntry::Live(session)) => session.id,
            Some(StoredEntry::Tombstone(tombstone)) if tombstone.grace_until.is_some() => {
                tombstone.session_id
            }
            _ => return Ok(()),
        };
        self.revoke_with_cause(&id, RevokeCause::Logout).await?;
        Ok(())
    }

    /// The session with this public id, if it is valid.
    pub async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, SessionError> {
        let now = self.now();
        match self.reload(id, now).await {
            Ok(resolved) => Ok(Some(resolved.session)),
            Err(SessionError::Invalid { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Ends the session with this public id; `true` if it was live.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, SessionError> {
        self.revoke_with_cause(id, RevokeCause::ById).await
    }

    async fn revoke_with_cause(
        &self,
        id: &SessionId,
        cause: RevokeCause,
    ) -> Result<bool, SessionError> {
        let now = self.now();
        let subject = self
            .inner
            .store
            .load_by_id(id, now)
            .await?
            .and_then(|(_, s)| s.subject.clone());
        let deleted = self.inner.store.delete(id).await?;
        if deleted {
            self.emit(SessionEvent::Revoked {
                session_id: *id,
                subject,
                cause,
            });
        }
        Ok(deleted)
    }

    /// Every valid session of a subject, oldest first.
    pub async fn list_subject(&self, subject: &str) -> Result<Vec<Arc<Session>>, SessionError> {
        self.check_subject(subject)?;
        let now = self.now();
        let epoch = self.current_epoch(now).await?;
        let mut sessions: Vec<Arc<Session>> = self
            .inner
            .store
            .list_by_subject(subject, now)
            .await?
            .into_iter()
            .filter(|s| s.epoch >= epoch && now < s.expires_at())
            .collect();
        sessions.sort_by_key(|s| (s.created_at, s.id));
        Ok(sessions)
    }

    /// Ends every session of a subject, except `except` if given; returns how many ended.
    pub async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<usize, SessionError> {
        self.check_subject(subject)?;
        let now = self.now();
        if except.is_none() {
            // Client-side sessions of the subject have no record to delete.
            self.inner.store.bump_subject_epoch(subject).await?;
        }
        let deleted = self
            .inner
            .store
            .delete_by_subject(subject, except, now)
            .await?;
        for id in &deleted {
            self.emit(SessionEvent::Revoked {
                session_id: *id,
                subject: Some(subject.to_owned()),
                cause: RevokeCause::Subject,
            });
        }
        Ok(deleted.len())
    }

    /// Ends every session there is (bumps the global epoch); returns the new epoch.
    pub async fn revoke_everything(&self) -> Result<u64, SessionError> {
        let epoch = self.inner.store.bump_global_epoch().await?;
        self.inner.epoch.fetch_max(epoch, Ordering::AcqRel);
        self.inner
            .epoch_checked_at
            .store(self.now().as_millis(), Ordering::Release);
        Ok(epoch)
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
    /// write applies, for callers that assemble data before writing it.
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
}

fn per_session_timeout(
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

/// Whether a session has ended by `now` given the current global epoch:
/// the reason and the event to emit, or `None` while it is valid.
pub(crate) fn ended(
    session: &Session,
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

/// A session after a login or step-up (the caller issues the new token or seal).
pub(crate) fn apply_login(mut s: Session, login: Login, now: Timestamp) -> Session {
    if s.subject.is_some() && s.subject.as_deref() != Some(login.subject.as_str()) {
        // Another user's data never carries over.
        s.data = SessionData::empty();
    }
    if let Some(data) = login.data {
        s.data = data;
    }
    s.subject = Some(login.subject);
    s.auth_level = login.auth_level;
    s.authenticated_at = Some(now);
    if let Some(client) = &login.client {
        s.binding = Some(Box::new(client.binding()));
        s.client = Some(Box::new(client.for_display()));
    }
    s.version += 1;
    s
}

//! Signing in: a new credential every time, the anonymous data carried
//! over (never another subject's), and the data set right after a login
//! written with it in one write.

use serde_json::{Map, Value};

use super::credential::Held;
use super::resolve::Fresh;
use super::write::{DataChange, Rotation};
use super::{ActiveSession, MAX_WRITE_ATTEMPTS, NewSession, SessionManager};
use crate::clock::Timestamp;
use crate::error::SessionError;
use crate::events::{RevokeCause, SessionEvent};
use crate::record::{AuthLevel, ClientInfo, SessionData, SessionRecord};
use crate::token::SessionId;

/// A login or step-up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Login {
    /// The authenticated user.
    pub subject: String,
    /// How strongly they authenticated.
    pub auth_level: AuthLevel,
    /// Replaces the data when given. Otherwise an anonymous session's data
    /// (or the same subject's) carries over, and a session of another
    /// subject starts empty.
    pub data: Option<SessionData>,
    /// The client logging in; the session is bound to it from now on.
    pub client: Option<ClientInfo>,
}

impl Login {
    /// A password-level login of `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            auth_level: AuthLevel::PASSWORD,
            data: None,
            client: None,
        }
    }

    /// Sets the authentication level.
    pub fn level(mut self, auth_level: impl Into<AuthLevel>) -> Self {
        self.auth_level = auth_level.into();
        self
    }

    /// Sets the logging-in client.
    pub fn client(mut self, client: ClientInfo) -> Self {
        self.client = Some(client);
        self
    }

    /// Replaces the session's data.
    pub fn data(mut self, data: SessionData) -> Self {
        self.data = Some(data);
        self
    }
}

/// A sign-in begun but not written yet: the data it will carry can still
/// change, and [`SessionManager::commit_login`] writes it all at once.
/// Data over the manager's limit is refused when it is changed, not only
/// when it is written.
#[derive(Debug)]
pub struct PendingLogin {
    previous: Option<ActiveSession>,
    login: Login,
    data: Map<String, Value>,
    /// An upper bound of `data`'s size as JSON, so that the size limit is
    /// checked at each change without serialising the whole object.
    bytes_at_most: usize,
    limit: usize,
}

impl PendingLogin {
    /// The data the session will have.
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    /// The subject signing in.
    pub fn subject(&self) -> &str {
        &self.login.subject
    }

    /// The session the login replaces, if any.
    pub fn previous(&self) -> Option<&ActiveSession> {
        self.previous.as_ref()
    }

    /// Changes the data the session will have. The whole object is
    /// serialised only when a cheap upper bound of its size says it might
    /// be over the limit; data over it is refused and left as it was.
    pub fn change(&mut self, change: &DataChange) -> Result<(), SessionError> {
        let added = match change {
            DataChange::Replace(replacement) => {
                replacement.len_bytes().saturating_sub(self.bytes_at_most)
            }
            DataChange::MergePatch(patch) => serde_json::to_string(patch)
                .map(|json| json.len())
                .unwrap_or(usize::MAX),
        };
        if self.bytes_at_most.saturating_add(added) <= self.limit {
            // A refused patch fails before it changes anything.
            change.apply(&mut self.data)?;
            self.bytes_at_most += added;
            return Ok(());
        }
        let mut data = self.data.clone();
        change.apply(&mut data)?;
        let exact = SessionData::from_map(&data)?;
        if exact.len_bytes() > self.limit {
            return Err(SessionError::DataTooLarge {
                size: exact.len_bytes(),
                limit: self.limit,
            });
        }
        self.bytes_at_most = exact.len_bytes();
        self.data = data;
        Ok(())
    }
}

impl SessionManager {
    /// Signs a subject in. Always issues a new credential; the one from
    /// before (if any) is dead at once. Without a current session a new
    /// one starts.
    pub async fn login(
        &self,
        current: Option<&ActiveSession>,
        login: Login,
    ) -> Result<ActiveSession, SessionError> {
        let pending = self.begin_login(current, login)?;
        self.commit_login(pending).await
    }

    /// Starts a sign-in whose data the caller may still change
    /// ([`PendingLogin::change`]) before [`commit_login`](Self::commit_login)
    /// writes everything in one write. This is where the data carried
    /// over is decided: an anonymous session's data, or the same subject's,
    /// carries over; another subject's never does.
    pub fn begin_login(
        &self,
        current: Option<&ActiveSession>,
        login: Login,
    ) -> Result<PendingLogin, SessionError> {
        self.check_subject(&login.subject)?;
        let limit = self.config().max_data_bytes;
        let (data, bytes_at_most) = match (&login.data, current) {
            (Some(data), _) => {
                self.check_data(data)?;
                (data.to_map(), data.len_bytes())
            }
            (None, Some(session))
                if session.record.subject.is_none()
                    || session.record.subject.as_deref() == Some(login.subject.as_str()) =>
            {
                (
                    session.record.data.to_map(),
                    session.record.data.len_bytes(),
                )
            }
            (None, _) => (Map::new(), 2),
        };
        Ok(PendingLogin {
            previous: current.cloned(),
            login,
            data,
            bytes_at_most,
            limit,
        })
    }

    /// Writes a sign-in begun with [`begin_login`](Self::begin_login): the
    /// session it replaces moves to a new credential with the new subject,
    /// level, client binding, CSRF secret and data, in one write.
    pub async fn commit_login(&self, pending: PendingLogin) -> Result<ActiveSession, SessionError> {
        let PendingLogin {
            previous,
            login,
            data,
            ..
        } = pending;
        let data = SessionData::from_map(&data)?;
        self.check_data(&data)?;
        let now = self.now();
        let (subject, level) = (login.subject.clone(), login.auth_level);
        let session = match previous {
            Some(previous) => match self.relogin(&previous, login.clone(), &data, now).await {
                // The session ended meanwhile: the login starts a new one.
                Err(SessionError::Invalid { .. }) => self.fresh_login(login, data, now).await?,
                other => {
                    let session = other?;
                    // A sign-in ends the device binding: the new sign-in
                    // binds anew.
                    if !session.is_sealed() {
                        self.end_device_binding(&session.record.id).await?;
                    }
                    session
                }
            },
            None => self.fresh_login(login, data, now).await?,
        };
        self.emit(SessionEvent::LoggedIn {
            session_id: session.record.id,
            subject: subject.clone(),
            auth_level: level,
        });
        if !session.is_sealed() {
            self.enforce_subject_cap(&subject, &session.record.id)
                .await?;
        }
        Ok(session)
    }

    async fn fresh_login(
        &self,
        login: Login,
        data: SessionData,
        now: Timestamp,
    ) -> Result<ActiveSession, SessionError> {
        let request = NewSession {
            subject: Some(login.subject),
            auth_level: Some(login.auth_level),
            data: Some(data),
            client: login.client,
            ..NewSession::default()
        };
        let made = self.new_record(request, now, Fresh::draw()?).await?;
        self.store_new(made, now).await
    }

    async fn relogin(
        &self,
        previous: &ActiveSession,
        login: Login,
        data: &SessionData,
        now: Timestamp,
    ) -> Result<ActiveSession, SessionError> {
        let full_idle = u64::try_from(self.config().idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let apply = |mut record: SessionRecord| {
            if record.subject.is_none() {
                // Signed in now: the anonymous idle timeout no longer applies.
                record.idle_timeout_ms = full_idle;
            }
            record.data = data.clone();
            record.subject = Some(login.subject.clone());
            record.auth_level = login.auth_level;
            record.authenticated_at = Some(now);
            if let Some(client) = &login.client {
                record.binding = Some(Box::new(client.binding()));
                record.client = Some(Box::new(client.for_display()));
            }
            record.version += 1;
            record
        };
        match &previous.held {
            Held::Seal { .. } => {
                // A sealed session that ended meanwhile starts a new one.
                self.check_sealed_live(&previous.record, now).await?;
                let subject_epoch = self.store().subject_epoch(&login.subject).await?;
                let mut record = apply(SessionRecord::clone(&previous.record));
                record.token_issued_at = now;
                record.last_seen_at = now;
                record.csrf_secret = Fresh::draw()?.csrf;
                self.seal_into(record, subject_epoch)
            }
            Held::Token(held) => {
                let mut record = previous.record.clone();
                for _ in 0..MAX_WRITE_ATTEMPTS {
                    if let Some(session) = self
                        .rotate_from(&record, held, Rotation::Login, now, apply)
                        .await?
                    {
                        return Ok(session);
                    }
                    record = std::sync::Arc::new(self.reload(&record.id, held, now).await?);
                }
                Err(SessionError::WriteContention {
                    attempts: MAX_WRITE_ATTEMPTS,
                    last_version: record.version,
                })
            }
        }
    }

    /// Raises the authentication level of a signed-in session (after a
    /// second factor, say); the credential is replaced, as at login.
    pub async fn step_up(
        &self,
        current: &ActiveSession,
        level: impl Into<AuthLevel>,
        client: Option<&ClientInfo>,
    ) -> Result<ActiveSession, SessionError> {
        let subject = Self::signed_in(&current.record)?.to_owned();
        let mut login = Login::new(subject).level(level);
        login.client = client.cloned();
        self.login(Some(current), login).await
    }

    pub(crate) async fn enforce_subject_cap(
        &self,
        subject: &str,
        keep: &SessionId,
    ) -> Result<(), SessionError> {
        let Some(cap) = self.config().max_sessions_per_subject else {
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
            if self.store().delete(&old.id).await? {
                self.emit(SessionEvent::Revoked {
                    session_id: old.id,
                    subject: old.subject.clone(),
                    cause: RevokeCause::SubjectCap,
                });
            }
        }
        Ok(())
    }
}

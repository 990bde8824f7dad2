//! Ending sessions and looking them up: logout, revocation by id, by
//! subject and of everything, and the listings behind "your sessions".

use std::sync::Arc;

use super::credential::Held;
use super::{ActiveSession, SessionManager};
use crate::error::SessionError;
use crate::events::{RevokeCause, SessionEvent};
use crate::record::SessionRecord;
use crate::store::Page;
use crate::token::SessionId;

/// Most sessions [`SessionManager::list_subject`] returns; a subject with
/// more is listed page by page with [`SessionManager::list_subject_page`].
pub const MAX_LISTED_SESSIONS: usize = 10_000;

impl SessionManager {
    /// Ends the session. A signed-in sealed session is revoked through its
    /// subject's epoch, so a copy of its cookie is refused too (which
    /// signs the subject out of every sealed session it holds); an
    /// anonymous sealed one ends with its cookie.
    pub async fn logout(&self, current: &ActiveSession) -> Result<(), SessionError> {
        let record = &current.record;
        match &current.held {
            Held::Token(_) => {
                self.revoke_with_cause(&record.id, RevokeCause::Logout)
                    .await?;
            }
            Held::Seal { .. } => {
                if let Some(subject) = &record.subject {
                    self.store().bump_subject_epoch(subject).await?;
                    self.emit(SessionEvent::Revoked {
                        session_id: record.id,
                        subject: Some(subject.clone()),
                        cause: RevokeCause::Logout,
                    });
                }
            }
        }
        Ok(())
    }

    /// Ends the session presented as `credential`, if it is one. Unknown,
    /// malformed or already ended credentials are not an error (logout is
    /// idempotent); a token within its grace ends its session.
    pub async fn logout_presented(&self, credential: &str) -> Result<(), SessionError> {
        match self.resolve(credential, None).await {
            Ok(current) => self.logout(&current).await,
            Err(SessionError::Invalid { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// "Sign out everywhere else": ends every other session of the
    /// current session's subject. A sealed session is sealed again under
    /// the subject's new epoch ([`ActiveSession::issued`]).
    pub async fn revoke_others(
        &self,
        current: &ActiveSession,
    ) -> Result<ActiveSession, SessionError> {
        let subject = Self::signed_in(&current.record)?.to_owned();
        match &current.held {
            Held::Token(_) => {
                self.revoke_subject(&subject, Some(&current.record.id))
                    .await?;
                Ok(ActiveSession {
                    issued: None,
                    ..current.clone()
                })
            }
            Held::Seal { .. } => {
                self.check_sealed_live(&current.record, self.now()).await?;
                self.revoke_subject(&subject, None).await?;
                let subject_epoch = self.store().subject_epoch(&subject).await?;
                let mut record = SessionRecord::clone(&current.record);
                record.last_seen_at = self.now();
                self.seal_into(record, subject_epoch)
            }
        }
    }

    /// Every session of the current session's subject, oldest first ("your
    /// sessions"). A sealed session exists only in its credential, so for
    /// one of those this is the session itself; so it is for an anonymous one.
    pub async fn sessions_of(
        &self,
        current: &ActiveSession,
    ) -> Result<Vec<Arc<SessionRecord>>, SessionError> {
        match (&current.held, &current.record.subject) {
            (Held::Token(_), Some(subject)) => self.list_subject(subject).await,
            _ => Ok(vec![current.record.clone()]),
        }
    }

    /// Ends one session of the current session's subject; ending the
    /// current one is a logout. `false` when no such session of this
    /// subject is live (a sealed session can end only itself).
    pub async fn revoke_own(
        &self,
        current: &ActiveSession,
        id: &SessionId,
    ) -> Result<bool, SessionError> {
        let subject = Self::signed_in(&current.record)?;
        if current.record.id == *id {
            self.logout(current).await?;
            return Ok(true);
        }
        if current.is_sealed() {
            return Ok(false);
        }
        match self.get(id).await? {
            Some(other) if other.subject.as_deref() == Some(subject) => self.revoke(id).await,
            _ => Ok(false),
        }
    }

    /// The session with this public id, if it is valid.
    pub async fn get(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, SessionError> {
        let now = self.now();
        let Some(record) = self.store().load(id, now).await? else {
            return Ok(None);
        };
        match self.check_live(&record, now).await {
            Ok(()) => Ok(Some(Arc::new(record))),
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
            .store()
            .load(id, now)
            .await?
            .and_then(|record| record.subject);
        let deleted = self.store().delete(id).await?;
        if deleted {
            self.emit(SessionEvent::Revoked {
                session_id: *id,
                subject,
                cause,
            });
        }
        Ok(deleted)
    }

    /// Every valid session of a subject, oldest first (at most
    /// [`MAX_LISTED_SESSIONS`]).
    pub async fn list_subject(
        &self,
        subject: &str,
    ) -> Result<Vec<Arc<SessionRecord>>, SessionError> {
        let mut sessions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_subject_page(subject, cursor.as_deref(), 500)
                .await?;
            sessions.extend(page.items);
            match page.next {
                Some(next) if sessions.len() < MAX_LISTED_SESSIONS => cursor = Some(next),
                _ => break,
            }
        }
        sessions.truncate(MAX_LISTED_SESSIONS);
        sessions.sort_by_key(|s| (s.created_at, s.id));
        Ok(sessions)
    }

    /// One page of a subject's valid sessions, in the store's order; pass
    /// [`Page::next`] back to continue.
    pub async fn list_subject_page(
        &self,
        subject: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Arc<SessionRecord>>, SessionError> {
        self.check_subject(subject)?;
        let now = self.now();
        let epoch = self.current_epoch(now).await?;
        let page = self
            .store()
            .list_subject(subject, cursor, limit.max(1), now)
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .filter(|s| s.epoch >= epoch && now < s.expires_at())
                .map(Arc::new)
                .collect(),
            next: page.next,
        })
    }

    /// Ends every session of a subject, except `except` if given; returns
    /// how many stored sessions ended. Without an exception the subject's
    /// epoch moves on too, which ends its sealed sessions.
    pub async fn revoke_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
    ) -> Result<usize, SessionError> {
        self.check_subject(subject)?;
        let now = self.now();
        if except.is_none() {
            self.store().bump_subject_epoch(subject).await?;
        }
        let deleted = self.store().delete_subject(subject, except, now).await?;
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
        let epoch = self.store().bump_global_epoch().await?;
        self.remember_epoch(epoch, self.now());
        Ok(epoch)
    }
}

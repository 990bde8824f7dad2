//! The [`Session`] extractor: a request's session as handlers see it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tessera_core::{AuthLevel, InvalidReason, SessionId, SessionManager, SessionRecord};
use tessera_web::RequestSession;
use tokio::sync::Mutex;

use crate::error::Error;

/// The request's session. Extract it in any handler behind a
/// [`SessionLayer`](crate::SessionLayer); clones share the same state.
///
/// Nothing is read until a method needs it (a handler that never touches
/// the session costs no store access), and nothing is created until a
/// method writes (a visitor who only reads gets no session and no cookie).
///
/// # Concurrent requests
///
/// Requests of one browser run in parallel (tabs, parallel fetches). Writes
/// go to the freshest record through the manager's compare-and-swap, by
/// this rule:
///
/// * [`insert`](Self::insert) and [`remove`](Self::remove) apply a JSON
///   merge patch of that one key to the freshest record: concurrent
///   requests writing different keys keep both writes; on the same key the
///   last write wins;
/// * [`update`](Self::update) is read-modify-write: the closure sees the
///   freshest value and runs again if another request wrote in between, so
///   no update is lost (a counter counts every increment);
/// * [`clear`](Self::clear) replaces the whole data.
///
/// In sealed mode the record lives in the cookie, so the browser keeps
/// whichever response's cookie arrives last; keep data that many requests
/// change at once in server-side mode.
#[derive(Clone)]
pub struct Session {
    state: Arc<Mutex<RequestSession>>,
    manager: SessionManager,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(state: Arc<Mutex<RequestSession>>, manager: SessionManager) -> Self {
        Self { state, manager }
    }

    /// The manager behind the layer (for administrative operations).
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The value under `key`, or `None` when absent (or without a session).
    /// The session's data is parsed once per request, however many values
    /// are read.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let value = self.state.lock().await.get(key).await?;
        value
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| serde_error(key, e))
    }

    /// Stores `value` under `key`, creating the session if there is none.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(|e| serde_error(key, e))?;
        Ok(self.state.lock().await.insert(key, value).await?)
    }

    /// Removes `key` and returns its former value.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let old = self.state.lock().await.remove(key).await?;
        old.map(serde_json::from_value)
            .transpose()
            .map_err(|e| serde_error(key, e))
    }

    /// Read-modify-write of `key` with compare-and-swap: `f` gets the
    /// current value (or `None`) and returns the new one, which is returned
    /// too. If another request wrote the session in between, `f` runs again
    /// on the fresh value.
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T + Send,
    {
        let mut typed = |old: Option<Value>| -> Result<Value, tessera_web::Error> {
            let old = old
                .map(serde_json::from_value::<T>)
                .transpose()
                .map_err(|e| serde_error(key, e).0)?;
            serde_json::to_value(f(old)).map_err(|e| serde_error(key, e).0)
        };
        let new = self.state.lock().await.modify(key, &mut typed).await?;
        serde_json::from_value(new).map_err(|e| serde_error(key, e))
    }

    /// Removes every value (the CSRF secret stays).
    pub async fn clear(&self) -> Result<(), Error> {
        Ok(self.state.lock().await.clear().await?)
    }

    /// Signs `subject` in at authentication `level` (1 password, 2
    /// multi-factor, …). Always issues a new token — the one from before
    /// is dead by the time the response leaves (no fixation) — and a new
    /// CSRF secret.
    ///
    /// The sign-in is written when the request next reads the session
    /// (`get`, `record`, `subject`, …), at the latest as the response
    /// leaves, so the values inserted or updated right after it go out in
    /// the same single write. Should that write fail, the error replaces
    /// the response, no cookie is set and the session from before stays.
    /// Data over the size limit is refused by `insert` itself; a sealed
    /// session too large for its cookies only when written. After the
    /// response has left (a task keeping the session), it is written at once.
    pub async fn login(&self, subject: &str, level: impl Into<AuthLevel>) -> Result<(), Error> {
        Ok(self.state.lock().await.login(subject, level.into()).await?)
    }

    /// Raises the authentication level (after a second factor, say); a new token.
    pub async fn step_up(&self, level: impl Into<AuthLevel>) -> Result<(), Error> {
        Ok(self.state.lock().await.step_up(level.into()).await?)
    }

    /// Ends the session; the response removes the cookie and sends
    /// `Clear-Site-Data: "cookies"`.
    pub async fn logout(&self) -> Result<(), Error> {
        Ok(self.state.lock().await.logout().await?)
    }

    /// Issues a new token for the same session (the old one keeps working
    /// until the new one is presented, then for the rotation grace).
    pub async fn rotate(&self) -> Result<(), Error> {
        Ok(self.state.lock().await.rotate().await?)
    }

    /// The session's public id, if there is a session.
    pub async fn id(&self) -> Result<Option<SessionId>, Error> {
        Ok(self.state.lock().await.load().await?.map(|s| s.id))
    }

    /// The signed-in subject, if any.
    pub async fn subject(&self) -> Result<Option<String>, Error> {
        Ok(self
            .state
            .lock()
            .await
            .load()
            .await?
            .and_then(|s| s.subject.clone()))
    }

    /// The whole session record, if there is a session.
    pub async fn record(&self) -> Result<Option<Arc<SessionRecord>>, Error> {
        Ok(self.state.lock().await.load().await?.cloned())
    }

    /// Why the presented cookie gave no session (`expired_idle`, `revoked`,
    /// `binding_mismatch`, …), when it did not; `None` when it did or when
    /// there was no cookie.
    pub async fn rejected(&self) -> Result<Option<InvalidReason>, Error> {
        Ok(self.state.lock().await.rejected().await?)
    }

    /// Demands a signed-in session authenticated at `level` or above within
    /// `max_age`; otherwise an error with code `not_authenticated` (401)
    /// or `reauthentication_required` (403), so the app can ask again.
    pub async fn require_auth(
        &self,
        level: impl Into<AuthLevel>,
        max_age: Duration,
    ) -> Result<(), Error> {
        let session = self
            .record()
            .await?
            .filter(|s| s.subject.is_some())
            .ok_or(tessera_core::SessionError::NotAuthenticated)?;
        Ok(self.manager.require_auth(&session, level, max_age)?)
    }

    /// A CSRF token for a form or header of this session: masked afresh on
    /// every call. Creates the session (and its secret) if needed.
    pub async fn csrf_token(&self) -> Result<String, Error> {
        Ok(self.state.lock().await.csrf_token().await?)
    }

    /// Every session of the signed-in subject, oldest first ("your
    /// sessions"). Client-side sessions are nowhere but in their cookies, so
    /// in sealed mode this lists only the current one.
    pub async fn sessions(&self) -> Result<Vec<Arc<SessionRecord>>, Error> {
        Ok(self.state.lock().await.sessions().await?)
    }

    /// Ends one session of the signed-in subject (ending the current one
    /// logs out). `false` when no such session of this subject is live.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, Error> {
        Ok(self.state.lock().await.revoke(id).await?)
    }

    /// "Sign out everywhere else": ends every other session of the
    /// signed-in subject. In sealed mode this moves the subject's epoch on
    /// and re-seals the current session under it.
    pub async fn revoke_others(&self) -> Result<(), Error> {
        Ok(self.state.lock().await.revoke_others().await?)
    }
}

fn serde_error(key: &str, err: serde_json::Error) -> Error {
    Error(tessera_web::Error::Serde {
        key: key.to_owned(),
        message: err.to_string(),
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(Error(tessera_web::Error::MissingLayer))
    }
}

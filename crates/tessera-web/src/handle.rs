//! [`SessionHandle`]: the typed API handlers use on a request's session,
//! shared by the framework extractors (each wraps it and derefs to it).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tessera_core::{AuthLevel, InvalidReason, SessionId, SessionManager, SessionRecord};
use tokio::sync::Mutex;

use crate::error::Error;
use crate::request::RequestSession;

/// A request's session as handlers see it: values typed through serde,
/// sign-in, logout, CSRF tokens. Clones share the same state. `E` is the
/// framework's error type, so that `?` answers with its response.
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
pub struct SessionHandle<E> {
    state: Arc<Mutex<RequestSession>>,
    manager: SessionManager,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<E> Clone for SessionHandle<E> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            manager: self.manager.clone(),
            error: std::marker::PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for SessionHandle<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn serde_error(key: &str, err: serde_json::Error) -> Error {
    Error::Serde {
        key: key.to_owned(),
        message: err.to_string(),
    }
}

impl<E: From<Error>> SessionHandle<E> {
    /// The handle over one request's session state, whose layer has `manager`.
    pub fn new(state: Arc<Mutex<RequestSession>>, manager: SessionManager) -> Self {
        Self {
            state,
            manager,
            error: std::marker::PhantomData,
        }
    }

    /// The request's session state behind the handle.
    pub fn state(&self) -> &Arc<Mutex<RequestSession>> {
        &self.state
    }

    /// The manager behind the layer (for administrative operations).
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }

    /// The value under `key`, or `None` when absent (or without a session).
    /// The session's data is parsed once per request, however many values
    /// are read.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, E> {
        let value = self.state.lock().await.get(key).await?;
        Ok(value
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| serde_error(key, e))?)
    }

    /// The value under `key` as raw JSON (tower-sessions' `get_value`).
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>, E> {
        Ok(self.state.lock().await.get(key).await?)
    }

    /// Stores `value` under `key`, creating the session if there is none.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), E> {
        let value = serde_json::to_value(value).map_err(|e| serde_error(key, e))?;
        Ok(self.state.lock().await.insert(key, value).await?)
    }

    /// Stores raw JSON under `key` (tower-sessions' `insert_value`); returns
    /// the former value.
    pub async fn insert_value(&self, key: &str, value: Value) -> Result<Option<Value>, E> {
        let mut state = self.state.lock().await;
        let old = state.get(key).await?;
        state.insert(key, value).await?;
        Ok(old)
    }

    /// Removes `key` and returns its former value.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, E> {
        let old = self.state.lock().await.remove(key).await?;
        Ok(old
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| serde_error(key, e))?)
    }

    /// Removes `key` and returns its former value as raw JSON
    /// (tower-sessions' `remove_value`).
    pub async fn remove_value(&self, key: &str) -> Result<Option<Value>, E> {
        Ok(self.state.lock().await.remove(key).await?)
    }

    /// Read-modify-write of `key` with compare-and-swap: `f` gets the
    /// current value (or `None`) and returns the new one, which is returned
    /// too. If another request wrote the session in between, `f` runs again
    /// on the fresh value.
    pub async fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> T + Send,
    {
        let mut typed = |old: Option<Value>| -> Result<Value, Error> {
            let old = old
                .map(serde_json::from_value::<T>)
                .transpose()
                .map_err(|e| serde_error(key, e))?;
            serde_json::to_value(f(old)).map_err(|e| serde_error(key, e))
        };
        let new = self.state.lock().await.modify(key, &mut typed).await?;
        Ok(serde_json::from_value(new).map_err(|e| serde_error(key, e))?)
    }

    /// Removes every value (the CSRF secret stays).
    pub async fn clear(&self) -> Result<(), E> {
        Ok(self.state.lock().await.clear().await?)
    }

    /// Whether the session holds no value (true without a session).
    pub async fn is_empty(&self) -> Result<bool, E> {
        Ok(self
            .state
            .lock()
            .await
            .load()
            .await?
            .is_none_or(|s| s.data.to_map().is_empty()))
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
    pub async fn login(&self, subject: &str, level: impl Into<AuthLevel>) -> Result<(), E> {
        Ok(self.state.lock().await.login(subject, level.into()).await?)
    }

    /// Raises the authentication level (after a second factor, say); a new token.
    pub async fn step_up(&self, level: impl Into<AuthLevel>) -> Result<(), E> {
        Ok(self.state.lock().await.step_up(level.into()).await?)
    }

    /// Ends the session; the response removes the cookie and sends
    /// `Clear-Site-Data: "cookies"`.
    pub async fn logout(&self) -> Result<(), E> {
        Ok(self.state.lock().await.logout().await?)
    }

    /// tower-sessions' name for [`logout`](Self::logout): removes the data
    /// and the session itself (actix-session calls it `purge`).
    pub async fn flush(&self) -> Result<(), E> {
        self.logout().await
    }

    /// Issues a new token for the same session (the old one keeps working
    /// until the new one is presented, then for the rotation grace).
    pub async fn rotate(&self) -> Result<(), E> {
        Ok(self.state.lock().await.rotate().await?)
    }

    /// tower-sessions' name for [`rotate`](Self::rotate) (actix-session
    /// calls it `renew`): a new token, the same data. Sign-in rotates by
    /// itself; call this after other privilege changes.
    pub async fn cycle_id(&self) -> Result<(), E> {
        self.rotate().await
    }

    /// The session's public id, if there is a session. Unlike
    /// tower-sessions' id, it is not the secret the cookie carries, and it
    /// stays the same across rotations.
    pub async fn id(&self) -> Result<Option<SessionId>, E> {
        Ok(self.state.lock().await.load().await?.map(|s| s.id))
    }

    /// The signed-in subject, if any.
    pub async fn subject(&self) -> Result<Option<String>, E> {
        Ok(self
            .state
            .lock()
            .await
            .load()
            .await?
            .and_then(|s| s.subject.clone()))
    }

    /// The whole session record, if there is a session.
    pub async fn record(&self) -> Result<Option<Arc<SessionRecord>>, E> {
        Ok(self.state.lock().await.load().await?.cloned())
    }

    /// Why the presented cookie gave no session (`expired_idle`, `revoked`,
    /// `binding_mismatch`, …), when it did not; `None` when it did or when
    /// there was no cookie.
    pub async fn rejected(&self) -> Result<Option<InvalidReason>, E> {
        Ok(self.state.lock().await.rejected().await?)
    }

    /// Demands a signed-in session authenticated at `level` or above within
    /// `max_age`; otherwise an error with code `not_authenticated` (401)
    /// or `reauthentication_required` (403), so the app can ask again.
    pub async fn require_auth(
        &self,
        level: impl Into<AuthLevel>,
        max_age: Duration,
    ) -> Result<(), E> {
        let session = self
            .record()
            .await?
            .filter(|s| s.subject.is_some())
            .ok_or(Error::Session(tessera_core::SessionError::NotAuthenticated))?;
        Ok(self
            .manager
            .require_auth(&session, level, max_age)
            .map_err(Error::from)?)
    }

    /// A CSRF token for a form or header of this session: masked afresh on
    /// every call. Creates the session (and its secret) if needed.
    pub async fn csrf_token(&self) -> Result<String, E> {
        Ok(self.state.lock().await.csrf_token().await?)
    }

    /// Every session of the signed-in subject, oldest first ("your
    /// sessions"). Client-side sessions are nowhere but in their cookies, so
    /// in sealed mode this lists only the current one.
    pub async fn sessions(&self) -> Result<Vec<Arc<SessionRecord>>, E> {
        Ok(self.state.lock().await.sessions().await?)
    }

    /// Ends one session of the signed-in subject (ending the current one
    /// logs out). `false` when no such session of this subject is live.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, E> {
        Ok(self.state.lock().await.revoke(id).await?)
    }

    /// "Sign out everywhere else": ends every other session of the
    /// signed-in subject. In sealed mode this moves the subject's epoch on
    /// and re-seals the current session under it.
    pub async fn revoke_others(&self) -> Result<(), E> {
        Ok(self.state.lock().await.revoke_others().await?)
    }
}

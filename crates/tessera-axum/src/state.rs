//! One request's session: loaded lazily, written through the manager, and
//! turned into at most one cookie change when the response leaves.
//!
//! Server-side mode keeps the record in the store and the token in the
//! cookie; sealed mode keeps the record in the cookie. Both go through the
//! same [`SessionManager`] policy, and the handler sees the same API.

use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_core::sealed::ClientSideSession;
use tessera_core::{
    ClientInfo, DataChange, InvalidReason, Login, NewSession, Session, SessionData, SessionError,
    SessionId, ValidatedSession,
};

use crate::config::{Shared, Storage};
use crate::cookies::{CookieTooLarge, Presented};
use crate::csrf::{self, CSRF_DATA_KEY};
use crate::error::Error;

/// How often a compare-and-swap update is retried after losing a race.
const MAX_CAS_ATTEMPTS: usize = 16;

/// The session behind the request's credential.
enum Current {
    /// A stored session and the token that reaches it.
    Server {
        /// The token text (as presented, or newly issued).
        token: String,
        /// The session as the manager last vouched for it (a write goes
        /// out without reading it again).
        session: ValidatedSession,
    },
    /// A sealed session, and its seal when it changed in this request.
    Sealed {
        record: Box<ClientSideSession>,
        session: Arc<Session>,
    },
}

impl Current {
    fn session(&self) -> &Arc<Session> {
        match self {
            Current::Server { session, .. } => &session.session,
            Current::Sealed { session, .. } => session,
        }
    }
}

/// What the response does to the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieChange {
    /// Nothing.
    Keep,
    /// Set it to this credential.
    Set(String),
    /// Remove it (logout), with `Clear-Site-Data`.
    Remove,
}

/// The per-request state behind the [`Session`](crate::Session) extractor.
pub(crate) struct State {
    shared: Arc<Shared>,
    /// The credential the request carried, until it is loaded.
    presented: Presented,
    /// How many session cookies the request carried (to replace or remove them).
    pub(crate) presented_cookies: usize,
    client: ClientInfo,
    loaded: bool,
    current: Option<Current>,
    /// A login not yet written (see [`State::login`]).
    pending: Option<PendingLogin>,
    /// The response has left: from now on a login is written at once.
    finished: bool,
    rejected: Option<InvalidReason>,
    pub(crate) cookie: CookieChange,
}

/// A sign-in the handler asked for and the store has not seen yet: the
/// session it replaces, and the new session's login with its data, which
/// the handler may still fill in.
struct PendingLogin {
    previous: Option<Current>,
    login: Login,
    data: Map<String, Value>,
    /// An upper bound of `data`'s size as JSON, so that the size limit is
    /// checked at each change without serialising the whole object.
    bytes_at_most: usize,
}

impl State {
    pub(crate) fn new(shared: Arc<Shared>, presented: Presented, client: ClientInfo) -> Self {
        Self {
            shared,
            presented_cookies: presented.cookie_count(),
            presented,
            client,
            loaded: false,
            current: None,
            pending: None,
            finished: false,
            rejected: None,
            cookie: CookieChange::Keep,
        }
    }

    /// Whether a live session was read (the response is personal).
    pub(crate) fn served_session(&self) -> bool {
        self.current.is_some()
    }

    fn client(&self) -> Option<&ClientInfo> {
        Some(&self.client)
    }

    // ----- loading ----------------------------------------------------------

    /// Validates the presented credential once; an invalid one leaves the
    /// request anonymous (and does not touch the cookie: a request still in
    /// flight from before a login must not undo it).
    pub(crate) async fn load(&mut self) -> Result<Option<&Arc<Session>>, Error> {
        self.flush().await?;
        if !self.loaded {
            self.loaded = true;
            match std::mem::replace(&mut self.presented, Presented::Nothing) {
                Presented::Nothing => {}
                Presented::Unreadable { problem, .. } => {
                    tracing::debug!(problem, "unreadable session cookie; serving as anonymous");
                    self.rejected = Some(InvalidReason::Malformed);
                    self.shared.manager.report_invalid_credential(self.client());
                }
                Presented::Credential { value, .. } => match self.open(value).await {
                    Ok(()) => {}
                    Err(Error::Session(SessionError::Invalid { reason })) => {
                        self.rejected = Some(reason);
                    }
                    Err(other) => return Err(other),
                },
            }
        }
        Ok(self.current.as_ref().map(Current::session))
    }

    async fn open(&mut self, credential: String) -> Result<(), Error> {
        let manager = &self.shared.manager;
        match &self.shared.storage {
            Storage::Server => {
                let valid = manager.validate(&credential, self.client()).await?;
                let token = match &valid.renewed_token {
                    Some(token) => {
                        let token = token.expose().to_owned();
                        self.cookie = CookieChange::Set(token.clone());
                        token
                    }
                    None => credential,
                };
                self.current = Some(Current::Server {
                    token,
                    session: valid,
                });
            }
            Storage::Sealed(keys) => {
                let record = match keys.open(&credential, self.shared.cookie_name.as_bytes()) {
                    Ok(record) => record,
                    Err(err) => {
                        tracing::debug!(error = %err, "sealed session cookie refused");
                        manager.report_invalid_credential(self.client());
                        let reason = match err {
                            tessera_core::sealed::OpenError::UnknownKey { .. } => {
                                InvalidReason::Unknown
                            }
                            _ => InvalidReason::Malformed,
                        };
                        return Err(SessionError::Invalid { reason }.into());
                    }
                };
                let valid = manager.validate_client_side(record, self.client()).await?;
                self.set_sealed(valid.record, valid.reseal)?;
            }
        }
        Ok(())
    }

    /// Keeps a sealed record as current; with `reseal`, seals it into the
    /// response cookie (refusing a session that would not fit).
    fn set_sealed(&mut self, record: ClientSideSession, reseal: bool) -> Result<(), Error> {
        if reseal {
            let Storage::Sealed(keys) = &self.shared.storage else {
                return Ok(());
            };
            let sealed = keys.seal(&record, self.shared.cookie_name.as_bytes())?;
            let capacity = self.shared.cookies.capacity();
            if sealed.len() > capacity {
                return Err(CookieTooLarge {
                    size: sealed.len(),
                    limit: capacity,
                }
                .into());
            }
            self.cookie = CookieChange::Set(sealed);
        }
        let session = Arc::new(record.session.clone());
        self.current = Some(Current::Sealed {
            record: Box::new(record),
            session,
        });
        Ok(())
    }

    /// The current session, created (anonymous) if there is none.
    async fn ensure(&mut self) -> Result<(), Error> {
        self.load().await?;
        if self.current.is_some() {
            return Ok(());
        }
        let request = NewSession {
            client: Some(self.client.clone()),
            ..NewSession::default()
        };
        match &self.shared.storage {
            Storage::Server => {
                let issued = self.shared.manager.create(request).await?;
                let token = issued.token.expose().to_owned();
                self.cookie = CookieChange::Set(token.clone());
                self.current = Some(Current::Server {
                    token,
                    session: issued.validated(),
                });
            }
            Storage::Sealed(_) => {
                let record = self.shared.manager.create_client_side(request).await?;
                self.set_sealed(record, true)?;
            }
        }
        Ok(())
    }

    pub(crate) fn rejected(&self) -> Option<InvalidReason> {
        self.rejected
    }

    // ----- data -------------------------------------------------------------

    /// Applies a data change to the current session (creating one if needed).
    pub(crate) async fn change(
        &mut self,
        change: DataChange,
        expected_version: Option<u64>,
    ) -> Result<(), Error> {
        if self.pending.is_some() && expected_version.is_none() {
            return self.change_pending(change);
        }
        self.ensure().await?;
        let manager = self.shared.manager.clone();
        match self.current.take() {
            Some(Current::Server { token, session }) => {
                let result = manager
                    .update_validated(&session, change, expected_version, self.client())
                    .await;
                let session = match result {
                    Ok(updated) => updated,
                    Err(err) => {
                        self.current = Some(Current::Server { token, session });
                        return Err(err.into());
                    }
                };
                self.current = Some(Current::Server { token, session });
            }
            Some(Current::Sealed { record, session }) => {
                match manager.update_client_side(&record, change, expected_version) {
                    Ok(next) => self.set_sealed(next, true)?,
                    Err(err) => {
                        self.current = Some(Current::Sealed { record, session });
                        return Err(err.into());
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Re-reads the session after a lost compare-and-swap.
    async fn refresh(&mut self) -> Result<(), Error> {
        let Some(Current::Server { token, .. }) = &self.current else {
            return Ok(());
        };
        let token = token.clone();
        self.loaded = false;
        self.current = None;
        self.presented = Presented::Credential {
            value: token,
            cookies: self.presented_cookies,
        };
        self.load().await?;
        Ok(())
    }

    /// Read-modify-write of one key with compare-and-swap: `f` sees the
    /// freshest value and runs again if another request wrote in between.
    pub(crate) async fn modify(
        &mut self,
        key: &str,
        f: &mut (dyn FnMut(Option<Value>) -> Result<Value, Error> + Send),
    ) -> Result<Value, Error> {
        if let Some(pending) = &self.pending {
            // Nobody else can see this session yet: no race to lose.
            let new = f(pending.data.get(key).cloned())?;
            let patch = Map::from_iter([(key.to_owned(), new.clone())]);
            self.change(DataChange::MergePatch(Value::Object(patch)), None)
                .await?;
            return Ok(new);
        }
        self.ensure().await?;
        let mut last_version = 0;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(current) = &self.current else {
                return Err(SessionError::Invalid {
                    reason: InvalidReason::Revoked,
                }
                .into());
            };
            let session = current.session();
            let version = session.version;
            last_version = version;
            let old = session.data.to_map().remove(key);
            let new = f(old)?;
            let patch = Value::Object(Map::from_iter([(key.to_owned(), new.clone())]));
            match self
                .change(DataChange::MergePatch(patch), Some(version))
                .await
            {
                Ok(()) => return Ok(new),
                Err(Error::Session(SessionError::VersionConflict { .. })) => {
                    self.refresh().await?;
                    if self.current.is_none() {
                        self.ensure().await?;
                    }
                }
                Err(other) => return Err(other),
            }
        }
        // Lost every race: the session is written faster than it can be read.
        Err(SessionError::VersionConflict {
            expected: last_version,
            current_version: last_version,
        }
        .into())
    }

    /// Replaces the data with `{}`, keeping the CSRF secret.
    pub(crate) async fn clear(&mut self) -> Result<(), Error> {
        let Some(session) = self.load().await?.cloned() else {
            return Ok(());
        };
        let mut kept = Map::new();
        if let Some(secret) = session.data.to_map().remove(CSRF_DATA_KEY) {
            kept.insert(CSRF_DATA_KEY.to_owned(), secret);
        }
        let data = SessionData::from_map(&kept).map_err(SessionError::from)?;
        self.change(DataChange::Replace(data), None).await
    }

    // ----- authentication ---------------------------------------------------

    /// Signs `subject` in at `level`: always a new token (or seal), a fresh
    /// CSRF secret, and the anonymous data carried over (never another
    /// subject's).
    ///
    /// The sign-in is written when the request next needs the store, at
    /// the latest as the response leaves ([`State::flush`]): data set right
    /// after it (the usual `login` then `insert`s) goes out in the same
    /// single write, and no other request can reach the new session before
    /// that write.
    pub(crate) async fn login(&mut self, subject: &str, level: u8) -> Result<(), Error> {
        self.shared.manager.check_subject(subject)?;
        self.load().await?;
        let (mut data, carried_bytes) = match self.current.as_ref().map(Current::session) {
            Some(s) if s.subject.is_none() || s.subject.as_deref() == Some(subject) => {
                (s.data.to_map(), s.data.len_bytes())
            }
            _ => (Map::new(), 2),
        };
        let secret = csrf::new_secret().map_err(|_| Error::Entropy)?;
        let secret_bytes = entry_bytes(CSRF_DATA_KEY, &secret);
        data.insert(CSRF_DATA_KEY.to_owned(), Value::String(secret));
        let login = Login::new(subject).level(level).client(self.client.clone());
        self.pending = Some(PendingLogin {
            previous: self.current.take(),
            login,
            data,
            bytes_at_most: carried_bytes + secret_bytes,
        });
        if self.finished {
            self.flush().await?;
        }
        Ok(())
    }

    /// Applies a change to a pending login's data, refusing data over the
    /// manager's limit at once (as a direct write would) and leaving the
    /// data as it was then. The whole object is serialised only when a
    /// cheap upper bound of its size says it might be over.
    fn change_pending(&mut self, change: DataChange) -> Result<(), Error> {
        let manager = self.shared.manager.clone();
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        let limit = manager.config().max_data_bytes;
        let apply = |data: &mut Map<String, Value>, change: DataChange| match change {
            DataChange::Replace(replacement) => *data = replacement.to_map(),
            DataChange::MergePatch(patch) => {
                let mut value = Value::Object(std::mem::take(data));
                json_patch::merge(&mut value, &patch);
                if let Value::Object(map) = value {
                    *data = map;
                }
            }
        };
        let added = match &change {
            DataChange::Replace(replacement) => replacement
                .len_bytes()
                .saturating_sub(pending.bytes_at_most),
            DataChange::MergePatch(patch) => serde_json::to_string(patch)
                .map(|json| json.len())
                .unwrap_or(usize::MAX),
        };
        if pending.bytes_at_most.saturating_add(added) <= limit {
            apply(&mut pending.data, change);
            pending.bytes_at_most += added;
            return Ok(());
        }
        let mut data = pending.data.clone();
        apply(&mut data, change);
        let exact = SessionData::from_map(&data).map_err(SessionError::from)?;
        manager.check_data(&exact)?;
        pending.bytes_at_most = exact.len_bytes();
        pending.data = data;
        Ok(())
    }

    /// Marks the response as gone: a login from now on (a session kept by
    /// a task that outlives the request) is written at once.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// Writes a pending login: ends the session it replaces and stores the
    /// new one with its data. Nothing to do without one. When the write
    /// fails, the session from before stays the request's session.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        let Some(PendingLogin {
            previous,
            mut login,
            data,
            ..
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let written = match SessionData::from_map(&data) {
            Ok(data) => {
                login.data = Some(data);
                self.write_login(previous.as_ref(), login).await
            }
            Err(err) => Err(SessionError::from(err).into()),
        };
        if written.is_err() && self.current.is_none() {
            self.current = previous;
        }
        written
    }

    async fn write_login(&mut self, previous: Option<&Current>, login: Login) -> Result<(), Error> {
        let manager = self.shared.manager.clone();
        match (&self.shared.storage, previous) {
            (Storage::Server, current) => {
                let token = match current {
                    Some(Current::Server { token, .. }) => Some(token.as_str()),
                    _ => None,
                };
                let issued = manager.login(token, login).await?;
                let token = issued.token.expose().to_owned();
                self.cookie = CookieChange::Set(token.clone());
                self.current = Some(Current::Server {
                    token,
                    session: issued.validated(),
                });
            }
            (Storage::Sealed(_), current) => {
                let record = match current {
                    Some(Current::Sealed { record, .. }) => Some(record.as_ref()),
                    _ => None,
                };
                let next = manager.login_client_side(record, login).await?;
                self.set_sealed(next, true)?;
            }
        }
        Ok(())
    }

    /// Raises the authentication level of a signed-in session (new token).
    pub(crate) async fn step_up(&mut self, level: u8) -> Result<(), Error> {
        let subject = self
            .load()
            .await?
            .and_then(|s| s.subject.clone())
            .ok_or(SessionError::NotAuthenticated)?;
        let manager = self.shared.manager.clone();
        match self.current.take() {
            Some(Current::Server { token, .. }) => {
                let issued = manager
                    .step_up(token.as_str(), level, self.client())
                    .await?;
                let token = issued.token.expose().to_owned();
                self.cookie = CookieChange::Set(token.clone());
                self.current = Some(Current::Server {
                    token,
                    session: issued.validated(),
                });
            }
            Some(Current::Sealed { record, .. }) => {
                let login = Login::new(subject).level(level).client(self.client.clone());
                let next = manager.login_client_side(Some(&record), login).await?;
                self.set_sealed(next, true)?;
            }
            None => return Err(SessionError::NotAuthenticated.into()),
        }
        Ok(())
    }

    /// Ends the session and removes the cookie.
    pub(crate) async fn logout(&mut self) -> Result<(), Error> {
        let had_cookie = self.presented_cookies > 0;
        self.load().await?;
        match self.current.take() {
            Some(Current::Server { token, .. }) => {
                self.shared.manager.logout(token.as_str()).await?;
            }
            Some(Current::Sealed { record, .. }) => {
                self.shared.manager.logout_client_side(&record).await?;
            }
            None => {}
        }
        if had_cookie || self.cookie != CookieChange::Keep {
            self.cookie = CookieChange::Remove;
        }
        Ok(())
    }

    /// A new token (or seal) for the same session.
    pub(crate) async fn rotate(&mut self) -> Result<(), Error> {
        self.load().await?;
        let manager = self.shared.manager.clone();
        match self.current.take() {
            Some(Current::Server { token, .. }) => {
                let issued = manager.rotate(token.as_str()).await?;
                let token = issued.token.expose().to_owned();
                self.cookie = CookieChange::Set(token.clone());
                self.current = Some(Current::Server {
                    token,
                    session: issued.validated(),
                });
            }
            Some(Current::Sealed { record, .. }) => {
                let next = manager.rotate_client_side(&record);
                self.set_sealed(next, true)?;
            }
            None => {}
        }
        Ok(())
    }

    // ----- the subject's sessions ---------------------------------------------

    /// Every session of the signed-in subject (sealed mode: only this one,
    /// as client-side sessions are nowhere else).
    pub(crate) async fn sessions(&mut self) -> Result<Vec<Arc<Session>>, Error> {
        let Some(session) = self.load().await?.cloned() else {
            return Ok(Vec::new());
        };
        let Some(subject) = &session.subject else {
            return Ok(vec![session]);
        };
        match &self.shared.storage {
            Storage::Server => Ok(self.shared.manager.list_subject(subject).await?),
            Storage::Sealed(_) => Ok(vec![session]),
        }
    }

    /// Ends one session of the signed-in subject; ending the current one is a logout.
    pub(crate) async fn revoke(&mut self, id: &SessionId) -> Result<bool, Error> {
        let Some(session) = self.load().await?.cloned() else {
            return Err(SessionError::NotAuthenticated.into());
        };
        let subject = session
            .subject
            .clone()
            .ok_or(SessionError::NotAuthenticated)?;
        if session.id == *id {
            self.logout().await?;
            return Ok(true);
        }
        if matches!(self.shared.storage, Storage::Sealed(_)) {
            return Ok(false);
        }
        let manager = &self.shared.manager;
        match manager.get(id).await? {
            Some(other) if other.subject.as_deref() == Some(subject.as_str()) => {
                Ok(manager.revoke(id).await?)
            }
            _ => Ok(false),
        }
    }

    /// Ends every other session of the signed-in subject.
    pub(crate) async fn revoke_others(&mut self) -> Result<(), Error> {
        let Some(session) = self.load().await?.cloned() else {
            return Err(SessionError::NotAuthenticated.into());
        };
        let subject = session
            .subject
            .clone()
            .ok_or(SessionError::NotAuthenticated)?;
        let manager = self.shared.manager.clone();
        match self.current.take() {
            Some(Current::Server { token, session }) => {
                manager
                    .revoke_subject(&subject, Some(&session.session.id))
                    .await?;
                self.current = Some(Current::Server { token, session });
            }
            Some(Current::Sealed { record, .. }) => {
                let next = manager.revoke_others_client_side(&record).await?;
                self.set_sealed(next, true)?;
            }
            None => {}
        }
        Ok(())
    }

    // ----- CSRF -------------------------------------------------------------

    /// A masked CSRF token for this session, creating the session and its
    /// secret when needed.
    pub(crate) async fn csrf_token(&mut self) -> Result<String, Error> {
        if let Some(Value::String(secret)) = self
            .pending
            .as_ref()
            .and_then(|p| p.data.get(CSRF_DATA_KEY))
        {
            return csrf::mask(secret).map_err(|_| Error::Entropy);
        }
        self.ensure().await?;
        let existing = self
            .current
            .as_ref()
            .and_then(|c| c.session().data.get::<String>(CSRF_DATA_KEY));
        let secret = match existing {
            Some(secret) => secret,
            None => {
                let secret = csrf::new_secret().map_err(|_| Error::Entropy)?;
                let patch = Value::Object(Map::from_iter([(
                    CSRF_DATA_KEY.to_owned(),
                    Value::String(secret.clone()),
                )]));
                self.change(DataChange::MergePatch(patch), None).await?;
                secret
            }
        };
        csrf::mask(&secret).map_err(|_| Error::Entropy)
    }

    /// Checks a presented CSRF token against the session's secret.
    pub(crate) async fn verify_csrf(&mut self, presented: &str) -> Result<(), Error> {
        let Some(session) = self.load().await? else {
            return Err(csrf::CsrfError::NoSession.into());
        };
        match data_field::<String>(&session.data, CSRF_DATA_KEY)
            .ok()
            .flatten()
        {
            Some(secret) if csrf::verify(&secret, presented) => Ok(()),
            Some(_) => Err(csrf::CsrfError::InvalidToken.into()),
            None => Err(csrf::CsrfError::NoSession.into()),
        }
    }
}

/// An upper bound of what `"key":"text",` adds to a JSON object (every
/// byte escaped at most six-fold).
fn entry_bytes(key: &str, text: &str) -> usize {
    6 * (key.len() + text.len()) + 6
}

/// One field of session data, deserialised without building the whole
/// object: a borrowing parse that keeps the other values as raw JSON.
pub(crate) fn data_field<T: serde::de::DeserializeOwned>(
    data: &SessionData,
    key: &str,
) -> Result<Option<T>, serde_json::Error> {
    let json = data.as_json();
    match serde_json::from_str::<std::collections::BTreeMap<&str, &serde_json::value::RawValue>>(
        json,
    ) {
        Ok(fields) => fields
            .get(key)
            .map(|raw| serde_json::from_str(raw.get()))
            .transpose(),
        // A key with escapes cannot be borrowed: read the whole object.
        Err(_) => data
            .to_map()
            .remove(key)
            .map(serde_json::from_value)
            .transpose(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_fields_are_read_with_and_without_escaped_keys() {
        let data =
            SessionData::from_json(r#"{"a":1,"b":{"c":[1,2]},"e\u0073c":"x"}"#).expect("json");
        assert_eq!(data_field::<u32>(&data, "a").expect("ok"), Some(1));
        assert_eq!(
            data_field::<serde_json::Value>(&data, "b").expect("ok"),
            Some(serde_json::json!({"c": [1, 2]}))
        );
        assert_eq!(
            data_field::<String>(&data, "esc").expect("ok"),
            Some("x".into())
        );
        assert_eq!(data_field::<u32>(&data, "missing").expect("ok"), None);
        assert!(data_field::<u32>(&data, "b").is_err());
    }
}

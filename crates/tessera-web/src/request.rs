//! One request's session: loaded lazily, written through the manager, and
//! turned into at most one cookie change when the response leaves.
//!
//! The manager serves sessions kept in a store and sessions sealed into
//! the cookie through one API, so nothing here depends on which: the
//! session is an [`ActiveSession`], and whatever credential the manager
//! issues goes into the response cookie.

use std::sync::Arc;

use serde_json::{Map, Value};
use tessera_core::{
    ActiveSession, AuthLevel, ClientInfo, DataChange, InvalidReason, Login, NewSession,
    PendingLogin, SessionData, SessionError, SessionId, SessionRecord,
};

use crate::Headers;
use crate::config::WebConfig;
use crate::cookies::Presented;
use crate::csrf;
use crate::error::Error;

/// What the response does to the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CookieChange {
    /// Nothing.
    Keep,
    /// Set it to this credential.
    Set(String),
    /// Remove it (logout), with `Clear-Site-Data`.
    Remove,
    /// Remove a cookie that can never be valid again (unknown, expired or
    /// garbage), without `Clear-Site-Data`: a browser that keeps sending
    /// it would count against its own address as a guesser.
    Clear,
}

/// What a response must carry for the session: the framework integration
/// adds these headers as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseChanges {
    /// `Set-Cookie` values, in order.
    pub set_cookies: Vec<String>,
    /// Send `Clear-Site-Data: "cookies"` (logout).
    pub clear_site_data: bool,
    /// Send `Cache-Control: no-store` (the response is personal), unless
    /// the handler set a `Cache-Control` of its own and no cookie changes.
    pub no_store: bool,
    /// The cookie changes, so `no-store` overrides the handler's own
    /// `Cache-Control`.
    pub cookie_changed: bool,
    /// Further headers (lowercase names) to add: the DBSC registration
    /// offer after a login.
    pub headers: Vec<(&'static str, String)>,
}

/// One request's session, behind the framework's session extractor.
pub struct RequestSession {
    config: Arc<WebConfig>,
    /// The credential the request carried, until it is loaded.
    presented: Presented,
    /// How many session cookies the request carried (to replace or remove them).
    presented_cookies: usize,
    client: ClientInfo,
    loaded: bool,
    current: Option<ActiveSession>,
    /// The current session's data, parsed once and kept until it changes.
    data: Option<Map<String, Value>>,
    /// A sign-in not written yet (see [`RequestSession::login`]).
    pending: Option<PendingLogin>,
    /// The response has left: from now on a sign-in is written at once.
    finished: bool,
    rejected: Option<InvalidReason>,
    cookie: CookieChange,
    /// The DBSC bound cookie the request carried.
    bound_cookie: Option<String>,
    /// A DBSC registration offer to send (`Secure-Session-Registration`).
    registration: Option<String>,
    /// The pre-session CSRF nonce the request's cookie carried.
    csrf_nonce: Option<[u8; 16]>,
    /// A pre-session CSRF nonce drawn for this response (its cookie is set).
    new_csrf_nonce: Option<[u8; 16]>,
    /// A sign-in was written by this request.
    signed_in: bool,
    /// The old library's cookie the request carried (see [`crate::import`]).
    legacy: Option<String>,
    /// The old cookie was seen when loading: the response removes it.
    remove_legacy: bool,
}

impl std::fmt::Debug for RequestSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSession")
            .field("loaded", &self.loaded)
            .field("has_session", &self.current.is_some())
            .field("pending_login", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl RequestSession {
    /// The session of a request that presented `presented` (read with the
    /// config's cookie controller) from `client`.
    pub fn new(config: Arc<WebConfig>, presented: Presented, client: ClientInfo) -> Self {
        Self {
            config,
            presented_cookies: presented.cookie_count(),
            presented,
            client,
            loaded: false,
            current: None,
            data: None,
            pending: None,
            finished: false,
            rejected: None,
            cookie: CookieChange::Keep,
            bound_cookie: None,
            registration: None,
            csrf_nonce: None,
            new_csrf_nonce: None,
            signed_in: false,
            legacy: None,
            remove_legacy: false,
        }
    }

    /// Sets the DBSC bound cookie the request carried (read with
    /// [`DbscSettings::bound_cookie`](crate::dbsc::DbscSettings::bound_cookie)).
    pub fn set_bound_cookie(&mut self, value: Option<String>) {
        self.bound_cookie = value;
    }

    /// Sets the pre-session CSRF nonce the request's cookie carried (read
    /// with [`PreSessionCsrf::read_nonce`](crate::csrf::PreSessionCsrf::read_nonce)).
    pub fn set_csrf_nonce(&mut self, nonce: Option<[u8; 16]>) {
        self.csrf_nonce = nonce;
    }

    /// The request's session as the manager vouched for it, if any.
    pub async fn active(&mut self) -> Result<Option<ActiveSession>, Error> {
        self.load().await?;
        Ok(self.current.clone())
    }

    /// The request also carried the cookie of the session library the app
    /// used before; it is exchanged for a session when the session is
    /// loaded and no Tessera cookie was presented.
    pub fn present_legacy(&mut self, value: String) {
        self.legacy = Some(value);
    }

    /// The layer's settings.
    pub fn config(&self) -> &Arc<WebConfig> {
        &self.config
    }

    /// The requesting client.
    pub fn client(&self) -> &ClientInfo {
        &self.client
    }

    // ----- loading ----------------------------------------------------------

    /// The session, validated once; an invalid credential leaves the
    /// request anonymous. A credential that can never be valid again
    /// (unknown, expired, malformed) is cleared from the browser; one that
    /// was revoked or rotated away is left as it is (a request still in
    /// flight from before a login must not undo it). A pending sign-in is
    /// written first.
    pub async fn load(&mut self) -> Result<Option<&Arc<SessionRecord>>, Error> {
        self.flush().await?;
        if !self.loaded {
            self.loaded = true;
            let legacy = self.legacy.take();
            self.remove_legacy = legacy.is_some();
            match std::mem::replace(&mut self.presented, Presented::Nothing) {
                Presented::Nothing => {
                    if let Some(value) = legacy {
                        self.import(&value).await?;
                    }
                }
                Presented::Unreadable { problem, .. } => {
                    tracing::debug!(problem, "unreadable session cookie; serving as anonymous");
                    self.rejected = Some(InvalidReason::Malformed);
                    self.config
                        .manager
                        .report_invalid_credential(Some(&self.client));
                }
                Presented::Credential { value, .. } => {
                    match self
                        .config
                        .manager
                        .validate(&value, Some(&self.client))
                        .await
                    {
                        Ok(session) => self.adopt_checked(session).await?,
                        Err(SessionError::Invalid { reason }) => {
                            self.rejected = Some(reason);
                            if matches!(
                                reason,
                                InvalidReason::Unknown
                                    | InvalidReason::ExpiredIdle
                                    | InvalidReason::ExpiredAbsolute
                                    | InvalidReason::Malformed
                            ) {
                                self.cookie = CookieChange::Clear;
                            }
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
            }
        }
        Ok(self.current.as_ref().map(ActiveSession::record))
    }

    /// Adopts a validated session once it passed the device-binding check
    /// (with DBSC on): a bound session without its current bound cookie
    /// leaves the request anonymous, though a credential the validation
    /// renewed still goes out.
    async fn adopt_checked(&mut self, mut session: ActiveSession) -> Result<(), Error> {
        if self.config.dbsc.is_some() {
            let checked = self
                .config
                .manager
                .check_device(&session, self.bound_cookie.as_deref())
                .await;
            match checked {
                Ok(_) => {}
                Err(SessionError::Invalid { reason }) => {
                    if let Some(credential) = session.take_issued() {
                        self.cookie = CookieChange::Set(credential.into_string());
                    }
                    self.rejected = Some(reason);
                    return Ok(());
                }
                Err(other) => return Err(other.into()),
            }
        }
        self.adopt(session);
        Ok(())
    }

    /// Exchanges the old library's cookie for a session with its data.
    async fn import(&mut self, value: &str) -> Result<(), Error> {
        let Some(reader) = self.config.import.clone() else {
            return Ok(());
        };
        let Some(imported) = reader.take(value).await? else {
            return Ok(());
        };
        let data = SessionData::from_map(&imported.data)?;
        let session = match imported.subject {
            Some(subject) => {
                let login = Login::new(subject)
                    .level(AuthLevel::from(1))
                    .data(data)
                    .client(self.client.clone());
                self.config.manager.login(None, login).await?
            }
            None => {
                let request = NewSession::anonymous()
                    .data(data)
                    .client(self.client.clone());
                self.config.manager.create(request).await?
            }
        };
        self.adopt(session);
        Ok(())
    }

    /// Makes `session` the request's session; a credential it issued goes
    /// into the response.
    fn adopt(&mut self, mut session: ActiveSession) {
        if let Some(credential) = session.take_issued() {
            self.cookie = CookieChange::Set(credential.into_string());
        }
        self.data = None;
        self.current = Some(session);
    }

    /// The current session, created (anonymous) if there is none.
    async fn ensure(&mut self) -> Result<&ActiveSession, Error> {
        self.load().await?;
        if self.current.is_none() {
            let request = NewSession::anonymous().client(self.client.clone());
            let session = self.config.manager.create(request).await?;
            self.adopt(session);
        }
        self.current
            .as_ref()
            .ok_or(Error::Session(SessionError::NotAuthenticated))
    }

    /// Why the presented cookie gave no session, when it did not.
    pub async fn rejected(&mut self) -> Result<Option<InvalidReason>, Error> {
        self.load().await?;
        Ok(self.rejected)
    }

    // ----- data -------------------------------------------------------------

    /// The session's data, parsed once per request.
    async fn data(&mut self) -> Result<Option<&Map<String, Value>>, Error> {
        let Some(record) = self.load().await?.cloned() else {
            return Ok(None);
        };
        if self.data.is_none() {
            self.data = Some(record.data.to_map());
        }
        Ok(self.data.as_ref())
    }

    /// The value under `key`, or `None` when absent (or without a session).
    pub async fn get(&mut self, key: &str) -> Result<Option<Value>, Error> {
        Ok(self.data().await?.and_then(|data| data.get(key).cloned()))
    }

    /// Applies a data change to the session (creating one if needed). With
    /// a sign-in pending, the change joins it (one write for both).
    pub async fn change(
        &mut self,
        change: DataChange,
        expected_version: Option<u64>,
    ) -> Result<(), Error> {
        if let Some(pending) = &mut self.pending
            && expected_version.is_none()
        {
            return Ok(pending.change(&change)?);
        }
        self.ensure().await?;
        let current = self.current.as_ref().ok_or(Error::Entropy)?;
        let session = self
            .config
            .manager
            .update(current, change, expected_version, Some(&self.client))
            .await?;
        self.adopt(session);
        Ok(())
    }

    /// Sets `key` to `value`, creating the session if there is none.
    pub async fn insert(&mut self, key: &str, value: Value) -> Result<(), Error> {
        let patch = Value::Object(Map::from_iter([(key.to_owned(), value)]));
        self.change(DataChange::MergePatch(patch), None).await
    }

    /// Removes `key`; returns its former value.
    pub async fn remove(&mut self, key: &str) -> Result<Option<Value>, Error> {
        let Some(old) = self.get(key).await? else {
            return Ok(None);
        };
        let patch = Value::Object(Map::from_iter([(key.to_owned(), Value::Null)]));
        self.change(DataChange::MergePatch(patch), None).await?;
        Ok(Some(old))
    }

    /// Read-modify-write of one key with compare-and-swap: `f` gets the
    /// freshest value and runs again when another request wrote first.
    pub async fn modify(
        &mut self,
        key: &str,
        f: &mut (dyn FnMut(Option<Value>) -> Result<Value, Error> + Send),
    ) -> Result<Value, Error> {
        if let Some(pending) = &mut self.pending {
            let new = f(pending.data().get(key).cloned())?;
            let patch = Value::Object(Map::from_iter([(key.to_owned(), new.clone())]));
            pending.change(&DataChange::MergePatch(patch))?;
            return Ok(new);
        }
        self.ensure().await?;
        let current = self.current.as_ref().ok_or(Error::Entropy)?;
        let mut failure = None;
        let result = self
            .config
            .manager
            .modify(current, None, Some(&self.client), |data| {
                match f(data.get(key).cloned()) {
                    Ok(new) => {
                        data.insert(key.to_owned(), new.clone());
                        Ok(new)
                    }
                    Err(error) => {
                        // Carried out of the manager's closure as a refusal.
                        failure = Some(error);
                        Err(SessionError::NotAuthenticated)
                    }
                }
            })
            .await;
        match (result, failure) {
            (_, Some(error)) => Err(error),
            (Ok((session, new)), None) => {
                self.adopt(session);
                Ok(new)
            }
            (Err(error), None) => Err(error.into()),
        }
    }

    /// Removes every value (the session, its CSRF secret and sign-in stay).
    pub async fn clear(&mut self) -> Result<(), Error> {
        if self.load().await?.is_none() {
            return Ok(());
        }
        self.change(DataChange::Replace(Default::default()), None)
            .await
    }

    // ----- authentication ---------------------------------------------------

    /// Signs `subject` in at `level`: always a new credential and a new
    /// CSRF secret; the anonymous data carries over (never another
    /// subject's).
    ///
    /// The sign-in is written when the request next reads the session, at
    /// the latest as the response leaves ([`flush`](Self::flush)): data
    /// set right after it (the usual `login` then `insert`s) goes out in
    /// the same single write, and no other request can reach the new
    /// session before that write.
    pub async fn login(&mut self, subject: &str, level: AuthLevel) -> Result<(), Error> {
        self.load().await?;
        let login = Login::new(subject).level(level).client(self.client.clone());
        let pending = self
            .config
            .manager
            .begin_login(self.current.as_ref(), login)?;
        self.pending = Some(pending);
        if self.finished {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes a pending sign-in; nothing to do without one. When the write
    /// fails, the session from before stays the request's session.
    pub async fn flush(&mut self) -> Result<(), Error> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let session = self.config.manager.commit_login(pending).await?;
        self.signed_in = true;
        if let Some(dbsc) = &self.config.dbsc {
            // Browsers with DBSC bind the new sign-in; others ignore the header.
            let offer = self
                .config
                .manager
                .offer_device_binding(&session, dbsc.policy())
                .await?;
            self.registration = offer.and_then(|offer| dbsc.registration_header(&offer));
        }
        self.adopt(session);
        Ok(())
    }

    /// Raises the authentication level of a signed-in session (new credential).
    pub async fn step_up(&mut self, level: AuthLevel) -> Result<(), Error> {
        self.load().await?;
        let current = self
            .current
            .as_ref()
            .ok_or(SessionError::NotAuthenticated)?;
        let session = self
            .config
            .manager
            .step_up(current, level, Some(&self.client))
            .await?;
        self.adopt(session);
        Ok(())
    }

    /// Ends the session; the response removes the cookie.
    pub async fn logout(&mut self) -> Result<(), Error> {
        let had_cookie = self.presented_cookies > 0;
        self.load().await?;
        if let Some(current) = self.current.take() {
            self.config.manager.logout(&current).await?;
        }
        self.data = None;
        if had_cookie || self.cookie != CookieChange::Keep {
            self.cookie = CookieChange::Remove;
        }
        Ok(())
    }

    /// A new credential for the same session.
    pub async fn rotate(&mut self) -> Result<(), Error> {
        self.load().await?;
        let Some(current) = &self.current else {
            return Ok(());
        };
        let session = self.config.manager.rotate(current).await?;
        self.adopt(session);
        Ok(())
    }

    // ----- the subject's sessions ---------------------------------------------

    /// Every session of the signed-in subject (sealed mode: only this one).
    pub async fn sessions(&mut self) -> Result<Vec<Arc<SessionRecord>>, Error> {
        self.load().await?;
        match &self.current {
            Some(current) => Ok(self.config.manager.sessions_of(current).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Ends one session of the signed-in subject; ending the current one is a logout.
    pub async fn revoke(&mut self, id: &SessionId) -> Result<bool, Error> {
        self.load().await?;
        let current = self
            .current
            .as_ref()
            .ok_or(SessionError::NotAuthenticated)?;
        if current.record().id == *id {
            self.logout().await?;
            return Ok(true);
        }
        Ok(self.config.manager.revoke_own(current, id).await?)
    }

    /// Ends every other session of the signed-in subject.
    pub async fn revoke_others(&mut self) -> Result<(), Error> {
        self.load().await?;
        let current = self
            .current
            .as_ref()
            .ok_or(SessionError::NotAuthenticated)?;
        let session = self.config.manager.revoke_others(current).await?;
        self.adopt(session);
        Ok(())
    }

    // ----- CSRF -------------------------------------------------------------

    /// A masked CSRF token for this session; a pending sign-in is written
    /// first (its secret is new). Without a session, a stateless token
    /// bound to the pre-session cookie (set by this response when the
    /// request had none): showing a form creates no session. With CSRF off
    /// on the layer, the session is created to hold the secret.
    pub async fn csrf_token(&mut self) -> Result<String, Error> {
        self.load().await?;
        if self.current.is_none()
            && let Some(pre) = &self.config.pre_session_csrf
        {
            let nonce = match self.csrf_nonce.or(self.new_csrf_nonce) {
                Some(nonce) => nonce,
                None => {
                    let nonce = csrf::PreSessionCsrf::new_nonce().map_err(|_| Error::Entropy)?;
                    self.new_csrf_nonce = Some(nonce);
                    nonce
                }
            };
            return csrf::mask(&pre.secret(&nonce)).map_err(|_| Error::Entropy);
        }
        let session = self.ensure().await?;
        csrf::mask(session.record().csrf_secret()).map_err(|_| Error::Entropy)
    }

    /// Checks a presented CSRF token against the session's secret;
    /// `headers` (the request's) explain a missing session.
    pub async fn verify_csrf(
        &mut self,
        presented: &str,
        headers: &(dyn Headers + Sync),
    ) -> Result<(), Error> {
        let mut has_session = false;
        if let Some(record) = self.load().await? {
            if csrf::verify(record.csrf_secret(), presented) {
                return Ok(());
            }
            // Signed in: only the session's own secret counts. A sign-in
            // replaces it, so no token from before the sign-in works after.
            if record.subject.is_some() {
                return Err(csrf::CsrfError::InvalidToken.into());
            }
            has_session = true;
        }
        // No session, or an anonymous one the page's first write created
        // after the page got its tokens (a script reusing one token).
        match (&self.config.pre_session_csrf, &self.csrf_nonce) {
            (Some(pre), Some(nonce)) if csrf::verify(&pre.secret(nonce), presented) => Ok(()),
            _ if has_session || self.csrf_nonce.is_some() => {
                Err(csrf::CsrfError::InvalidToken.into())
            }
            _ => {
                let config = &self.config;
                Err(csrf::no_session(headers, config.secure_cookie, &config.cookie_name).into())
            }
        }
    }

    // ----- the response -------------------------------------------------------

    /// Marks the response as gone (a sign-in from now on, by a task that
    /// outlives the request, is written at once) and says what the
    /// response must carry. Call [`flush`](Self::flush) before.
    pub fn finish(&mut self) -> Result<ResponseChanges, Error> {
        self.finished = true;
        let presented = self.presented_cookies;
        let mut changes = ResponseChanges {
            no_store: self.current.is_some(),
            ..ResponseChanges::default()
        };
        if let Some(registration) = self.registration.take() {
            changes
                .headers
                .push((crate::dbsc::REGISTRATION_HEADER, registration));
        }
        match std::mem::replace(&mut self.cookie, CookieChange::Keep) {
            CookieChange::Keep => {}
            CookieChange::Set(credential) => {
                changes.set_cookies = self.config.cookies.set(&credential, presented)?;
                changes.no_store = true;
                changes.cookie_changed = true;
                // Signed in: pre-session tokens are refused from now on, and
                // their cookie goes.
                if self.signed_in
                    && self.csrf_nonce.is_some()
                    && let Some(pre) = &self.config.pre_session_csrf
                {
                    changes.set_cookies.push(pre.removal());
                }
            }
            CookieChange::Remove => {
                changes.set_cookies = self.config.cookies.remove(presented);
                changes.clear_site_data = true;
                changes.no_store = true;
                changes.cookie_changed = true;
            }
            CookieChange::Clear => {
                changes.set_cookies = self.config.cookies.remove(presented);
                changes.no_store = true;
                changes.cookie_changed = true;
            }
        }
        if let (Some(nonce), Some(pre)) =
            (self.new_csrf_nonce.take(), &self.config.pre_session_csrf)
        {
            changes.set_cookies.push(pre.set_cookie(&nonce)?);
            changes.no_store = true;
            changes.cookie_changed = true;
        }
        if std::mem::take(&mut self.remove_legacy)
            && let Some(reader) = &self.config.import
        {
            changes.set_cookies.push(crate::import::removal(&**reader));
            changes.cookie_changed = true;
        }
        Ok(changes)
    }
}

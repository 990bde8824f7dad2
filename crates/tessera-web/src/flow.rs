//! One request through a session layer, step by step, as every framework
//! middleware drives it: [`RequestFlow::start`] (cookie, client, guessing
//! check), [`RequestFlow::csrf`] (which token to check, if any),
//! [`RequestFlow::verify_csrf`], then [`RequestFlow::finish`] with the
//! headers the response must carry ([`HeaderChange`]). The middleware only
//! moves bytes between its framework's types and these steps.

use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::SessionManager;
use tokio::sync::Mutex;

use crate::Headers;
use crate::config::{ExemptCheck, WebConfig};
use crate::error::Error;
use crate::handle::SessionHandle;
use crate::request::{RequestSession, ResponseChanges};

/// Where an unsafe request's CSRF token is, as far as the headers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrfStep {
    /// No check: a safe method, CSRF off, or an exempt route.
    NotNeeded,
    /// The token from the header (the request is not cross-site).
    Token(String),
    /// No header token, but the body is an urlencoded form: read it (up
    /// to [`WebConfig::max_form_bytes`]) and pass it to
    /// [`RequestFlow::token_from_form`].
    ReadForm,
    /// No token anywhere the request may carry one.
    Missing,
}

/// A header the response must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Add a value (kept beside others of the same name: `Set-Cookie`).
    Append(&'static str, String),
    /// Set the header to this value, replacing any other.
    Insert(&'static str, String),
}

/// What the response becomes once the session is written.
#[derive(Debug)]
pub struct Finished {
    /// The handler's response must be replaced by this error's (a sign-in
    /// or a cookie could not be written).
    pub error: Option<Error>,
    /// The session's changes to the response (apply them also to the
    /// error's response).
    pub changes: ResponseChanges,
}

/// What a redirect to the sign-in page looks at of a request.
struct Visit {
    method: String,
    target: String,
    headers: Box<dyn Headers + Send + Sync>,
}

/// One request's session from the middleware's side.
pub struct RequestFlow {
    config: Arc<WebConfig>,
    state: Arc<Mutex<RequestSession>>,
    visit: Option<Visit>,
}

impl std::fmt::Debug for RequestFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestFlow")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl RequestFlow {
    /// Reads the session cookie of a request from `peer` (the connection's
    /// address, when known). Refused with [`Error::Guessing`] when the
    /// request carries a session cookie and the manager flags its client
    /// as guessing tokens.
    pub fn start(
        config: &Arc<WebConfig>,
        headers: &dyn Headers,
        peer: Option<IpAddr>,
    ) -> Result<Self, Error> {
        let presented = config.cookies().read(headers);
        let client = config.client_info(headers, peer);
        if config.rejects_guessing()
            && presented.cookie_count() > 0
            && client.ip.is_some_and(|ip| config.manager().is_guessing(ip))
        {
            return Err(Error::Guessing);
        }
        let mut state = RequestSession::new(config.clone(), presented, client);
        if let Some(pre) = config.pre_session_csrf() {
            state.set_csrf_nonce(pre.read_nonce(headers));
        }
        if let Some(dbsc) = config.dbsc() {
            crate::dbsc::report_skipped(config.manager(), headers);
            state.set_bound_cookie(dbsc.bound_cookie(headers));
        }
        if let Some(reader) = &config.import
            && let Some(value) = crate::cookies::cookie_value(headers, reader.cookie_name())
        {
            state.present_legacy(value);
        }
        Ok(Self {
            config: config.clone(),
            state: Arc::new(Mutex::new(state)),
            visit: None,
        })
    }

    /// Keeps what a redirect to the sign-in page needs of the request
    /// (`target`: its path and query; `headers`: an owned copy of its
    /// headers, asked for only when a sign-in page is set).
    pub fn keep_visit<H: Headers + Send + Sync + 'static>(
        &mut self,
        method: &str,
        target: &str,
        headers: impl FnOnce() -> H,
    ) {
        if self.config.has_sign_in_page() {
            self.visit = Some(Visit {
                method: method.to_owned(),
                target: target.to_owned(),
                headers: Box::new(headers()),
            });
        }
    }

    /// Where a response that failed with `error_code` goes instead, when
    /// it is a signed-out visit of a page and a sign-in page is set
    /// ([`WebConfig::sign_in_redirect`]): the `Location` of a `303 See Other`.
    pub fn sign_in_redirect(&self, error_code: &str) -> Option<String> {
        let visit = self.visit.as_ref()?;
        self.config
            .sign_in_redirect(&visit.method, &visit.target, &*visit.headers, error_code)
    }

    /// The answer of a device-bound-session endpoint (registration or
    /// refresh, see [`crate::dbsc`]), when the request is for one and
    /// device binding is on; the middleware sends it instead of calling
    /// the app, then [`finish`](Self::finish)es as for any response.
    pub async fn dbsc_endpoint(
        &self,
        method: &str,
        path: &str,
        headers: &(dyn Headers + Sync),
    ) -> Option<crate::dbsc::DbscAnswer> {
        let dbsc = self.config.dbsc()?;
        if method != "POST" {
            return None;
        }
        if path == dbsc.refresh_path() {
            return Some(crate::dbsc::refresh(dbsc, self.manager(), headers).await);
        }
        if path == dbsc.register_path() {
            let mut state = self.state.lock().await;
            return Some(crate::dbsc::register(dbsc, &mut state, headers).await);
        }
        None
    }

    /// The handle the framework's `Session` extractor wraps.
    pub fn handle<E: From<Error>>(&self) -> SessionHandle<E> {
        SessionHandle::new(self.state.clone(), self.manager().clone())
    }

    /// The manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        self.config.manager()
    }

    /// The layer's settings.
    pub fn config(&self) -> &Arc<WebConfig> {
        &self.config
    }

    /// What the CSRF check needs of this request (`method` upper case,
    /// `path` without the query). A cross-site request is refused here.
    pub fn csrf(&self, method: &str, path: &str, headers: &dyn Headers) -> Result<CsrfStep, Error> {
        let check = ExemptCheck {
            method,
            path,
            headers,
        };
        if !self.config.csrf_applies(&check) {
            return Ok(CsrfStep::NotNeeded);
        }
        Ok(match self.config.csrf_token_from_headers(headers)? {
            Some(token) => CsrfStep::Token(token),
            None if self.config.wants_form_body(headers) => CsrfStep::ReadForm,
            None => CsrfStep::Missing,
        })
    }

    /// The CSRF token of an urlencoded form body, or [`CsrfStep::Missing`].
    pub fn token_from_form(&self, body: &[u8]) -> CsrfStep {
        match self.config.csrf_token_from_form(body) {
            Some(token) => CsrfStep::Token(token),
            None => CsrfStep::Missing,
        }
    }

    /// Checks the token `step` found against the session's secret
    /// (`NotNeeded` passes; `Missing` and `ReadForm` fail as missing);
    /// `headers` are the request's (to explain a refusal).
    pub async fn verify_csrf(
        &self,
        step: CsrfStep,
        headers: &(dyn Headers + Sync),
    ) -> Result<(), Error> {
        match step {
            CsrfStep::NotNeeded => Ok(()),
            CsrfStep::Token(token) => self.state.lock().await.verify_csrf(&token, headers).await,
            CsrfStep::ReadForm | CsrfStep::Missing => Err(self.config.missing_csrf_token().into()),
        }
    }

    /// Writes what the handler left pending (a sign-in) and says what the
    /// response must carry. Should the sign-in fail, its error replaces the
    /// response, and a cookie change made before it (a renewed token) still
    /// goes out with it.
    pub async fn finish(&self) -> Finished {
        let mut state = self.state.lock().await;
        let error = state.flush().await.err();
        match state.finish() {
            Ok(changes) => Finished { error, changes },
            Err(error) => Finished {
                error: Some(error),
                changes: ResponseChanges::default(),
            },
        }
    }
}

impl ResponseChanges {
    /// The headers to add to a response that has a `Cache-Control` header
    /// of its own when `has_cache_control`.
    pub fn header_changes(&self, has_cache_control: bool) -> Vec<HeaderChange> {
        let mut changes: Vec<HeaderChange> = self
            .set_cookies
            .iter()
            .map(|value| HeaderChange::Append("set-cookie", value.clone()))
            .collect();
        for (name, value) in &self.headers {
            changes.push(HeaderChange::Insert(name, value.clone()));
        }
        if self.clear_site_data {
            changes.push(HeaderChange::Insert(
                "clear-site-data",
                "\"cookies\"".to_owned(),
            ));
        }
        if self.cookie_changed || (self.no_store && !has_cache_control) {
            changes.push(HeaderChange::Insert("cache-control", "no-store".to_owned()));
        }
        changes
    }
}

impl Error {
    /// The headers of this error's response (its body is
    /// [`public_message`](Self::public_message) and a newline):
    /// plain text, `Cache-Control: no-store` and `Tessera-Error` with the code.
    pub fn response_headers(&self) -> [(&'static str, &'static str); 3] {
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("cache-control", "no-store"),
            ("tessera-error", self.code()),
        ]
    }

    /// The body of this error's response.
    pub fn response_body(&self) -> String {
        format!("{}\n", self.public_message())
    }
}

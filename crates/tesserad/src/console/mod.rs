//! The admin console at `/admin` (`docs/console.md`): server-rendered pages
//! for operators, behind an API key with the `admin` scope. Signing in
//! opens a console session in a `__Host-` cookie, kept by Tessera's own
//! axum layer (`crates/tessera-axum`) with its CSRF protection, in a
//! memory store of its own (so console sessions never mix with the
//! sessions the server keeps for applications).

pub mod agent;
pub mod audit;
pub mod chart;
pub mod history;
mod pages;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tessera::axum::{LayerConfigError, SameSite, Session, SessionLayer};
use tessera::events::EventSink;
use tessera::store::Maintenance;
use tessera::{BindingPolicy, ConfigError, MemoryStore, SessionId, SessionManager};

use self::history::{Counters, History};
use crate::api::AppState;
use crate::keys::{KeyIdentity, Scope};

/// The console session's cookie.
pub const CONSOLE_COOKIE: &str = "__Host-tessera-console";

/// A console session ends after this long without use.
pub const CONSOLE_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A console session ends this long after sign-in, however active.
pub const CONSOLE_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// What global revocation must be confirmed with, typed exactly.
pub const REVOKE_EVERYTHING_PHRASE: &str = "revoke every session";

/// Sessions listed per page.
const PAGE_SIZE: usize = 25;

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console's own session settings are inconsistent.
    #[error("cannot set up the admin console's sessions: {0}")]
    Config(#[from] ConfigError),
    /// The console's session layer refused its settings.
    #[error("cannot set up the admin console's cookie: {0}")]
    Layer(#[from] LayerConfigError),
}

/// The console: its own session manager and layer, the activity history and
/// the event sink its actions are reported to.
pub struct Console {
    layer: SessionLayer,
    events: Arc<dyn EventSink>,
    history: Arc<History>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// A console reporting its actions to `events`, its history counted
    /// from `started`.
    pub fn new(events: Arc<dyn EventSink>, started: Instant) -> Result<Self, ConsoleError> {
        let manager = SessionManager::builder(MemoryStore::new())
            .idle_timeout(CONSOLE_IDLE_TIMEOUT)
            .absolute_timeout(CONSOLE_ABSOLUTE_TIMEOUT)
            .binding(BindingPolicy::Reject)
            .build()?;
        let layer = SessionLayer::builder(manager)
            .cookie_name(CONSOLE_COOKIE)
            .same_site(SameSite::Strict)
            .build()?;
        Ok(Self {
            layer,
            events,
            history: Arc::new(History::new(started)),
        })
    }

    /// Starts sampling `state`'s metrics for the charts.
    pub fn spawn_sampler(&self, state: &AppState) -> tokio::task::JoinHandle<()> {
        self.history.spawn_sampler(state.metrics.clone())
    }
}

#[derive(Clone)]
struct ConsoleState {
    app: AppState,
    console: Arc<Console>,
}

/// The console's routes, to be nested at `/admin`.
pub fn router<S: Clone + Send + Sync + 'static>(app: AppState, console: Arc<Console>) -> Router<S> {
    let layer = console.layer.clone();
    Router::new()
        .route("/", get(overview))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/users", get(find_user))
        .route("/sessions", get(everything))
        .route("/audit", get(audit_page))
        .route("/confirm", get(confirm_page))
        .route("/actions", post(act))
        .with_state(ConsoleState { app, console })
        .layer(layer)
}

type Page = Result<Response, Response>;

fn html(markup: maud::Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    response
}

fn failure(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "admin console request failed");
    let page = pages::message(
        "Unavailable",
        "The store did not answer; nothing was changed. Try again.",
    );
    let mut response = html(page);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// The client address (the TCP peer).
struct PeerIp(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// The signed-in operator: the key of the console session, if it still
/// exists and still has the `admin` scope.
struct Operator {
    key: KeyIdentity,
    csrf_token: String,
    /// The outcome of the action just done, shown once.
    flash: Option<String>,
}

const SUBJECT_PREFIX: &str = "api-key:";

/// The session key of the outcome shown once on the next page.
const FLASH: &str = "flash";

async fn operator(state: &ConsoleState, session: &Session) -> Result<Operator, Response> {
    let subject = session
        .subject()
        .await
        .map_err(IntoResponse::into_response)?;
    let key = subject
        .as_deref()
        .and_then(|s| s.strip_prefix(SUBJECT_PREFIX))
        .and_then(|id| state.app.keys.identity_by_id(id))
        .filter(|key| key.scopes.contains(Scope::Admin));
    match key {
        Some(key) => Ok(Operator {
            key,
            csrf_token: session
                .csrf_token()
                .await
                .map_err(IntoResponse::into_response)?,
            flash: session
                .remove::<String>(FLASH)
                .await
                .map_err(IntoResponse::into_response)?,
        }),
        None => {
            if subject.is_some() {
                // The key was revoked or lost its scope: the session ends.
                let _ = session.logout().await;
            }
            Err(Redirect::to("/admin/sign-in").into_response())
        }
    }
}

async fn audit(state: &ConsoleState, operator: &Operator, ip: Option<IpAddr>, action: String) {
    if let Err(error) = audit::record(
        &state.app.manager,
        state.console.events.as_ref(),
        &operator.key.id,
        action,
        ip.map(|ip| ip.to_string()),
    )
    .await
    {
        tracing::error!(%error, "cannot keep an admin console action in the journal");
    }
}

async fn overview(State(state): State<ConsoleState>, session: Session) -> Page {
    let operator = operator(&state, &session).await?;
    let now = Instant::now();
    let current = Counters::read(&state.app.metrics);
    state.console.history.observe(current, now);
    let minutes = state.console.history.minutes(current, now);
    let store_ok = state.app.manager.store().ping().await;
    Ok(html(pages::overview(&pages::Overview {
        operator: &operator.key.id,
        csrf_token: &operator.csrf_token,
        minutes: &minutes,
        held: current.held,
        store: &state.app.store_description,
        store_error: store_ok.err().map(|e| e.to_string()),
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.app.started.elapsed(),
    })))
}

async fn sign_in_page(session: Session) -> Page {
    let token = session
        .csrf_token()
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(html(pages::sign_in(&token, None)))
}

#[derive(Deserialize)]
struct SignInForm {
    key: String,
}

async fn sign_in(
    State(state): State<ConsoleState>,
    PeerIp(ip): PeerIp,
    session: Session,
    Form(form): Form<SignInForm>,
) -> Page {
    let now = Instant::now();
    if let Some(wait) = ip.and_then(|ip| state.app.auth_throttle.blocked(ip, now)) {
        let message = format!(
            "Too many failed attempts from this address; try again in {} s.",
            wait.as_secs().max(1)
        );
        return Err(refuse(&session, StatusCode::TOO_MANY_REQUESTS, &message).await);
    }
    let Some(key) = state.app.keys.identify(form.key.trim()) else {
        if let Some(ip) = ip {
            state.app.auth_throttle.record_failure(ip, now);
        }
        tracing::info!(client = ?ip, "admin console: refused a sign-in with an unknown key");
        return Err(refuse(
            &session,
            StatusCode::UNAUTHORIZED,
            "That is not an API key of this server.",
        )
        .await);
    };
    if !key.scopes.contains(Scope::Admin) {
        tracing::info!(key_id = %key.id, "admin console: refused a key without the admin scope");
        return Err(refuse(
            &session,
            StatusCode::FORBIDDEN,
            "This key does not have the admin scope (see `tesserad keys list`).",
        )
        .await);
    }
    // A new token at sign-in (no fixation), as for any login.
    session
        .login(&format!("{SUBJECT_PREFIX}{}", key.id), 1)
        .await
        .map_err(IntoResponse::into_response)?;
    let operator = Operator {
        key,
        csrf_token: String::new(),
        flash: None,
    };
    audit(&state, &operator, ip, "signed in to the console".to_owned()).await;
    Ok(Redirect::to("/admin").into_response())
}

/// The sign-in form again, with why the last attempt failed.
async fn refuse(session: &Session, status: StatusCode, message: &str) -> Response {
    let token = session.csrf_token().await.unwrap_or_default();
    let mut response = html(pages::sign_in(&token, Some(message)));
    *response.status_mut() = status;
    response
}

async fn sign_out(State(state): State<ConsoleState>, PeerIp(ip): PeerIp, session: Session) -> Page {
    if let Ok(operator) = operator(&state, &session).await {
        audit(&state, &operator, ip, "signed out".to_owned()).await;
    }
    session
        .logout()
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Redirect::to("/admin/sign-in").into_response())
}

#[derive(Deserialize)]
struct FindQuery {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

async fn find_user(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<FindQuery>,
) -> Page {
    let operator = operator(&state, &session).await?;
    let subject = query.subject.filter(|s| !s.is_empty());
    let page = match &subject {
        Some(subject) => Some(
            state
                .app
                .manager
                .list_subject_page(
                    subject,
                    query.cursor.as_deref().filter(|c| !c.is_empty()),
                    PAGE_SIZE,
                )
                .await
                .map_err(failure)?,
        ),
        None => None,
    };
    // Whether each listed session is bound to a device (DBSC): one
    // attachment read per session of the page.
    let mut device_bound = Vec::new();
    for session in page.iter().flat_map(|p| p.items.iter()) {
        let bound = state.app.manager.is_device_bound(&session.id).await;
        device_bound.push(bound.map_err(failure)?);
    }
    Ok(html(pages::find_user(&pages::FindUser {
        operator: &operator.key.id,
        csrf_token: &operator.csrf_token,
        subject: subject.as_deref(),
        sessions: page.as_ref().map(|p| p.items.as_slice()),
        device_bound: &device_bound,
        next: page.as_ref().and_then(|p| p.next.as_deref()),
        done: operator.flash.as_deref(),
    })))
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
}

async fn everything(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Page {
    let operator = operator(&state, &session).await?;
    everything_page(&state, &operator, query, None).await
}

async fn everything_page(
    state: &ConsoleState,
    operator: &Operator,
    query: PageQuery,
    error: Option<&str>,
) -> Page {
    let manager = &state.app.manager;
    let mut page = manager
        .store()
        .export_page(
            query.cursor.as_deref().filter(|c| !c.is_empty()),
            PAGE_SIZE,
            manager.now(),
        )
        .await
        .map_err(failure)?;
    // The store lists records a revocation epoch has ended but a sweep
    // has not removed yet: show only the sessions the manager still accepts.
    let mut live = Vec::with_capacity(page.items.len());
    for record in page.items {
        if let Some(session) = manager.get(&record.id).await.map_err(failure)? {
            live.push(session.as_ref().clone());
        }
    }
    live.sort_by_key(|session| std::cmp::Reverse(session.last_seen_at));
    page.items = live;
    let mut response = html(pages::everything(&pages::Everything {
        operator: &operator.key.id,
        csrf_token: &operator.csrf_token,
        sessions: &page.items,
        next: page.next.as_deref(),
        done: operator.flash.as_deref(),
        error,
    }));
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

async fn audit_page(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<PageQuery>,
) -> Page {
    let operator = operator(&state, &session).await?;
    let page = audit::page(
        &state.app.manager,
        query.cursor.as_deref().filter(|c| !c.is_empty()),
        50,
    )
    .await
    .map_err(failure)?;
    Ok(html(pages::audit(&pages::Audit {
        operator: &operator.key.id,
        csrf_token: &operator.csrf_token,
        entries: &page.items,
        next: page.next.as_deref(),
    })))
}

/// An action on sessions, confirmed on a page of its own before it is done.
#[derive(Debug, Clone, Deserialize)]
struct ActionForm {
    action: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    confirmation: Option<String>,
}

/// The revocation an [`ActionForm`] asks for, checked.
enum Revocation {
    Session { subject: String, id: SessionId },
    Subject { subject: String },
    AllBut { subject: String, keep: SessionId },
    Everything,
}

impl Revocation {
    fn parse(form: &ActionForm) -> Option<Revocation> {
        let subject = || form.subject.clone().filter(|s| !s.is_empty());
        let id = || form.id.as_deref().and_then(|id| SessionId::parse(id).ok());
        Some(match form.action.as_str() {
            "revoke-session" => Revocation::Session {
                subject: subject()?,
                id: id()?,
            },
            "revoke-subject" => Revocation::Subject {
                subject: subject()?,
            },
            "revoke-all-but" => Revocation::AllBut {
                subject: subject()?,
                keep: id()?,
            },
            "revoke-everything" => Revocation::Everything,
            _ => return None,
        })
    }

    fn describe(&self) -> String {
        match self {
            Revocation::Session { subject, id } => {
                format!("revoke session {id} of {subject:?}")
            }
            Revocation::Subject { subject } => format!("revoke every session of {subject:?}"),
            Revocation::AllBut { subject, keep } => {
                format!("revoke every session of {subject:?} except {keep}")
            }
            Revocation::Everything => "revoke every session of every user".to_owned(),
        }
    }
}

fn bad_request(message: &str) -> Response {
    let mut response = html(pages::message("Not understood", message));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

async fn confirm_page(
    State(state): State<ConsoleState>,
    session: Session,
    Query(form): Query<ActionForm>,
) -> Page {
    let operator = operator(&state, &session).await?;
    let action = Revocation::parse(&form).ok_or_else(|| bad_request("Unknown action."))?;
    if matches!(action, Revocation::Everything) {
        return Ok(Redirect::to("/admin/sessions").into_response());
    }
    Ok(html(pages::confirm(&pages::Confirm {
        operator: &operator.key.id,
        csrf_token: &operator.csrf_token,
        description: &action.describe(),
        action: &form.action,
        subject: form.subject.as_deref(),
        id: form.id.as_deref(),
    })))
}

async fn act(
    State(state): State<ConsoleState>,
    PeerIp(ip): PeerIp,
    session: Session,
    Form(form): Form<ActionForm>,
) -> Page {
    let operator = operator(&state, &session).await?;
    let action = Revocation::parse(&form).ok_or_else(|| bad_request("Unknown action."))?;
    let manager = &state.app.manager;
    let (outcome, back) = match &action {
        Revocation::Session { subject, id } => {
            let revoked = manager.revoke(id).await.map_err(failure)?;
            let outcome = if revoked {
                format!("revoked session {id}")
            } else {
                format!("session {id} had already ended")
            };
            (outcome, Some(subject.clone()))
        }
        Revocation::Subject { subject } => {
            let count = manager
                .revoke_subject(subject, None)
                .await
                .map_err(failure)?;
            (
                format!("revoked {count} session(s) of {subject:?}"),
                Some(subject.clone()),
            )
        }
        Revocation::AllBut { subject, keep } => {
            let count = manager
                .revoke_subject(subject, Some(keep))
                .await
                .map_err(failure)?;
            (
                format!("revoked {count} session(s) of {subject:?}, kept {keep}"),
                Some(subject.clone()),
            )
        }
        Revocation::Everything => {
            if form.confirmation.as_deref().map(str::trim) != Some(REVOKE_EVERYTHING_PHRASE) {
                let message = format!(
                    "Nothing was revoked: type \u{201c}{REVOKE_EVERYTHING_PHRASE}\u{201d} exactly to confirm."
                );
                let query = PageQuery { cursor: None };
                return Err(everything_page(&state, &operator, query, Some(&message))
                    .await
                    .unwrap_or_else(|response| response));
            }
            let epoch = manager.revoke_everything().await.map_err(failure)?;
            tracing::warn!(epoch, key_id = %operator.key.id, "every session was revoked from the admin console");
            ("revoked every session of every user".to_owned(), None)
        }
    };
    audit(&state, &operator, ip, outcome.clone()).await;
    session
        .insert(FLASH, &outcome)
        .await
        .map_err(IntoResponse::into_response)?;
    let location = match back {
        Some(subject) => format!("/admin/users?subject={}", encode(&subject)),
        None => "/admin/sessions".to_owned(),
    };
    Ok(Redirect::to(&location).into_response())
}

/// Percent-encodes a query string value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

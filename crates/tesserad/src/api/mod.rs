//! The HTTP API (`docs/http-api.md`): routes, the API-key check, request
//! accounting and the OpenAPI document generated from the handlers.

pub mod error;
pub mod extract;
pub mod model;

mod admin;
mod auth;
pub mod dbsc;
mod forward_auth;
mod ops;
mod sessions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tessera::SessionManager;
use tessera_web::TrustedProxies;
use tessera_web::cookies::{CookieAttributes, SingleCookie};
use tessera_web::dbsc::DbscSettings;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::auth::AuthThrottle;
use self::error::{ApiError, ErrorCode};
use crate::keys::ApiKeys;
use crate::metrics::{Metrics, Operation};

/// The router's state: one reference count per request, however many
/// handlers and middleware read it.
pub(crate) type SharedState = Arc<RouterState>;

/// What the router holds: the application state, the limits and the
/// serialised OpenAPI document.
pub(crate) struct RouterState {
    app: AppState,
    request_timeout: Duration,
    openapi: Arc<str>,
}

impl std::ops::Deref for RouterState {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.app
    }
}

/// The default cookie forward-auth reads.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-tessera";

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The session engine (all policy).
    pub manager: SessionManager,
    /// The accepted API keys.
    pub keys: Arc<ApiKeys>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The session cookie forward-auth reads and renews.
    pub cookie_name: Arc<str>,
    /// How forward-auth reads and writes that cookie: as the session layer does.
    pub cookies: Arc<SingleCookie>,
    /// The store URL, without secrets (for stats).
    pub store_description: Arc<str>,
    /// The proxies whose `X-Forwarded-For` and `X-Real-IP` forward-auth believes.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// When the server started.
    pub started: Instant,
    /// Failed API key checks per client IP.
    pub auth_throttle: Arc<AuthThrottle>,
    /// The admin console at `/admin`, when enabled.
    pub console: Option<Arc<crate::console::Console>>,
    /// Device-bound sessions (DBSC) for forward-auth, when enabled.
    pub dbsc: Option<Arc<DbscSettings>>,
}

/// Failed API key checks a client may make per [`AUTH_FAILURE_WINDOW`] by default.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 20;

/// The window in which failed API key checks are counted.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl AppState {
    /// The state of a server over `manager` accepting `keys`, with fresh
    /// metrics, the default cookie and no store description.
    pub fn new(manager: SessionManager, keys: Arc<ApiKeys>) -> Self {
        Self {
            manager,
            keys,
            metrics: Arc::new(Metrics::new(None)),
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            cookies: Arc::new(cookie_controller(DEFAULT_COOKIE_NAME)),
            store_description: "".into(),
            trusted_proxies: Arc::new(TrustedProxies::default()),
            started: Instant::now(),
            auth_throttle: Arc::new(AuthThrottle::new(
                std::num::NonZeroU32::new(DEFAULT_MAX_AUTH_FAILURES)
                    .unwrap_or(std::num::NonZeroU32::MIN),
                AUTH_FAILURE_WINDOW,
            )),
            console: None,
            dbsc: None,
        }
    }

    /// Serves device-bound sessions (`docs/dbsc.md`): the endpoints under
    /// `/v1/dbsc/`, the registration offer and the bound-cookie check of
    /// `/v1/auth` (see [`dbsc::settings`]).
    pub fn device_binding(mut self, settings: DbscSettings) -> Self {
        self.dbsc = Some(Arc::new(settings));
        self
    }

    /// Serves the admin console at `/admin`.
    pub fn console(mut self, console: Arc<crate::console::Console>) -> Self {
        self.console = Some(console);
        self
    }

    /// Allows `max_failures` failed API key checks per client IP per minute.
    pub fn max_auth_failures(mut self, max_failures: std::num::NonZeroU32) -> Self {
        self.auth_throttle = Arc::new(AuthThrottle::new(max_failures, AUTH_FAILURE_WINDOW));
        self
    }

    /// Records into `metrics`.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Forward-auth reads and renews the cookie `name`.
    pub fn cookie_name(mut self, name: &str) -> Self {
        self.cookie_name = name.into();
        self.cookies = Arc::new(cookie_controller(name));
        self
    }

    /// Forward-auth believes client addresses forwarded by these proxies only.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Describes the store in stats (without secrets).
    pub fn store_description(mut self, description: impl Into<Arc<str>>) -> Self {
        self.store_description = description.into();
        self
    }
}

/// The cookie forward-auth reads and writes: the session layer's
/// attributes (`Secure`, `HttpOnly`, `SameSite=Lax`, `Path=/`).
fn cookie_controller(name: &str) -> SingleCookie {
    SingleCookie::new(CookieAttributes {
        name: name.to_owned(),
        ..CookieAttributes::default()
    })
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cookie_name", &self.cookie_name)
            .field("store", &self.store_description)
            .finish_non_exhaustive()
    }
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take before it is answered `503`.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // Session data is capped at 64 KiB of compact JSON by the engine;
            // the body may carry it escaped or pretty-printed.
            max_body_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tesserad",
        description = "Tessera's session server: create, validate, update, rotate and end web sessions over HTTP. Every `/v1` call except `GET /v1/auth` needs `Authorization: Bearer <api key>` with the scope the call names (`validate`, `sessions` or `admin`): a key without it gets `403 forbidden`; a client address with too many failed key checks gets `429 rate_limited`. Tokens travel only in bodies (or, for forward-auth, the cookie), never in URLs."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "sessions", description = "Session lifecycle"),
        (name = "admin", description = "Listing and revoking sessions"),
        (name = "forward-auth", description = "For reverse proxies (nginx `auth_request`), and the device-bound session endpoints the proxy routes to tesserad"),
        (name = "operations", description = "Health, metrics and this document")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`tesserad keys create`)"))
                    .build(),
            ),
        );
    }
}

/// The `/v1` routes that need an API key.
fn keyed_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sessions::create))
        .routes(routes!(sessions::validate))
        .routes(routes!(sessions::update))
        .routes(routes!(sessions::login))
        .routes(routes!(sessions::rotate))
        .routes(routes!(sessions::logout))
        .routes(routes!(admin::get_session, admin::revoke_session))
        .routes(routes!(
            admin::list_subject_sessions,
            admin::revoke_subject_sessions
        ))
        .routes(routes!(admin::revoke_all))
        .routes(routes!(admin::stats))
}

/// Forward-auth and the operational endpoints: no API key.
fn open_routes() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(forward_auth::forward_auth))
        .routes(routes!(dbsc::register))
        .routes(routes!(dbsc::refresh))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
}

/// The OpenAPI 3.1 document of the API, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = keyed_routes().merge(open_routes()).into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The whole application: every route, the limits, accounting and tracing.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    let (keyed, _) = keyed_routes().split_for_parts();
    let (open, _) = open_routes().split_for_parts();
    let document: Arc<str> = match serde_json::to_string(&openapi()) {
        Ok(text) => text.into(),
        Err(error) => {
            tracing::error!(%error, "cannot serialise the OpenAPI document");
            "{}".into()
        }
    };
    let shared: SharedState = Arc::new(RouterState {
        app: state,
        request_timeout: limits.request_timeout,
        openapi: document,
    });
    let console = shared
        .console
        .clone()
        .map(|console| crate::console::router(shared.app.clone(), console));
    let mut app = keyed
        .route_layer(from_fn_with_state(shared.clone(), auth::require_api_key))
        .merge(open);
    if let Some(console) = console {
        app = app.nest("/admin", console);
    }
    app.fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(shared.clone(), account))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(shared)
}

/// Answers every request within `--request-timeout` (a store that hangs
/// fails closed, with `503 store_unavailable`), and counts and times each
/// API operation by outcome.
async fn account(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let operation = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| operation_of(request.method(), path.as_str()));
    let started = Instant::now();
    let limit = state.request_timeout;
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(?limit, "request timed out waiting for the store");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                format!(
                    "the request took longer than {limit:?}; the store may be overloaded or down"
                ),
            )
            .into_response()
        }
    };
    if let Some(operation) = operation {
        let outcome = match response.extensions().get::<ErrorCode>().copied() {
            Some(code) => Some(code),
            None if response.status().is_success() => None,
            None => Some(ErrorCode::InvalidRequest),
        };
        state
            .metrics
            .record_operation(operation, outcome, started.elapsed());
    }
    response
}

pub(crate) fn operation_of(method: &Method, path: &str) -> Option<Operation> {
    let operation = match (method.as_str(), path) {
        ("POST", "/v1/sessions") => Operation::Create,
        ("POST", "/v1/sessions/validate") => Operation::Validate,
        ("POST", "/v1/sessions/update") => Operation::Update,
        ("POST", "/v1/sessions/login") => Operation::Login,
        ("POST", "/v1/sessions/rotate") => Operation::Rotate,
        ("POST", "/v1/sessions/logout") => Operation::Logout,
        ("GET", "/v1/sessions/{id}") => Operation::Get,
        ("DELETE", "/v1/sessions/{id}") => Operation::Revoke,
        ("GET", "/v1/subjects/{subject}/sessions") => Operation::ListSubject,
        ("DELETE", "/v1/subjects/{subject}/sessions") => Operation::RevokeSubject,
        ("POST", "/v1/admin/revoke-all") => Operation::RevokeAll,
        ("GET", "/v1/auth") => Operation::ForwardAuth,
        ("GET", "/v1/stats") => Operation::Stats,
        _ => return None,
    };
    Some(operation)
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

async fn method_not_allowed(method: Method) -> Response {
    let mut response = ApiError::invalid_request(format!(
        "method {method} is not allowed on this route; see /openapi.json"
    ))
    .into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

//! Device-bound sessions (DBSC, `docs/dbsc.md`) for forward-auth
//! deployments: the registration and refresh endpoints the browser reaches
//! through the reverse proxy, and the check `/v1/auth` makes of a bound
//! session. The protocol is tessera-web's ([`tessera_web::dbsc`]); the
//! rules are the manager's; this file only translates.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera::device::DeviceStatus;
use tessera::{ActiveSession, ClientInfo, SessionError};
use tessera_web::cookies::{CookieController, Presented};
use tessera_web::dbsc::{self, DbscAnswer, DbscSettings};
use utoipa::ToSchema;

use super::SharedState;
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::forward_auth::client_of;
use crate::metrics::DbscEndpoint;

/// The path of the registration endpoint.
pub const REGISTER_PATH: &str = "/v1/dbsc/register";
/// The path of the refresh endpoint.
pub const REFRESH_PATH: &str = "/v1/dbsc/refresh";

/// The header carrying the registration offer, for nginx to pass on.
pub const REGISTRATION_HEADER: HeaderName = HeaderName::from_static(dbsc::REGISTRATION_HEADER);

/// Device-bound sessions as tesserad serves them: the endpoints under
/// `/v1/dbsc/`, the default bound cookie (`__Host-tessera-bound`,
/// `Path=/; Secure; HttpOnly; SameSite=Lax`), cookies living as `policy` says.
pub fn settings(policy: tessera::device::DeviceBindingPolicy) -> DbscSettings {
    DbscSettings::new(policy).paths(REGISTER_PATH, REFRESH_PATH)
}

/// The session instructions of a registration or refresh (draft `dbsc`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct SessionInstructions {
    /// The DBSC session identifier (the public session id); the browser
    /// sends it back in `Sec-Secure-Session-Id`.
    session_identifier: String,
    /// Where the browser refreshes: `/v1/dbsc/refresh`.
    refresh_url: String,
    /// `{"include_site": false, "scope_specification": []}`: the origin.
    #[schema(value_type = Object)]
    scope: serde_json::Value,
    /// The bound cookie: `[{"type": "cookie", "name", "attributes"}]`.
    #[schema(value_type = Vec<Object>)]
    credentials: Vec<serde_json::Value>,
}

/// Binds the session of the request's cookie to the device key in the
/// proof. Reached by the browser through the proxy, after `/v1/auth` (or
/// this server's login flow) offered registration with
/// `Secure-Session-Registration`. `200` with the session instructions and
/// the first bound cookie; a `4xx` with `{"continue": false}` ends the
/// browser's attempt; `503` when the store fails.
#[utoipa::path(
    post,
    path = "/v1/dbsc/register",
    operation_id = "dbsc_register",
    tag = "forward-auth",
    params(
        ("Cookie" = String, Header, description = "The browser's cookies, with the session cookie"),
        ("Secure-Session-Response" = String, Header, description = "The browser's proof: a `dbsc+jwt` signed by the device key (ES256 or RS256), with the public key as `jwk` and the offered challenge as `jti`; as a structured-field string or bare"),
        ("User-Agent" = Option<String>, Header, description = "The browser's User-Agent (for client binding)"),
        ("X-Forwarded-For" = Option<String>, Header, description = "Believed only from a trusted proxy, as for `/v1/auth`"),
        ("X-Real-IP" = Option<String>, Header, description = "Believed only from a trusted proxy, as for `/v1/auth`")
    ),
    responses(
        (status = 200, description = "The session is bound to the device", body = SessionInstructions,
            headers(
                ("Set-Cookie" = String, description = "The bound cookie; a second one with the session cookie when validation renewed its token")
            )
        ),
        (status = 400, description = "No proof, or a proof that is malformed, of a refused algorithm (`alg: none`) or does not verify: `{\"continue\": false, \"error\"}`"),
        (status = 401, description = "No valid signed-in session, no registration offered, a used or expired challenge: `{\"continue\": false, \"error\"}`"),
        (status = 404, description = "Device-bound sessions are off (start tesserad with `--dbsc`)", body = ErrorBody),
        (status = 503, description = "The store did not answer: the browser goes on without binding")
    )
)]
pub(super) async fn register(State(state): State<SharedState>, request: Request) -> Response {
    timed(&state, DbscEndpoint::Register, |settings| {
        register_answer(&state, settings, request)
    })
    .await
}

/// The registration endpoint's answer, with the session cookie when
/// validation renewed its token.
async fn register_answer(
    state: &SharedState,
    settings: Arc<DbscSettings>,
    request: Request,
) -> Response {
    let client = client_of(state, &request);
    let headers = request.headers();
    let (answer, renewed) = match signed_in(state, headers, &client).await {
        Ok(session) => {
            let answer = dbsc::register_session(&settings, &state.manager, &session, headers).await;
            (answer, session.issued().map(|t| t.expose().to_owned()))
        }
        Err(Some(error)) => (DbscAnswer::refused(&error), None),
        Err(None) => (DbscAnswer::without_session(), None),
    };
    let mut response = answer.into_http().into_response();
    if let Some(token) = renewed {
        set_session_cookie(state, response.headers_mut(), &token);
    }
    response
}

/// Renews the bound cookie of the session named by
/// `Sec-Secure-Session-Id`. Without a proof (or with one answering no live
/// challenge): `403` with `Secure-Session-Challenge`; the browser signs it
/// and comes back. With a proof by the bound key answering a live
/// challenge: `200`, a new bound cookie (a new value every time) and the
/// instructions again. An unknown, ended or unbound session, or a proof by
/// another key: a `4xx` with `{"continue": false}` (the browser ends the
/// binding). `503` when the store fails.
#[utoipa::path(
    post,
    path = "/v1/dbsc/refresh",
    operation_id = "dbsc_refresh",
    tag = "forward-auth",
    params(
        ("Sec-Secure-Session-Id" = String, Header, description = "The session identifier from the instructions (the public session id)"),
        ("Secure-Session-Response" = Option<String>, Header, description = "A proof answering the last challenge, signed by the bound key")
    ),
    responses(
        (status = 200, description = "A new bound cookie", body = SessionInstructions,
            headers(("Set-Cookie" = String, description = "The new bound cookie"))
        ),
        (status = 400, description = "No or a malformed `Sec-Secure-Session-Id`, or a proof that does not verify with the bound key: `{\"continue\": false, \"error\"}`"),
        (status = 401, description = "The session ended (logout, revocation, expiry), never was, or is not bound: `{\"continue\": false, \"error\"}`"),
        (status = 403, description = "Sign a challenge first: `Secure-Session-Challenge: \"<challenge>\";id=\"<session id>\"`",
            headers(("Secure-Session-Challenge" = String, description = "The challenge to sign, with the session identifier"))
        ),
        (status = 404, description = "Device-bound sessions are off (start tesserad with `--dbsc`)", body = ErrorBody),
        (status = 503, description = "The store did not answer: the browser goes on without the bound cookie")
    )
)]
pub(super) async fn refresh(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let manager = &state.manager;
    timed(&state, DbscEndpoint::Refresh, |settings| async move {
        let answer = dbsc::refresh(&settings, manager, &headers).await;
        answer.into_http().into_response()
    })
    .await
}

/// Serves an endpoint with `answer` when device-bound sessions are on (a
/// `404` when they are off), its time recorded in the endpoint's series.
async fn timed<F, Fut>(state: &SharedState, endpoint: DbscEndpoint, answer: F) -> Response
where
    F: FnOnce(Arc<DbscSettings>) -> Fut,
    Fut: Future<Output = Response>,
{
    let Some(settings) = state.dbsc.clone() else {
        return dbsc_off();
    };
    let started = Instant::now();
    let response = answer(settings).await;
    state.metrics.record_dbsc(endpoint, started.elapsed());
    response
}

/// What a forward-auth request gets from device binding.
pub(super) enum Checked {
    /// Nothing to add.
    Pass,
    /// A registration offer for nginx to pass on to the browser.
    Offer(HeaderValue),
}

/// Counts the entries of a request's `Secure-Session-Skipped` (with `--dbsc`).
pub(super) fn report_skipped(state: &SharedState, headers: &HeaderMap) {
    if state.dbsc.is_some() {
        dbsc::report_skipped(&state.manager, headers);
    }
}

/// The device-binding step of `/v1/auth` for a signed-in session: a bound
/// session passes only with its current bound cookie; a session never
/// offered registration gets the offer.
pub(super) async fn check(
    state: &SharedState,
    session: &ActiveSession,
    headers: &HeaderMap,
) -> Result<Checked, SessionError> {
    let Some(settings) = state.dbsc.as_deref() else {
        return Ok(Checked::Pass);
    };
    let bound_cookie = settings.bound_cookie(headers);
    match state
        .manager
        .check_device(session, bound_cookie.as_deref())
        .await?
    {
        DeviceStatus::Unbound => {
            let offer = state
                .manager
                .offer_device_binding(session, settings.policy())
                .await?;
            Ok(offer
                .and_then(|offer| settings.registration_header(&offer))
                .and_then(|value| HeaderValue::from_str(&value).ok())
                .map_or(Checked::Pass, Checked::Offer))
        }
        _ => Ok(Checked::Pass),
    }
}

/// The signed-in session of the request's session cookie, validated as
/// `/v1/auth` validates it; `Err(None)` without one.
async fn signed_in(
    state: &SharedState,
    headers: &HeaderMap,
    client: &ClientInfo,
) -> Result<ActiveSession, Option<SessionError>> {
    let Presented::Credential { value, .. } = state.cookies.read(headers) else {
        return Err(None);
    };
    let session = state
        .manager
        .validate(&value, Some(client))
        .await
        .map_err(Some)?;
    if session.record().subject.is_none() {
        return Err(None);
    }
    Ok(session)
}

/// Adds the session cookie carrying a renewed token.
pub(super) fn set_session_cookie(state: &SharedState, out: &mut HeaderMap, token: &str) {
    match state.cookies.set(token, 1) {
        Ok(cookies) => {
            for cookie in cookies {
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    out.append(header::SET_COOKIE, value);
                }
            }
            out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Err(error) => tracing::error!(%error, "a renewed token does not fit its cookie"),
    }
}

fn dbsc_off() -> Response {
    ApiError::new(
        ErrorCode::NotFound,
        "device-bound sessions are off; start tesserad with --dbsc",
    )
    .into_response()
}

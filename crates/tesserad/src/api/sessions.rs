//! The session lifecycle endpoints: create, validate, update, login,
//! rotate, logout. Each only translates JSON to a `SessionManager` call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tessera::{ActiveSession, AuthLevel, ClientInfo, DataChange, Login, NewSession, SessionData};
use utoipa::IntoResponses;

use super::SharedState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use super::model::{
    CreateRequest, IssuedResponse, LoginRequest, SessionResponse, SessionView, TokenRequest,
    UpdateRequest, ValidateRequest, ValidateResponse,
};

/// The errors every token-taking endpoint may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum SessionErrors {
    /// Malformed JSON, wrong types, unknown fields, a subject over 256 bytes, …
    #[response(status = 400, description = "invalid_request")]
    InvalidRequest(ErrorBody),
    /// `unauthorized` (no or wrong API key) or `invalid_session` (with `reason`).
    #[response(status = 401, description = "unauthorized or invalid_session")]
    Unauthorized(ErrorBody),
    /// The body or the session data is over its limit.
    #[response(status = 413, description = "payload_too_large")]
    PayloadTooLarge(ErrorBody),
    /// The API key lacks the scope this endpoint needs.
    #[response(status = 403, description = "forbidden")]
    Forbidden(ErrorBody),
    /// Too many failed API key checks from this client address.
    #[response(status = 429, description = "rate_limited")]
    RateLimited(ErrorBody),
    /// The store did not answer (fail closed).
    #[response(status = 503, description = "store_unavailable")]
    StoreUnavailable(ErrorBody),
}

fn data(
    map: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<SessionData>, ApiError> {
    map.map(|map| SessionData::from_map(&map))
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))
}

fn issued(session: ActiveSession) -> Result<IssuedResponse, ApiError> {
    let token = session
        .issued()
        .ok_or_else(|| ApiError::internal("the operation issued no token"))?
        .expose()
        .to_owned();
    Ok(IssuedResponse {
        token,
        session: SessionView::from(session.record().as_ref()),
    })
}

/// Creates a session and issues its first token.
#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The session and its first token", body = IssuedResponse),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn create(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<IssuedResponse>), ApiError> {
    let mut new = NewSession::anonymous();
    new.subject = request.subject;
    new.data = data(request.data)?;
    new.client = request.client.map(ClientInfo::from);
    new.idle_timeout = request.idle_timeout_s.map(std::time::Duration::from_secs);
    new.absolute_timeout = request
        .absolute_timeout_s
        .map(std::time::Duration::from_secs);
    let session = state.manager.create(new).await?;
    Ok((StatusCode::CREATED, Json(issued(session)?)))
}

/// Validates a token; renews it when it is older than `renew_after`.
#[utoipa::path(
    post,
    path = "/v1/sessions/validate",
    tag = "sessions",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "The session; `token` is present when the token was renewed", body = ValidateResponse),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn validate(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let client = request.client.map(ClientInfo::from);
    let valid = state
        .manager
        .validate(&request.token, client.as_ref())
        .await?;
    Ok(Json(ValidateResponse {
        session: SessionView::from(valid.record().as_ref()),
        token: valid.issued().map(|t| t.expose().to_owned()),
    }))
}

/// Replaces (`data`) or merge-patches (`patch`) the session data; with
/// `version`, only if the session is still at that version.
#[utoipa::path(
    post,
    path = "/v1/sessions/update",
    tag = "sessions",
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "The updated session", body = SessionResponse),
        (status = 409, description = "version_conflict (with `current_version`)", body = ErrorBody),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn update(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<UpdateRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let change = match (request.data, request.patch) {
        (Some(replacement), None) => DataChange::Replace(
            SessionData::from_map(&replacement)
                .map_err(|e| ApiError::invalid_request(e.to_string()))?,
        ),
        (None, Some(patch)) => DataChange::MergePatch(serde_json::Value::Object(patch)),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_request(
                "give either `data` (replace) or `patch` (merge), not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_request(
                "give `data` (replace) or `patch` (merge)",
            ));
        }
    };
    let current = state.manager.resolve(&request.token, None).await?;
    let session = state
        .manager
        .update(&current, change, request.version, None)
        .await?;
    Ok(Json(SessionResponse {
        session: SessionView::from(session.record().as_ref()),
    }))
}

/// Signs a subject in: always a new token; the presented one is dead at once.
/// Without a (valid) token, a new session starts.
#[utoipa::path(
    post,
    path = "/v1/sessions/login",
    tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "The signed-in session and its new token", body = IssuedResponse),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn login(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<IssuedResponse>, ApiError> {
    let mut login = Login::new(request.subject).level(AuthLevel(request.auth_level.unwrap_or(1)));
    login.data = data(request.data)?;
    login.client = request.client.map(ClientInfo::from);
    // A missing or invalid token starts a new session.
    let current = match request.token.as_deref() {
        Some(token) => match state.manager.resolve(token, login.client.as_ref()).await {
            Ok(current) => Some(current),
            Err(tessera::SessionError::Invalid { .. }) => None,
            Err(other) => return Err(other.into()),
        },
        None => None,
    };
    let session = state.manager.login(current.as_ref(), login).await?;
    Ok(Json(issued(session)?))
}

/// Issues a new token for the session; the old one keeps working until the
/// new one is presented, then for `rotation_grace`, then counts as stolen.
#[utoipa::path(
    post,
    path = "/v1/sessions/rotate",
    tag = "sessions",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The session and its new token", body = IssuedResponse),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn rotate(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<IssuedResponse>, ApiError> {
    let current = state.manager.resolve(&request.token, None).await?;
    let session = state.manager.rotate(&current).await?;
    Ok(Json(issued(session)?))
}

/// Ends the session of this token; unknown tokens are fine (idempotent).
#[utoipa::path(
    post,
    path = "/v1/sessions/logout",
    tag = "sessions",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "The session ended (or there was none)"),
        SessionErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn logout(
    State(state): State<SharedState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<StatusCode, ApiError> {
    state.manager.logout_presented(&request.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

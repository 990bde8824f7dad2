//! Endpoints by public id and subject, global revocation and stats: what
//! operators and "your active sessions" pages use.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tessera::store::StoreError;
use tessera::{SessionError, SessionId};
use utoipa::IntoResponses;

use super::SharedState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::model::{
    DEFAULT_PAGE_SIZE, ListSubjectQuery, MAX_PAGE_SIZE, RevokeAllResponse, RevokeSubjectQuery,
    RevokedResponse, SessionResponse, SessionView, SessionsResponse, StatsResponse,
};

/// The errors of the admin endpoints.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum AdminErrors {
    /// A malformed id, subject or query.
    #[response(status = 400, description = "invalid_request")]
    InvalidRequest(ErrorBody),
    /// No or wrong API key.
    #[response(status = 401, description = "unauthorized")]
    Unauthorized(ErrorBody),
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

#[derive(Debug, Deserialize)]
pub(super) struct IdPath {
    id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubjectPath {
    subject: String,
}

fn session_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(text).map_err(|_| {
        ApiError::invalid_request("a session id is 22 base64url characters (the `id` of a session)")
    })
}

/// The session with this public id, if it is valid.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The public session id")),
    responses(
        (status = 200, description = "The session", body = SessionResponse),
        (status = 404, description = "not_found", body = ErrorBody),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn get_session(
    State(state): State<SharedState>,
    ApiPath(path): ApiPath<IdPath>,
) -> Result<Json<SessionResponse>, ApiError> {
    let id = session_id(&path.id)?;
    match state.manager.get(&id).await? {
        Some(session) => Ok(Json(SessionResponse {
            session: SessionView::from(session.as_ref()),
        })),
        None => Err(ApiError::not_found("no valid session has this id")),
    }
}

/// Ends the session with this public id.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The public session id")),
    responses(
        (status = 204, description = "The session ended"),
        (status = 404, description = "not_found", body = ErrorBody),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn revoke_session(
    State(state): State<SharedState>,
    ApiPath(path): ApiPath<IdPath>,
) -> Result<StatusCode, ApiError> {
    let id = session_id(&path.id)?;
    if state.manager.revoke(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no valid session has this id"))
    }
}

/// One page of a subject's valid sessions, oldest first within the page;
/// follow `next_cursor` for the rest.
#[utoipa::path(
    get,
    path = "/v1/subjects/{subject}/sessions",
    tag = "admin",
    params(
        ("subject" = String, Path, description = "The subject (at most 256 bytes)"),
        ListSubjectQuery
    ),
    responses(
        (status = 200, description = "The subject's sessions", body = SessionsResponse),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn list_subject_sessions(
    State(state): State<SharedState>,
    ApiPath(path): ApiPath<SubjectPath>,
    ApiQuery(query): ApiQuery<ListSubjectQuery>,
) -> Result<Json<SessionsResponse>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::invalid_request(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
        )));
    }
    let page = match state
        .manager
        .list_subject_page(&path.subject, query.cursor.as_deref(), limit as usize)
        .await
    {
        Ok(page) => page,
        Err(SessionError::Store(StoreError::Invalid { .. })) if query.cursor.is_some() => {
            return Err(ApiError::invalid_request(
                "cursor is not the `next_cursor` of a listing of this server",
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let mut sessions = page.items;
    sessions.sort_by_key(|s| (s.created_at, s.id));
    Ok(Json(SessionsResponse {
        sessions: sessions
            .iter()
            .map(|s| SessionView::from(s.as_ref()))
            .collect(),
        next_cursor: page.next,
    }))
}

/// Ends every session of a subject, except `except` if given.
#[utoipa::path(
    delete,
    path = "/v1/subjects/{subject}/sessions",
    tag = "admin",
    params(
        ("subject" = String, Path, description = "The subject (at most 256 bytes)"),
        RevokeSubjectQuery
    ),
    responses(
        (status = 200, description = "How many sessions ended", body = RevokedResponse),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn revoke_subject_sessions(
    State(state): State<SharedState>,
    ApiPath(path): ApiPath<SubjectPath>,
    ApiQuery(query): ApiQuery<RevokeSubjectQuery>,
) -> Result<Json<RevokedResponse>, ApiError> {
    let except = query.except.as_deref().map(session_id).transpose()?;
    let revoked = state
        .manager
        .revoke_subject(&path.subject, except.as_ref())
        .await?;
    Ok(Json(RevokedResponse {
        revoked: revoked as u64,
    }))
}

/// Ends every session there is (bumps the global revocation epoch).
#[utoipa::path(
    post,
    path = "/v1/admin/revoke-all",
    tag = "admin",
    responses(
        (status = 200, description = "Every session has ended", body = RevokeAllResponse),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn revoke_all(
    State(state): State<SharedState>,
) -> Result<Json<RevokeAllResponse>, ApiError> {
    let epoch = state.manager.revoke_everything().await?;
    tracing::warn!(epoch, "every session was revoked");
    Ok(Json(RevokeAllResponse { epoch }))
}

/// What the server has done since it started (an addition to the v1 table,
/// for `tesserad stats`).
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "admin",
    responses(
        (status = 200, description = "Counts since start", body = StatsResponse),
        AdminErrors
    ),
    security(("api_key" = []))
)]
pub(super) async fn stats(State(state): State<SharedState>) -> Json<StatsResponse> {
    Json(StatsResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        store: state.store_description.to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        store_records: state.metrics.store_records(),
        operations: state.metrics.operation_counts(),
        events: state.metrics.event_counts(),
    })
}

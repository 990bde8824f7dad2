//! Operational endpoints: liveness, readiness, Prometheus metrics and the
//! OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::error::{ApiError, ErrorBody, store_unavailable};
use super::model::HealthResponse;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The server is running", body = HealthResponse))
)]
pub(super) async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".to_owned(),
    })
}

/// The store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = HealthResponse),
        (status = 503, description = "store_unavailable", body = ErrorBody)
    )
)]
pub(super) async fn readyz(
    State(state): State<SharedState>,
) -> Result<Json<HealthResponse>, ApiError> {
    state
        .manager
        .store()
        .ping()
        .await
        .map_err(|e| store_unavailable(&e))?;
    Ok(Json(HealthResponse {
        status: "ready".to_owned(),
    }))
}

/// Prometheus metrics (text format), every name prefixed `tessera_`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub(super) async fn metrics(State(state): State<SharedState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::OK, String::new()).into_response(),
    }
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub(super) async fn openapi_json(State(state): State<SharedState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi.to_string(),
    )
        .into_response()
}

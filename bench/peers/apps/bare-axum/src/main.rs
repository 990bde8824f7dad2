//! The ceiling of the comparison: axum with no session library. `POST /login`
//! sets a plain cookie; `GET /me` and `POST /incr` read it and answer a fixed
//! user id and counter, so the cost measured is HTTP, routing, cookie parsing
//! and JSON, with nothing stored.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use peers_common::{Args, UserIds};
use serde_json::json;

const COOKIE: &str = "bare";

/// The user id in the plain `bare=<n>` cookie, if any.
fn user_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| value.parse().ok())
}

async fn login(State(ids): State<Arc<UserIds>>) -> Response {
    let user_id = ids.next();
    let cookie = format!("{COOKIE}={user_id}; Path=/; HttpOnly; SameSite=Lax");
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user_id": user_id})),
    )
        .into_response()
}

async fn me(headers: HeaderMap) -> Response {
    match user_id(&headers) {
        Some(user_id) => Json(json!({"user_id": user_id, "counter": 0})).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn incr(headers: HeaderMap) -> Response {
    match user_id(&headers) {
        Some(_) => Json(json!({"counter": 1})).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    if args.store != "memory:" && args.store != "none:" {
        anyhow::bail!("bare axum stores nothing; --store must be `none:` or `memory:`");
    }
    let mut cookies = peers_common::CookieFile::create(&args)?;
    let ids = UserIds::default();
    for _ in 0..args.preload {
        cookies.push(&format!("{COOKIE}={}", ids.next()))?;
    }
    cookies.finish()?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/incr", post(incr))
        .with_state(Arc::new(UserIds::default()));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    peers_common::announce("bare-axum", &args);
    axum::serve(listener, app).await?;
    Ok(())
}

// The routes, written once against the `ts` (tower-sessions) of the module
// that includes this file.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use peers_common::UserIds;
use serde_json::{Value, json};
use ts::{Expiry, Session, SessionManagerLayer, SessionStore};

const USER_ID: &str = "user_id";
const COUNTER: &str = "counter";

fn expiry() -> Expiry {
    Expiry::OnInactivity(time::Duration::seconds(
        peers_common::IDLE_TIMEOUT.as_secs() as i64,
    ))
}

fn internal(error: ts::session::Error) -> StatusCode {
    eprintln!("session error: {error}");
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn login(
    session: Session,
    State(ids): State<Arc<UserIds>>,
) -> Result<Json<Value>, StatusCode> {
    let user_id = ids.next();
    session.cycle_id().await.map_err(internal)?;
    session.insert(USER_ID, user_id).await.map_err(internal)?;
    session.insert(COUNTER, 0u64).await.map_err(internal)?;
    Ok(Json(json!({"user_id": user_id})))
}

async fn me(session: Session) -> Result<Json<Value>, StatusCode> {
    let user_id: u64 = session
        .get(USER_ID)
        .await
        .map_err(internal)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let counter: u64 = session.get(COUNTER).await.map_err(internal)?.unwrap_or(0);
    Ok(Json(json!({"user_id": user_id, "counter": counter})))
}

async fn incr(session: Session) -> Result<Json<Value>, StatusCode> {
    let _user_id: u64 = session
        .get(USER_ID)
        .await
        .map_err(internal)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let counter = session
        .get::<u64>(COUNTER)
        .await
        .map_err(internal)?
        .unwrap_or(0)
        + 1;
    session.insert(COUNTER, counter).await.map_err(internal)?;
    Ok(Json(json!({"counter": counter})))
}

/// The app over `store`, with the library's default cookie settings and
/// a one-hour inactivity expiry.
pub fn app<S: SessionStore + Clone>(store: S) -> Router {
    let layer = SessionManagerLayer::new(store).with_expiry(expiry());
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/incr", post(incr))
        .with_state(Arc::new(UserIds::default()))
        .layer(layer)
}

/// Bench only: creates `count` sessions as `POST /login` would (64 at a
/// time) and writes their `Cookie` header values to `cookies`.
pub async fn preload<S: SessionStore + Clone>(
    store: S,
    count: usize,
    cookies: &mut peers_common::CookieFile,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let store = Arc::new(store);
    let mut created = futures_util::stream::iter(1..=count as u64)
        .map(|user_id| {
            let session = Session::new(None, store.clone(), Some(expiry()));
            async move {
                session.insert(USER_ID, user_id).await?;
                session.insert(COUNTER, 0u64).await?;
                session.save().await?;
                session
                    .id()
                    .ok_or_else(|| anyhow::anyhow!("a saved session has no id"))
            }
        })
        .buffer_unordered(64);
    while let Some(id) = created.next().await {
        cookies.push(&format!("id={}", id?))?;
    }
    Ok(())
}

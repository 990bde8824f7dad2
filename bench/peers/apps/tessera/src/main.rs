//! The three benchmark routes with Tessera's session layer (`tessera-axum`)
//! on each of Tessera's stores, or in sealed-cookie mode:
//!
//! ```text
//! bench-tessera --listen ADDR --store memory:
//! bench-tessera --listen ADDR --store embedded:DIR
//! bench-tessera --listen ADDR --store postgres://USER@HOST:PORT/DB?schema=NAME
//! bench-tessera --listen ADDR --store redis://HOST:PORT [--near-cache]
//! bench-tessera --listen ADDR --store memory: --sealed [--sealing-key BASE64]
//! ```
//!
//! Handlers read one value per `get`, as the peers' do; the layer decodes
//! the session's data once per request however many `get`s follow.
//!
//! Tessera's defaults stay on, including CSRF protection: `POST /login`
//! answers the new session's CSRF token beside the user id, and `POST /incr`
//! (like `POST /logout`, used by `revocation.sh`) needs it in
//! `X-CSRF-Token`. Only `POST /login` is exempt, as a login form's first
//! post comes from a visitor without a session. In sealed mode the store
//! holds only the per-subject revocation epochs.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use peers_common::UserIds;
use peers_tessera::{COUNTER, SealedArgs, USER_ID, start};
use serde_json::{Value, json};
use tessera::SessionManager;
use tessera::axum::{Error, Session, SessionLayer};
use tessera::open::OpenOptions;

/// The command line: the shared one, and Tessera's store options.
#[derive(Debug, Parser)]
struct TesseraArgs {
    #[command(flatten)]
    common: peers_common::Args,
    #[command(flatten)]
    sealed: SealedArgs,
    /// Put the near cache in front of a Redis store.
    #[arg(long)]
    near_cache: bool,
}

/// A handler's failure: the layer's error, or no session (401), as the
/// peers' handlers answer.
enum Failure {
    Session(Error),
    Unauthorized,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Session(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::Session(error) => error.into_response(),
            Self::Unauthorized => StatusCode::UNAUTHORIZED.into_response(),
        }
    }
}

// The handlers are written the way the peers' are (bench/peers/apps/
// tower-sessions/src/routes.rs): one `get` per value read, `login` then one
// `insert` per value.

async fn login(session: Session, State(ids): State<Arc<UserIds>>) -> Result<Json<Value>, Failure> {
    let user_id = ids.next();
    // A new token (the old one, if any, is dead at once), then the data.
    session.login(&format!("user-{user_id}"), 1).await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(COUNTER, 0u64).await?;
    let csrf_token = session.csrf_token().await?;
    Ok(Json(json!({"user_id": user_id, "csrf_token": csrf_token})))
}

async fn me(session: Session) -> Result<Json<Value>, Failure> {
    let user_id: u64 = session.get(USER_ID).await?.ok_or(Failure::Unauthorized)?;
    let counter: u64 = session.get(COUNTER).await?.unwrap_or(0);
    Ok(Json(json!({"user_id": user_id, "counter": counter})))
}

async fn incr(session: Session) -> Result<Json<Value>, Failure> {
    let _user_id: u64 = session.get(USER_ID).await?.ok_or(Failure::Unauthorized)?;
    let counter = session
        .update(COUNTER, |counter: Option<u64>| counter.unwrap_or(0) + 1)
        .await?;
    Ok(Json(json!({"counter": counter})))
}

async fn logout(session: Session) -> Result<Json<Value>, Failure> {
    session.logout().await?;
    Ok(Json(json!({})))
}

fn layer(args: &TesseraArgs, manager: SessionManager) -> anyhow::Result<SessionLayer> {
    let mut builder =
        SessionLayer::builder(manager).csrf_exempt(|request| request.path == "/login");
    if let Some(keys) = args.sealed.key_ring()? {
        builder = builder.sealed(keys);
    }
    Ok(builder.build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = TesseraArgs::parse();
    let options = OpenOptions::default().near_cache(args.near_cache);
    let cookie_name = tessera::axum::cookies::CookieAttributes::default().name;
    let (manager, _opened) = start(&args.common, &args.sealed, &options, &cookie_name).await?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/incr", post(incr))
        .route("/logout", post(logout))
        .with_state(Arc::new(UserIds::default()))
        .layer(layer(&args, manager)?);
    let listener = tokio::net::TcpListener::bind(args.common.listen).await?;
    peers_common::announce("tessera", &args.common);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

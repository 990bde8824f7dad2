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
use peers_common::{CookieFile, IDLE_TIMEOUT, UserIds};
use serde_json::{Value, json};
use tessera::axum::{Error, Session, SessionLayer};
use tessera::open::{OpenOptions, OpenedStore, StoreUrl, open_store_with};
use tessera::sealed::{KeyRing, SealingKey};
use tessera::{Login, SessionData, SessionManager};

/// The command line: the shared one, and Tessera's store options.
#[derive(Debug, Parser)]
struct TesseraArgs {
    #[command(flatten)]
    common: peers_common::Args,
    /// Keep sessions sealed in the cookie; the store keeps only revocation epochs.
    #[arg(long)]
    sealed: bool,
    /// Sealed mode: the sealing key (32 bytes, base64url), so that several
    /// servers open each other's cookies; generated when absent.
    #[arg(long)]
    sealing_key: Option<String>,
    /// Put the near cache in front of a Redis store.
    #[arg(long)]
    near_cache: bool,
}

const USER_ID: &str = "user_id";
const COUNTER: &str = "counter";

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

/// The manager over the store `--store` names (through the same opener as
/// tesserad), with a one-hour idle timeout. The opened store (its sweeper,
/// its near cache) lives as long as the process.
async fn manager(args: &TesseraArgs) -> anyhow::Result<(SessionManager, OpenedStore)> {
    let url: StoreUrl = args.common.store.parse()?;
    let opened = open_store_with(&url, &OpenOptions::default().near_cache(args.near_cache)).await?;
    let mut builder =
        SessionManager::builder_shared(opened.store.clone()).idle_timeout(IDLE_TIMEOUT);
    if args.sealed {
        // The memory store's epochs start over with the process, which is
        // what a one-process benchmark wants.
        builder = builder.allow_volatile_epochs();
    }
    Ok((builder.build()?, opened))
}

fn layer(args: &TesseraArgs, manager: SessionManager) -> anyhow::Result<SessionLayer> {
    let mut builder =
        SessionLayer::builder(manager).csrf_exempt(|request| request.path == "/login");
    if args.sealed {
        let key = match &args.sealing_key {
            Some(text) => SealingKey::from_base64(1, text)?,
            None => SealingKey::generate(1)?,
        };
        builder = builder.sealed(KeyRing::new(key));
    }
    Ok(builder.build()?)
}

/// Bench only: signs in `count` sessions through the manager, as
/// `POST /login` does (64 at a time), and writes their cookies.
async fn preload(
    manager: &SessionManager,
    count: usize,
    cookies: &mut CookieFile,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let cookie_name = tessera::axum::cookies::CookieAttributes::default().name;
    let mut created = futures_util::stream::iter(1..=count as u64)
        .map(|user_id| async move {
            let data = SessionData::from_value(&json!({"user_id": user_id, "counter": 0}))?;
            let login = Login::new(format!("user-{user_id}")).level(1).data(data);
            let mut session = manager.login(None, login).await?;
            session
                .take_issued()
                .ok_or_else(|| anyhow::anyhow!("a login issued no credential"))
        })
        .buffer_unordered(64);
    while let Some(token) = created.next().await {
        cookies.push(&format!("{cookie_name}={}", token?.expose()))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = TesseraArgs::parse();
    // Errors (a failed store call, a lost race) go to the server log that
    // run.sh keeps beside a rejected run.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(false)
        .init();
    let (manager, _opened) = manager(&args).await?;
    let mut cookies = CookieFile::create(&args.common)?;
    if args.common.preload > 0 {
        if args.sealed {
            anyhow::bail!("--preload creates server-side sessions; not with --sealed");
        }
        preload(&manager, args.common.preload, &mut cookies).await?;
    }
    cookies.finish()?;
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

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
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use peers_common::{CookieFile, IDLE_TIMEOUT, UserIds};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_axum::{Error, Session, SessionLayer};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera::open::{OpenOptions, OpenedStore, StoreUrl, open_store_with};
use tessera_core::{Login, SessionData, SessionError, SessionManager};

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

/// The session payload every contender stores.
#[derive(Debug, Deserialize)]
struct Payload {
    user_id: u64,
    #[serde(default)]
    counter: u64,
}

fn payload(session: &tessera_core::Session) -> Result<Payload, Error> {
    serde_json::from_str(session.data.as_json()).map_err(|e| {
        Error::Session(SessionError::Data(tessera_core::DataError::Json(
            e.to_string(),
        )))
    })
}

async fn login(session: Session, State(ids): State<Arc<UserIds>>) -> Result<Json<Value>, Error> {
    let user_id = ids.next();
    // A new token (the old one, if any, is dead at once), then the data.
    session.login(&format!("user-{user_id}"), 1).await?;
    session.insert("user_id", user_id).await?;
    session.insert("counter", 0u64).await?;
    let csrf_token = session.csrf_token().await?;
    Ok(Json(json!({"user_id": user_id, "csrf_token": csrf_token})))
}

async fn me(session: Session) -> Result<Json<Value>, Error> {
    let record = session
        .record()
        .await?
        .ok_or(Error::Session(SessionError::NotAuthenticated))?;
    let payload = payload(&record)?;
    Ok(Json(
        json!({"user_id": payload.user_id, "counter": payload.counter}),
    ))
}

async fn incr(session: Session) -> Result<Json<Value>, Error> {
    if session.record().await?.is_none() {
        return Err(Error::Session(SessionError::NotAuthenticated));
    }
    let counter = session
        .update("counter", |counter: Option<u64>| counter.unwrap_or(0) + 1)
        .await?;
    Ok(Json(json!({"counter": counter})))
}

async fn logout(session: Session) -> Result<Json<Value>, Error> {
    session.logout().await?;
    Ok(Json(json!({})))
}

/// The manager over the store `--store` names (through the same opener as
/// tesserad), with a one-hour idle timeout. The opened store (its sweeper,
/// its near cache) lives as long as the process.
async fn manager(args: &TesseraArgs) -> anyhow::Result<(SessionManager, OpenedStore)> {
    let url: StoreUrl = args.common.store.parse()?;
    let opened =
        open_store_with(&url, &OpenOptions::default().near_cache(args.near_cache)).await?;
    let manager = SessionManager::builder_shared(opened.store.clone())
        .idle_timeout(IDLE_TIMEOUT)
        .build()?;
    Ok((manager, opened))
}

fn layer(args: &TesseraArgs, manager: SessionManager) -> anyhow::Result<SessionLayer> {
    let mut builder =
        SessionLayer::builder(manager).csrf_exempt(|parts| parts.uri.path() == "/login");
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
    let cookie_name = tessera_axum::cookies::CookieAttributes::default().name;
    let mut created = futures_util::stream::iter(1..=count as u64)
        .map(|user_id| async move {
            let mut login = Login::new(format!("user-{user_id}"));
            login.data = Some(SessionData::from_value(
                &json!({"user_id": user_id, "counter": 0}),
            )?);
            Ok::<_, anyhow::Error>(manager.login(None, login).await?.token)
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

//! The three benchmark routes with Tessera's actix-web middleware
//! (`tessera-actix`), beside actix-session on the same server framework:
//!
//! ```text
//! bench-tessera-actix --listen ADDR --store memory:
//! bench-tessera-actix --listen ADDR --store redis://HOST:PORT
//! bench-tessera-actix --listen ADDR --store memory: --sealed [--sealing-key BASE64]
//! ```
//!
//! The handlers are those of `bench/peers/apps/tessera/src/main.rs` (the
//! axum app) written for actix-web: one `get` per value read, `login` then
//! one `insert` per value, `update` to increment. Tessera's defaults stay
//! on, CSRF protection included: `POST /login` answers the new session's
//! CSRF token, which `POST /incr` and `POST /logout` need in
//! `X-CSRF-Token`; only `POST /login` is exempt. actix-web runs one worker
//! per core, as in the actix-session app.
#![forbid(unsafe_code)]

use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use clap::Parser;
use peers_common::{CookieFile, IDLE_TIMEOUT, UserIds};
use serde_json::json;
use tessera::actix::{Error, Session, SessionMiddleware};
use tessera::open::{OpenOptions, OpenedStore, StoreUrl, open_store_with};
use tessera::sealed::{KeyRing, SealingKey};
use tessera::{Login, SessionData, SessionManager};

/// The command line: the shared one, and the sealed mode.
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
}

const USER_ID: &str = "user_id";
const COUNTER: &str = "counter";

/// A handler's failure: the middleware's error, or no session (401), as
/// the peers' handlers answer.
#[derive(Debug)]
enum Failure {
    Session(Error),
    Unauthorized,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Session(error) => error.fmt(f),
            Self::Unauthorized => f.write_str("no session"),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Session(error)
    }
}

impl ResponseError for Failure {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Session(error) => error.error_response(),
            Self::Unauthorized => HttpResponse::Unauthorized().finish(),
        }
    }
}

async fn login(session: Session, ids: web::Data<UserIds>) -> Result<HttpResponse, Failure> {
    let user_id = ids.next();
    // A new token (the old one, if any, is dead at once), then the data.
    session.login(&format!("user-{user_id}"), 1).await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(COUNTER, 0u64).await?;
    let csrf_token = session.csrf_token().await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "csrf_token": csrf_token})))
}

async fn me(session: Session) -> Result<HttpResponse, Failure> {
    let user_id: u64 = session.get(USER_ID).await?.ok_or(Failure::Unauthorized)?;
    let counter: u64 = session.get(COUNTER).await?.unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "counter": counter})))
}

async fn incr(session: Session) -> Result<HttpResponse, Failure> {
    let _user_id: u64 = session.get(USER_ID).await?.ok_or(Failure::Unauthorized)?;
    let counter = session
        .update(COUNTER, |counter: Option<u64>| counter.unwrap_or(0) + 1)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"counter": counter})))
}

async fn logout(session: Session) -> Result<HttpResponse, Failure> {
    session.logout().await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

/// The manager over the store `--store` names, with a one-hour idle
/// timeout. The opened store lives as long as the process.
async fn manager(args: &TesseraArgs) -> anyhow::Result<(SessionManager, OpenedStore)> {
    let url: StoreUrl = args.common.store.parse()?;
    let opened = open_store_with(&url, &OpenOptions::default()).await?;
    let mut builder =
        SessionManager::builder_shared(opened.store.clone()).idle_timeout(IDLE_TIMEOUT);
    if args.sealed {
        // The memory store's epochs start over with the process, which is
        // what a one-process benchmark wants.
        builder = builder.allow_volatile_epochs();
    }
    Ok((builder.build()?, opened))
}

fn middleware(args: &TesseraArgs, manager: SessionManager) -> anyhow::Result<SessionMiddleware> {
    let mut builder =
        SessionMiddleware::builder(manager).csrf_exempt(|request| request.path == "/login");
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
    let cookie_name = tessera::actix::cookies::CookieAttributes::default().name;
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

#[actix_web::main]
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
    let middleware = middleware(&args, manager)?;
    let ids = web::Data::from(Arc::new(UserIds::default()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ids.clone())
            .wrap(middleware.clone())
            .route("/login", web::post().to(login))
            .route("/me", web::get().to(me))
            .route("/incr", web::post().to(incr))
            .route("/logout", web::post().to(logout))
    })
    .bind(args.common.listen)?
    .run();
    peers_common::announce("tessera-actix", &args.common);
    server.await?;
    Ok(())
}

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
use peers_common::UserIds;
use peers_tessera::{COUNTER, SealedArgs, USER_ID, start};
use serde_json::json;
use tessera::SessionManager;
use tessera::actix::{Error, Session, SessionMiddleware};
use tessera::open::OpenOptions;

/// The command line: the shared one, and the sealed mode.
#[derive(Debug, Parser)]
struct TesseraArgs {
    #[command(flatten)]
    common: peers_common::Args,
    #[command(flatten)]
    sealed: SealedArgs,
}

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

fn middleware(args: &TesseraArgs, manager: SessionManager) -> anyhow::Result<SessionMiddleware> {
    let mut builder =
        SessionMiddleware::builder(manager).csrf_exempt(|request| request.path == "/login");
    if let Some(keys) = args.sealed.key_ring()? {
        builder = builder.sealed(keys);
    }
    Ok(builder.build()?)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = TesseraArgs::parse();
    let cookie_name = tessera::actix::cookies::CookieAttributes::default().name;
    let (manager, _opened) = start(
        &args.common,
        &args.sealed,
        &OpenOptions::default(),
        &cookie_name,
    )
    .await?;
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

//! The three benchmark routes with actix-session on actix-web:
//! `--store redis://HOST:PORT` (its Redis store over one multiplexed
//! connection manager, its default) or `--store cookie:` (its cookie store:
//! the whole session encrypted into the cookie). Browser-session cookies, state
//! time-to-live one hour, extended when the state changes (the library's default
//! policy, as tower-sessions).
#![forbid(unsafe_code)]

use std::sync::Arc;

use actix_session::config::BrowserSession;
use actix_session::storage::{CookieSessionStore, RedisSessionStore, SessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{App, HttpResponse, HttpServer, web};
use peers_common::{Args, UserIds};
use serde_json::json;

const USER_ID: &str = "user_id";
const COUNTER: &str = "counter";

fn lifecycle() -> BrowserSession {
    let ttl = peers_common::IDLE_TIMEOUT.as_secs() as i64;
    BrowserSession::default().state_ttl(actix_web::cookie::time::Duration::seconds(ttl))
}

fn middleware<S: SessionStore>(store: S, key: &Key) -> SessionMiddleware<S> {
    SessionMiddleware::builder(store, key.clone())
        .session_lifecycle(lifecycle())
        .build()
}

async fn login(session: Session, ids: web::Data<UserIds>) -> actix_web::Result<HttpResponse> {
    let user_id = ids.next();
    session.renew();
    session.insert(USER_ID, user_id)?;
    session.insert(COUNTER, 0u64)?;
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id})))
}

async fn me(session: Session) -> actix_web::Result<HttpResponse> {
    let Some(user_id) = session.get::<u64>(USER_ID)? else {
        return Ok(HttpResponse::Unauthorized().finish());
    };
    let counter = session.get::<u64>(COUNTER)?.unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "counter": counter})))
}

async fn incr(session: Session) -> actix_web::Result<HttpResponse> {
    if session.get::<u64>(USER_ID)?.is_none() {
        return Ok(HttpResponse::Unauthorized().finish());
    }
    let counter = session.get::<u64>(COUNTER)?.unwrap_or(0) + 1;
    session.insert(COUNTER, counter)?;
    Ok(HttpResponse::Ok().json(json!({"counter": counter})))
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/login", web::post().to(login))
        .route("/me", web::get().to(me))
        .route("/incr", web::post().to(incr));
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    if args.preload > 0 {
        anyhow::bail!("--preload is not implemented for actix-session (not in the scaling runs)");
    }
    let key = Key::generate();
    let ids = web::Data::from(Arc::new(UserIds::default()));
    let server = if args.store.starts_with("redis://") {
        let store = RedisSessionStore::new(args.store.clone()).await?;
        HttpServer::new(move || {
            App::new()
                .app_data(ids.clone())
                .wrap(middleware(store.clone(), &key))
                .configure(routes)
        })
        .bind(args.listen)?
        .run()
    } else if args.store == "cookie:" {
        HttpServer::new(move || {
            App::new()
                .app_data(ids.clone())
                .wrap(middleware(CookieSessionStore::default(), &key))
                .configure(routes)
        })
        .bind(args.listen)?
        .run()
    } else {
        anyhow::bail!("--store must be `redis://HOST:PORT` or `cookie:`");
    };
    peers_common::announce("actix-session", &args);
    server.await?;
    Ok(())
}

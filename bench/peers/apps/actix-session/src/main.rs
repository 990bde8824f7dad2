//! The three benchmark routes with actix-session on actix-web:
//! `--store redis://HOST:PORT` (its Redis store over one multiplexed
//! connection manager, its default) or `--store cookie:` (its cookie store:
//! the whole session encrypted into the cookie). Browser-session cookies, state
//! time-to-live one hour, extended when the state changes (the library's default
//! policy, as tower-sessions).
//!
//! The handlers are the idiomatic ones: one `get` per value read (`GET /me`
//! reads two), `get` then `insert` to increment (the library has no update
//! call), `renew` then one `insert` per value at login.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::config::BrowserSession;
use actix_session::storage::{CookieSessionStore, RedisSessionStore, SessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{App, HttpResponse, HttpServer, web};
use peers_common::{Args, CookieFile, UserIds};
use serde_json::json;

const USER_ID: &str = "user_id";
const COUNTER: &str = "counter";

fn lifecycle_ttl() -> actix_web::cookie::time::Duration {
    actix_web::cookie::time::Duration::seconds(peers_common::IDLE_TIMEOUT.as_secs() as i64)
}

fn lifecycle() -> BrowserSession {
    BrowserSession::default().state_ttl(lifecycle_ttl())
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

/// Bench only: creates `count` sessions in the Redis store as `POST /login`
/// would (the same state, serialized by the store as the middleware has it
/// serialized, the same time-to-live; 64 at a time), and writes their cookies
/// as the middleware sets them: the session key in the private (encrypted)
/// cookie `id` under `key`.
async fn preload(
    store: &RedisSessionStore,
    key: &Key,
    count: usize,
    cookies: &mut CookieFile,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let ttl = lifecycle_ttl();
    let mut created = futures_util::stream::iter(1..=count as u64)
        .map(|user_id| async move {
            // The middleware stores each value as its JSON text.
            let state = HashMap::from([
                (USER_ID.to_owned(), serde_json::to_string(&user_id)?),
                (COUNTER.to_owned(), serde_json::to_string(&0u64)?),
            ]);
            let session_key = store
                .save(state, &ttl)
                .await
                .map_err(|error| anyhow::anyhow!("saving a session failed: {error}"))?;
            anyhow::Ok(String::from(session_key))
        })
        .buffer_unordered(64);
    while let Some(session_key) = created.next().await {
        let mut jar = CookieJar::new();
        jar.private_mut(key).add(Cookie::new("id", session_key?));
        let cookie = jar
            .delta()
            .next()
            .ok_or_else(|| anyhow::anyhow!("the cookie jar kept no cookie"))?;
        cookies.push(&cookie.encoded().stripped().to_string())?;
    }
    Ok(())
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
    let key = Key::generate();
    let ids = web::Data::from(Arc::new(UserIds::default()));
    let mut cookies = CookieFile::create(&args)?;
    let server = if args.store.starts_with("redis://") {
        let store = RedisSessionStore::new(args.store.clone()).await?;
        preload(&store, &key, args.preload, &mut cookies).await?;
        cookies.finish()?;
        HttpServer::new(move || {
            App::new()
                .app_data(ids.clone())
                .wrap(middleware(store.clone(), &key))
                .configure(routes)
        })
        .bind(args.listen)?
        .run()
    } else if args.store == "cookie:" {
        if args.preload > 0 {
            anyhow::bail!("--preload creates server-side sessions; not with `cookie:`");
        }
        cookies.finish()?;
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

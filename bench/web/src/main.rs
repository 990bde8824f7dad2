//! The web benchmark's server: the same three routes with Tessera's session
//! layer on a memory store (`--sessions tessera`) or with no sessions at
//! all (`--sessions none`). `bench/web/run.sh` drives both with wrk.
//!
//! * `POST /login` — create a session and sign in (a rotation);
//! * `GET /me` — read one value;
//! * `POST /incr` — read and write (compare-and-swap);
//! * `GET /hello` — a constant; the handler never touches the session;
//! * `GET /csrf` — a CSRF token, for the load generator's set-up.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};
use clap::{Parser, ValueEnum};
use tessera::axum::{Error, Session, SessionLayer};
use tessera::{MemoryStore, SessionManager};

// Both apps use the same production allocator; glibc's malloc would make
// the comparison mostly about allocator contention between the workers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves the benchmark app.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7480")]
    listen: SocketAddr,
    /// With Tessera's session layer, or without sessions.
    #[arg(long, value_enum, default_value_t = Sessions::Tessera)]
    sessions: Sessions,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sessions {
    /// `SessionLayer` over a `MemoryStore`.
    Tessera,
    /// No sessions at all: the baseline.
    None,
}

fn with_sessions() -> Result<Router, Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let manager = SessionManager::builder(store).build()?;
    let layer = SessionLayer::builder(manager)
        // A load generator has no login form to fetch a token from first.
        .csrf_exempt(|request| request.path == "/login")
        .build()?;
    Ok(Router::new()
        .route(
            "/login",
            post(|session: Session| async move {
                session.insert("name", "bench-user").await?;
                session.login("bench-user", 1).await?;
                Ok::<_, Error>("ok")
            }),
        )
        .route(
            "/me",
            get(|session: Session| async move {
                Ok::<_, Error>(session.get::<String>("name").await?.unwrap_or_default())
            }),
        )
        .route(
            "/incr",
            post(|session: Session| async move {
                let n: u64 = session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .await?;
                Ok::<_, Error>(n.to_string())
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/csrf",
            get(|session: Session| async move { session.csrf_token().await }),
        )
        .layer(layer))
}

fn without_sessions() -> Router {
    let counter = Arc::new(AtomicU64::new(0));
    Router::new()
        .route("/login", post(|| async { "ok" }))
        .route("/me", get(|| async { "bench-user".to_owned() }))
        .route(
            "/incr",
            post(move || {
                let counter = counter.clone();
                async move { (counter.fetch_add(1, Ordering::Relaxed) + 1).to_string() }
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .route("/csrf", get(|| async { "none" }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let app = match args.sessions {
        Sessions::Tessera => with_sessions()?,
        Sessions::None => without_sessions(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        })?;
    Ok(())
}

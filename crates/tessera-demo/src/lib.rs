//! The Tessera demo site: the example to copy for an axum app with sessions.
//!
//! A login form (two demo users, argon2id-hashed passwords), a home page
//! showing who is signed in, a counter kept in the session, a "your
//! sessions" page with revoke buttons and "sign out everywhere else", and
//! logout — in server-side or sealed-cookie mode. Its routes, flags and
//! element ids are a contract (`docs/demo.md`; browser tests drive them).
#![forbid(unsafe_code)]

pub mod pages;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use tessera::axum::{DbscSettings, Error, LayerConfigError, Session, SessionLayer};
use tessera::sealed::KeyRing;
use tessera::{SessionId, SessionManager};

use axum::http;

/// Where the demo keeps sessions.
#[derive(Debug, Clone)]
pub enum DemoMode {
    /// In the manager's store; the cookie holds a token (`--mode server`).
    Server,
    /// Sealed into the cookie with these keys (`--mode cookie`).
    Cookie(KeyRing),
}

impl DemoMode {
    /// `server` or `cookie`.
    pub fn name(&self) -> &'static str {
        match self {
            DemoMode::Server => "server",
            DemoMode::Cookie(_) => "cookie",
        }
    }
}

struct Demo {
    mode: &'static str,
}

/// The demo's router with its session layer (default cookie settings),
/// without device-bound sessions.
pub fn app(manager: SessionManager, mode: DemoMode) -> Result<Router, LayerConfigError> {
    app_with_dbsc(manager, mode, None)
}

/// The demo's router, with device-bound sessions (DBSC) when `dbsc` is
/// given (`--dbsc on`, the binary's default).
pub fn app_with_dbsc(
    manager: SessionManager,
    mode: DemoMode,
    dbsc: Option<DbscSettings>,
) -> Result<Router, LayerConfigError> {
    let demo = Arc::new(Demo { mode: mode.name() });
    let mut layer = SessionLayer::builder(manager);
    if let DemoMode::Cookie(keys) = mode {
        layer = layer.sealed(keys);
    }
    if let Some(dbsc) = dbsc {
        layer = layer.device_binding(dbsc);
    }
    let layer = layer.build()?;
    Ok(Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/counter", post(counter))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke-others", post(revoke_others))
        .route("/sessions/{id}/revoke", post(revoke))
        .with_state(demo)
        .layer(layer))
}

type Page = Result<Response, Error>;

fn html(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

async fn home(State(demo): State<Arc<Demo>>, session: Session) -> Page {
    let user = session.subject().await?;
    let (counter, token) = match &user {
        Some(_) => (
            session.get::<u64>("counter").await?.unwrap_or(0),
            Some(session.csrf_token().await?),
        ),
        None => (0, None),
    };
    Ok(html(pages::home(&pages::Home {
        user: user.as_deref(),
        counter,
        csrf_token: token.as_deref(),
        mode: demo.mode,
    })))
}

async fn login_page(session: Session) -> Page {
    Ok(html(pages::login(&session.csrf_token().await?, None)))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(session: Session, Form(credentials): Form<Credentials>) -> Page {
    let Credentials { username, password } = credentials;
    let user = tokio::task::spawn_blocking(move || users::authenticate(&username, &password))
        .await
        .ok()
        .flatten();
    match user {
        Some(user) => {
            session.login(user, 1).await?;
            Ok(Redirect::to("/").into_response())
        }
        None => {
            let page = pages::login(
                &session.csrf_token().await?,
                Some("Wrong user name or password."),
            );
            Ok((StatusCode::UNAUTHORIZED, html(page)).into_response())
        }
    }
}

async fn logout(session: Session) -> Page {
    session.logout().await?;
    Ok(Redirect::to("/").into_response())
}

async fn counter(session: Session) -> Page {
    if session.subject().await?.is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    session
        .update("counter", |n: Option<u64>| n.unwrap_or(0).saturating_add(1))
        .await?;
    Ok(Redirect::to("/").into_response())
}

async fn sessions(State(demo): State<Arc<Demo>>, session: Session) -> Page {
    let Some(current) = session.record().await?.filter(|s| s.subject.is_some()) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let list = session.sessions().await?;
    let mut bound = Vec::with_capacity(list.len());
    for listed in &list {
        bound.push(session.manager().is_device_bound(&listed.id).await?);
    }
    let token = session.csrf_token().await?;
    Ok(html(pages::sessions(
        &list,
        &bound,
        &current.id.to_string(),
        &token,
        demo.mode,
    )))
}

async fn revoke(session: Session, Path(id): Path<String>) -> Page {
    let Some(current) = session.id().await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let Ok(id) = SessionId::parse(&id) else {
        return Ok((StatusCode::NOT_FOUND, "no such session\n").into_response());
    };
    session.revoke(&id).await?;
    let next = if id == current { "/" } else { "/sessions" };
    Ok(Redirect::to(next).into_response())
}

async fn revoke_others(session: Session) -> Page {
    if session.subject().await?.is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    session.revoke_others().await?;
    Ok(Redirect::to("/sessions").into_response())
}

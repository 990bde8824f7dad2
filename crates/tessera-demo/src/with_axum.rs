//! The demo on axum: its routes wired to the shared handlers
//! (`handlers.rs`) behind `tessera-axum`'s session layer.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tessera::SessionManager;
use tessera::axum::{DbscSettings, Error, LayerConfigError, Session, SessionLayer};

use crate::handlers::{self, Credentials, Reply};
use crate::{Demo, DemoMode};

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

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Page(page) => Html(page.into_string()).into_response(),
            Reply::Unauthorized(page) => {
                (StatusCode::UNAUTHORIZED, Html(page.into_string())).into_response()
            }
            Reply::SeeOther(path) => Redirect::to(path).into_response(),
            Reply::NotFound(message) => (StatusCode::NOT_FOUND, message).into_response(),
        }
    }
}

type Answer = Result<Reply, Error>;

async fn home(State(demo): State<Arc<Demo>>, session: Session) -> Answer {
    handlers::home(&session, demo.mode).await
}

async fn login_page(session: Session) -> Answer {
    handlers::login_page(&session).await
}

async fn login(session: Session, Form(credentials): Form<Credentials>) -> Answer {
    handlers::login(&session, credentials).await
}

async fn logout(session: Session) -> Answer {
    handlers::logout(&session).await
}

async fn counter(session: Session) -> Answer {
    handlers::counter(&session).await
}

async fn sessions(State(demo): State<Arc<Demo>>, session: Session) -> Answer {
    handlers::sessions(&session, demo.mode).await
}

async fn revoke(session: Session, Path(id): Path<String>) -> Answer {
    handlers::revoke(&session, &id).await
}

async fn revoke_others(session: Session) -> Answer {
    handlers::revoke_others(&session).await
}

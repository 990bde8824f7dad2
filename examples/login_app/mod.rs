//! The login app both `axum-login` and `sealed` serve: sign-in, a
//! per-user counter, logout and "sign out my other devices". The handlers
//! do not know where sessions live.

use axum::Router;
use axum::extract::Form;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tessera::axum::{Error, Session, SessionLayer};

/// Shows who is signed in, their counter, and the forms that change it;
/// every form carries the session's CSRF token.
async fn home(session: Session) -> Result<Response, Error> {
    let Some(user) = session.subject().await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let count: u64 = session.get("count").await?.unwrap_or(0);
    let csrf = session.csrf_token().await?;
    let form = |action: &str, label: &str| {
        format!(
            r#"<form method="post" action="{action}"><input type="hidden" name="csrf_token" value="{csrf}"><button>{label}</button></form>"#
        )
    };
    Ok(Html(format!(
        "<h1>Hello, {user}</h1><p>Count: {count}</p>{}{}{}",
        form("/count", "Count"),
        form("/sign-out-elsewhere", "Sign out my other devices"),
        form("/logout", "Log out"),
    ))
    .into_response())
}

async fn login_page(session: Session) -> Result<Html<String>, Error> {
    let csrf = session.csrf_token().await?;
    Ok(Html(format!(
        r#"<form method="post" action="/login"><input type="hidden" name="csrf_token" value="{csrf}">
        <input name="username" placeholder="user"><input name="password" type="password"><button>Sign in</button></form>"#
    )))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(session: Session, Form(form): Form<Credentials>) -> Result<Redirect, Error> {
    // Check the password against your user store; one demo user here.
    if form.username == "alice" && form.password == "wonderland" {
        // A new token and CSRF secret (no fixation); the data set right
        // after it goes out in the same single write.
        session.login(&form.username, 1).await?;
        session.insert("count", 0u64).await?;
    }
    Ok(Redirect::to("/"))
}

async fn count(session: Session) -> Result<Redirect, Error> {
    if session.subject().await?.is_some() {
        // Compare-and-swap: parallel requests of one browser lose no increment.
        session
            .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
            .await?;
    }
    Ok(Redirect::to("/"))
}

async fn sign_out_elsewhere(session: Session) -> Result<Redirect, Error> {
    session.revoke_others().await?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, Error> {
    // Ends the session; the response removes the cookie and sends Clear-Site-Data.
    session.logout().await?;
    Ok(Redirect::to("/login"))
}

/// The app's routes behind `layer`.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/count", post(count))
        .route("/sign-out-elsewhere", post(sign_out_elsewhere))
        .route("/logout", post(logout))
        .layer(layer)
}

/// Serves `app` on `127.0.0.1:3000`; the peer address feeds client
/// binding and guessing detection.
pub async fn serve(app: Router) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("open http://localhost:3000/ (alice / wonderland)");
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}

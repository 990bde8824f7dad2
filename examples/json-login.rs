//! Sign-in for a single-page app: the page talks JSON with `fetch`, and
//! sends the CSRF token in the `X-CSRF-Token` header of every unsafe
//! request (the cookie itself is `HttpOnly`: scripts never see it).
//!
//! `cargo run -p tessera-examples --example json-login`, then open
//! <http://localhost:3000/> (`alice` / `wonderland`).

use std::net::SocketAddr;

use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera::axum::{Error, Session, SessionLayer};
use tessera::{MemoryStore, SessionManager};

const PAGE: &str = r#"<!doctype html>
<p id="who"></p>
<form id="login"><input name="username"><input name="password" type="password"><button>Sign in</button></form>
<button id="count">Count</button> <button id="logout">Log out</button>
<script>
let csrf = "";
async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: body && JSON.stringify(body),
  });
  return response.json();
}
async function refresh() {
  const me = await call("GET", "/api/me");
  csrf = me.csrf; // a fresh masked token with every answer
  document.getElementById("who").textContent =
    me.user ? `${me.user}: ${me.count}` : "signed out";
}
document.getElementById("login").onsubmit = async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  await call("POST", "/api/login", Object.fromEntries(form));
  refresh();
};
document.getElementById("count").onclick = async () => { await call("POST", "/api/count"); refresh(); };
document.getElementById("logout").onclick = async () => { await call("POST", "/api/logout"); refresh(); };
refresh();
</script>"#;

/// Who is signed in, their count, and a CSRF token for the next call.
async fn me(session: Session) -> Result<Json<Value>, Error> {
    let user = session.subject().await?;
    let count: u64 = session.get("count").await?.unwrap_or(0);
    let csrf = session.csrf_token().await?;
    Ok(Json(json!({ "user": user, "count": count, "csrf": csrf })))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(session: Session, Json(form): Json<Credentials>) -> Result<Json<Value>, Error> {
    let ok = form.username == "alice" && form.password == "wonderland";
    if ok {
        session.login(&form.username, 1).await?;
    }
    Ok(Json(json!({ "signed_in": ok })))
}

async fn count(session: Session) -> Result<Json<Value>, Error> {
    session
        .require_auth(1, std::time::Duration::from_secs(12 * 3600))
        .await?;
    let count = session
        .update("count", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(Json(json!({ "count": count })))
}

async fn logout(session: Session) -> Result<Json<Value>, Error> {
    session.logout().await?;
    Ok(Json(json!({ "signed_in": false })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = SessionManager::builder(MemoryStore::new()).build()?;
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/me", get(me))
        .route("/api/login", post(login))
        .route("/api/count", post(count))
        .route("/api/logout", post(logout))
        .layer(SessionLayer::new(manager));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("open http://localhost:3000/ (alice / wonderland)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

//! Bots cannot fill the store: a visitor who only looks at the sign-in
//! page gets a stateless CSRF token (bound to a cookie of its own), so
//! 100 000 anonymous visits of `GET /login` leave the store empty, while a
//! visitor who submits the form signs in as before.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tessera::{MemoryStore, SessionManager};
use tessera_demo::{DemoMode, app};
use tower::ServiceExt;

const VISITS: usize = 100_000;

fn demo() -> (MemoryStore, Router) {
    let store = MemoryStore::new();
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    (store, app(manager, DemoMode::Server).expect("demo app"))
}

/// The demo's answer to `request`.
async fn answer(app: &Router, request: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(request).await.expect("answer")
}

/// The `name=value` of each `Set-Cookie` of a response.
fn set_cookies(response: &axum::response::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .collect()
}

/// The CSRF token a page's form carries.
async fn form_token(response: axum::response::Response) -> String {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let page = String::from_utf8(body.to_vec()).expect("utf-8");
    let start = page
        .find("name=\"csrf_token\" value=\"")
        .expect("a CSRF field")
        + "name=\"csrf_token\" value=\"".len();
    page[start..].split('"').next().expect("token").to_owned()
}

fn visit(cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get("/login").header(header::ACCEPT, "text/html");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).expect("request")
}

fn sign_in(cookie: &str, token: &str) -> Request<Body> {
    Request::post("/login")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(format!(
            "username=alice&password=alice-demo-password&csrf_token={token}"
        )))
        .expect("request")
}

#[tokio::test]
async fn a_hundred_thousand_visits_of_the_login_page_store_nothing() {
    let (store, app) = demo();
    for _ in 0..VISITS {
        let response = answer(&app, visit(None)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(store.len(), 0, "a form page must not create sessions");

    // A visitor's page sets only the pre-session CSRF cookie, and its
    // token signs in with that cookie.
    let first = answer(&app, visit(None)).await;
    let cookies = set_cookies(&first);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert!(
        cookies[0].starts_with("__Host-tessera-csrf="),
        "{cookies:?}"
    );
    let cookie = cookies[0].clone();
    let token = form_token(first).await;
    // Reloading keeps the cookie (no new one) and gives another valid token.
    let again = answer(&app, visit(Some(&cookie))).await;
    assert!(set_cookies(&again).is_empty());
    let second_token = form_token(again).await;
    assert_ne!(token, second_token, "tokens are masked afresh");

    // Another visitor's cookie does not go with this token.
    let other = answer(&app, visit(None)).await;
    let other_cookie = set_cookies(&other)[0].clone();
    let refused = answer(&app, sign_in(&other_cookie, &token)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.headers().get("tessera-error").map(|v| v.as_bytes()),
        Some(&b"csrf_invalid_token"[..])
    );
    assert_eq!(store.len(), 0);

    let signed_in = answer(&app, sign_in(&cookie, &second_token)).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&signed_in)
            .iter()
            .any(|c| c.starts_with("__Host-tessera=")),
        "signing in sets the session cookie"
    );
    assert_eq!(store.len(), 1, "the sign-in is the first session stored");
}

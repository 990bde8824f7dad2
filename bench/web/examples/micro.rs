use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use std::time::Instant;
use tessera_axum::{Error, Session, SessionLayer};
use tessera_core::{MemoryStore, NewSession, SessionManager};
use tower::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let manager = SessionManager::builder(MemoryStore::new()).build().unwrap();
    let issued = manager.create(NewSession { subject: Some("u".into()), data: Some(tessera_core::SessionData::from_json(r#"{"name":"bench-user","__tessera_csrf":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#).unwrap()), ..Default::default() }).await.unwrap();
    let cookie = format!("__Host-tessera={}", issued.token.expose());
    let with = Router::new().route("/me", get(|s: Session| async move { Ok::<_, Error>(s.get::<String>("name").await?.unwrap_or_default()) })).layer(SessionLayer::new(manager.clone()));
    let without = Router::new().route("/me", get(|| async { "bench-user".to_owned() }));
    let layer_only = Router::new().route("/me", get(|| async { "bench-user".to_owned() })).layer(SessionLayer::new(manager.clone()));
    for (name, app) in [("without", without), ("layer-untouched", layer_only), ("with", with)] {
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            let req = Request::get("/me").header("cookie", &cookie).body(Body::empty()).unwrap();
            let r = app.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status(), 200);
        }
        println!("{name}: {:.2} µs/request", start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let start = Instant::now();
    for _ in 0..200_000 { manager.validate(issued.token.expose(), None).await.unwrap(); }
    cookie_read_bench(&cookie);
    println!("validate: {:.2} µs", start.elapsed().as_secs_f64() * 1e6 / 200_000.0);
}
#[allow(dead_code)]
fn cookie_read_bench(cookie: &str) {
    use tessera_axum::cookies::{CookieAttributes, CookieController, SingleCookie};
    let c = SingleCookie::new(CookieAttributes::default());
    let mut h = http::HeaderMap::new();
    h.insert("cookie", cookie.parse().unwrap());
    let start = Instant::now();
    for _ in 0..200_000 { std::hint::black_box(c.read(&h)); }
    println!("cookie read: {:.2} µs", start.elapsed().as_secs_f64() * 1e6 / 200_000.0);
}

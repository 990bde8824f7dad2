//! The router in-process, on a manual clock: renewal through forward-auth,
//! expiry reasons, a store outage (fail closed, recover without restart),
//! and device-bound sessions behind forward-auth (`in_process/dbsc.rs`).

#[path = "in_process/dbsc.rs"]
mod dbsc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tessera::store::{Call, Intercept, Intercepted, Operation, StoreError};
use tessera::{ManualClock, MemoryStore, SessionManager, Timestamp};
use tesserad::api::{AppState, HttpLimits, router};
use tesserad::keys::ApiKeys;
use tesserad::metrics::{Metrics, MetricsEventSink};
use tower::ServiceExt;

const KEY: &str = "in-process-key";

/// A switch in front of a real memory store that makes every operation
/// fail or hang, as a backend does when it goes down.
#[derive(Clone, Default)]
struct Switch {
    /// 0 up, 1 failing, 2 hanging.
    mode: Arc<AtomicU8>,
}

impl Intercept for Switch {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        _op: Operation,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            0 => call.await,
            1 => Err(StoreError::Unavailable {
                message: "connection refused".into(),
                source: None,
            }),
            _ => std::future::pending().await,
        }
    }
}

type Switchable = Intercepted<MemoryStore, Switch>;

struct App {
    router: Router,
    clock: ManualClock,
    store: Switchable,
    metrics: Arc<Metrics>,
}

fn app(request_timeout: Duration) -> App {
    app_with(request_timeout, |state| state)
}

/// The router over a fresh memory store, with the state changed by `configure`.
fn app_with(request_timeout: Duration, configure: impl FnOnce(AppState) -> AppState) -> App {
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store = Switchable::new(MemoryStore::new(), Switch::default());
    let metrics = Arc::new(Metrics::new(None));
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .events(MetricsEventSink::new(metrics.clone()))
        .build()
        .expect("manager");
    let state = AppState::new(
        manager,
        Arc::new(ApiKeys::new(Some(KEY), None).expect("keys")),
    )
    .metrics(metrics.clone())
    .store_description("memory:");
    let router = router(
        configure(state),
        HttpLimits {
            request_timeout,
            ..HttpLimits::default()
        },
    );
    App {
        router,
        clock,
        store,
        metrics,
    }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::post(path)
            .header("authorization", format!("Bearer {KEY}"))
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn get(&self, path: &str) -> StatusCode {
        let request = Request::get(path).body(Body::empty()).expect("request");
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("response")
            .status()
    }

    async fn forward_auth(&self, cookie: Option<&str>) -> axum::response::Response {
        let mut request = Request::get("/v1/auth").header("user-agent", "Firefox");
        if let Some(token) = cookie {
            request = request.header("cookie", format!("theme=dark; __Host-tessera={token}"));
        }
        self.router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    async fn login(&self, subject: &str) -> String {
        let (status, body) = self
            .post("/v1/sessions/login", json!({"subject": subject}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }
}

#[tokio::test]
async fn forward_auth_passes_renewed_tokens_on_as_set_cookie() {
    let app = app(Duration::from_secs(10));
    assert_eq!(
        app.forward_auth(None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.forward_auth(Some("tss_garbage")).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // An anonymous session does not pass the gate.
    let (_, anonymous) = app.post("/v1/sessions", json!({})).await;
    let anonymous = anonymous["token"].as_str().expect("token");
    assert_eq!(
        app.forward_auth(Some(anonymous)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let token = app.login("zoë").await;
    let response = app.forward_auth(Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["tessera-subject"], "zo%C3%AB");
    assert_eq!(
        response.headers()["tessera-session-id"].len(),
        22,
        "the public id"
    );
    assert!(response.headers().get("set-cookie").is_none());

    // Past renew_after (15 min), validation renews: the new token comes back
    // as a cookie the proxy hands to the browser.
    app.clock.advance(Duration::from_secs(16 * 60));
    let response = app.forward_auth(Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()["set-cookie"].to_str().expect("ascii");
    let renewed = set_cookie
        .strip_prefix("__Host-tessera=")
        .and_then(|rest| rest.split(';').next())
        .expect("cookie value");
    assert_ne!(renewed, token);
    // The session layer's cookie, attribute for attribute.
    let mut attributes: Vec<&str> = set_cookie.split("; ").skip(1).collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let response = app.forward_auth(Some(renewed)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("set-cookie").is_none());

    // The old token works during the grace, and counts as stolen after it.
    assert_eq!(
        app.forward_auth(Some(&token)).await.status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(11));
    assert_eq!(
        app.forward_auth(Some(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.forward_auth(Some(renewed)).await.status(),
        StatusCode::UNAUTHORIZED,
        "reuse of a stolen token revokes the whole session"
    );
}

#[tokio::test]
async fn expiry_reasons_over_http() {
    let app = app(Duration::from_secs(10));
    let idle = app.login("ann").await;
    app.clock.advance(Duration::from_secs(31 * 60));
    let (status, body) = app
        .post("/v1/sessions/validate", json!({"token": idle}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "expired_idle");

    let (status, body) = app
        .post(
            "/v1/sessions",
            json!({"subject": "ann", "absolute_timeout_s": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let absolute = body["token"].as_str().expect("token").to_owned();
    app.clock.advance(Duration::from_secs(9 * 60));
    let (status, _) = app
        .post("/v1/sessions/validate", json!({"token": absolute}))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(2 * 60));
    let (status, body) = app
        .post("/v1/sessions/validate", json!({"token": absolute}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["reason"], "expired_absolute");
}

#[tokio::test]
async fn a_store_outage_fails_closed_and_recovers() {
    let app = app(Duration::from_secs(10));
    let token = app.login("ann").await;

    app.store.hook().mode.store(1, Ordering::SeqCst);
    app.clock.advance(Duration::from_secs(2));
    for (path, body) in [
        ("/v1/sessions/validate", json!({"token": token})),
        ("/v1/sessions", json!({})),
        ("/v1/sessions/login", json!({"subject": "ann"})),
        ("/v1/sessions/logout", json!({"token": token})),
    ] {
        let (status, body) = app.post(path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["error"], "store_unavailable");
    }
    assert_eq!(
        app.forward_auth(Some(&token)).await.status(),
        StatusCode::UNAUTHORIZED,
        "forward-auth answers only 200 or 401: never valid while the store is down"
    );
    assert_eq!(app.get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/healthz").await, StatusCode::OK);

    app.store.hook().mode.store(0, Ordering::SeqCst);
    let (status, _) = app
        .post("/v1/sessions/validate", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::OK, "recovers without a restart");
    assert_eq!(app.get("/readyz").await, StatusCode::OK);
}

#[tokio::test]
async fn a_hanging_store_gets_an_answer() {
    let app = app(Duration::from_millis(200));
    let token = app.login("ann").await;
    app.store.hook().mode.store(2, Ordering::SeqCst);
    app.clock.advance(Duration::from_secs(2));
    let (status, body) = app
        .post("/v1/sessions/validate", json!({"token": token}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "store_unavailable");
}

//! A small test app behind the session layer, and a cookie-jar client that
//! drives it in-process (real MemoryStore, real manager, no mocks).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Form;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use tessera_axum::{Error, Session, SessionLayer, SessionLayerBuilder};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::{Intercepted, SessionStore};
use tessera_core::testkit::{CallCounter, CountingStore};
use tessera_core::{
    BindingPolicy, CollectingEventSink, ManualClock, MemoryStore, SessionManager, Timestamp,
};
use tower::ServiceExt;

/// Which storage the layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Server,
    Sealed,
}

pub const MODES: [Mode; 2] = [Mode::Server, Mode::Sealed];

pub struct TestApp {
    pub router: Router,
    pub store: Arc<CountingStore>,
    pub clock: ManualClock,
    pub events: CollectingEventSink,
    pub manager: SessionManager,
}

pub fn keys() -> KeyRing {
    KeyRing::new(SealingKey::new(1, [42; 32]))
}

pub fn app(mode: Mode) -> TestApp {
    app_with(mode, BindingPolicy::Log, |b| b)
}

pub fn app_with(
    mode: Mode,
    binding: BindingPolicy,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> TestApp {
    let inner: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let store: Arc<CountingStore> = Arc::new(Intercepted::new(inner, CallCounter::default()));
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let events = CollectingEventSink::new();
    let manager = SessionManager::builder_shared(store.clone())
        .clock(clock.clone())
        .events(events.clone())
        .binding(binding)
        .guessing(5, Duration::from_secs(60))
        // Sealed mode keeps its epochs in this memory store.
        .allow_volatile_epochs()
        .build()
        .expect("valid manager");
    let mut builder = SessionLayer::builder(manager.clone());
    if mode == Mode::Sealed {
        builder = builder.sealed(keys());
    }
    let layer = configure(builder).build().expect("valid layer");
    TestApp {
        router: router().layer(layer),
        store,
        clock,
        events,
        manager,
    }
}

#[derive(Deserialize)]
struct Note {
    text: String,
}

/// A page for signed-in users only.
async fn private(s: Session) -> Result<&'static str, Error> {
    s.require_auth(1, Duration::from_secs(3600)).await?;
    Ok("private")
}

pub fn router() -> Router {
    Router::new()
        .route("/untouched", get(|| async { "static" }).post(|| async { "posted" }))
        .route(
            "/private",
            get(private).post(private),
        )
        .route(
            "/whoami",
            get(|s: Session| async move {
                Ok::<_, Error>(s.subject().await?.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/rejected",
            get(|s: Session| async move {
                Ok::<_, Error>(
                    s.rejected()
                        .await?
                        .map_or("none".to_owned(), |r| r.as_str().to_owned()),
                )
            }),
        )
        .route(
            "/get/{key}",
            get(
                |s: Session, axum::extract::Path(key): axum::extract::Path<String>| async move {
                    Ok::<_, Error>(Json(s.get::<serde_json::Value>(&key).await?))
                },
            ),
        )
        .route(
            "/set/{key}/{value}",
            post(
                |s: Session,
                 axum::extract::Path((key, value)): axum::extract::Path<(String, String)>| async move {
                    s.insert(&key, value).await?;
                    Ok::<_, Error>("ok")
                },
            ),
        )
        .route(
            "/incr",
            post(|s: Session| async move {
                let n: u64 = s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
                Ok::<_, Error>(n.to_string())
            }),
        )
        .route(
            "/csrf",
            get(|s: Session| async move { s.csrf_token().await }),
        )
        .route(
            "/login/{user}",
            post(
                |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    s.login(&user, 1).await?;
                    Ok::<_, Error>("welcome")
                },
            ),
        )
        .route(
            "/signin/{user}",
            post(
                |s: Session, axum::extract::Path(user): axum::extract::Path<String>| async move {
                    s.login(&user, 1).await?;
                    s.insert("user", &user).await?;
                    let visits: u64 = s.update("visits", |v: Option<u64>| v.unwrap_or(0) + 1).await?;
                    // "huge": over the data limit; "wide": within it, but
                    // over what sealed cookies can carry.
                    let payload = match user.as_str() {
                        "huge" => 1 << 20,
                        "wide" => 20_000,
                        _ => 1,
                    };
                    s.insert("payload", "x".repeat(payload)).await?;
                    let csrf = s.csrf_token().await?;
                    Ok::<_, Error>(format!("{visits} {csrf}"))
                },
            ),
        )
        .route(
            "/late-login",
            post(|s: Session| async move {
                // A task that outlives the request keeps the session.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    s.login("late", 1).await
                });
                "later"
            }),
        )
        .route(
            "/logout",
            post(|s: Session| async move {
                s.logout().await?;
                Ok::<_, Error>("bye")
            }),
        )
        .route(
            "/note",
            post(|s: Session, Form(note): Form<Note>| async move {
                s.insert("note", note.text).await?;
                Ok::<_, Error>("noted")
            }),
        )
        .route(
            "/big/{bytes}",
            post(
                |s: Session, axum::extract::Path(bytes): axum::extract::Path<usize>| async move {
                    s.insert("big", "x".repeat(bytes)).await?;
                    Ok::<_, Error>("stored")
                },
            ),
        )
        .route(
            "/revoke-others",
            post(|s: Session| async move {
                s.revoke_others().await?;
                Ok::<_, Error>("done")
            }),
        )
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A browser stand-in: keeps cookies like a jar and sends them back.
#[derive(Clone, Default)]
pub struct Client {
    pub jar: BTreeMap<String, String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub async fn send(&mut self, app: &TestApp, request: http::request::Builder) -> Reply {
        self.send_body(app, request, Body::empty()).await
    }

    pub async fn send_body(
        &mut self,
        app: &TestApp,
        mut request: http::request::Builder,
        body: Body,
    ) -> Reply {
        if let Some(cookie) = self.cookie_header() {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(ua) = &self.user_agent {
            request = request.header(header::USER_AGENT, ua);
        }
        let reply = raw(app, request.body(body).expect("request")).await;
        for set in reply.set_cookies() {
            let pair = set.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if set.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        reply
    }

    pub async fn get(&mut self, app: &TestApp, path: &str) -> Reply {
        self.send(app, Request::get(path)).await
    }

    /// A same-origin POST with a fresh CSRF token, like a page's form would send.
    pub async fn post(&mut self, app: &TestApp, path: &str) -> Reply {
        let token = self.get(app, "/csrf").await.body;
        self.post_with_token(app, path, &token).await
    }

    /// A same-origin POST carrying `token` as its CSRF token.
    pub async fn post_with_token(&mut self, app: &TestApp, path: &str, token: &str) -> Reply {
        self.send(
            app,
            Request::post(path)
                .header("sec-fetch-site", "same-origin")
                .header("x-csrf-token", token),
        )
        .await
    }

    pub fn session_cookie(&self) -> Option<&String> {
        self.jar.get("__Host-tessera")
    }
}

pub async fn raw(app: &TestApp, request: Request<Body>) -> Reply {
    let response = app
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

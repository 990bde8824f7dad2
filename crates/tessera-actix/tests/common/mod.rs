//! A small test app behind the session middleware, and a cookie-jar client
//! that drives it through actix-web's own service stack (real MemoryStore,
//! real manager, no mocks).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, web};
use serde::Deserialize;
use tessera_actix::{Error, Session, SessionMiddleware, SessionMiddlewareBuilder};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::{Intercepted, SessionStore};
use tessera_core::testkit::{CallCounter, CountingStore};
use tessera_core::{
    BindingPolicy, CollectingEventSink, ManualClock, MemoryStore, SessionManager, Timestamp,
};

/// Which storage the middleware uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Server,
    Sealed,
}

pub const MODES: [Mode; 2] = [Mode::Server, Mode::Sealed];

pub struct TestApp {
    pub middleware: SessionMiddleware,
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
    configure: impl FnOnce(SessionMiddlewareBuilder) -> SessionMiddlewareBuilder,
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
    let mut builder = SessionMiddleware::builder(manager.clone());
    if mode == Mode::Sealed {
        builder = builder.sealed(keys());
    }
    let middleware = configure(builder).build().expect("valid middleware");
    TestApp {
        middleware,
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

type Reply_ = Result<String, Error>;

async fn whoami(s: Session) -> Reply_ {
    Ok(s.subject().await?.unwrap_or_else(|| "anonymous".into()))
}

async fn rejected(s: Session) -> Reply_ {
    Ok(s.rejected()
        .await?
        .map_or("none".to_owned(), |r| r.as_str().to_owned()))
}

async fn get_key(s: Session, key: web::Path<String>) -> Result<HttpResponse, Error> {
    let value = s.get::<serde_json::Value>(&key).await?;
    Ok(HttpResponse::Ok().json(value))
}

async fn set_key(s: Session, path: web::Path<(String, String)>) -> Reply_ {
    let (key, value) = path.into_inner();
    s.insert(&key, value).await?;
    Ok("ok".into())
}

async fn incr(s: Session) -> Reply_ {
    let n: u64 = s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    Ok(n.to_string())
}

async fn csrf(s: Session) -> Reply_ {
    s.csrf_token().await
}

async fn login(s: Session, user: web::Path<String>) -> Reply_ {
    s.login(&user, 1).await?;
    Ok("welcome".into())
}

async fn signin(s: Session, user: web::Path<String>) -> Reply_ {
    s.login(&user, 1).await?;
    s.insert("user", user.as_str()).await?;
    let visits: u64 = s
        .update("visits", |v: Option<u64>| v.unwrap_or(0) + 1)
        .await?;
    // "huge": over the data limit; "wide": within it, but over what sealed
    // cookies can carry.
    let payload = match user.as_str() {
        "huge" => 1 << 20,
        "wide" => 20_000,
        _ => 1,
    };
    s.insert("payload", "x".repeat(payload)).await?;
    let csrf = s.csrf_token().await?;
    Ok(format!("{visits} {csrf}"))
}

async fn late_login(s: Session) -> &'static str {
    // A task that outlives the request keeps the session.
    actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        s.login("late", 1).await
    });
    "later"
}

async fn logout(s: Session) -> Reply_ {
    s.logout().await?;
    Ok("bye".into())
}

async fn note(s: Session, note: web::Form<Note>) -> Reply_ {
    s.insert("note", &note.text).await?;
    Ok("noted".into())
}

async fn big(s: Session, bytes: web::Path<usize>) -> Reply_ {
    s.insert("big", "x".repeat(*bytes)).await?;
    Ok("stored".into())
}

async fn revoke_others(s: Session) -> Reply_ {
    s.revoke_others().await?;
    Ok("done".into())
}

/// A page for signed-in users only.
async fn private(s: Session) -> Result<&'static str, Error> {
    s.require_auth(1, Duration::from_secs(3600)).await?;
    Ok("private")
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/untouched", web::get().to(|| async { "static" }))
        .route("/private", web::get().to(private))
        .route("/private", web::post().to(private))
        .route("/untouched", web::post().to(|| async { "posted" }))
        .route("/whoami", web::get().to(whoami))
        .route("/rejected", web::get().to(rejected))
        .route("/get/{key}", web::get().to(get_key))
        .route("/set/{key}/{value}", web::post().to(set_key))
        .route("/incr", web::post().to(incr))
        .route("/csrf", web::get().to(csrf))
        .route("/login/{user}", web::post().to(login))
        .route("/signin/{user}", web::post().to(signin))
        .route("/late-login", web::post().to(late_login))
        .route("/logout", web::post().to(logout))
        .route("/note", web::post().to(note))
        .route("/big/{bytes}", web::post().to(big))
        .route("/revoke-others", web::post().to(revoke_others));
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .map(|(_, value)| value.clone())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
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

    pub async fn send(&mut self, app: &TestApp, mut request: TestRequest) -> Reply {
        if let Some(cookie) = self.cookie_header() {
            request = request.insert_header(("cookie", cookie));
        }
        if let Some(ua) = &self.user_agent {
            request = request.insert_header(("user-agent", ua.as_str()));
        }
        let reply = raw(app, request).await;
        self.keep(&reply);
        reply
    }

    /// Takes the response's cookies into the jar.
    pub fn keep(&mut self, reply: &Reply) {
        for set in reply.set_cookies() {
            let pair = set.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if set.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub async fn get(&mut self, app: &TestApp, path: &str) -> Reply {
        self.send(app, TestRequest::get().uri(path)).await
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
            TestRequest::post()
                .uri(path)
                .insert_header(("sec-fetch-site", "same-origin"))
                .insert_header(("x-csrf-token", token)),
        )
        .await
    }

    pub fn session_cookie(&self) -> Option<&String> {
        self.jar.get("__Host-tessera")
    }
}

/// One request through a fresh app instance behind the app's middleware.
pub async fn raw(app: &TestApp, request: TestRequest) -> Reply {
    let service =
        test::init_service(App::new().wrap(app.middleware.clone()).configure(routes)).await;
    let response = test::call_service(&service, request.to_request()).await;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = test::read_body(response).await;
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

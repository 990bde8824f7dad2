//! The framework scenario suite: every behaviour a session layer promises
//! over HTTP, written once and run by each framework integration
//! (tessera-axum, tessera-actix) against a real server of its own on a
//! loopback port, driven by a cookie-keeping HTTP client.
//!
//! An integration implements [`AppUnderTest`] (start a server with the
//! [standard routes](routes) behind a layer; only handler wiring and
//! request/response translation) and expands
//! [`framework_scenarios!`](crate::framework_scenarios)
//! in one of its test binaries, which declares one test per scenario:
//!
//! ```text
//! struct Axum;
//! impl tessera_web::testkit::AppUnderTest for Axum { /* … */ }
//!
//! mod scenarios {
//!     tessera_web::framework_scenarios!(super::Axum, #[tokio::test]);
//! }
//! ```
//!
//! (`crates/tessera-axum/tests/layer.rs` and
//! `crates/tessera-actix/tests/middleware.rs` are the two in full.)
//!
//! The scenarios are in [`scenarios`]: the layer's own guarantees, then
//! those of tower-sessions' integration tests (`tower_sessions_*`) and
//! actix-session's acceptance suite (`actix_session_*`), each deliberate
//! difference from those libraries written in the scenario, then
//! device-bound sessions (`dbsc_*`). Every scenario gets a fresh
//! [`MemoryStore`] behind a call counter, a [`ManualClock`] and an event
//! collector; time moves by the clock, never by sleeping.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::{Intercepted, SessionStore};
use tessera_core::testkit::{CallCounter, CountingStore};
use tessera_core::{
    BindingPolicy, CollectingEventSink, ManualClock, MemoryStore, SessionManager, Timestamp,
};

use crate::{FromWebConfig, WebConfigBuilder};

pub mod routes;
pub mod scenarios;

/// A framework integration under test: how to serve the standard routes
/// behind one of its layers.
pub trait AppUnderTest: 'static {
    /// The framework's layer or middleware, built from a [`WebConfigBuilder`].
    type Layer: FromWebConfig;

    /// Starts a server on `127.0.0.1` (any free port) that serves every
    /// route of [`routes`] behind `layer`, with more than one request in
    /// flight at a time, and passes the connection's peer address to the
    /// layer. It runs until the returned [`Served`] is dropped.
    fn serve(layer: Self::Layer) -> impl Future<Output = Served>;
}

/// A running server of an [`AppUnderTest`]; dropping it stops the server.
pub struct Served {
    addr: SocketAddr,
    stop: Option<Box<dyn FnOnce()>>,
}

impl Served {
    /// A server listening on `addr`, stopped by `stop`.
    pub fn new(addr: SocketAddr, stop: impl FnOnce() + 'static) -> Self {
        Self {
            addr,
            stop: Some(Box::new(stop)),
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Declares one test per scenario of [`scenarios`] for `$app` (an
/// [`AppUnderTest`]), each marked with the given test attribute (the
/// framework's async test runner). The list of scenarios is kept here, once.
#[macro_export]
macro_rules! framework_scenarios {
    ($app:ty, #[$attr:meta]) => {
        $crate::__scenario_tests!(
            $app,
            $attr,
            untouched_and_read_only_requests_cost_nothing_and_set_no_cookie,
            first_write_sets_a_hardened_cookie_once_with_no_store,
            strict_same_site_is_configurable,
            renewal_sets_the_new_token_transparently,
            logout_removes_the_cookie_and_the_old_value_is_refused,
            tokens_are_accepted_only_from_the_cookie,
            csrf_needs_a_token_of_this_session_and_a_same_site_request,
            login_issues_a_new_token_and_csrf_secret,
            login_and_the_data_set_after_it_are_one_write,
            a_login_after_the_response_left_is_written_at_once,
            parallel_requests_of_one_browser_lose_no_write,
            bad_cookies_mean_anonymous_never_a_server_error,
            tampered_and_retired_seals_are_refused,
            sealed_sessions_span_numbered_cookies_up_to_the_limit,
            revoking_the_subject_signs_out_other_browsers_in_both_modes,
            unknown_and_expired_cookies_are_cleared_without_clear_site_data,
            guessing_is_reported_and_refused_only_when_opted_in,
            a_guessing_client_is_refused_with_429,
            the_client_ip_header_is_believed_only_from_trusted_proxies,
            idle_timeout_signs_out,
            binding_mismatch_under_reject_is_a_typed_rejection,
            a_session_bound_to_a_user_agent_presented_without_one_is_a_mismatch,
            sealed_mode_writes_nothing_to_the_store_but_epochs,
            signed_out_page_visits_go_to_the_sign_in_page_when_one_is_set,
            a_sign_in_page_must_be_a_path_on_this_site,
            tower_sessions_no_session_set,
            tower_sessions_bogus_session_cookie,
            tower_sessions_malformed_session_cookie,
            tower_sessions_insert_session,
            tower_sessions_get_session,
            tower_sessions_get_no_value,
            tower_sessions_remove_last_value,
            tower_sessions_cycle_session_id,
            tower_sessions_flush_session,
            tower_sessions_expiry,
            actix_session_basic_workflow,
            actix_session_expiration_is_refreshed_on_changes,
            actix_session_complex_workflow,
            actix_session_guard,
            dbsc_register_refresh_and_a_stolen_jar_through_the_layer,
            dbsc_refresh_refuses_missing_ids_and_ended_sessions,
            dbsc_browsers_without_it_are_served_as_before,
            dbsc_layer_without_the_option_sends_no_offer,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenario_tests {
    ($app:ty, $attr:meta, $($name:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $name() {
                $crate::testkit::scenarios::$name::<$app>().await;
            }
        )*
    };
}

/// Where a layer keeps its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the manager's store, the cookie carrying a token.
    Server,
    /// In the cookie itself, sealed (the store keeps only epochs).
    Sealed,
}

/// Both modes, for scenarios that hold in each.
pub const MODES: [Mode; 2] = [Mode::Server, Mode::Sealed];

/// The name of the session cookie under the default settings.
pub const COOKIE: &str = "__Host-tessera";

/// The sealing keys of [`Mode::Sealed`] layers.
pub fn keys() -> KeyRing {
    KeyRing::new(SealingKey::new(1, [42; 32]))
}

/// A server under test with what stands behind it.
pub struct TestApp {
    /// The memory store, counting its calls.
    pub store: Arc<CountingStore>,
    /// The clock of the manager.
    pub clock: ManualClock,
    /// Events of the manager.
    pub events: CollectingEventSink,
    /// The manager behind the layer.
    pub manager: SessionManager,
    server: Served,
    http: reqwest::Client,
}

impl TestApp {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// A server of `A` with default settings in `mode`.
pub async fn app<A: AppUnderTest>(mode: Mode) -> TestApp {
    app_with::<A>(mode, BindingPolicy::Log, |b| b).await
}

/// A server of `A` in `mode` with a manager of `binding` policy and the
/// layer settings of `configure`, over a fresh memory store. The manager
/// counts guessing after 5 bad tokens a minute.
pub async fn app_with<A: AppUnderTest>(
    mode: Mode,
    binding: BindingPolicy,
    configure: impl FnOnce(WebConfigBuilder<A::Layer>) -> WebConfigBuilder<A::Layer>,
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
    let mut builder = WebConfigBuilder::new(manager.clone());
    if mode == Mode::Sealed {
        builder = builder.sealed(keys());
    }
    serve::<A>(store, clock, events, manager, configure(builder)).await
}

/// A second server of `A` over the store and clock of `app`, with a new
/// manager and the layer settings of `configure` (a restart with other
/// settings, say other sealing keys).
pub async fn rebuilt<A: AppUnderTest>(
    app: &TestApp,
    configure: impl FnOnce(WebConfigBuilder<A::Layer>) -> WebConfigBuilder<A::Layer>,
) -> TestApp {
    let manager = SessionManager::builder_shared(app.store.clone())
        .clock(app.clock.clone())
        .allow_volatile_epochs()
        .build()
        .expect("manager");
    let builder = configure(WebConfigBuilder::new(manager.clone()));
    serve::<A>(
        app.store.clone(),
        app.clock.clone(),
        app.events.clone(),
        manager,
        builder,
    )
    .await
}

async fn serve<A: AppUnderTest>(
    store: Arc<CountingStore>,
    clock: ManualClock,
    events: CollectingEventSink,
    manager: SessionManager,
    builder: WebConfigBuilder<A::Layer>,
) -> TestApp {
    let layer = builder.build().expect("valid layer");
    let server = A::serve(layer).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    TestApp {
        store,
        clock,
        events,
        manager,
        server,
        http,
    }
}

/// A request to send: method, path and query, headers, body.
#[derive(Debug, Clone)]
pub struct Req {
    method: reqwest::Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Req {
    /// A `GET` of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(reqwest::Method::GET, path)
    }

    /// A `POST` to `path`, without a body.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(reqwest::Method::POST, path)
    }

    fn new(method: reqwest::Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header; its value may be any bytes a header can carry.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// A form body (`application/x-www-form-urlencoded`), already encoded.
    pub fn form(self, encoded: impl Into<String>) -> Self {
        let mut req = self.header("content-type", "application/x-www-form-urlencoded");
        req.body = encoded.into().into_bytes();
        req
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Every header, names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body, not {:?}: {e}", self.body))
    }
}

/// Sends `req` to `app` as it is: no cookies added, none kept.
pub async fn raw(app: &TestApp, req: Req) -> Reply {
    send_to(app.http.clone(), app.addr(), req).await
}

async fn send_to(http: reqwest::Client, addr: SocketAddr, req: Req) -> Reply {
    let mut request = http.request(req.method, format!("http://{addr}{}", req.path));
    for (name, value) in req.headers {
        let value = reqwest::header::HeaderValue::from_bytes(&value).expect("a header value");
        request = request.header(name, value);
    }
    let response = request.body(req.body).send().await.expect("a response");
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
    let body = response.bytes().await.expect("a body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A browser stand-in: keeps cookies like a jar (every cookie for every
/// path, `Secure` ones over plain HTTP too) and sends them back.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The cookies, by name.
    pub jar: BTreeMap<String, String>,
    /// The `User-Agent` header to send, if any.
    pub user_agent: Option<String>,
}

impl Client {
    /// An empty jar, no `User-Agent`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `Cookie` header the jar sends, if it holds any cookie.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Sends `req` with the jar's cookies and keeps what the response sets.
    pub async fn send(&mut self, app: &TestApp, mut req: Req) -> Reply {
        if let Some(cookie) = self.cookie_header() {
            req = req.header("cookie", cookie);
        }
        if let Some(ua) = &self.user_agent {
            req = req.header("user-agent", ua);
        }
        let reply = raw(app, req).await;
        self.keep(&reply);
        reply
    }

    /// Takes the response's cookies into the jar (a `Max-Age=0` removes).
    pub fn keep(&mut self, reply: &Reply) {
        for set in reply.set_cookies() {
            let pair = set.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if set.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// A `GET` of `path`.
    pub async fn get(&mut self, app: &TestApp, path: &str) -> Reply {
        self.send(app, Req::get(path)).await
    }

    /// A same-origin `POST` with a fresh CSRF token, like a page's form would send.
    pub async fn post(&mut self, app: &TestApp, path: &str) -> Reply {
        let token = self.get(app, "/csrf").await.body;
        self.post_with_token(app, path, &token).await
    }

    /// A same-origin `POST` carrying `token` as its CSRF token.
    pub async fn post_with_token(&mut self, app: &TestApp, path: &str, token: &str) -> Reply {
        self.send(
            app,
            Req::post(path)
                .header("sec-fetch-site", "same-origin")
                .header("x-csrf-token", token),
        )
        .await
    }

    /// The session cookie's value, if the jar holds one.
    pub fn session_cookie(&self) -> Option<&String> {
        self.jar.get(COOKIE)
    }
}

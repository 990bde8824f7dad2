//! Every tesserad API request, in-process through the real router over a
//! memory store: arbitrary bodies (and path parameters, query strings and
//! forward-auth cookies) never panic and never get a 5xx; every answer with
//! a body is JSON.
//!
//! Input: one byte picks the endpoint; for endpoints with a path parameter
//! (or a cookie, for forward-auth) the bytes up to the first `\n` are that
//! parameter (percent-encoded), for `DELETE /v1/subjects/{subject}/sessions`
//! the next line is the `except` query value; the rest is the body. The
//! text `@token@` (`@id@`) is replaced by the token (public id) of a fresh
//! signed-in session, so the fuzzer reaches the handlers past validation.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tessera::{MemoryStore, SessionManager};
use tesserad::api::{AppState, HttpLimits, router};
use tesserad::keys::ApiKeys;
use tesserad::metrics::{Metrics, MetricsEventSink};
use tower::ServiceExt;

const KEY: &str = "fuzz-api-key";

/// Requests served by one router before it is rebuilt over an empty store
/// (so long runs do not accumulate sessions).
const REQUESTS_PER_APP: usize = 20_000;

#[derive(Clone, Copy)]
enum Param {
    None,
    Path,
    PathAndQuery,
    Cookie,
}

const ENDPOINTS: &[(&str, &str, Param)] = &[
    ("POST", "/v1/sessions", Param::None),
    ("POST", "/v1/sessions/validate", Param::None),
    ("POST", "/v1/sessions/update", Param::None),
    ("POST", "/v1/sessions/login", Param::None),
    ("POST", "/v1/sessions/rotate", Param::None),
    ("POST", "/v1/sessions/logout", Param::None),
    ("GET", "/v1/sessions/{}", Param::Path),
    ("DELETE", "/v1/sessions/{}", Param::Path),
    ("GET", "/v1/subjects/{}/sessions", Param::Path),
    ("DELETE", "/v1/subjects/{}/sessions", Param::PathAndQuery),
    ("POST", "/v1/admin/revoke-all", Param::None),
    ("GET", "/v1/stats", Param::None),
    ("GET", "/v1/auth", Param::Cookie),
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Option<(Router, usize)>,
}

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        app: None,
    });
}

fn new_router() -> Router {
    let metrics = Arc::new(Metrics::new(None));
    let manager = SessionManager::builder(MemoryStore::new())
        .events(MetricsEventSink::new(metrics.clone()))
        .build()
        .expect("manager");
    let state = AppState::new(
        manager,
        Arc::new(ApiKeys::new(Some(KEY), None).expect("keys")),
    )
    .metrics(metrics)
    .store_description("memory:");
    router(
        state,
        HttpLimits {
            request_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        },
    )
}

fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &[]),
    }
}

/// Sends one request; returns the status and body, asserting the answer is sane.
async fn send(router: &Router, request: Request<Body>) -> (u16, Vec<u8>) {
    let described = format!("{} {}", request.method(), request.uri());
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert!(
        status < 500,
        "{described} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if !body.is_empty() {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
            "{described} answered {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&body)
        );
    }
    (status, body.to_vec())
}

async fn fresh_session(router: &Router) -> (Vec<u8>, Vec<u8>) {
    let request = Request::post("/v1/sessions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(r#"{"subject":"fuzz","data":{"n":1,"list":[1,2]}}"#))
        .expect("request");
    let (status, body) = send(router, request).await;
    assert_eq!(status, 201);
    let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let token = value["token"].as_str().expect("token").as_bytes().to_vec();
    let id = value["session"]["id"]
        .as_str()
        .expect("id")
        .as_bytes()
        .to_vec();
    (token, id)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, template, param) = ENDPOINTS[usize::from(selector) % ENDPOINTS.len()];
    HARNESS.with(|harness| {
        let mut harness = harness.borrow_mut();
        let Harness { runtime, app } = &mut *harness;
        if app.as_ref().is_none_or(|(_, served)| *served >= REQUESTS_PER_APP) {
            *app = Some((new_router(), 0));
        }
        let Some((router, served)) = app.as_mut() else {
            return;
        };
        *served += 1;
        runtime.block_on(async {
            let mut input = rest.to_vec();
            if input.windows(7).any(|w| w == b"@token@") || input.windows(4).any(|w| w == b"@id@")
            {
                let (token, id) = fresh_session(router).await;
                input = replace(&replace(&input, b"@token@", &token), b"@id@", &id);
            }
            let mut request = Request::builder()
                .method(method)
                .header("authorization", format!("Bearer {KEY}"))
                .header("user-agent", "fuzz");
            let body = match param {
                Param::None => {
                    request = request.uri(template);
                    &input[..]
                }
                Param::Path => {
                    let (value, body) = split_line(&input);
                    request = request.uri(template.replace("{}", &percent_encode(value)));
                    body
                }
                Param::PathAndQuery => {
                    let (value, body) = split_line(&input);
                    let (except, body) = split_line(body);
                    let uri = format!(
                        "{}?except={}",
                        template.replace("{}", &percent_encode(value)),
                        percent_encode(except)
                    );
                    request = request.uri(uri);
                    body
                }
                Param::Cookie => {
                    let (cookie, body) = split_line(&input);
                    request = request.uri(template);
                    if let Ok(value) = axum::http::HeaderValue::from_bytes(cookie) {
                        request = request.header("cookie", value);
                    }
                    body
                }
            };
            let request = request
                .body(Body::from(body.to_vec()))
                .expect("a request from a fixed method and an encoded URI");
            send(router, request).await;
        });
    });
});

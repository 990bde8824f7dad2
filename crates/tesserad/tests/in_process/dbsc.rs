//! Device-bound sessions (DBSC) through tesserad, as a browser behind
//! nginx reaches it: the registration offer on `/v1/auth`, registration and
//! refresh at `/v1/dbsc/…` with ES256 and RS256 proofs made here, the bound
//! cookie enforced by `/v1/auth`, and the metrics.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tessera::device::DeviceBindingPolicy;
use tessera_core::testkit::device::{TestDevice, challenge_in, header_param};
use tesserad::api::dbsc::{REFRESH_PATH, REGISTER_PATH, settings};
use tower::ServiceExt;

use super::{App, KEY, app_with};

const BOUND: &str = "__Host-tessera-bound";

fn dbsc_app() -> App {
    app_with(Duration::from_secs(10), |state| {
        state.device_binding(settings(DeviceBindingPolicy::default()))
    })
}

/// A response as the test reads it.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the `name` cookie this response sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
    }
}

/// A browser: the session token and the bound cookie it holds.
#[derive(Clone, Default)]
struct Jar {
    session: String,
    bound: Option<String>,
}

impl Jar {
    fn cookie_header(&self) -> String {
        let mut line = format!("theme=dark; __Host-tessera={}", self.session);
        if let Some(bound) = &self.bound {
            line.push_str(&format!("; {BOUND}={bound}"));
        }
        line
    }
}

async fn send(app: &App, request: axum::http::request::Builder) -> Reply {
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// `GET /v1/auth` as nginx's auth subrequest makes it for `jar`.
async fn forward_auth(app: &App, jar: &Jar) -> Reply {
    send(
        app,
        Request::get("/v1/auth")
            .header("user-agent", "Chromium")
            .header("cookie", jar.cookie_header()),
    )
    .await
}

/// Signs in through the API, as the login application does; the first
/// forward-auth answer offers registration, and `device` registers as
/// Chrome does. Returns the browser's jar and the session identifier.
async fn login_and_register(app: &App, subject: &str, device: &TestDevice) -> (Jar, String) {
    let mut jar = Jar {
        session: app.login(subject).await,
        bound: None,
    };
    let first = forward_auth(app, &jar).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let offer = first
        .header("secure-session-registration")
        .expect("an offer after the sign-in")
        .to_owned();
    assert!(offer.starts_with("(ES256 RS256);"), "{offer}");
    assert_eq!(header_param(&offer, "path"), REGISTER_PATH);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert!(first.header("secure-session-challenge").is_none());
    // Offered once per sign-in: later checks do not write again.
    let again = forward_auth(app, &jar).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.header("secure-session-registration").is_none());

    let proof = device.registration_proof(&header_param(&offer, "challenge"));
    let registered = send(
        app,
        Request::post(REGISTER_PATH)
            .header("user-agent", "Chromium")
            .header("cookie", jar.cookie_header())
            .header("secure-session-response", format!("\"{proof}\"")),
    )
    .await;
    assert_eq!(registered.status, StatusCode::OK, "{}", registered.body);
    assert_eq!(registered.body["refresh_url"], REFRESH_PATH);
    assert_eq!(registered.body["scope"]["include_site"], false);
    assert_eq!(registered.body["credentials"][0]["name"], BOUND);
    jar.bound = Some(registered.cookie(BOUND).expect("the first bound cookie"));
    let id = registered.body["session_identifier"]
        .as_str()
        .expect("an identifier")
        .to_owned();
    assert_eq!(first.header("tessera-session-id"), Some(id.as_str()));
    (jar, id)
}

/// A refresh as Chrome makes it: without a proof (`403` and a challenge),
/// then with one signed by `device`.
async fn refresh(app: &App, device: &TestDevice, id: &str) -> Reply {
    let first = send(
        app,
        Request::post(REFRESH_PATH).header("sec-secure-session-id", format!("\"{id}\"")),
    )
    .await;
    assert_eq!(first.status, StatusCode::FORBIDDEN, "{}", first.body);
    let header = first
        .header("secure-session-challenge")
        .expect("a challenge");
    assert_eq!(header_param(header, "id"), id);
    let challenge = challenge_in(header);
    send(
        app,
        Request::post(REFRESH_PATH)
            .header("sec-secure-session-id", id)
            .header("secure-session-response", device.refresh_proof(&challenge)),
    )
    .await
}

/// One line of the Prometheus exposition, by its start.
fn metric(app: &App, series: &str) -> String {
    let text = app.metrics.encode().expect("metrics");
    text.lines()
        .find(|line| line.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
        .rsplit(' ')
        .next()
        .expect("a value")
        .to_owned()
}

/// Forward-auth's answer to `jar`, asserted to be a refusal for the bound
/// cookie (missing, stale or expired).
async fn refused_for_its_device(app: &App, jar: &Jar) -> Reply {
    let refused = forward_auth(app, jar).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(refused.body["reason"], "device_bound");
    refused
}

/// Registration, enforcement and refresh for `device`; a refresh signed by
/// another P-256 key fails for `stranger_reason`.
async fn bound_session_lifecycle(device: TestDevice, stranger_reason: &str) {
    let app = dbsc_app();
    let (mut browser, id) = login_and_register(&app, "ann", &device).await;
    assert_eq!(forward_auth(&app, &browser).await.status, StatusCode::OK);

    // Without its bound cookie the session is refused.
    let mut partial = browser.clone();
    partial.bound = None;
    let refused = refused_for_its_device(&app, &partial).await;
    assert!(refused.header("tessera-subject").is_none());

    // The device refreshes: a new value, and the one before stops working.
    let before = browser.bound.clone();
    let refreshed = refresh(&app, &device, &id).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(refreshed.body["session_identifier"], id.as_str());
    browser.bound = Some(refreshed.cookie(BOUND).expect("a new bound cookie"));
    assert_ne!(browser.bound, before, "the value changes every refresh");
    assert_eq!(forward_auth(&app, &browser).await.status, StatusCode::OK);
    let mut stale = browser.clone();
    stale.bound = before;
    refused_for_its_device(&app, &stale).await;

    // An expired bound cookie is refused until the next refresh.
    app.clock.advance(Duration::from_secs(600));
    assert_eq!(
        forward_auth(&app, &browser).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refreshed = refresh(&app, &device, &id).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    browser.bound = refreshed.cookie(BOUND);
    assert_eq!(forward_auth(&app, &browser).await.status, StatusCode::OK);

    // Another key cannot refresh: the binding is over for that browser.
    let stolen = refresh(&app, &TestDevice::es256(), &id).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
    assert_eq!(stolen.body["continue"], false);
    assert_eq!(forward_auth(&app, &browser).await.status, StatusCode::OK);

    assert_eq!(metric(&app, "tessera_dbsc_registrations_total"), "1");
    assert_eq!(metric(&app, "tessera_dbsc_refreshes_total"), "2");
    assert_eq!(
        metric(
            &app,
            &format!("tessera_dbsc_refresh_failures_total{{reason=\"{stranger_reason}\"}}")
        ),
        "1"
    );
    assert_eq!(
        metric(
            &app,
            "tessera_dbsc_request_duration_seconds_count{endpoint=\"refresh\"}"
        ),
        "6"
    );
}

#[tokio::test]
async fn dbsc_through_tesserad_with_es256() {
    bound_session_lifecycle(TestDevice::es256(), "bad_signature").await;
}

#[tokio::test]
async fn dbsc_through_tesserad_with_rs256() {
    bound_session_lifecycle(TestDevice::rs256(), "wrong_key").await;
}

#[tokio::test]
async fn dbsc_refresh_through_tesserad_refuses_bad_ids_and_ended_sessions() {
    let app = dbsc_app();
    let device = TestDevice::es256();
    let (browser, id) = login_and_register(&app, "bob", &device).await;

    let missing = send(&app, Request::post(REFRESH_PATH)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["continue"], false);
    let wrong = send(
        &app,
        Request::post(REFRESH_PATH).header("sec-secure-session-id", "\"not-an-id\""),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let unknown = send(
        &app,
        Request::post(REFRESH_PATH).header("sec-secure-session-id", "AAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["continue"], false);

    // A registration without a proof, or without a session, is refused.
    let no_proof = send(
        &app,
        Request::post(REGISTER_PATH).header("cookie", browser.cookie_header()),
    )
    .await;
    assert_eq!(no_proof.status, StatusCode::BAD_REQUEST);
    let no_session = send(
        &app,
        Request::post(REGISTER_PATH).header(
            "secure-session-response",
            device.registration_proof("anything"),
        ),
    )
    .await;
    assert_eq!(no_session.status, StatusCode::UNAUTHORIZED);

    // After logout, even a proof from the device gets no new cookie.
    let (status, body) = app
        .post(
            "/v1/sessions/logout",
            serde_json::json!({"token": browser.session}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let after_logout = send(
        &app,
        Request::post(REFRESH_PATH).header("sec-secure-session-id", id.as_str()),
    )
    .await;
    assert_eq!(after_logout.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after_logout.body["continue"], false);

    // After revocation by an administrator, likewise.
    let (_, carol) = login_and_register(&app, "carol", &device).await;
    let revoked = app
        .router
        .clone()
        .oneshot(
            Request::delete(format!("/v1/sessions/{carol}"))
                .header("authorization", format!("Bearer {KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let after_revocation = send(
        &app,
        Request::post(REFRESH_PATH).header("sec-secure-session-id", carol.as_str()),
    )
    .await;
    assert_eq!(after_revocation.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metric(
            &app,
            "tessera_dbsc_refresh_failures_total{reason=\"session_ended\"}"
        ),
        "3"
    );
}

#[tokio::test]
async fn dbsc_skipped_requests_are_counted_and_unbound_sessions_pass() {
    let app = dbsc_app();
    // A browser without DBSC ignores the offer and is served as before.
    let browser = Jar {
        session: app.login("dan").await,
        bound: None,
    };
    let first = forward_auth(&app, &browser).await;
    assert!(first.header("secure-session-registration").is_some());
    app.clock.advance(Duration::from_secs(20 * 60));
    let later = forward_auth(&app, &browser).await;
    assert_eq!(later.status, StatusCode::OK);

    let skipped = send(
        &app,
        Request::get("/v1/auth")
            .header("cookie", browser.cookie_header())
            .header(
                "secure-session-skipped",
                "unreachable;session_identifier=\"x\", quota_exceeded",
            ),
    )
    .await;
    assert_eq!(skipped.status, StatusCode::OK);
    assert_eq!(
        metric(&app, "tessera_dbsc_skipped_total{reason=\"unreachable\"}"),
        "1"
    );
    assert_eq!(
        metric(
            &app,
            "tessera_dbsc_skipped_total{reason=\"quota_exceeded\"}"
        ),
        "1"
    );
}

#[tokio::test]
async fn dbsc_is_off_unless_asked_for() {
    let app = app_with(Duration::from_secs(10), |state| state);
    let browser = Jar {
        session: app.login("eve").await,
        bound: None,
    };
    let checked = forward_auth(&app, &browser).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert!(checked.header("secure-session-registration").is_none());
    for path in [REGISTER_PATH, REFRESH_PATH] {
        let off = send(
            &app,
            Request::post(path).header("sec-secure-session-id", "AAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
        assert_eq!(off.status, StatusCode::NOT_FOUND, "{path}");
        assert!(off.header("secure-session-challenge").is_none());
    }
}

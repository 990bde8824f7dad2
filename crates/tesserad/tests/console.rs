//! The admin console in headless Chromium (`docs/console.md`), against the
//! real `tesserad` binary: signing in with an admin key only, finding a
//! user created through the API and revoking their sessions (the API then
//! refuses them), global revocation behind its typed confirmation,
//! cross-site posts refused, the audit trail, and no token or key in any
//! page.

mod common;

use common::{API_KEY, Server, client, temp_dir, tesserad_command};
use serde_json::{Value, json};
use tessera_test_browser::{Browser, with_browsers};

const CONSOLE_COOKIE: &str = "__Host-tessera-console";

/// The console's base URL on `localhost` (a secure context over plain HTTP,
/// so the browser keeps the `Secure` `__Host-` cookie).
fn console(server: &Api) -> String {
    server.url.replace("127.0.0.1", "localhost") + "/admin"
}

/// The API of a running server (the server itself stays with the test
/// function: its handle cannot move between the scenario's threads).
#[derive(Clone)]
struct Api {
    url: String,
}

impl Api {
    fn of(server: &Server) -> Api {
        Api {
            url: server.url.clone(),
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

async fn call(api: &Api, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client().request(method, api.at(path)).bearer_auth(API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a session for `subject` through the API with a browser's
/// User-Agent; returns its token and public id.
async fn session_of(server: &Api, subject: &str, user_agent: &str) -> (String, String) {
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions",
        Some(json!({"subject": subject, "client": {"ip": "192.0.2.10", "user_agent": user_agent}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().expect("token").to_owned(),
        body["session"]["id"].as_str().expect("id").to_owned(),
    )
}

/// Asserts that the API refuses `token` (its session revoked or gone).
async fn refused(server: &Api, token: &str) {
    let reason = validates(server, token).await;
    assert!(
        reason == json!("revoked") || reason == json!("unknown"),
        "the API still accepts the token: {reason}"
    );
}

async fn validates(server: &Api, token: &str) -> Value {
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": token})),
    )
    .await;
    if status == 200 {
        Value::Bool(true)
    } else {
        body["reason"].clone()
    }
}

/// Checks that no secret appears in the page the browser shows.
async fn no_secret_in_page(browser: &Browser, secrets: &[&str]) {
    let source = browser.source().await;
    for secret in secrets {
        assert!(
            !source.contains(secret),
            "a secret appears in {}",
            browser.url().await
        );
    }
    assert!(!source.contains("tss_"), "no session token in any page");
}

async fn sign_in(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/sign-in")).await;
    browser.fill("#key", key).await;
    browser.click("#sign-in").await;
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_finds_a_user_and_revokes_their_sessions() {
    let running = Server::start(&["--admin-console"]);
    let server = Api::of(&running);
    with_browsers(1, |browsers| async move {
        let browser = &browsers[0];
        let base = console(&server);
        let (first, first_id) = session_of(&server, "alice", FIREFOX).await;
        let (second, second_id) = session_of(&server, "alice", SAFARI).await;
        let (third, third_id) = session_of(&server, "alice", FIREFOX).await;
        let secrets = [API_KEY, first.as_str(), second.as_str(), third.as_str()];

        sign_in(browser, &base, API_KEY).await;
        assert_eq!(browser.url().await, format!("{base}"));
        let cookie = browser
            .cookie(CONSOLE_COOKIE)
            .await
            .expect("console cookie");
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.path(), Some("/"));
        assert!(
            cookie.domain().is_none_or(|d| !d.starts_with('.')),
            "host-only"
        );
        // The overview: charts drawn on the server, store status, version.
        assert_eq!(browser.text("#store-status").await, "answering");
        assert_eq!(browser.text("#version").await, env!("CARGO_PKG_VERSION"));
        let source = browser.source().await;
        for chart in [
            "chart-held",
            "chart-creations",
            "chart-validations",
            "chart-logins",
            "chart-failures",
            "chart-security",
        ] {
            assert!(source.contains(&format!("id=\"{chart}\"")), "{chart}");
        }
        assert!(source.contains("<svg"));
        no_secret_in_page(browser, &secrets).await;

        // Find the user created through the API.
        browser.goto(&format!("{base}/users")).await;
        browser.fill("#subject", "alice").await;
        browser.click("#find").await;
        assert_eq!(browser.text("#session-count").await, "3");
        let source = browser.source().await;
        assert!(source.contains(&first_id) && source.contains(&second_id));
        assert!(
            source.contains("Firefox 133 on Linux"),
            "User-Agent as browser and OS"
        );
        assert!(source.contains("Safari 18 on iOS"));
        assert_eq!(
            source.matches(r#"data-device-bound="false""#).count(),
            3,
            "sessions made through the API are bound to no device"
        );
        no_secret_in_page(browser, &secrets).await;

        // Revoke one: a confirmation page first, then the API refuses it.
        browser
            .click(&format!("tr[data-id='{second_id}'] a.revoke"))
            .await;
        assert!(browser.text("#confirm-what").await.contains(&second_id));
        assert_eq!(
            validates(&server, &second).await,
            Value::Bool(true),
            "not before confirming"
        );
        browser.click("#confirm").await;
        assert!(
            browser
                .text("#done")
                .await
                .contains(&format!("revoked session {second_id}"))
        );
        refused(&server, &second).await;
        assert_eq!(validates(&server, &first).await, Value::Bool(true));
        assert_eq!(browser.text("#session-count").await, "2");

        // All but one.
        browser
            .click(&format!("tr[data-id='{third_id}'] a.revoke-others"))
            .await;
        browser.click("#confirm").await;
        refused(&server, &first).await;
        assert_eq!(validates(&server, &third).await, Value::Bool(true));
        assert_eq!(browser.text("#session-count").await, "1");

        // All of them.
        browser.click("#revoke-subject").await;
        browser.click("#confirm").await;
        refused(&server, &third).await;
        assert!(
            browser
                .text("#no-sessions")
                .await
                .contains("No live sessions")
        );
        no_secret_in_page(browser, &secrets).await;

        // Every action is in the audit trail, with the key that did it.
        browser.goto(&format!("{base}/audit")).await;
        let audit = browser.text("#audit").await;
        let key_id = browser.text("#operator").await;
        for action in [
            format!("revoked session {second_id}"),
            format!("kept {third_id}"),
            "signed in to the console".to_owned(),
        ] {
            assert!(audit.contains(&action), "{action} in {audit}");
        }
        assert!(audit.contains(&key_id));
        no_secret_in_page(browser, &secrets).await;
        // The actions are also lifecycle events, counted in the metrics.
        let metrics = client()
            .get(server.at("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("tessera_events_total{kind=\"admin_action\"} 4"),
            "sign-in and three revocations: {metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_global_revoke_needs_the_typed_confirmation() {
    let running = Server::start(&["--admin-console"]);
    let server = Api::of(&running);
    with_browsers(1, |browsers| async move {
        let browser = &browsers[0];
        let base = console(&server);
        let (bob, _) = session_of(&server, "bob", FIREFOX).await;
        let (carol, _) = session_of(&server, "carol", SAFARI).await;
        sign_in(browser, &base, API_KEY).await;
        browser.goto(&format!("{base}/sessions")).await;
        let listed = browser.text("#all-sessions").await;
        assert!(
            listed.contains("bob") && listed.contains("carol"),
            "{listed}"
        );

        // Without the confirmation (and with a wrong one): nothing happens.
        browser.click("#revoke-everything").await;
        assert!(
            browser
                .text("#revoke-everything-error")
                .await
                .contains("Nothing was revoked")
        );
        browser.fill("#confirmation", "revoke everything").await;
        browser.click("#revoke-everything").await;
        assert!(
            browser
                .text("#revoke-everything-error")
                .await
                .contains("Nothing was revoked")
        );
        assert_eq!(validates(&server, &bob).await, Value::Bool(true));
        assert_eq!(validates(&server, &carol).await, Value::Bool(true));

        // With it: every session ends; the console's own session stays.
        browser.fill("#confirmation", "revoke every session").await;
        browser.click("#revoke-everything").await;
        assert!(
            browser
                .text("#done")
                .await
                .contains("revoked every session")
        );
        refused(&server, &bob).await;
        refused(&server, &carol).await;
        assert!(
            browser
                .text("#no-sessions")
                .await
                .contains("No live sessions")
        );
        browser.goto(&format!("{base}/audit")).await;
        assert!(
            browser
                .text("#audit")
                .await
                .contains("revoked every session of every user")
        );
        no_secret_in_page(browser, &[API_KEY, &bob, &carol]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_cross_site_posts() {
    let running = Server::start(&["--admin-console"]);
    let server = Api::of(&running);
    with_browsers(1, |browsers| async move {
        let browser = &browsers[0];
        let base = console(&server);
        let (dave, _) = session_of(&server, "dave", FIREFOX).await;
        sign_in(browser, &base, API_KEY).await;
        browser.goto(&format!("{base}/sessions")).await;
        // Even with a CSRF token of this very session (as if it leaked),
        // a form posted from another site is refused.
        let token = browser
            .attribute("#revoke-everything-form input[name=csrf_token]", "value")
            .await
            .expect("a CSRF token in the form");
        let attacker = attacker_site(&format!(
            "<form method=post action='{base}/actions'>\
             <input name=csrf_token value='{token}'>\
             <input name=action value=revoke-everything>\
             <input name=confirmation value='revoke every session'></form>\
             <script>document.forms[0].submit()</script>"
        ))
        .await;
        browser.goto(&attacker).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            validates(&server, &dave).await,
            Value::Bool(true),
            "nothing was revoked"
        );
        browser.goto(&format!("{base}/audit")).await;
        assert!(
            !browser
                .text("#audit")
                .await
                .contains("revoked every session")
        );
    })
    .await;
}

/// Serves `body` as the only page of a site on `127.0.0.1` (another site
/// than the console's `localhost`); returns its URL.
async fn attacker_site(body: &str) -> String {
    let page = body.to_owned();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_needs_a_key_with_the_admin_scope() {
    let data_dir = temp_dir("console-scopes");
    let dir = data_dir.to_string_lossy().into_owned();
    let created = tesserad_command()
        .args([
            "keys",
            "--data-dir",
            &dir,
            "create",
            "--scopes",
            "validate,sessions",
        ])
        .output()
        .expect("keys create");
    let text = String::from_utf8_lossy(&created.stdout).into_owned();
    let app_key = text
        .split_whitespace()
        .find(|w| w.starts_with("tsk_"))
        .expect("key")
        .to_owned();
    let running = Server::start_raw(
        &data_dir,
        &[
            "--store",
            "memory:",
            "--api-key",
            API_KEY,
            "--admin-console",
        ],
        &[],
    );
    let server = Api::of(&running);
    with_browsers(1, |browsers| async move {
        let browser = &browsers[0];
        let base = console(&server);
        let (erin, _) = session_of(&server, "erin", FIREFOX).await;

        // No access without a key: every page leads to the sign-in form.
        for page in [
            "",
            "/users?subject=erin",
            "/sessions",
            "/audit",
            "/confirm?action=revoke-subject&subject=erin",
        ] {
            browser.goto(&format!("{base}{page}")).await;
            assert_eq!(browser.url().await, format!("{base}/sign-in"), "{page}");
            assert!(!browser.source().await.contains("erin"));
        }
        // A wrong key and a key without the admin scope are refused.
        sign_in(browser, &base, "tsk_not-a-key-of-this-server").await;
        assert!(
            browser
                .text("#sign-in-error")
                .await
                .contains("not an API key")
        );
        sign_in(browser, &base, &app_key).await;
        assert!(browser.text("#sign-in-error").await.contains("admin scope"));
        browser.goto(&format!("{base}/sessions")).await;
        assert_eq!(browser.url().await, format!("{base}/sign-in"));
        no_secret_in_page(browser, &[API_KEY, &app_key, &erin]).await;

        // The admin key gets in; signing out ends the console session.
        sign_in(browser, &base, API_KEY).await;
        assert_eq!(browser.url().await, base);
        browser.click("#sign-out").await;
        browser.goto(&format!("{base}/sessions")).await;
        assert_eq!(browser.url().await, format!("{base}/sign-in"));

        // A post without a console session does nothing.
        let response = client()
            .post(format!("{base}/actions"))
            .form(&[
                ("action", "revoke-everything"),
                ("confirmation", "revoke every session"),
            ])
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 403);
        assert_eq!(validates(&server, &erin).await, Value::Bool(true));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_off_unless_asked_for() {
    let server = Server::start(&[]);
    let response = client().get(server.at("/admin")).send().await.expect("get");
    assert_eq!(response.status(), 404);
    let response = client()
        .get(server.at("/admin/sign-in"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
}

//! Forward-auth behind a real nginx (`auth_request`): without a cookie the
//! proxy refuses, with a valid one the upstream receives `Tessera-Subject`,
//! and after logout it refuses again. The nginx configuration is the one
//! docs/forward-auth.md documents, device-bound sessions (`--dbsc`) included.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use common::{Server, call, client, temp_dir};
use serde_json::json;
use tessera_core::testkit::device::{TestDevice, challenge_in, header_param};

fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nginx is not installed: run scripts/setup/nginx.sh");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The forward-auth configuration of the README, around one server block.
fn nginx_conf(dir: &Path, port: u16, tesserad: &str, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{
        listen 127.0.0.1:{port};

        # tesserad checks the session cookie of every request.
        location = /_tessera_auth {{
            internal;
            proxy_pass {tesserad}/v1/auth;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Real-IP $remote_addr;
        }}

        location / {{
            auth_request /_tessera_auth;
            # Who is signed in, for the upstream (overwriting anything the client sent).
            auth_request_set $tessera_subject $upstream_http_tessera_subject;
            auth_request_set $tessera_session_id $upstream_http_tessera_session_id;
            proxy_set_header Tessera-Subject $tessera_subject;
            proxy_set_header Tessera-Session-Id $tessera_session_id;
            # A renewed token goes back to the browser (nothing is added when empty).
            auth_request_set $tessera_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $tessera_cookie always;
            # ... and a response that carries one is never cached.
            auth_request_set $tessera_cache_control $upstream_http_cache_control;
            add_header Cache-Control $tessera_cache_control always;
            # With tesserad --dbsc, after a sign-in: the offer to bind the session to the device.
            auth_request_set $tessera_dbsc $upstream_http_secure_session_registration;
            add_header Secure-Session-Registration $tessera_dbsc always;
            proxy_pass http://{upstream};
        }}

        # With tesserad --dbsc: browsers register and refresh device-bound sessions here.
        location /v1/dbsc/ {{
            proxy_pass {tesserad};
            proxy_set_header X-Real-IP $remote_addr;
        }}
    }}
}}
"#
    )
}

struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown of the master and its workers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_nginx(tesserad: &str, upstream: SocketAddr) -> (Nginx, u16) {
    let dir = temp_dir("nginx");
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&dir, port, tesserad, upstream)).expect("conf");
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (nginx, port)
}

/// The protected application: shows the subject nginx hands it.
async fn start_upstream() -> SocketAddr {
    let app = Router::new().route(
        "/{*path}",
        any(|headers: HeaderMap| async move {
            let subject = headers
                .get("tessera-subject")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let session = headers
                .get("tessera-session-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            format!("subject={subject} session={session}")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

/// Signs `subject` in through the API, as the login application does;
/// returns the answer's body.
async fn login(server: &Server, subject: &str) -> serde_json::Value {
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/login",
        Some(json!({"subject": subject})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET page` through nginx with this `Cookie` header.
async fn get_page(http: &reqwest::Client, page: &str, cookie: &str) -> reqwest::Response {
    http.get(page)
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_guards_the_upstream() {
    let server = Server::start(&[]);
    let upstream = start_upstream().await;
    let (_nginx, port) = start_nginx(&server.url, upstream);
    let page = format!("http://127.0.0.1:{port}/account/page");
    let http = client();

    // No cookie (and a forged subject header): refused.
    let response = http
        .get(&page)
        .header("tessera-subject", "mallory")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);

    // An invalid cookie: refused.
    let response = get_page(&http, &page, "__Host-tessera=tss_forged").await;
    assert_eq!(response.status(), 401);

    // Signed in through the API: the upstream sees the subject, and not the
    // forged header.
    let body = login(&server, "alice").await;
    let token = body["token"].as_str().expect("token").to_owned();
    let id = body["session"]["id"].as_str().expect("id").to_owned();
    let response = http
        .get(&page)
        .header("cookie", format!("lang=en; __Host-tessera={token}"))
        .header("tessera-subject", "mallory")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no cookie unless renewed"
    );
    assert_eq!(
        response.text().await.expect("body"),
        format!("subject=alice session={id}")
    );

    // Two session cookies (one planted beside the real one): anonymous, as
    // in the session layer.
    let response = get_page(
        &http,
        &page,
        &format!("__Host-tessera={token}; __Host-tessera={token}"),
    )
    .await;
    assert_eq!(response.status(), 401, "duplicated session cookie");

    // A subject with a trailing space reaches the upstream percent-encoded,
    // not trimmed to another subject by nginx.
    let body = login(&server, "admin ").await;
    let spaced = body["token"].as_str().expect("token").to_owned();
    let spaced_id = body["session"]["id"].as_str().expect("id").to_owned();
    let response = get_page(&http, &page, &format!("__Host-tessera={spaced}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.expect("body"),
        format!("subject=admin%20 session={spaced_id}")
    );

    // Whatever the browser's method, the check is a GET.
    let response = http
        .post(&page)
        .header("cookie", format!("__Host-tessera={token}"))
        .body("form=1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // After logout: refused again.
    let (status, _) = call(
        &server,
        "POST",
        "/v1/sessions/logout",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, 204);
    let response = get_page(&http, &page, &format!("__Host-tessera={token}")).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_passes_renewed_tokens_to_the_browser() {
    // Renew on every request that comes a millisecond or more after the
    // token was issued; the rotated-away token dies at once (no grace).
    let server = Server::start(&["--renew-after", "1ms", "--rotation-grace", "0s"]);
    let upstream = start_upstream().await;
    let (_nginx, port) = start_nginx(&server.url, upstream);
    let page = format!("http://127.0.0.1:{port}/home");
    let http = client();
    let body = login(&server, "bob").await;
    let mut token = body["token"].as_str().expect("token").to_owned();
    let mut renewals = 0;
    for _ in 0..20 {
        let response = get_page(&http, &page, &format!("__Host-tessera={token}")).await;
        assert_eq!(response.status(), 200, "the browser keeps up with renewals");
        if let Some(cookie) = response.headers().get("set-cookie") {
            assert_eq!(
                response
                    .headers()
                    .get("cache-control")
                    .and_then(|v| v.to_str().ok()),
                Some("no-store"),
                "a response carrying a renewed token is not cached"
            );
            let cookie = cookie.to_str().expect("ascii");
            let mut attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
            attributes.sort_unstable();
            assert_eq!(
                attributes,
                ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"],
                "{cookie}"
            );
            let renewed = cookie
                .strip_prefix("__Host-tessera=")
                .and_then(|rest| rest.split(';').next())
                .expect("cookie value");
            assert_ne!(renewed, token);
            token = renewed.to_owned();
            renewals += 1;
        }
        assert_eq!(
            response.text().await.expect("body").split(' ').next(),
            Some("subject=bob")
        );
    }
    assert!(renewals > 0, "nginx passed no renewed cookie on");
}

/// The value of the `name` cookie a response sets.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_routes_dbsc_to_tesserad_and_passes_the_offer_on() {
    let server = Server::start(&["--dbsc"]);
    let upstream = start_upstream().await;
    let (_nginx, port) = start_nginx(&server.url, upstream);
    let origin = format!("http://127.0.0.1:{port}");
    let page = format!("{origin}/home");
    let http = client();
    let device = TestDevice::es256();
    let body = login(&server, "dee").await;
    let token = body["token"].as_str().expect("token").to_owned();
    let session = format!("__Host-tessera={token}");

    // The first page after the sign-in carries the offer.
    let response = get_page(&http, &page, &session).await;
    assert_eq!(response.status(), 200);
    let offer = response
        .headers()
        .get("secure-session-registration")
        .and_then(|v| v.to_str().ok())
        .expect("nginx passes the offer on")
        .to_owned();
    let path = header_param(&offer, "path");
    assert_eq!(path, "/v1/dbsc/register");

    // The browser registers through nginx.
    let registered = http
        .post(format!("{origin}{path}"))
        .header("cookie", &session)
        .header(
            "secure-session-response",
            device.registration_proof(&header_param(&offer, "challenge")),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(registered.status(), 200);
    let bound = set_cookie(&registered, "__Host-tessera-bound").expect("a bound cookie");
    let instructions: serde_json::Value = registered.json().await.expect("instructions");
    let id = instructions["session_identifier"]
        .as_str()
        .expect("id")
        .to_owned();
    let refresh_url = format!(
        "{origin}{}",
        instructions["refresh_url"].as_str().expect("url")
    );

    // Without the bound cookie nginx refuses; with it, the upstream answers.
    let response = get_page(&http, &page, &session).await;
    assert_eq!(response.status(), 401);
    let with_bound = format!("{session}; __Host-tessera-bound={bound}");
    let response = get_page(&http, &page, &with_bound).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("secure-session-registration")
            .is_none()
    );

    // A refresh through nginx: a challenge, then a new bound cookie.
    let challenged = http
        .post(&refresh_url)
        .header("sec-secure-session-id", format!("\"{id}\""))
        .send()
        .await
        .expect("request");
    assert_eq!(challenged.status(), 403);
    let challenge = challenge_in(
        challenged
            .headers()
            .get("secure-session-challenge")
            .and_then(|v| v.to_str().ok())
            .expect("a challenge"),
    );
    let refreshed = http
        .post(&refresh_url)
        .header("sec-secure-session-id", &id)
        .header("secure-session-response", device.refresh_proof(&challenge))
        .send()
        .await
        .expect("request");
    assert_eq!(refreshed.status(), 200);
    let renewed = set_cookie(&refreshed, "__Host-tessera-bound").expect("a new bound cookie");
    assert_ne!(renewed, bound);
    let response = get_page(
        &http,
        &page,
        &format!("{session}; __Host-tessera-bound={renewed}"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = get_page(&http, &page, &with_bound).await;
    assert_eq!(
        response.status(),
        401,
        "the bound cookie before the refresh"
    );
}

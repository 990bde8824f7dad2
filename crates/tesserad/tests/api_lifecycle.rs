//! The HTTP API (docs/http-api.md) against the real binary: every endpoint's
//! success path, the session shape, and the status codes.

mod common;

use common::{API_KEY, Server, call, client, create, metrics_text};
use serde_json::{Value, json};

fn assert_session_shape(session: &Value) {
    let object = session.as_object().expect("session is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "absolute_expires_at",
            "auth_level",
            "authenticated_at",
            "client",
            "created_at",
            "data",
            "id",
            "idle_expires_at",
            "last_seen_at",
            "subject",
            "version"
        ]
    );
    assert_eq!(session["id"].as_str().map(str::len), Some(22));
    for field in [
        "created_at",
        "last_seen_at",
        "idle_expires_at",
        "absolute_expires_at",
    ] {
        let text = session[field].as_str().expect("time");
        assert!(
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_ok()
                && text.ends_with('Z'),
            "{field} = {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_lifecycle_over_http() {
    lifecycle(&Server::start(&[])).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_lifecycle_on_the_embedded_store() {
    let data_dir = common::temp_dir("embedded-lifecycle");
    let store = format!("embedded:{}", data_dir.join("store").display());
    let server = Server::start_raw(&data_dir, &["--store", &store, "--api-key", API_KEY], &[]);
    lifecycle(&server).await;
    subjects_admin(&server).await;
}

async fn lifecycle(server: &Server) {
    // Create: anonymous, with data and client.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions",
        Some(json!({
            "data": {"cart": [1, 2]},
            "client": {"ip": "203.0.113.9", "user_agent": "Firefox"},
            "idle_timeout_s": 600
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(
        token.starts_with("tss_") && token.len() == 74,
        "a format 2 token: {token}"
    );
    let session = &body["session"];
    assert_session_shape(session);
    assert_eq!(session["subject"], Value::Null);
    assert_eq!(session["auth_level"], 0);
    assert_eq!(session["data"], json!({"cart": [1, 2]}));
    assert_eq!(
        session["client"],
        json!({"ip": "203.0.113.9", "user_agent": "Firefox"})
    );
    assert_eq!(session["version"], 1);
    let id = session["id"].as_str().expect("id").to_owned();

    // Validate.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": token, "client": {"ip": "203.0.113.10"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["id"], id.as_str());
    assert!(body.get("token").is_none(), "a fresh token is not renewed");

    // Update: replace, patch, compare-and-swap.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/update",
        Some(json!({"token": token, "data": {"theme": "dark"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["data"], json!({"theme": "dark"}));
    assert_eq!(body["session"]["version"], 2);
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/update",
        Some(json!({"token": token, "patch": {"lang": "fr", "theme": null}, "version": 2})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["data"], json!({"lang": "fr"}));
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/update",
        Some(json!({"token": token, "patch": {"x": 1}, "version": 2})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "version_conflict");
    assert_eq!(body["current_version"], 3);
    assert!(body["message"].is_string());

    // Login: a new token, the old one dead at once (revoked).
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/login",
        Some(json!({"token": token, "subject": "alice", "auth_level": 2})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let signed_in = body["token"].as_str().expect("token").to_owned();
    assert_ne!(signed_in, token);
    assert_eq!(body["session"]["subject"], "alice");
    assert_eq!(body["session"]["auth_level"], 2);
    assert_eq!(body["session"]["data"], json!({"lang": "fr"}));
    assert!(body["session"]["authenticated_at"].is_string());
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_session");
    assert_eq!(body["reason"], "revoked");

    // Rotate: a new token; the old one works during the grace.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/rotate",
        Some(json!({"token": signed_in})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rotated = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body["session"]["id"], id.as_str());
    let (status, _) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": signed_in})),
    )
    .await;
    assert_eq!(
        status, 200,
        "the rotated-away token resolves within its grace"
    );

    // By id.
    let (status, body) = call(server, "GET", &format!("/v1/sessions/{id}"), None).await;
    assert_eq!(status, 200);
    assert_session_shape(&body["session"]);

    // Logout: 204, then the token is revoked; logout of unknown tokens is 204 too.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/logout",
        Some(json!({"token": rotated})),
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": rotated})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "unknown");
    for unknown in [
        rotated.as_str(),
        "tss_not-a-token",
        "",
        "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, _) = call(
            server,
            "POST",
            "/v1/sessions/logout",
            Some(json!({"token": unknown})),
        )
        .await;
        assert_eq!(status, 204);
    }
    let (status, body) = call(server, "GET", &format!("/v1/sessions/{id}"), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    let (status, _) = call(server, "DELETE", &format!("/v1/sessions/{id}"), None).await;
    assert_eq!(status, 404);

    // Malformed and unknown tokens.
    let (status, body) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": "garbage"})),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "malformed");
}

#[tokio::test(flavor = "multi_thread")]
async fn subjects_admin_and_revoke_all() {
    let server = Server::start(&[]);
    subjects_admin(&server).await;
    // Stats and metrics saw it all.
    let (status, stats) = call(&server, "GET", "/v1/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["store"], "memory:");
    let operations = stats["operations"].as_array().expect("operations");
    assert!(
        operations
            .iter()
            .any(|o| o["operation"] == "create" && o["outcome"] == "ok" && o["count"] == 5)
    );
    let events = stats["events"].as_array().expect("events");
    assert!(events.iter().any(|e| e["kind"] == "revoked"));
}

async fn subjects_admin(server: &Server) {
    let (_, first) = create(server, Some("bob")).await;
    let (second_token, second) = create(server, Some("bob")).await;
    let (third_token, _) = create(server, Some("bob")).await;
    let (carol_token, _) = create(server, Some("carol")).await;

    let (status, body) = call(server, "GET", "/v1/subjects/bob/sessions", None).await;
    assert_eq!(status, 200);
    let sessions = body["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0]["id"], first["id"]);

    // Revoke one by id.
    let first_id = first["id"].as_str().expect("id");
    let (status, body) = call(server, "DELETE", &format!("/v1/sessions/{first_id}"), None).await;
    assert_eq!((status, body), (204, Value::Null));

    // Revoke the subject except one.
    let keep = second["id"].as_str().expect("id");
    let (status, body) = call(
        server,
        "DELETE",
        &format!("/v1/subjects/bob/sessions?except={keep}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"revoked": 1}));
    let (status, _) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": third_token})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        server,
        "POST",
        "/v1/sessions/validate",
        Some(json!({"token": second_token})),
    )
    .await;
    assert_eq!(status, 200);

    // A subject with no sessions; a subject that needs percent-encoding.
    let (status, body) = call(server, "GET", "/v1/subjects/nobody/sessions", None).await;
    assert_eq!((status, body), (200, json!({"sessions": []})));
    let (_, _) = create(server, Some("zoë/x y")).await;
    let (status, body) = call(
        server,
        "GET",
        "/v1/subjects/zo%C3%AB%2Fx%20y/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"][0]["subject"], "zoë/x y");

    // Revoke everything.
    let (status, body) = call(server, "POST", "/v1/admin/revoke-all", None).await;
    assert_eq!(status, 200);
    assert!(body["epoch"].as_u64().is_some_and(|e| e >= 1));
    for token in [second_token, carol_token] {
        let (status, body) = call(
            server,
            "POST",
            "/v1/sessions/validate",
            Some(json!({"token": token})),
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(body["reason"], "revoked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_health_metrics_and_openapi() {
    let server = Server::start(&[]);
    let http = client();

    // /v1 needs the key (except forward-auth); wrong or missing key: 401.
    for key in [None, Some("wrong"), Some("")] {
        let mut request = http.post(server.at("/v1/sessions")).json(&json!({}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 401);
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "unauthorized");
        assert!(body["message"].is_string());
    }
    let response = http
        .get(server.at("/v1/stats"))
        .header("authorization", format!("bearer {API_KEY}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "the scheme is case-insensitive");

    for path in ["/healthz", "/readyz"] {
        let response = http.get(server.at(path)).send().await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }

    create(&server, None).await;
    let metrics = metrics_text(&server).await;
    for needle in [
        "tessera_operations_total{operation=\"create\",outcome=\"ok\"} 1",
        "tessera_request_duration_seconds_bucket{",
        "tessera_store_operation_duration_seconds_count{operation=\"create\",outcome=\"ok\"} 1",
        "tessera_events_total{kind=\"created\"} 1",
        "tessera_sessions_active 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("tessera_"), "{line}");
    }

    let document: Value = http
        .get(server.at("/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/v1/sessions", "post"),
        ("/v1/sessions/validate", "post"),
        ("/v1/sessions/update", "post"),
        ("/v1/sessions/login", "post"),
        ("/v1/sessions/rotate", "post"),
        ("/v1/sessions/logout", "post"),
        ("/v1/sessions/{id}", "get"),
        ("/v1/sessions/{id}", "delete"),
        ("/v1/subjects/{subject}/sessions", "get"),
        ("/v1/subjects/{subject}/sessions", "delete"),
        ("/v1/admin/revoke-all", "post"),
        ("/v1/auth", "get"),
        ("/v1/dbsc/register", "post"),
        ("/v1/dbsc/refresh", "post"),
        ("/v1/stats", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path} missing");
    }
    assert_eq!(paths.len(), 17, "no undocumented extra paths");

    // Unknown routes and methods answer with the error body too.
    let response = http.get(server.at("/nope")).send().await.expect("request");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
    let response = http
        .put(server.at("/v1/sessions"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
}

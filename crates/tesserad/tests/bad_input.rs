//! Bad input (docs/http-api.md, "Errors") against the real binary: every endpoint answers bad input
//! with the documented error body and status — never a 500, never a dropped
//! connection — and the server stays healthy.

mod common;

use common::{Server, call, call_raw, client, create};
use serde_json::{Value, json};

const BODY_ENDPOINTS: [&str; 6] = [
    "/v1/sessions",
    "/v1/sessions/validate",
    "/v1/sessions/update",
    "/v1/sessions/login",
    "/v1/sessions/rotate",
    "/v1/sessions/logout",
];

fn assert_error(status: u16, body: &Value, want_status: u16, want_error: &str, what: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["error"], want_error, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

fn deep_json(depth: usize) -> Vec<u8> {
    format!(
        r#"{{"token": "x", "subject": "s", "data": {{"a": {}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_body_endpoint_refuses_malformed_bodies() {
    let server = Server::start(&[]);
    for path in BODY_ENDPOINTS {
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            (
                "malformed JSON",
                b"{\"token\": ".to_vec(),
                400,
                "invalid_request",
            ),
            ("not an object", b"[1, 2]".to_vec(), 400, "invalid_request"),
            (
                "a bare string",
                b"\"tss_x\"".to_vec(),
                400,
                "invalid_request",
            ),
            (
                "wrong types",
                br#"{"token": 42, "subject": ["a"], "data": "x"}"#.to_vec(),
                400,
                "invalid_request",
            ),
            (
                "unknown field",
                br#"{"token": "x", "subject": "s", "surprise": 1}"#.to_vec(),
                400,
                "invalid_request",
            ),
            ("deep JSON", deep_json(10_000), 400, "invalid_request"),
            (
                "invalid UTF-8",
                b"{\"token\": \"\xff\xfe\", \"subject\": \"\xc3\x28\"}".to_vec(),
                400,
                "invalid_request",
            ),
            (
                "trailing garbage",
                br#"{"token": "x"} {"#.to_vec(),
                400,
                "invalid_request",
            ),
            (
                "over the body limit",
                format!(r#"{{"token": "{}"}}"#, "a".repeat(1024 * 1024)).into_bytes(),
                413,
                "payload_too_large",
            ),
        ];
        for (what, body, status, error) in cases {
            let (got, response) = call_raw(&server, "POST", path, body).await;
            assert_error(got, &response, status, error, &format!("{path} {what}"));
        }
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_on_subjects_data_and_timeouts() {
    let server = Server::start(&[]);
    let (token, _) = create(&server, None).await;
    let long_subject = "s".repeat(257);
    let big_data = json!({"blob": "x".repeat(64 * 1024)});

    let cases = [
        (
            "/v1/sessions",
            json!({"subject": long_subject}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"subject": ""}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"data": big_data}),
            413,
            "payload_too_large",
        ),
        (
            "/v1/sessions",
            json!({"idle_timeout_s": 0}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"absolute_timeout_s": 10_000_000}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"idle_timeout_s": -1}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"client": {"ip": "not-an-ip"}}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions",
            json!({"client": {"ip": "10.0.0.1", "os": "x"}}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/login",
            json!({"subject": long_subject}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/login",
            json!({"subject": "a", "auth_level": 300}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/login",
            json!({"token": token, "subject": "a", "data": big_data}),
            413,
            "payload_too_large",
        ),
        ("/v1/sessions/login", json!({}), 400, "invalid_request"),
        (
            "/v1/sessions/update",
            json!({"token": token, "data": big_data}),
            413,
            "payload_too_large",
        ),
        (
            "/v1/sessions/update",
            json!({"token": token, "patch": big_data}),
            413,
            "payload_too_large",
        ),
        (
            "/v1/sessions/update",
            json!({"token": token}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/update",
            json!({"token": token, "data": {}, "patch": {}}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/update",
            json!({"token": token, "patch": [1]}),
            400,
            "invalid_request",
        ),
        (
            "/v1/sessions/update",
            json!({"token": token, "data": {}, "version": "one"}),
            400,
            "invalid_request",
        ),
        ("/v1/sessions/validate", json!({}), 400, "invalid_request"),
        (
            "/v1/sessions/validate",
            json!({"token": null}),
            400,
            "invalid_request",
        ),
        ("/v1/sessions/rotate", json!({}), 400, "invalid_request"),
        ("/v1/sessions/logout", json!({}), 400, "invalid_request"),
    ];
    for (path, body, status, error) in cases {
        let what = format!(
            "{path} {}",
            &body.to_string()[..body.to_string().len().min(60)]
        );
        let (got, response) = call(&server, "POST", path, Some(body)).await;
        assert_error(got, &response, status, error, &what);
    }

    // Bad tokens are invalid sessions, with their reason.
    for (path, body) in [
        (
            "/v1/sessions/validate",
            json!({"token": "tss_\u{0}\u{1}garbage"}),
        ),
        (
            "/v1/sessions/rotate",
            json!({"token": "tss_\u{0}\u{1}garbage"}),
        ),
        (
            "/v1/sessions/update",
            json!({"token": "tss_\u{0}\u{1}garbage", "data": {}}),
        ),
    ] {
        let (got, response) = call(&server, "POST", path, Some(body)).await;
        assert_error(got, &response, 401, "invalid_session", path);
        assert_eq!(response["reason"], "malformed");
    }
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_and_query_parameters_are_checked() {
    let server = Server::start(&[]);
    let long_subject = "s".repeat(257);
    let cases = [
        (
            "GET",
            "/v1/sessions/not-an-id".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/sessions/%FF%FE".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "GET",
            format!("/v1/sessions/{}", "A".repeat(500)),
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            404,
            "not_found",
        ),
        (
            "GET",
            format!("/v1/subjects/{long_subject}/sessions"),
            400,
            "invalid_request",
        ),
        (
            "DELETE",
            format!("/v1/subjects/{long_subject}/sessions"),
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/subjects/%C3%28/sessions".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/subjects/bob/sessions?except=nope".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/subjects/bob/sessions?other=1".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "GET",
            "/v1/subjects//sessions".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/admin/revoke-everything".to_owned(),
            404,
            "not_found",
        ),
    ];
    for (method, path, status, error) in cases {
        let (got, body) = call(&server, method, &path, None).await;
        assert_error(got, &body, status, error, &format!("{method} {path}"));
    }
    // A body where none is expected is ignored; huge ones are refused cleanly.
    let (got, body) = call_raw(
        &server,
        "POST",
        "/v1/admin/revoke-all",
        vec![b'x'; 2 * 1024 * 1024],
    )
    .await;
    assert_eq!(got, 200, "{body}");
    assert_healthy(&server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_types_do_not_matter_and_empty_create_is_allowed() {
    let server = Server::start(&[]);
    let response = client()
        .post(server.at("/v1/sessions"))
        .bearer_auth(common::API_KEY)
        .header("content-type", "text/plain")
        .body(r#"{"subject": "ann"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let response = client()
        .post(server.at("/v1/sessions"))
        .bearer_auth(common::API_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "an empty body reads as {{}}");
    assert_healthy(&server).await;
}

async fn assert_healthy(server: &Server) {
    let response = client()
        .get(server.at("/readyz"))
        .send()
        .await
        .expect("still answering");
    assert_eq!(response.status(), 200);
    create(server, Some("still-works")).await;
}

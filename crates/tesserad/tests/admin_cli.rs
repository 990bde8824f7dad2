//! API keys on first start and `tesserad keys …`, and the admin commands
//! talking to a running server (`sessions list|revoke|revoke-subject`, `stats`).

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{Server, client, metrics_text, temp_dir, tesserad_command};
use serde_json::json;

fn run(args: &[&str]) -> Output {
    tesserad_command()
        .args(args)
        .output()
        .expect("run tesserad")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn key_in(text: &str) -> String {
    text.split_whitespace()
        .find(|word| word.starts_with("tsk_"))
        .expect("a key is printed")
        .to_owned()
}

async fn status_with_key(server: &Server, key: &str) -> u16 {
    client()
        .get(server.at("/v1/stats"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Waits (bounded) until the running server has reloaded its keys file.
async fn eventually_status(server: &Server, key: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_with_key(server, key).await != want {
        assert!(
            Instant::now() < deadline,
            "the server never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_generates_a_key_and_keys_commands_manage_them() {
    let data_dir = temp_dir("keys");
    let dir = data_dir.to_string_lossy().into_owned();
    // Waiting for the server to reload its keys file counts failed checks:
    // a budget large enough for the polling.
    let mut server = Server::start_raw(
        &data_dir,
        &["--store", "memory:", "--max-auth-failures", "1000"],
        &[],
    );
    // Standard output is a pipe here, not a terminal: the key goes to a
    // file only its owner can read, and the output says where.
    let key_file = data_dir.join("generated-api-key");
    assert!(!server.output().contains("tsk_"), "{}", server.output());
    assert!(
        server.output().contains(&key_file.display().to_string()),
        "{}",
        server.output()
    );
    assert_eq!(file_mode(&key_file), 0o600);
    let generated = key_in(&std::fs::read_to_string(&key_file).expect("key file"));
    let file = std::fs::read_to_string(data_dir.join("api-keys.json")).expect("keys file");
    assert!(!file.contains(&generated), "only the hash is kept");
    assert_eq!(status_with_key(&server, &generated).await, 200);

    // `keys create` adds a key the running server accepts without a restart.
    let created = stdout(&run(&[
        "keys",
        "--data-dir",
        &dir,
        "create",
        "--label",
        "ci",
    ]));
    let second = key_in(&created);
    eventually_status(&server, &second, 200).await;

    let listed = stdout(&run(&["keys", "--data-dir", &dir, "list"]));
    assert!(listed.contains("ci") && listed.contains("generated on first start"));
    assert!(!listed.contains(&generated) && !listed.contains(&second));

    // `keys revoke` takes it away again.
    let id = created
        .split_whitespace()
        .nth(3)
        .expect("created API key <id>")
        .to_owned();
    stdout(&run(&["keys", "--data-dir", &dir, "revoke", &id]));
    eventually_status(&server, &second, 401).await;
    assert_eq!(status_with_key(&server, &generated).await, 200);
    let missing = run(&["keys", "--data-dir", &dir, "revoke", &id]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no API key with id"));

    // A restart on the same data directory prints no new key.
    server.signal("TERM");
    assert!(server.wait().success());
    let restarted = Server::start_raw(&data_dir, &["--store", "memory:"], &[]);
    assert!(!restarted.output().contains("tsk_"));
    assert_eq!(status_with_key(&restarted, &generated).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_stats_commands_talk_to_the_server() {
    let server = Server::start(&[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, session) = common::create(&server, Some("dora")).await;
        ids.push(session["id"].as_str().expect("id").to_owned());
    }
    let remote = [
        "--server",
        server.url.as_str(),
        "--api-key",
        common::API_KEY,
    ];

    let mut args = vec!["sessions", "list", "--subject", "dora"];
    args.extend_from_slice(&remote);
    let table = stdout(&run(&args));
    for id in &ids {
        assert!(table.contains(id.as_str()), "{table}");
    }
    assert!(table.contains("3 session(s)"));
    assert!(!table.contains("more:"), "one page: {table}");

    // Page by page: the first page says how to get the next.
    let mut args = vec!["sessions", "list", "--subject", "dora", "--limit", "2"];
    args.extend_from_slice(&remote);
    let first = stdout(&run(&args));
    assert!(first.contains("2 session(s)"), "{first}");
    let cursor = first
        .split_whitespace()
        .skip_while(|word| *word != "--cursor")
        .nth(1)
        .expect("a cursor for the next page")
        .to_owned();
    let mut args = vec![
        "sessions",
        "list",
        "--subject",
        "dora",
        "--limit",
        "2",
        "--cursor",
        &cursor,
    ];
    args.extend_from_slice(&remote);
    let second = stdout(&run(&args));
    assert!(
        second.contains("1 session(s)") && !second.contains("more:"),
        "{second}"
    );
    for id in &ids {
        assert!(
            first.contains(id.as_str()) ^ second.contains(id.as_str()),
            "{id}"
        );
    }

    let mut args = vec!["sessions", "revoke", ids[0].as_str()];
    args.extend_from_slice(&remote);
    assert!(stdout(&run(&args)).contains("revoked session"));
    let mut args = vec!["sessions", "revoke", ids[0].as_str()];
    args.extend_from_slice(&remote);
    let again = run(&args);
    assert!(!again.status.success(), "already revoked: 404");
    assert!(String::from_utf8_lossy(&again.stderr).contains("404"));

    let mut args = vec![
        "sessions",
        "revoke-subject",
        "dora",
        "--except",
        ids[1].as_str(),
    ];
    args.extend_from_slice(&remote);
    assert!(stdout(&run(&args)).contains("revoked 1 session(s)"));
    let (status, body) = common::call(&server, "GET", "/v1/subjects/dora/sessions", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["sessions"][0]["id"], ids[1].as_str());

    let mut args = vec!["sessions", "list", "--subject", "nobody"];
    args.extend_from_slice(&remote);
    assert!(stdout(&run(&args)).contains("no sessions"));

    let mut args = vec!["stats"];
    args.extend_from_slice(&remote);
    let stats = stdout(&run(&args));
    for needle in ["memory:", "create", "revoke_subject", "created", "revoked"] {
        assert!(stats.contains(needle), "{needle} in {stats}");
    }

    // A wrong key and an unreachable server are clear errors.
    let wrong = run(&["stats", "--server", &server.url, "--api-key", "nope"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));
    let down = run(&["stats", "--server", "http://127.0.0.1:1", "--api-key", "k"]);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach"));
    let (status, _) = common::call(&server, "POST", "/v1/sessions", Some(json!({}))).await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_into_a_closed_pipe_ends_quietly() {
    let server = Server::start(&[]);
    for _ in 0..3 {
        common::create(&server, Some("pipe")).await;
    }
    for args in [
        vec!["stats", "--server", server.url.as_str()],
        vec![
            "sessions",
            "list",
            "--subject",
            "pipe",
            "--server",
            server.url.as_str(),
        ],
    ] {
        // `tesserad stats | head -0`: the reader is gone before anything is written.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = tesserad_command()
            .args(&args)
            .args(["--api-key", common::API_KEY])
            .stdout(writer)
            .output()
            .expect("run tesserad");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn contradicting_settings_are_refused_before_a_key_is_generated() {
    let data_dir = temp_dir("refused-keys");
    let output = tesserad_command()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--data-dir",
        ])
        .arg(&data_dir)
        .args(["--idle-timeout", "2s", "--touch-after", "60s"])
        .output()
        .expect("run tesserad");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("touch_after (60s)"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("tsk_"), "no key printed: {stdout}");
    assert!(
        !data_dir.join("api-keys.json").exists(),
        "no key stored for a server that did not start"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn subject_listings_are_paginated_by_cursor() {
    let server = Server::start(&[]);
    let mut created = std::collections::BTreeSet::new();
    for _ in 0..7 {
        let (_, session) = common::create(&server, Some("paged")).await;
        created.insert(session["id"].as_str().expect("id").to_owned());
    }
    let mut listed = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/subjects/paged/sessions?limit=3&cursor={cursor}"),
            None => "/v1/subjects/paged/sessions?limit=3".to_owned(),
        };
        let (status, body) = common::call(&server, "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        let sessions = body["sessions"].as_array().expect("sessions");
        assert!(sessions.len() <= 3, "a page holds at most `limit`");
        for session in sessions {
            assert!(listed.insert(session["id"].as_str().expect("id").to_owned()));
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(body["next_cursor"].is_null(), "{body}");
                break;
            }
        }
        assert!(pages < 10, "the cursor moves on");
    }
    assert_eq!(listed, created);
    assert_eq!(pages, 3);

    // The default page is bounded; nonsense is refused as a bad request.
    let (status, body) = common::call(&server, "GET", "/v1/subjects/paged/sessions", None).await;
    assert_eq!(status, 200);
    assert!(body["next_cursor"].is_null());
    for bad in ["limit=0", "limit=1001", "cursor=zz", "page=2"] {
        let (status, body) = common::call(
            &server,
            "GET",
            &format!("/v1/subjects/paged/sessions?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_reach_only_the_endpoints_of_their_scopes() {
    let data_dir = temp_dir("scopes");
    let dir = data_dir.to_string_lossy().into_owned();
    // The key on the command line may validate only.
    let server = Server::start_raw(
        &data_dir,
        &[
            "--store",
            "memory:",
            "--api-key",
            common::API_KEY,
            "--api-key-scopes",
            "validate",
        ],
        &[],
    );
    let sessions_key = key_in(&stdout(&run(&[
        "keys",
        "--data-dir",
        &dir,
        "create",
        "--label",
        "app",
        "--scopes",
        "validate,sessions",
    ])));
    let admin_key = key_in(&stdout(&run(&[
        "keys",
        "--data-dir",
        &dir,
        "create",
        "--scopes",
        "admin",
    ])));
    let listed = stdout(&run(&["keys", "--data-dir", &dir, "list"]));
    assert!(
        listed.contains("validate,sessions") && listed.contains("admin"),
        "{listed}"
    );
    eventually_status(&server, &admin_key, 200).await;

    let http = client();
    let send = |method: reqwest::Method, path: &str, key: &str, body: serde_json::Value| {
        http.request(method, server.at(path))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let created = send(
        reqwest::Method::POST,
        "/v1/sessions",
        &sessions_key,
        json!({"subject": "sam"}),
    )
    .await
    .expect("create");
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.expect("json");
    let token = created["token"].as_str().expect("token").to_owned();

    // validate: the validating key may, the admin key may not.
    let validate = json!({"token": token});
    let ok = send(
        reqwest::Method::POST,
        "/v1/sessions/validate",
        common::API_KEY,
        validate.clone(),
    )
    .await
    .expect("validate");
    assert_eq!(ok.status(), 200);
    let refused = send(
        reqwest::Method::POST,
        "/v1/sessions/validate",
        &admin_key,
        validate,
    )
    .await
    .expect("validate");
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("`validate`"),
        "{body}"
    );

    // sessions: creating with the validating key is refused.
    let refused = send(
        reqwest::Method::POST,
        "/v1/sessions",
        common::API_KEY,
        json!({}),
    )
    .await
    .expect("create");
    assert_eq!(refused.status(), 403);

    // admin: listing a subject, stats and revoke-all need it.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/subjects/sam/sessions"),
        (reqwest::Method::GET, "/v1/stats"),
        (reqwest::Method::POST, "/v1/admin/revoke-all"),
    ] {
        let refused = send(method.clone(), path, &sessions_key, json!({}))
            .await
            .expect("call");
        assert_eq!(refused.status(), 403, "{method} {path}");
    }
    let listed = send(
        reqwest::Method::GET,
        "/v1/subjects/sam/sessions",
        &admin_key,
        json!({}),
    )
    .await
    .expect("list");
    assert_eq!(listed.status(), 200);
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("outcome=\"forbidden\""),
        "403s are counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_key_checks_are_throttled_per_client() {
    let server = Server::start(&["--max-auth-failures", "3"]);
    let http = client();
    let stats = |key: &'static str| http.get(server.at("/v1/stats")).bearer_auth(key).send();
    for _ in 0..3 {
        assert_eq!(stats("tsk_guess").await.expect("call").status(), 401);
    }
    // Over the budget: refused even with the right key, so guessing cannot
    // go on at full speed; the answer says how long to wait.
    let limited = stats(common::API_KEY).await.expect("call");
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = limited.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited");
    // Forward-auth and the operational endpoints are not keyed: unaffected.
    let health = http
        .get(server.at("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_command_line_keys_are_refused() {
    let data_dir = temp_dir("weak");
    let output = tesserad_command()
        .current_dir(&data_dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--api-key",
            "hunter2",
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("too weak") && stderr.contains("at least 32"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the key is never echoed: {stderr}"
    );
    assert_eq!(std::fs::read_dir(&data_dir).expect("dir").count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_store_keeps_no_files_and_says_so() {
    let workdir = temp_dir("memory-no-files");
    let mut command = tesserad_command();
    command
        .current_dir(&workdir)
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory:"]);
    let mut server = Server::spawn(command, &temp_dir("memory-no-files-scratch"));
    let output = server.output();
    assert!(output.contains("keeps no files"), "{output}");
    assert!(!workdir.join("tessera-data").exists(), "no ./tessera-data");
    assert_eq!(std::fs::read_dir(&workdir).expect("dir").count(), 0);
    // The generated key went to a 0600 file in the temporary directory,
    // named in the output, and works.
    let path = output
        .split_whitespace()
        .find(|word| word.starts_with('/') && word.ends_with("generated-api-key"))
        .expect("the key file is named")
        .to_owned();
    assert_eq!(file_mode(std::path::Path::new(&path)), 0o600);
    let key = key_in(&std::fs::read_to_string(&path).expect("key file"));
    assert_eq!(status_with_key(&server, &key).await, 200);
    // The key ends with the process, and so does its file.
    server.signal("TERM");
    assert!(server.wait().success());
    assert!(!std::path::Path::new(&path).exists(), "removed at shutdown");
    assert_eq!(std::fs::read_dir(&workdir).expect("dir").count(), 0);
}

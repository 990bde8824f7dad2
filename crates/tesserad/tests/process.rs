//! The binary as an operator runs it: environment variables, the default
//! subcommand, graceful shutdown on signals, TLS, and clear start errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{API_KEY, Server, client, create, metrics_text, temp_dir, tesserad_command};
use serde_json::json;

#[test]
fn every_flag_reads_the_environment_and_serve_is_the_default() {
    let data_dir = temp_dir("env");
    let mut command = tesserad_command();
    command
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_STORE", "memory:")
        .env("TESSERA_DATA_DIR", &data_dir)
        .env("TESSERA_API_KEY", API_KEY)
        .env("TESSERA_IDLE_TIMEOUT", "2m")
        .env("TESSERA_ABSOLUTE_TIMEOUT", "1h")
        .env("TESSERA_RENEW_AFTER", "5m")
        .env("TESSERA_ROTATION_GRACE", "2s")
        .env("TESSERA_TOUCH_AFTER", "10s")
        .env("TESSERA_BINDING", "reject")
        .env("TESSERA_COOKIE_NAME", "sid")
        .env("TESSERA_LOG_FORMAT", "json")
        .env("TESSERA_LOG_LEVEL", "info");
    let server = Server::spawn(command, &data_dir);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (status, body) = common::call(
            &server,
            "POST",
            "/v1/sessions",
            Some(json!({"subject": "env", "client": {"user_agent": "A"}})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let session = &body["session"];
        let created = time::OffsetDateTime::parse(
            session["created_at"].as_str().expect("time"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        let idle = time::OffsetDateTime::parse(
            session["idle_expires_at"].as_str().expect("time"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339");
        assert_eq!(
            idle - created,
            time::Duration::minutes(2),
            "TESSERA_IDLE_TIMEOUT"
        );
        let token = body["token"].as_str().expect("token");

        // TESSERA_BINDING=reject: another User-Agent is refused.
        let (status, body) = common::call(
            &server,
            "POST",
            "/v1/sessions/validate",
            Some(json!({"token": token, "client": {"user_agent": "B"}})),
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(body["reason"], "binding_mismatch");

        // TESSERA_COOKIE_NAME=sid.
        let response = client()
            .get(server.at("/v1/auth"))
            .header("cookie", format!("sid={token}"))
            .header("user-agent", "A")
            .send()
            .await
            .expect("auth");
        assert_eq!(response.status(), 200);
    });
    // TESSERA_LOG_FORMAT=json: log lines on stderr are JSON objects.
    let output = server.output();
    let log_line = output
        .lines()
        .find(|line| line.contains("\"listening\""))
        .expect("a JSON log line");
    let parsed: serde_json::Value = serde_json::from_str(log_line).expect("JSON log line");
    assert_eq!(parsed["level"], "INFO");
}

#[test]
fn unknown_store_urls_and_bad_flags_are_clear_errors_at_start() {
    for (args, needle) in [
        (
            vec!["--store", "mongodb://localhost"],
            "unknown store URL `mongodb://localhost`",
        ),
        (vec!["--idle-timeout", "forever"], "--idle-timeout"),
        (vec!["--binding", "sometimes"], "unknown binding policy"),
        // Settings given that contradict each other (one alone is
        // completed from defaults that fit it).
        (
            vec![
                "--store",
                "memory:",
                "--idle-timeout",
                "13h",
                "--absolute-timeout",
                "12h",
            ],
            "idle_timeout",
        ),
        (vec!["--tls-cert", "/nonexistent.pem"], "--tls-key"),
    ] {
        let data_dir = temp_dir("bad-flags");
        let output = tesserad_command()
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(&args)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut server = Server::start(&["--log-level", "debug"]);
    let address = server.url.trim_start_matches("http://").to_owned();
    let body = br#"{"subject": "in-flight", "data": {"note": "sent in two halves"}}"#;
    let mut stream = TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "POST /v1/sessions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("headers");
    stream.write_all(&body[..10]).expect("first half");
    stream.flush().expect("flush");
    // The request is in the server's hands once it starts processing it.
    server.wait_for_line("started processing request");

    server.signal("TERM");
    server.wait_for_line("shutting down");
    stream.write_all(&body[10..]).expect("second half");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("\"subject\":\"in-flight\""), "{response}");

    let status = server.wait();
    assert!(status.success(), "exit status {status:?}");
    assert!(server.output().contains("tesserad stopped"));
    assert!(
        TcpStream::connect(&address).is_err(),
        "no new connections after shutdown"
    );
}

#[test]
fn sigint_stops_the_server_cleanly() {
    let mut server = Server::start(&[]);
    server.signal("INT");
    let status = server.wait();
    assert!(status.success(), "exit status {status:?}");
    assert!(server.output().contains("SIGINT received"));
}

#[test]
fn serves_https_with_rustls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("tls");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("cert");
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).expect("key");
    let cert_arg = cert_path.to_string_lossy().into_owned();
    let key_arg = key_path.to_string_lossy().into_owned();
    let server = Server::start(&["--tls-cert", &cert_arg, "--tls-key", &key_arg]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let trusting = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("pem"),
            )
            .build()
            .expect("client");
        let response = trusting
            .post(server.at("/v1/sessions"))
            .bearer_auth(API_KEY)
            .json(&json!({"subject": "tls"}))
            .send()
            .await
            .expect("https request");
        assert_eq!(response.status(), 201);

        // A client that does not trust the certificate cannot talk to it,
        // and plain HTTP on the TLS port gets no API answer.
        assert!(client().get(server.at("/healthz")).send().await.is_err());
        let plain = server.url.replace("https://", "http://");
        let answered = client()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        assert!(!answered);
    });

    // The admin CLI talks HTTPS too.
    let output = tesserad_command()
        .args([
            "stats",
            "--server",
            &server.url,
            "--api-key",
            API_KEY,
            "--ca-cert",
        ])
        .arg(&cert_path)
        .output()
        .expect("stats");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("create"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_ever_appears_in_the_logs() {
    for (format, level) in [("human", "debug"), ("json", "trace")] {
        let server = Server::start(&["--log-format", format, "--log-level", level]);
        let mut tokens = Vec::new();
        let (anonymous, _) = create(&server, None).await;
        tokens.push(anonymous.clone());
        let (_, body) = common::call(
            &server,
            "POST",
            "/v1/sessions/validate",
            Some(json!({"token": anonymous, "client": {"ip": "192.0.2.1"}})),
        )
        .await;
        assert!(body["session"].is_object());
        let (_, body) = common::call(
            &server,
            "POST",
            "/v1/sessions/login",
            Some(json!({"token": anonymous, "subject": "alice"})),
        )
        .await;
        let signed_in = body["token"].as_str().expect("token").to_owned();
        tokens.push(signed_in.clone());
        common::call(
            &server,
            "POST",
            "/v1/sessions/update",
            Some(json!({"token": signed_in, "patch": {"a": 1}})),
        )
        .await;
        let response = client()
            .get(server.at("/v1/auth"))
            .header("cookie", format!("__Host-tessera={signed_in}"))
            .send()
            .await
            .expect("auth");
        assert_eq!(response.status(), 200);
        let (_, body) = common::call(
            &server,
            "POST",
            "/v1/sessions/rotate",
            Some(json!({"token": signed_in})),
        )
        .await;
        let rotated = body["token"].as_str().expect("token").to_owned();
        tokens.push(rotated.clone());
        // Refused and malformed tokens (a near-miss of a real one, too).
        let mut near_miss = rotated.clone();
        near_miss.replace_range(10..11, if &rotated[10..11] == "A" { "B" } else { "A" });
        tokens.push(near_miss.clone());
        for bad in [near_miss.as_str(), anonymous.as_str()] {
            let (status, _) = common::call(
                &server,
                "POST",
                "/v1/sessions/validate",
                Some(json!({"token": bad})),
            )
            .await;
            assert_eq!(status, 401);
        }
        // A token in a body that is refused for another reason.
        let (status, _) = common::call(
            &server,
            "POST",
            "/v1/sessions/validate",
            Some(json!({"token": rotated, "unexpected": rotated})),
        )
        .await;
        assert_eq!(status, 400);
        common::call(
            &server,
            "POST",
            "/v1/sessions/logout",
            Some(json!({"token": rotated})),
        )
        .await;

        let output = server.output();
        assert!(output.contains("DEBUG") || output.contains("\"level\":\"DEBUG\""));
        for token in &tokens {
            assert!(
                !output.contains(token.as_str()),
                "a token leaked into the {format} logs at {level}"
            );
            // Nor its secret part alone.
            assert!(!output.contains(&token[4..40]));
        }
        assert!(!output.contains(API_KEY), "the API key leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_command_serves_the_embedded_store_and_keeps_sessions() {
    // `tesserad` with no arguments, as `cargo run --release` starts it, in a
    // fresh directory (only the port is chosen by the test).
    let workdir = temp_dir("default");
    // `cleanup` is the directory the harness removes when the server is dropped.
    let start = |cleanup: &std::path::Path| {
        let mut command = tesserad_command();
        command
            .current_dir(&workdir)
            .env("TESSERA_LISTEN", "127.0.0.1:0");
        Server::spawn(command, cleanup)
    };
    let mut first = start(&temp_dir("default-scratch"));
    assert!(first.output().contains("(store embedded:./tessera-data)"));
    // Standard output is not a terminal: the key is in a 0600 file.
    let data = workdir.join("tessera-data");
    assert!(
        first.output().contains("generated-api-key"),
        "{}",
        first.output()
    );
    let key = std::fs::read_to_string(data.join("generated-api-key"))
        .expect("the generated key is written")
        .trim()
        .to_owned();
    assert!(key.starts_with("tsk_"));
    assert!(data.join("api-keys.json").is_file());
    let http = client();
    let created: serde_json::Value = http
        .post(first.at("/v1/sessions"))
        .bearer_auth(&key)
        .json(&json!({"subject": "persisted", "data": {"n": 1}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let token = created["token"].as_str().expect("token").to_owned();

    // A second server on the same data directory is refused at start.
    let second = tesserad_command()
        .current_dir(&workdir)
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("cannot open the embedded store"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    first.signal("TERM");
    assert!(first.wait().success());
    assert!(first.output().contains("tesserad stopped"));
    assert!(!first.output().contains("did not close cleanly"));
    drop(first);

    // Restarted: same key, no new key printed, the session is still there.
    let restarted = start(&workdir);
    assert!(!restarted.output().contains("tsk_"));
    let validated: serde_json::Value = http
        .post(restarted.at("/v1/sessions/validate"))
        .bearer_auth(&key)
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(validated["session"]["subject"], "persisted");
    assert_eq!(validated["session"]["data"], json!({"n": 1}));
}

/// Signs `ann` in from 198.51.100.7 with `Browser/1`.
async fn login(server: &Server) -> (u16, serde_json::Value) {
    common::call(
        server,
        "POST",
        "/v1/sessions/login",
        Some(json!({
            "subject": "ann",
            "client": {"ip": "198.51.100.7", "user_agent": "Browser/1"}
        })),
    )
    .await
}

/// `GET /v1/auth` with this cookie, `X-Forwarded-For` and User-Agent.
async fn auth(server: &Server, token: &str, forwarded: &str, agent: Option<&str>) -> u16 {
    let mut request = client()
        .get(server.at("/v1/auth"))
        .header("cookie", format!("__Host-tessera={token}"))
        .header("x-forwarded-for", forwarded);
    if let Some(agent) = agent {
        request = request.header("user-agent", agent);
    }
    request.send().await.expect("auth").status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_takes_the_client_ip_from_trusted_proxies_only() {
    // Binding rejects another /24 or another (or no) User-Agent, so the
    // answer shows which address and agent forward-auth took.

    // The default trusts loopback, where this test's requests come from.
    let server = Server::start(&["--binding", "reject"]);
    let (status, body) = login(&server).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let browser = Some("Browser/1");
    // The right-most entry no trusted proxy added is the client: a
    // left-most entry the client wrote itself changes nothing.
    assert_eq!(
        auth(&server, &token, "6.6.6.6, 198.51.100.7", browser).await,
        200
    );
    assert_eq!(
        auth(&server, &token, "198.51.100.7, 6.6.6.6, 127.0.0.1", browser).await,
        401,
        "6.6.6.6 is the client here"
    );
    // Bound to a User-Agent, presented without one: a mismatch.
    assert_eq!(auth(&server, &token, "198.51.100.7", None).await, 401);
    drop(server);

    // Trusting only another proxy, loopback's forwarding is not believed.
    let server = Server::start(&["--binding", "reject", "--trusted-proxies", "192.0.2.1/32"]);
    let (status, body) = login(&server).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(auth(&server, &token, "198.51.100.7", browser).await, 401);

    // A list that is not one is a clear error at start.
    let data_dir = temp_dir("bad-proxies");
    let output = tesserad_command()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory:",
            "--data-dir",
        ])
        .arg(&data_dir)
        .args(["--trusted-proxies", "10.0.0.0/40"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("10.0.0.0/40"));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Slow connections held open at once in the slowloris test.
const SLOW_CLIENTS: usize = 2000;

/// Waits until the server closes `stream` (a read returns end of file or
/// an error), sending `trickle` every 300 ms meanwhile when given; `false`
/// when it is still open after `patience`.
async fn closed_by_server(
    stream: &mut tokio::net::TcpStream,
    trickle: Option<&[u8]>,
    patience: std::time::Duration,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let give_up = tokio::time::Instant::now() + patience;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                // An answer (e.g. to a complete request): keep reading.
                Ok(_) => {}
            },
            () = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                if let Some(bytes) = trickle
                    && stream.write_all(bytes).await.is_err()
                {
                    return true;
                }
            }
            () = tokio::time::sleep_until(give_up) => return false,
        }
    }
}

/// The value of one metric series in the text exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
}

/// Slowloris: 2 000 connections that send their headers a line at a time
/// do not keep others from being served, and each is closed once its
/// headers have taken longer than `--header-read-timeout`; connections
/// beyond `--max-connections` are closed at once; a kept-alive connection
/// idle past `--keep-alive-timeout` is closed, and so is one that never
/// sends anything.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let files = rlimit::increase_nofile_limit(u64::MAX).expect("the open-files limit");
    assert!(
        files >= 2 * SLOW_CLIENTS as u64 + 512,
        "this test needs {} open files (client and server side), the limit is {files}: raise it with ulimit -n",
        2 * SLOW_CLIENTS + 512
    );
    let cap = SLOW_CLIENTS + 40;
    let server = Server::start(&[
        "--header-read-timeout",
        "4s",
        "--keep-alive-timeout",
        "2s",
        "--max-connections",
        &cap.to_string(),
    ]);
    let address = server.url.trim_start_matches("http://").to_owned();

    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .expect("first header line");
        slow.push(tokio::spawn(async move {
            closed_by_server(
                &mut stream,
                Some(b"X-Slow: 1\r\n"),
                std::time::Duration::from_secs(30),
            )
            .await
        }));
    }

    // Others are served meanwhile, each within its client's timeout.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .expect("client");
    for _ in 0..10 {
        let status = http
            .get(server.at("/healthz"))
            .send()
            .await
            .expect("a request beside the slow connections is answered")
            .status();
        assert_eq!(status, 200);
    }
    let (token, _) = create(&server, Some("beside-slow-clients")).await;
    assert!(!token.is_empty());
    let metrics = metrics_text(&server).await;
    let open = metric(&metrics, "tessera_connections_open");
    assert!(
        open >= SLOW_CLIENTS as f64,
        "the slow connections are open while the others are served ({open})"
    );

    // Beyond the cap, connections are closed as soon as they are accepted.
    let mut extra = Vec::with_capacity(100);
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        extra.push(tokio::spawn(async move {
            closed_by_server(&mut stream, None, std::time::Duration::from_secs(1)).await
        }));
    }
    let mut refused = 0;
    for closed in extra {
        if closed.await.expect("extra client") {
            refused += 1;
        }
    }
    assert!(
        refused >= 50,
        "only {refused} of 100 connections over the cap were refused"
    );

    // Every slow connection is cut off at its header deadline.
    for task in slow {
        assert!(
            task.await.expect("slow client"),
            "a connection trickling its headers for 30 s was never closed"
        );
    }

    // A connection that sends nothing is closed at the header deadline.
    let mut silent = TcpStream::connect(&address).await.expect("connect");
    assert!(closed_by_server(&mut silent, None, std::time::Duration::from_secs(15)).await);
    // A kept-alive connection is closed when idle after its response.
    let mut kept = TcpStream::connect(&address).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    assert!(closed_by_server(&mut kept, None, std::time::Duration::from_secs(15)).await);

    let metrics = metrics_text(&server).await;
    assert!(
        metric(
            &metrics,
            "tessera_connections_closed_total{reason=\"refused\"}"
        ) >= 50.0
    );
    assert!(
        metric(
            &metrics,
            "tessera_connections_closed_total{reason=\"header_timeout\"}"
        ) >= (SLOW_CLIENTS + 1) as f64
    );
    assert!(
        metric(
            &metrics,
            "tessera_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0
    );
}

//! The session middleware over actix-web, in both modes: laziness, cookie
//! attributes, renewal, logout, CSRF, concurrency, bad cookies, sealed
//! chunking and revocation (the cases of tessera-axum's `tests/layer.rs`).

mod common;

use std::time::Duration;

use actix_web::test::TestRequest;
use common::{Client, MODES, Mode, app, app_with, raw};
use tessera_core::BindingPolicy;
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::Epochs;

#[actix_web::test]
async fn untouched_and_read_only_requests_cost_nothing_and_set_no_cookie() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        let reply = client.get(&app, "/untouched").await;
        assert_eq!(reply.status, 200);
        let reply = client.get(&app, "/whoami").await;
        assert_eq!(reply.body, "anonymous");
        assert!(
            reply.set_cookies().is_empty(),
            "{mode:?}: reading creates nothing"
        );
        assert_eq!(app.store.hook().writes(), 0, "{mode:?}");
        // With a session cookie, a handler that ignores the session reads nothing.
        client.post(&app, "/set/a/1").await;
        let loads = app.store.hook().reads();
        let reply = client.get(&app, "/untouched").await;
        assert!(reply.set_cookies().is_empty());
        assert_eq!(app.store.hook().reads(), loads, "{mode:?}: lazy loading");
    }
}

#[actix_web::test]
async fn first_write_sets_a_hardened_cookie_once_with_no_store() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        let token = client.get(&app, "/csrf").await;
        let cookies = token.set_cookies();
        assert_eq!(cookies.len(), 1, "{mode:?}: {cookies:?}");
        let cookie = &cookies[0];
        assert!(cookie.starts_with("__Host-tessera="));
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(
                cookie.contains(attribute),
                "{mode:?}: {attribute} in {cookie}"
            );
        }
        for absent in ["Domain", "Max-Age", "Expires"] {
            assert!(!cookie.contains(absent), "{mode:?}: {absent} in {cookie}");
        }
        assert_eq!(token.header("cache-control"), Some("no-store"));
        // A request that changes the session several times still sends one cookie.
        let reply = client.post(&app, "/login/alice").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.set_cookies().len(), 1);
        assert_eq!(client.get(&app, "/whoami").await.body, "alice");
        if mode == Mode::Server {
            assert!(client.session_cookie().expect("cookie").starts_with("tss_"));
        }
    }
}

#[actix_web::test]
async fn strict_same_site_is_configurable() {
    let app = app_with(Mode::Server, BindingPolicy::Log, |b| {
        b.same_site(tessera_actix::SameSite::Strict)
    });
    let reply = Client::new().get(&app, "/csrf").await;
    assert!(reply.set_cookies()[0].contains("SameSite=Strict"));
}

#[actix_web::test]
async fn renewal_sets_the_new_token_transparently() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        client.post(&app, "/login/alice").await;
        let before = client.session_cookie().cloned();
        app.clock.advance(Duration::from_secs(16 * 60));
        let reply = client.get(&app, "/whoami").await;
        assert_eq!(reply.body, "alice");
        assert_eq!(reply.set_cookies().len(), 1, "{mode:?}: renewed");
        assert_ne!(client.session_cookie().cloned(), before);
        assert_eq!(client.get(&app, "/whoami").await.body, "alice");
    }
}

#[actix_web::test]
async fn logout_removes_the_cookie_and_the_old_value_is_refused() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        client.post(&app, "/login/alice").await;
        let stolen = client.clone();
        let reply = client.post(&app, "/logout").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("clear-site-data"), Some("\"cookies\""));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert!(reply.set_cookies()[0].contains("Max-Age=0"));
        assert!(client.session_cookie().is_none());
        let mut stolen = stolen;
        // Server mode deleted the record; sealed mode moved alice's epoch on.
        let expected = if mode == Mode::Server {
            "unknown"
        } else {
            "revoked"
        };
        assert_eq!(
            stolen.get(&app, "/rejected").await.body,
            expected,
            "{mode:?}"
        );
        assert_eq!(
            stolen.get(&app, "/whoami").await.body,
            "anonymous",
            "{mode:?}"
        );
    }
}

#[actix_web::test]
async fn tokens_are_accepted_only_from_the_cookie() {
    let app = app(Mode::Server);
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let token = client.session_cookie().cloned().expect("token");
    let mut bare = Client::new();
    let path = format!("/whoami?session={token}&__Host-tessera={token}");
    assert_eq!(bare.get(&app, &path).await.body, "anonymous");
    let reply = bare
        .send(
            &app,
            TestRequest::post()
                .uri("/untouched")
                .insert_header(("content-type", "application/x-www-form-urlencoded"))
                .set_payload(format!("__Host-tessera={token}&token={token}")),
        )
        .await;
    assert_eq!(reply.status, 403, "no session, no CSRF token");
}

#[actix_web::test]
async fn csrf_needs_a_token_of_this_session_and_a_same_site_request() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        let token = client.get(&app, "/csrf").await.body;

        let missing = client.send(&app, TestRequest::post().uri("/incr")).await;
        assert_eq!(missing.status, 403);
        assert_eq!(missing.header("tessera-error"), Some("csrf_missing_token"));

        let wrong = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", "AAAA")),
            )
            .await;
        assert_eq!(wrong.header("tessera-error"), Some("csrf_invalid_token"));

        let mut other = Client::new();
        let foreign = other.get(&app, "/csrf").await.body;
        let swapped = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", foreign.as_str())),
            )
            .await;
        assert_eq!(
            swapped.header("tessera-error"),
            Some("csrf_invalid_token"),
            "{mode:?}"
        );

        let cross = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", token.as_str()))
                    .insert_header(("sec-fetch-site", "cross-site")),
            )
            .await;
        assert_eq!(cross.header("tessera-error"), Some("csrf_cross_site"));
        let foreign_origin = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", token.as_str()))
                    .insert_header(("host", "localhost:7451"))
                    .insert_header(("origin", "http://127.0.0.1:9999")),
            )
            .await;
        assert_eq!(
            foreign_origin.header("tessera-error"),
            Some("csrf_cross_site")
        );

        let no_session = Client::new()
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", token.as_str())),
            )
            .await;
        assert_eq!(no_session.header("tessera-error"), Some("csrf_no_session"));
        assert!(
            no_session.body.contains("load the form again"),
            "{}",
            no_session.body
        );
        // Over plain HTTP from a LAN address the browser dropped the Secure
        // cookie: the answer says so instead of "load the form again".
        let over_http = Client::new()
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", token.as_str()))
                    .insert_header(("host", "192.168.1.20:3000"))
                    .insert_header(("origin", "http://192.168.1.20:3000")),
            )
            .await;
        assert_eq!(over_http.header("tessera-error"), Some("csrf_no_session"));
        assert!(
            over_http.body.contains("plain HTTP") && over_http.body.contains(".secure(false)"),
            "{}",
            over_http.body
        );

        let ok = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", token.as_str())),
            )
            .await;
        assert_eq!((ok.status, ok.body.as_str()), (200, "1"), "{mode:?}");

        // The form field works, and the handler still reads the whole form.
        let form = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/note")
                    .insert_header(("content-type", "application/x-www-form-urlencoded"))
                    .set_payload(format!("text=hello+world&csrf_token={token}")),
            )
            .await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert_eq!(client.get(&app, "/get/note").await.body, "\"hello world\"");
        // The query string is never a source of the token.
        let query = client
            .send(
                &app,
                TestRequest::post().uri(&format!("/incr?csrf_token={token}")),
            )
            .await;
        assert_eq!(query.status, 403);
        // Safe methods need no token; exempt routes can be configured.
        assert_eq!(client.get(&app, "/whoami").await.status, 200);
    }
    let exempt = app_with(Mode::Server, BindingPolicy::Log, |b| {
        b.csrf_exempt(|request| request.path == "/untouched")
    });
    let reply = raw(&exempt, TestRequest::post().uri("/untouched")).await;
    assert_eq!(reply.status, 200);
}

#[actix_web::test]
async fn login_issues_a_new_token_and_csrf_secret() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        let before_token = client.get(&app, "/csrf").await.body;
        let planted = client.session_cookie().cloned();
        client.post(&app, "/set/cart/3").await;
        client.post(&app, "/login/alice").await;
        assert_ne!(client.session_cookie().cloned(), planted, "{mode:?}");
        assert_eq!(
            client.get(&app, "/get/cart").await.body,
            "\"3\"",
            "data carried over"
        );
        let stale = client
            .send(
                &app,
                TestRequest::post()
                    .uri("/incr")
                    .insert_header(("x-csrf-token", before_token)),
            )
            .await;
        assert_eq!(stale.header("tessera-error"), Some("csrf_invalid_token"));
        let mut attacker = Client::new();
        attacker
            .jar
            .insert("__Host-tessera".into(), planted.expect("planted"));
        assert_eq!(
            attacker.get(&app, "/whoami").await.body,
            "anonymous",
            "{mode:?}"
        );
    }
}

#[actix_web::test]
async fn login_and_the_data_set_after_it_are_one_write() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        // An anonymous session with a cart, then a sign-in that sets three
        // values: the old token dies, and the store sees a single write.
        client.post(&app, "/set/cart/3").await;
        let planted = client.session_cookie().cloned();
        let csrf = client.get(&app, "/csrf").await.body;
        let writes = app.store.hook().writes();
        let reply = client.post_with_token(&app, "/signin/bob", &csrf).await;
        assert_eq!(reply.status, 200, "{mode:?}");
        let expected_writes = match mode {
            Mode::Server => 1,
            // Sealed: the session travels in the cookie, the store sees nothing.
            Mode::Sealed => 0,
        };
        assert_eq!(
            app.store.hook().writes() - writes,
            expected_writes,
            "{mode:?}"
        );
        assert_ne!(client.session_cookie().cloned(), planted, "{mode:?}");
        let (visits, csrf) = reply.body.split_once(' ').expect("visits and token");
        assert_eq!(visits, "1");
        for (key, value) in [("user", "\"bob\""), ("visits", "1"), ("cart", "\"3\"")] {
            assert_eq!(
                client.get(&app, &format!("/get/{key}")).await.body,
                value,
                "{mode:?} {key}"
            );
        }
        assert_eq!(client.get(&app, "/whoami").await.body, "bob");
        // The CSRF token handed out before the write belongs to the new session.
        let reply = client.post_with_token(&app, "/incr", csrf).await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);

        // Data over the limit is refused when inserted, as a direct write
        // would be; the sign-in before it stands.
        let mut other = Client::new();
        let csrf = other.get(&app, "/csrf").await.body;
        let reply = other.post_with_token(&app, "/signin/huge", &csrf).await;
        assert_eq!(reply.status, 413, "{mode:?}");
        assert_eq!(other.get(&app, "/whoami").await.body, "huge", "{mode:?}");
        assert_eq!(other.get(&app, "/get/payload").await.body, "null");

        // A sign-in refused only when it is finally written (here: a sealed
        // cookie too large to set) fails the response, sets no cookie and
        // leaves the session from before as it was.
        if mode == Mode::Sealed {
            let mut other = Client::new();
            other.post(&app, "/set/cart/4").await;
            let before = other.session_cookie().cloned();
            let csrf = other.get(&app, "/csrf").await.body;
            let reply = other.post_with_token(&app, "/signin/wide", &csrf).await;
            assert_eq!(reply.status, 413);
            assert!(reply.set_cookies().is_empty());
            assert_eq!(other.session_cookie().cloned(), before);
            assert_eq!(other.get(&app, "/whoami").await.body, "anonymous");
            assert_eq!(other.get(&app, "/get/cart").await.body, "\"4\"");
        }
    }
}

#[actix_web::test]
async fn a_login_after_the_response_left_is_written_at_once() {
    let app = app(Mode::Server);
    let mut client = Client::new();
    let reply = client.post(&app, "/late-login").await;
    assert_eq!(reply.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.events.of_kind("logged_in").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the late login was never written"
        );
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn parallel_requests_of_one_browser_lose_no_write() {
    // A real server with four workers, so requests truly run in parallel.
    let app = app(Mode::Server);
    let middleware = app.middleware.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(middleware.clone())
            .configure(common::routes)
    })
    .workers(4)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let token = client.get(&app, "/csrf").await.body;
    let cookie = client.cookie_header().expect("cookie");
    let http = reqwest::Client::new();
    let requests = (0..24).map(|i| {
        let path = if i % 2 == 0 {
            "/incr".to_owned()
        } else {
            format!("/set/key{i}/v")
        };
        http.post(format!("http://{addr}{path}"))
            .header("cookie", &cookie)
            .header("x-csrf-token", token.as_str())
            .send()
    });
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(reply.expect("reply").status().as_u16(), 200);
    }
    handle.stop(true).await;
    assert_eq!(
        client.get(&app, "/get/n").await.body,
        "12",
        "every increment counted"
    );
    for i in (1..24).step_by(2) {
        assert_eq!(
            client.get(&app, &format!("/get/key{i}")).await.body,
            "\"v\""
        );
    }
}

#[actix_web::test]
async fn bad_cookies_mean_anonymous_never_a_server_error() {
    let long = format!("__Host-tessera={}", "A".repeat(5000));
    let garbage: Vec<Vec<u8>> = vec![
        b"__Host-tessera=garbage".to_vec(),
        b"__Host-tessera=".to_vec(),
        b"__Host-tessera=tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
        b"__Host-tessera=a; __Host-tessera=b".to_vec(),
        b"__Host-tessera=\xff\xfe\xfd".to_vec(),
        b"__Host-tessera=1.\xc3\x28".to_vec(),
        b"=;;;; ;=;__Host-tessera".to_vec(),
        long.into_bytes(),
        b"__Host-tessera=9.AAAA; __Host-tessera.1=BBBB".to_vec(),
        b"__Host-tessera.3=AAAA".to_vec(),
    ];
    for mode in MODES {
        let app = app(mode);
        for cookie in &garbage {
            let request = TestRequest::get().uri("/whoami").insert_header((
                "cookie",
                actix_web::http::header::HeaderValue::from_bytes(cookie).expect("bytes"),
            ));
            let reply = raw(&app, request).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "anonymous"),
                "{mode:?}: {}",
                String::from_utf8_lossy(cookie)
            );
            // At most the removal of a cookie that can never be valid.
            assert!(
                reply.set_cookies().iter().all(|c| c.contains("Max-Age=0")),
                "{:?}",
                reply.set_cookies()
            );
            // A write from such a request gets a brand-new session.
            let request = TestRequest::get().uri("/csrf").insert_header((
                "cookie",
                actix_web::http::header::HeaderValue::from_bytes(cookie).expect("bytes"),
            ));
            let reply = raw(&app, request).await;
            assert_eq!(reply.status, 200);
            let set = reply.set_cookies();
            // One new session cookie (plus removals of stale chunks).
            assert_eq!(set.iter().filter(|c| !c.contains("Max-Age=0")).count(), 1);
            assert!(set[0].starts_with("__Host-tessera="), "{set:?}");
        }
    }
}

#[actix_web::test]
async fn tampered_and_retired_seals_are_refused() {
    let app = app(Mode::Sealed);
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let sealed = client.session_cookie().cloned().expect("cookie");
    let (count, body) = sealed.split_once('.').expect("count");
    let mut bytes = body.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let mut tampered = client.clone();
    tampered.jar.insert(
        "__Host-tessera".into(),
        format!("{count}.{}", String::from_utf8(bytes).expect("ascii")),
    );
    // (Each from a fresh copy: the first answer clears the cookie.)
    assert_eq!(
        tampered.clone().get(&app, "/whoami").await.body,
        "anonymous"
    );
    assert_eq!(tampered.get(&app, "/rejected").await.body, "malformed");

    // The same cookie under a rotated ring (new key first) still opens…
    let store = app.store.clone();
    let rotated = KeyRing::new(SealingKey::new(2, [43; 32]))
        .with_previous(SealingKey::new(1, [42; 32]))
        .expect("ring");
    let rotated_app = rebuilt(&app, store.clone(), |b| b.sealed(rotated));
    let mut same = client.clone();
    assert_eq!(same.get(&rotated_app, "/whoami").await.body, "alice");
    // …and once the old key is retired, it does not.
    let retired_app = rebuilt(&app, store, |b| {
        b.sealed(KeyRing::new(SealingKey::new(2, [43; 32])))
    });
    assert_eq!(
        client.clone().get(&retired_app, "/whoami").await.body,
        "anonymous"
    );
    assert_eq!(client.get(&retired_app, "/rejected").await.body, "unknown");
}

fn rebuilt(
    app: &common::TestApp,
    store: std::sync::Arc<tessera_core::testkit::CountingStore>,
    configure: impl FnOnce(
        tessera_actix::SessionMiddlewareBuilder,
    ) -> tessera_actix::SessionMiddlewareBuilder,
) -> common::TestApp {
    let manager = tessera_core::SessionManager::builder_shared(store.clone())
        .clock(app.clock.clone())
        .allow_volatile_epochs()
        .build()
        .expect("manager");
    let middleware = configure(tessera_actix::SessionMiddleware::builder(manager.clone()))
        .build()
        .expect("middleware");
    common::TestApp {
        middleware,
        store,
        clock: app.clock.clone(),
        events: app.events.clone(),
        manager,
    }
}

#[actix_web::test]
async fn sealed_sessions_span_numbered_cookies_up_to_the_limit() {
    let app = app(Mode::Sealed);
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let reply = client.post(&app, "/big/7000").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let names: Vec<String> = reply
        .set_cookies()
        .iter()
        .map(|c| c.split('=').next().expect("name").to_owned())
        .collect();
    assert_eq!(
        names,
        ["__Host-tessera", "__Host-tessera.1", "__Host-tessera.2"]
    );
    assert_eq!(client.get(&app, "/whoami").await.body, "alice");
    // Shrinking removes the stale parts in the same response.
    let reply = client.post(&app, "/big/10").await;
    let set = reply.set_cookies();
    assert_eq!(set.len(), 3, "{set:?}");
    assert!(set[1].contains("Max-Age=0") && set[2].contains("Max-Age=0"));
    assert_eq!(client.jar.len(), 1);
    // Beyond the limit the write is refused, and the old session stays.
    let reply = client.post(&app, "/big/20000").await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("tessera-error"), Some("session_too_large"));
    assert!(reply.set_cookies().is_empty());
    assert_eq!(client.get(&app, "/whoami").await.body, "alice");
}

#[actix_web::test]
async fn revoking_the_subject_signs_out_other_browsers_in_both_modes() {
    for mode in MODES {
        let app = app(mode);
        let mut laptop = Client::new();
        let mut phone = Client::new();
        laptop.post(&app, "/login/alice").await;
        phone.post(&app, "/login/alice").await;
        let reply = laptop.post(&app, "/revoke-others").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            phone.get(&app, "/whoami").await.body,
            "anonymous",
            "{mode:?}"
        );
        assert_eq!(laptop.get(&app, "/whoami").await.body, "alice", "{mode:?}");
        // An operator's revoke_subject works the same way.
        app.manager
            .revoke_subject("alice", None)
            .await
            .expect("revoke");
        assert_eq!(
            laptop.get(&app, "/whoami").await.body,
            "anonymous",
            "{mode:?}"
        );
    }
}

#[actix_web::test]
async fn idle_timeout_signs_out() {
    for mode in MODES {
        let app = app(mode);
        let mut client = Client::new();
        client.post(&app, "/login/alice").await;
        app.clock.advance(Duration::from_secs(31 * 60));
        assert_eq!(
            client.get(&app, "/rejected").await.body,
            "expired_idle",
            "{mode:?}"
        );
        assert_eq!(client.get(&app, "/whoami").await.body, "anonymous");
    }
}

#[actix_web::test]
async fn binding_mismatch_under_reject_is_a_typed_rejection() {
    for mode in MODES {
        let app = app_with(mode, BindingPolicy::Reject, |b| b);
        let mut client = Client::new();
        client.user_agent = Some("Browser/1".into());
        client.post(&app, "/login/alice").await;
        assert_eq!(client.get(&app, "/whoami").await.body, "alice");
        let mut thief = client.clone();
        thief.user_agent = Some("Curl/8".into());
        assert_eq!(thief.get(&app, "/whoami").await.body, "anonymous");
        assert_eq!(
            thief.get(&app, "/rejected").await.body,
            "binding_mismatch",
            "{mode:?}"
        );
        assert!(!app.events.of_kind("binding_mismatch").is_empty());
    }
}

#[actix_web::test]
async fn a_guessing_client_is_refused_with_429() {
    for mode in MODES {
        let app = app_with(mode, BindingPolicy::Log, |b| b.reject_guessing(true));
        let ip: std::net::SocketAddr = "203.0.113.9:5000".parse().expect("addr");
        for i in 0..6 {
            let request = TestRequest::get()
                .uri("/whoami")
                .insert_header(("cookie", format!("__Host-tessera=tss_guess{i}")))
                .peer_addr(ip);
            let reply = raw(&app, request).await;
            assert_ne!(reply.status, 500);
        }
        let request = TestRequest::get()
            .uri("/whoami")
            .insert_header(("cookie", "__Host-tessera=tss_again"))
            .peer_addr(ip);
        let reply = raw(&app, request).await;
        assert_eq!(reply.status, 429, "{mode:?}");
        assert!(!app.events.of_kind("token_guessing").is_empty());
    }
}

#[actix_web::test]
async fn sealed_mode_writes_nothing_to_the_store_but_epochs() {
    let app = app(Mode::Sealed);
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    for _ in 0..3 {
        client.post(&app, "/incr").await;
    }
    assert_eq!(client.get(&app, "/get/n").await.body, "3");
    assert_eq!(app.store.hook().writes(), 0);
    assert_eq!(app.store.subject_epoch("alice").await.expect("epoch"), 0);
}

#[actix_web::test]
async fn signed_out_page_visits_go_to_the_sign_in_page_when_one_is_set() {
    let html = |path: &str| {
        TestRequest::get()
            .uri(path)
            .insert_header(("accept", "text/html,application/xhtml+xml"))
    };
    // Without a sign-in page: the plain 401 every client gets.
    let plain = app(Mode::Server);
    let reply = Client::new().send(&plain, html("/private?tab=2")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("tessera-error"), Some("not_authenticated"));

    let app = app_with(Mode::Server, BindingPolicy::Log, |b| {
        b.sign_in_page("/login")
    });
    let mut client = Client::new();
    let reply = client.send(&app, html("/private?tab=2")).await;
    assert_eq!(reply.status, 303);
    assert_eq!(
        reply.header("location"),
        Some("/login?next=%2Fprivate%3Ftab%3D2")
    );
    // Scripts and non-GET requests keep the error they can act on.
    let script = client
        .send(
            &app,
            TestRequest::get()
                .uri("/private")
                .insert_header(("accept", "application/json")),
        )
        .await;
    assert_eq!(script.status, 401);
    let token = client.get(&app, "/csrf").await.body;
    let post = client
        .send(
            &app,
            TestRequest::post()
                .uri("/private")
                .insert_header(("x-csrf-token", token.as_str()))
                .insert_header(("accept", "text/html")),
        )
        .await;
    assert_eq!(post.status, 401);
    // Signed in, the page is served.
    client.post_with_token(&app, "/login/alice", &token).await;
    let reply = client.send(&app, html("/private")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "private"));
}

//! The session layer's own guarantees over HTTP, in both modes: laziness,
//! cookie attributes, renewal, logout, CSRF, concurrency, bad cookies,
//! sealed chunking, revocation, guessing, binding and the sign-in page.

use std::time::Duration;

use tessera_core::BindingPolicy;
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::Epochs;

use crate::testkit::{
    AppUnderTest, Client, MODES, Mode, Req, app, app_with, raw, rebuilt, send_to,
};
use crate::{TrustedProxies, WebConfigBuilder};

/// Requests that ignore the session or only read it load nothing, write nothing and set no cookie.
pub async fn untouched_and_read_only_requests_cost_nothing_and_set_no_cookie<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// The first write sets one `__Host-` cookie with every hardening attribute, and `Cache-Control: no-store`.
/// A CSRF token asked for before it is stateless: it sets only the
/// pre-session cookie (same attributes) and stores nothing.
pub async fn first_write_sets_a_hardened_cookie_once_with_no_store<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let writes = app.store.hook().writes();
        let token = client.get(&app, "/csrf").await;
        let pre_session = token.set_cookies();
        assert_eq!(pre_session.len(), 1, "{mode:?}: {pre_session:?}");
        assert!(pre_session[0].starts_with("__Host-tessera-csrf="));
        assert_eq!(token.header("cache-control"), Some("no-store"));
        assert_eq!(
            app.store.hook().writes(),
            writes,
            "{mode:?}: a token stores nothing"
        );
        let first = client.post_with_token(&app, "/set/a/1", &token.body).await;
        assert_eq!(first.status, 200, "{mode:?}: {}", first.body);
        let cookies = first.set_cookies();
        assert_eq!(cookies.len(), 1, "{mode:?}: {cookies:?}");
        for cookie in [&cookies[0], &pre_session[0]] {
            for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
                assert!(
                    cookie.contains(attribute),
                    "{mode:?}: {attribute} in {cookie}"
                );
            }
        }
        let cookie = &cookies[0];
        assert!(cookie.starts_with("__Host-tessera="));
        // The page's token keeps working for the anonymous session it created.
        let again = client.post_with_token(&app, "/set/a/2", &token.body).await;
        assert_eq!(again.status, 200, "{mode:?}: {}", again.body);
        for absent in ["Domain", "Max-Age", "Expires"] {
            assert!(!cookie.contains(absent), "{mode:?}: {absent} in {cookie}");
        }
        assert_eq!(first.header("cache-control"), Some("no-store"));
        // A request that changes the session several times still sends one cookie.
        let reply = client.post(&app, "/login/alice").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // One session cookie, and the pre-session cookie goes at sign-in.
        let set = reply.set_cookies();
        assert_eq!(set.len(), 2, "{set:?}");
        assert!(set[0].starts_with("__Host-tessera="), "{set:?}");
        assert!(set[1].starts_with("__Host-tessera-csrf=") && set[1].contains("Max-Age=0"));
        assert_eq!(client.get(&app, "/whoami").await.body, "alice");
        if mode == Mode::Server {
            assert!(client.session_cookie().expect("cookie").starts_with("tss_"));
        }
    }
}

/// `SameSite=Strict` can be chosen.
pub async fn strict_same_site_is_configurable<A: AppUnderTest>() {
    let app = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.same_site(crate::SameSite::Strict)
    })
    .await;
    let reply = Client::new().get(&app, "/csrf").await;
    assert!(reply.set_cookies()[0].contains("SameSite=Strict"));
}

/// A token due for renewal is replaced by the response, and the session goes on.
pub async fn renewal_sets_the_new_token_transparently<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// Logout clears the cookie with `Clear-Site-Data`, and a copy of the old value is refused.
pub async fn logout_removes_the_cookie_and_the_old_value_is_refused<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// A token in the query string or a form field is never a session.
pub async fn tokens_are_accepted_only_from_the_cookie<A: AppUnderTest>() {
    let app = app::<A>(Mode::Server).await;
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let token = client.session_cookie().cloned().expect("token");
    let mut bare = Client::new();
    let path = format!("/whoami?session={token}&__Host-tessera={token}");
    assert_eq!(bare.get(&app, &path).await.body, "anonymous");
    let reply = bare
        .send(
            &app,
            Req::post("/untouched").form(format!("__Host-tessera={token}&token={token}")),
        )
        .await;
    assert_eq!(reply.status, 403, "no session, no CSRF token");
}

/// Unsafe methods need a masked CSRF token of this session, from a header or form field, and a request that is not cross-site.
pub async fn csrf_needs_a_token_of_this_session_and_a_same_site_request<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let token = client.get(&app, "/csrf").await.body;

        let missing = client.send(&app, Req::post("/incr")).await;
        assert_eq!(missing.status, 403);
        assert_eq!(missing.header("tessera-error"), Some("csrf_missing_token"));

        let wrong = client
            .send(&app, Req::post("/incr").header("x-csrf-token", "AAAA"))
            .await;
        assert_eq!(wrong.header("tessera-error"), Some("csrf_invalid_token"));

        let mut other = Client::new();
        let foreign = other.get(&app, "/csrf").await.body;
        let swapped = client
            .send(&app, Req::post("/incr").header("x-csrf-token", &foreign))
            .await;
        assert_eq!(
            swapped.header("tessera-error"),
            Some("csrf_invalid_token"),
            "{mode:?}"
        );

        let cross = client
            .send(
                &app,
                Req::post("/incr")
                    .header("x-csrf-token", &token)
                    .header("sec-fetch-site", "cross-site"),
            )
            .await;
        assert_eq!(cross.header("tessera-error"), Some("csrf_cross_site"));
        let foreign_origin = client
            .send(
                &app,
                Req::post("/incr")
                    .header("x-csrf-token", &token)
                    .header("host", "localhost:7451")
                    .header("origin", "http://127.0.0.1:9999"),
            )
            .await;
        assert_eq!(
            foreign_origin.header("tessera-error"),
            Some("csrf_cross_site")
        );

        let no_session = Client::new()
            .send(&app, Req::post("/incr").header("x-csrf-token", &token))
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
                Req::post("/incr")
                    .header("x-csrf-token", &token)
                    .header("host", "192.168.1.20:3000")
                    .header("origin", "http://192.168.1.20:3000"),
            )
            .await;
        assert_eq!(over_http.header("tessera-error"), Some("csrf_no_session"));
        assert!(
            over_http.body.contains("plain HTTP") && over_http.body.contains(".secure(false)"),
            "{}",
            over_http.body
        );

        let ok = client
            .send(&app, Req::post("/incr").header("x-csrf-token", &token))
            .await;
        assert_eq!((ok.status, ok.body.as_str()), (200, "1"), "{mode:?}");

        // The form field works, and the handler still reads the whole form.
        let form = client
            .send(
                &app,
                Req::post("/note").form(format!("text=hello+world&csrf_token={token}")),
            )
            .await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert_eq!(client.get(&app, "/get/note").await.body, "\"hello world\"");
        // The query string is never a source of the token.
        let query = client
            .send(&app, Req::post(format!("/incr?csrf_token={token}")))
            .await;
        assert_eq!(query.status, 403);
        // Safe methods need no token; exempt routes can be configured.
        assert_eq!(client.get(&app, "/whoami").await.status, 200);
    }
    let exempt = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.csrf_exempt(|request| request.path == "/untouched")
    })
    .await;
    let reply = raw(&exempt, Req::post("/untouched")).await;
    assert_eq!(reply.status, 200);
}

/// Login rotates the token and the CSRF secret; a planted cookie stays anonymous.
pub async fn login_issues_a_new_token_and_csrf_secret<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let before_token = client.get(&app, "/csrf").await.body;
        client
            .post_with_token(&app, "/set/cart/3", &before_token)
            .await;
        let planted = client.session_cookie().cloned();
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
                Req::post("/incr").header("x-csrf-token", before_token),
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

/// A login and the values set after it in the same request are one write.
pub async fn login_and_the_data_set_after_it_are_one_write<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// A login from a task that outlives the request is written at once.
pub async fn a_login_after_the_response_left_is_written_at_once<A: AppUnderTest>() {
    let app = app::<A>(Mode::Server).await;
    let mut client = Client::new();
    let reply = client.post(&app, "/late-login").await;
    assert_eq!(reply.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.events.of_kind("logged_in").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the late login was never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Parallel requests of one browser merge by compare-and-swap: no write is lost.
pub async fn parallel_requests_of_one_browser_lose_no_write<A: AppUnderTest>() {
    let app = app::<A>(Mode::Server).await;
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    let token = client.get(&app, "/csrf").await.body;
    let cookie = client.cookie_header().expect("cookie");
    // All in flight at once: the server runs them in parallel.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let path = if i % 2 == 0 {
            "/incr".to_owned()
        } else {
            format!("/set/key{i}/v")
        };
        let request = Req::post(path)
            .header("cookie", &cookie)
            .header("x-csrf-token", &token);
        tasks.spawn(send_to(app.http.clone(), app.addr(), request));
    }
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.expect("join");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
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

/// Garbage, duplicated, oversized and non-UTF-8 cookies make the request anonymous, never a 500.
pub async fn bad_cookies_mean_anonymous_never_a_server_error<A: AppUnderTest>() {
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
        let app = app::<A>(mode).await;
        for cookie in &garbage {
            let request = Req::get("/whoami").header("cookie", cookie);
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
            // A form for such a request gets a stateless token: one new
            // pre-session cookie (plus removals of stale ones), no session.
            let request = Req::get("/csrf").header("cookie", cookie);
            let reply = raw(&app, request).await;
            assert_eq!(reply.status, 200);
            let set = reply.set_cookies();
            let new: Vec<_> = set.iter().filter(|c| !c.contains("Max-Age=0")).collect();
            assert_eq!(new.len(), 1, "{set:?}");
            assert!(new[0].starts_with("__Host-tessera-csrf="), "{set:?}");
        }
    }
}

/// A tampered seal is refused; key rotation keeps users signed in until the old key is retired.
pub async fn tampered_and_retired_seals_are_refused<A: AppUnderTest>() {
    let app = app::<A>(Mode::Sealed).await;
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
    let rotated = KeyRing::new(SealingKey::new(2, [43; 32]))
        .with_previous(SealingKey::new(1, [42; 32]))
        .expect("ring");
    let rotated_app = rebuilt::<A>(&app, |b| b.sealed(rotated)).await;
    let mut same = client.clone();
    assert_eq!(same.get(&rotated_app, "/whoami").await.body, "alice");
    // …and once the old key is retired, it does not.
    let retired_app = rebuilt::<A>(&app, |b| {
        b.sealed(KeyRing::new(SealingKey::new(2, [43; 32])))
    })
    .await;
    assert_eq!(
        client.clone().get(&retired_app, "/whoami").await.body,
        "anonymous"
    );
    assert_eq!(client.get(&retired_app, "/rejected").await.body, "unknown");
}

/// A large sealed session spans numbered cookies, shrinks cleanly and is refused past the limit.
pub async fn sealed_sessions_span_numbered_cookies_up_to_the_limit<A: AppUnderTest>() {
    let app = app::<A>(Mode::Sealed).await;
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

/// "Sign out everywhere else" and `revoke_subject` end the other sessions, in both modes.
pub async fn revoking_the_subject_signs_out_other_browsers_in_both_modes<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// Unknown and expired cookies are removed without `Clear-Site-Data`.
pub async fn unknown_and_expired_cookies_are_cleared_without_clear_site_data<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/login/alice").await;
        app.clock.advance(Duration::from_secs(31 * 60));
        let reply = client.get(&app, "/whoami").await;
        assert_eq!(reply.body, "anonymous");
        let set = reply.set_cookies();
        assert!(
            !set.is_empty() && set.iter().all(|c| c.contains("Max-Age=0")),
            "{mode:?}: the expired cookie is cleared: {set:?}"
        );
        assert_eq!(reply.header("clear-site-data"), None, "other cookies stay");
        assert!(client.session_cookie().is_none(), "{mode:?}");
    }
    // A well-formed token the store does not know is cleared too.
    let app = app::<A>(Mode::Server).await;
    let request = Req::get("/whoami").header(
        "cookie",
        "__Host-tessera=tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let reply = raw(&app, request).await;
    let set = reply.set_cookies();
    assert!(
        !set.is_empty() && set.iter().all(|c| c.contains("Max-Age=0")),
        "{set:?}"
    );
}

/// Token guessing is reported; the client is refused only when the layer opts in.
pub async fn guessing_is_reported_and_refused_only_when_opted_in<A: AppUnderTest>() {
    let app = app::<A>(Mode::Server).await;
    // Every request comes from the client at 127.0.0.1.
    for i in 0..8 {
        let request = Req::get("/whoami").header("cookie", format!("__Host-tessera=tss_guess{i}"));
        // Users behind the same address are not locked out by default.
        assert_eq!(raw(&app, request).await.status, 200);
    }
    assert!(!app.events.of_kind("token_guessing").is_empty());
}

/// The idle timeout ends the session (`expired_idle`).
pub async fn idle_timeout_signs_out<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
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

/// Under `BindingPolicy::Reject` another User-Agent gets no session (`binding_mismatch`).
pub async fn binding_mismatch_under_reject_is_a_typed_rejection<A: AppUnderTest>() {
    for mode in MODES {
        let app = app_with::<A>(mode, BindingPolicy::Reject, |b| b).await;
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

/// A session bound to a User-Agent presented without one is a mismatch.
pub async fn a_session_bound_to_a_user_agent_presented_without_one_is_a_mismatch<
    A: AppUnderTest,
>() {
    for mode in MODES {
        let app = app_with::<A>(mode, BindingPolicy::Reject, |b| b).await;
        let mut client = Client::new();
        client.user_agent = Some("Browser/1".into());
        client.post(&app, "/login/alice").await;
        let mut thief = client.clone();
        thief.user_agent = None;
        assert_eq!(thief.get(&app, "/whoami").await.body, "anonymous");
        assert_eq!(
            thief.get(&app, "/rejected").await.body,
            "binding_mismatch",
            "{mode:?}"
        );
    }
}

/// The forwarding header names the client only when the peer is a trusted proxy.
pub async fn the_client_ip_header_is_believed_only_from_trusted_proxies<A: AppUnderTest>() {
    let guess = |forwarded: String, i: usize| {
        Req::get("/whoami")
            .header("cookie", format!("__Host-tessera=tss_guess{i}"))
            .header("x-forwarded-for", forwarded)
    };
    // Behind a proxy on loopback (the test client, trusted by default), a
    // client that writes a new left-most entry each time is still the
    // address the proxy appended.
    let app = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.client_ip_header("x-forwarded-for").reject_guessing(true)
    })
    .await;
    for i in 0..5 {
        let request = guess(format!("6.6.{i}.6, 203.0.113.9"), i);
        assert_ne!(raw(&app, request).await.status, 429);
    }
    let request = guess("7.7.7.7, 203.0.113.9".into(), 99);
    assert_eq!(raw(&app, request).await.status, 429);
    // A peer that is not a trusted proxy cannot blame another address:
    // with no proxy trusted, guesses naming a new address each time all
    // count against the peer (the test client), which is then refused.
    let app = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.client_ip_header("x-forwarded-for")
            .trusted_proxies(TrustedProxies::none())
            .reject_guessing(true)
    })
    .await;
    for i in 0..5 {
        let request = guess(format!("203.0.113.{i}"), i);
        assert_ne!(raw(&app, request).await.status, 429);
    }
    let request = guess("203.0.113.99".into(), 99);
    assert_eq!(raw(&app, request).await.status, 429);
}

/// With `reject_guessing`, a guessing client is answered 429.
pub async fn a_guessing_client_is_refused_with_429<A: AppUnderTest>() {
    for mode in MODES {
        let app = app_with::<A>(mode, BindingPolicy::Log, |b| b.reject_guessing(true)).await;
        for i in 0..6 {
            let request =
                Req::get("/whoami").header("cookie", format!("__Host-tessera=tss_guess{i}"));
            let reply = raw(&app, request).await;
            assert_ne!(reply.status, 500);
        }
        let request = Req::get("/whoami").header("cookie", "__Host-tessera=tss_again");
        let reply = raw(&app, request).await;
        assert_eq!(reply.status, 429, "{mode:?}");
        assert!(!app.events.of_kind("token_guessing").is_empty());
    }
}

/// Sealed sessions write nothing to the store.
pub async fn sealed_mode_writes_nothing_to_the_store_but_epochs<A: AppUnderTest>() {
    let app = app::<A>(Mode::Sealed).await;
    let mut client = Client::new();
    client.post(&app, "/login/alice").await;
    for _ in 0..3 {
        client.post(&app, "/incr").await;
    }
    assert_eq!(client.get(&app, "/get/n").await.body, "3");
    assert_eq!(app.store.hook().writes(), 0);
    assert_eq!(app.store.subject_epoch("alice").await.expect("epoch"), 0);
}

/// Signed-out page visits go to the sign-in page when one is set; scripts and posts get the 401.
pub async fn signed_out_page_visits_go_to_the_sign_in_page_when_one_is_set<A: AppUnderTest>() {
    let html =
        |path: &str| Req::get(path.to_owned()).header("accept", "text/html,application/xhtml+xml");
    // Without a sign-in page: the plain 401 every client gets.
    let plain = app::<A>(Mode::Server).await;
    let reply = Client::new().send(&plain, html("/private?tab=2")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("tessera-error"), Some("not_authenticated"));

    let app = app_with::<A>(Mode::Server, BindingPolicy::Log, |b| {
        b.sign_in_page("/login")
    })
    .await;
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
            Req::get("/private").header("accept", "application/json"),
        )
        .await;
    assert_eq!(script.status, 401);
    let token = client.get(&app, "/csrf").await.body;
    let post = client
        .send(
            &app,
            Req::post("/private")
                .header("x-csrf-token", &token)
                .header("accept", "text/html"),
        )
        .await;
    assert_eq!(post.status, 401);
    // Signed in, the page is served.
    client.post_with_token(&app, "/login/alice", &token).await;
    let reply = client.send(&app, html("/private")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "private"));
}

/// A sign-in page that is not a path on this site is refused at start.
pub async fn a_sign_in_page_must_be_a_path_on_this_site<A: AppUnderTest>() {
    for page in [
        "https://evil.example/login",
        "//evil.example/login",
        "/\\evil",
        "login",
    ] {
        let manager = tessera_core::SessionManager::builder(tessera_core::MemoryStore::new())
            .build()
            .expect("defaults");
        let refused = WebConfigBuilder::<A::Layer>::new(manager)
            .sign_in_page(page)
            .build();
        assert!(
            matches!(refused, Err(crate::LayerConfigError::InvalidSignInPage(_))),
            "{page}"
        );
    }
}

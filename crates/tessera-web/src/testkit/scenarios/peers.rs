//! The scenarios of the libraries Tessera replaces, re-expressed against
//! Tessera's layer: tower-sessions' integration tests
//! (`tests/common/mod.rs` of tower-sessions, `tower_sessions_*`) and
//! actix-session's acceptance suite (`acceptance_tests` in actix-session's
//! `src/lib.rs`, `actix_session_*`). Where Tessera behaves differently on
//! purpose, the scenario says so beside the assertion ("Differs:").
//!
//! Common to all: CSRF protection is on, so every `POST` first fetches a
//! token (`GET /csrf`, which starts a session) as a page's form would;
//! values are JSON (the `/set` route stores strings, so `42` reads back as
//! `"42"`).

use std::time::Duration;

use crate::testkit::{AppUnderTest, COOKIE, Client, MODES, Mode, Reply, Req, app, raw};

/// The `Set-Cookie` header for the session cookie, if the reply has one.
fn session_set_cookie(reply: &Reply) -> Option<String> {
    reply
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{COOKIE}=")))
}

/// Why the layer refused the session cookie `value` (`"none"` if it did not).
async fn client_rejected(app: &crate::testkit::TestApp, value: &str) -> String {
    let mut client = Client::new();
    client.jar.insert(COOKIE.into(), value.into());
    client.get(app, "/rejected").await.body
}

/// Whether every `Set-Cookie` of the reply removes a cookie.
fn only_removals(reply: &Reply) -> bool {
    reply.set_cookies().iter().all(|c| c.contains("Max-Age=0"))
}

/// tower-sessions `no_session_set`: a request whose handler does not write
/// sets no cookie. Same in Tessera, also for handlers that read the session.
pub async fn tower_sessions_no_session_set<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        for path in ["/untouched", "/whoami", "/get/foo"] {
            let reply = raw(&app, Req::get(path)).await;
            assert_eq!(reply.status, 200, "{mode:?} {path}");
            assert!(reply.set_cookies().is_empty(), "{mode:?} {path}");
        }
    }
}

/// tower-sessions `bogus_session_cookie`: a well-formed cookie the store does
/// not know is never adopted; a write gets a new session under a new value.
pub async fn tower_sessions_bogus_session_cookie<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let bogus = match mode {
            Mode::Server => "tss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Mode::Sealed => "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        };
        let mut client = Client::new();
        client.jar.insert(COOKIE.into(), bogus.into());
        let reply = client.post(&app, "/set/foo/42").await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);
        let value = client.session_cookie().expect("a new session cookie");
        assert_ne!(value, bogus, "{mode:?}");
        assert_eq!(client.get(&app, "/get/foo").await.body, "\"42\"");
    }
}

/// tower-sessions `malformed_session_cookie`: a cookie that can never be a
/// session is answered with a cookie of another value, and the request is
/// anonymous.
pub async fn tower_sessions_malformed_session_cookie<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let reply = raw(
            &app,
            Req::get("/whoami").header("cookie", format!("{COOKIE}=malformed")),
        )
        .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "anonymous"));
        assert_eq!(client_rejected(&app, "malformed").await, "malformed");
        // Differs: a read starts no session, so Tessera answers with no new
        // cookie. Server mode removes the malformed token (`Max-Age=0`);
        // sealed mode leaves a cookie it cannot read at all as it is.
        let set = session_set_cookie(&reply);
        match mode {
            Mode::Server => {
                let set = set.expect("a removal");
                assert!(set.starts_with(&format!("{COOKIE}=;")), "{set}");
                assert!(set.contains("Max-Age=0"), "{set}");
            }
            Mode::Sealed => assert!(set.is_none(), "{set:?}"),
        }
    }
}

/// tower-sessions `insert_session` and `session_max_age`: the first insert
/// sets the cookie with its attributes.
pub async fn tower_sessions_insert_session<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let reply = client.post(&app, "/set/foo/42").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let cookie = session_set_cookie(&reply).expect("a session cookie");
        for attribute in ["HttpOnly", "Secure", "Path=/"] {
            assert!(
                cookie.contains(attribute),
                "{mode:?}: {attribute} in {cookie}"
            );
        }
        // Differs: tower-sessions defaults to `SameSite=Strict`; Tessera to
        // `Lax`, so that links from other sites arrive signed in, with
        // CSRF tokens and the `Sec-Fetch-Site` check for unsafe methods.
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        // Differs: tower-sessions names the cookie `id` and gives it a
        // `Max-Age` of its inactivity expiry; Tessera's is `__Host-` (no
        // `Domain`) and a browser-session cookie, the server's idle and
        // absolute timeouts deciding how long the session lives.
        for absent in ["Max-Age", "Expires", "Domain"] {
            assert!(!cookie.contains(absent), "{mode:?}: {absent} in {cookie}");
        }
    }
}

/// tower-sessions `get_session`: a value inserted by one request is read by
/// the next.
pub async fn tower_sessions_get_session<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/set/foo/42").await;
        let reply = client.get(&app, "/get/foo").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "\"42\""));
        assert!(
            reply.set_cookies().is_empty(),
            "{mode:?}: a read sets nothing"
        );
    }
}

/// tower-sessions `get_no_value`: reading a key without a session gives
/// nothing, and creates nothing.
pub async fn tower_sessions_get_no_value<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let reply = raw(&app, Req::get("/get/foo")).await;
        assert_eq!(reply.body, "null");
        assert!(reply.set_cookies().is_empty());
        assert_eq!(app.store.hook().writes(), 0, "{mode:?}");
    }
}

/// tower-sessions `remove_last_value`: after removing the only value, the
/// key reads as absent.
pub async fn tower_sessions_remove_last_value<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/set/foo/42").await;
        let reply = client.post(&app, "/remove/foo").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "\"42\""));
        assert_eq!(client.get(&app, "/get/foo").await.body, "null");
        // Differs: tower-sessions deletes a session left empty and removes
        // its cookie; Tessera's session goes on (it holds the CSRF secret
        // and, once signed in, the subject), and so does the cookie.
        assert!(
            reply.set_cookies().iter().all(|c| !c.contains("Max-Age=0")),
            "{mode:?}: {:?}",
            reply.set_cookies()
        );
        assert!(client.session_cookie().is_some(), "{mode:?}");
    }
}

/// tower-sessions `cycle_session_id`: `cycle_id` gives the session a new
/// cookie value and keeps its data.
pub async fn tower_sessions_cycle_session_id<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/set/foo/42").await;
        let first = client.session_cookie().cloned().expect("a cookie");
        let reply = client.post(&app, "/cycle-id").await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);
        let second = client.session_cookie().cloned().expect("a cookie");
        assert_ne!(first, second, "{mode:?}");
        assert_eq!(client.get(&app, "/get/foo").await.body, "\"42\"");
        // Differs: tower-sessions forgets the old id at once; Tessera's
        // old token still works for in-flight requests (the rotation
        // grace), and a login rotates by itself without `cycle_id`.
        if mode == Mode::Server {
            let mut old = client.clone();
            old.jar.insert(COOKIE.into(), first);
            assert_eq!(old.get(&app, "/get/foo").await.body, "\"42\"");
        }
    }
}

/// tower-sessions `flush_session` and `flush_with_domain`: `flush` removes
/// the cookie (empty value, `Max-Age=0`, `Path=/`).
pub async fn tower_sessions_flush_session<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/set/foo/42").await;
        let stolen = client.clone();
        let reply = client.post(&app, "/flush").await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);
        let removal = session_set_cookie(&reply).expect("a removal");
        assert!(
            removal.starts_with(&format!("{COOKIE}=;")) && removal.contains("Max-Age=0"),
            "{removal}"
        );
        assert!(removal.contains("Path=/"), "{removal}");
        // Differs: there is no `flush_with_domain` case: a `__Host-` cookie
        // never has a `Domain`. Tessera also sends `Clear-Site-Data`.
        assert!(!removal.contains("Domain"), "{removal}");
        assert_eq!(reply.header("clear-site-data"), Some("\"cookies\""));
        // A copy of the old cookie: server mode deleted the record. A sealed
        // anonymous session lives only in its cookie, and a copy of it
        // cannot be recalled (as with tower-sessions' cookie-only stores);
        // signed-in sealed sessions are, by their subject's epoch.
        let copy = stolen.clone().get(&app, "/get/foo").await.body;
        match mode {
            Mode::Server => assert_eq!(copy, "null"),
            Mode::Sealed => assert_eq!(copy, "\"42\""),
        }
    }
}

/// tower-sessions `set_expiry`, `change_expiry_type` and `session_max_age`:
/// a session's lifetime.
///
/// Differs: tower-sessions lets a handler choose each session's expiry
/// (`set_expiry`) and writes it into the cookie's `Max-Age`; Tessera has
/// one policy in the manager for every session, an idle timeout (30 min)
/// that activity extends and an absolute one (12 h) that nothing extends,
/// kept on the server; the cookie never carries a lifetime.
pub async fn tower_sessions_expiry<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/login/alice").await;
        // Activity keeps the session alive past one idle timeout…
        for _ in 0..3 {
            app.clock.advance(Duration::from_secs(20 * 60));
            let reply = client.get(&app, "/whoami").await;
            assert_eq!(reply.body, "alice", "{mode:?}");
            for cookie in reply.set_cookies() {
                assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"));
            }
        }
        // …until the absolute timeout, which activity does not move.
        let mut reason = String::new();
        for _ in 0..40 {
            app.clock.advance(Duration::from_secs(20 * 60));
            reason = client.get(&app, "/rejected").await.body;
            if reason != "none" {
                break;
            }
            assert_eq!(client.get(&app, "/whoami").await.body, "alice");
        }
        assert_eq!(reason, "expired_absolute", "{mode:?}");
        // Without activity, the idle timeout ends a session.
        let mut idle = Client::new();
        idle.post(&app, "/login/bob").await;
        app.clock.advance(Duration::from_secs(31 * 60));
        assert_eq!(idle.get(&app, "/rejected").await.body, "expired_idle");
    }
}

/// actix-session `basic_workflow`: a value set by one request is read by
/// another route.
pub async fn actix_session_basic_workflow<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let reply = client.post(&app, "/set/counter/100").await;
        let cookie = session_set_cookie(&reply).expect("a cookie");
        // Differs: actix-session's test scopes its cookie with
        // `cookie_path("/test/")` and a `Domain`; a `__Host-` cookie is
        // always `Path=/` without `Domain`.
        assert!(cookie.contains("Path=/") && !cookie.contains("Domain"));
        assert_eq!(
            client.get(&app, "/get/counter").await.body,
            "\"100\"",
            "{mode:?}"
        );
    }
}

/// actix-session `expiration_is_refreshed_on_changes` and
/// `expiration_is_always_refreshed_if_configured_to_refresh_on_every_request`:
/// a request that changes nothing sets no cookie, and the session's
/// lifetime is extended by use.
///
/// Differs: actix-session extends a persistent cookie's `Max-Age` by
/// setting the cookie again on changes (or on every request); Tessera
/// extends the idle deadline on the server as requests arrive, and sets
/// the cookie only when its value changes (a renewal, a login, or, in
/// sealed mode, a change of data).
pub async fn actix_session_expiration_is_refreshed_on_changes<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        client.post(&app, "/set/counter/100").await;
        let reply = client.get(&app, "/untouched").await;
        assert!(reply.set_cookies().is_empty(), "{mode:?}");
        let reply = client.post(&app, "/set/counter/101").await;
        let reset = session_set_cookie(&reply);
        match mode {
            Mode::Server => assert!(reset.is_none(), "{reset:?}"),
            Mode::Sealed => assert!(reset.is_some(), "the data travels in the cookie"),
        }
        if let Some(cookie) = reset {
            assert!(!cookie.contains("Max-Age"), "{cookie}");
        }
        // Use extends the idle deadline (an anonymous session's is 10
        // minutes): 16 minutes, still there.
        for _ in 0..2 {
            app.clock.advance(Duration::from_secs(8 * 60));
            assert_eq!(client.get(&app, "/get/counter").await.body, "\"101\"");
        }
    }
}

/// actix-session `complex_workflow`: a counter across anonymous requests,
/// a login, the old cookie after it, and logout.
pub async fn actix_session_complex_workflow<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        // 1. The index sets no cookie.
        let reply = client.get(&app, "/get/n").await;
        assert_eq!(reply.body, "null");
        assert!(reply.set_cookies().is_empty());
        // 2. A change starts the session (with the form's CSRF token).
        assert_eq!(client.post(&app, "/incr").await.body, "1");
        let cookie_1 = client.session_cookie().cloned().expect("cookie #1");
        // 3. Reading sets no cookie.
        let reply = client.get(&app, "/get/n").await;
        assert_eq!(reply.body, "1");
        assert!(reply.set_cookies().is_empty(), "{mode:?}");
        // 4. Another change. Differs: actix-session sets its cookie again
        // on every change; Tessera's server-side token stays as it is.
        let reply = client.post(&app, "/incr").await;
        assert_eq!(reply.body, "2");
        if mode == Mode::Server {
            assert!(session_set_cookie(&reply).is_none());
        }
        let cookie_2 = client.session_cookie().cloned().expect("cookie #2");
        if mode == Mode::Server {
            assert_eq!(cookie_1, cookie_2);
        }
        // 5. Login. Differs: actix-session's handler calls `renew()`;
        // Tessera's login always issues a new value (and CSRF secret).
        let reply = client.post(&app, "/login/ferris").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let cookie_3 = client.session_cookie().cloned().expect("cookie #3");
        assert_ne!(cookie_2, cookie_3, "{mode:?}");
        // 6. The data carried over into the signed-in session.
        assert_eq!(client.get(&app, "/whoami").await.body, "ferris");
        assert_eq!(client.get(&app, "/get/n").await.body, "2");
        // 7. A change after login.
        assert_eq!(client.post(&app, "/incr").await.body, "3");
        // 8. The cookie from before login never carries the sign-in. Server
        // mode has no session for it any more (actix-session's
        // "invalidation supported"); differs: Tessera also removes it. A
        // sealed anonymous cookie still opens with its old data (actix-session's
        // cookie store: "invalidation not supported").
        let mut old = Client::new();
        old.jar.insert(COOKIE.into(), cookie_2);
        let reply = old.get(&app, "/get/n").await;
        assert!(only_removals(&reply), "{:?}", reply.set_cookies());
        match mode {
            Mode::Server => assert_eq!(reply.body, "null"),
            Mode::Sealed => assert_eq!(reply.body, "2"),
        }
        assert_eq!(old.get(&app, "/whoami").await.body, "anonymous");
        // 9. Logout removes the cookie (`Max-Age=0`, `Path=/`); Tessera
        // also sends `Clear-Site-Data`.
        let signed_in = client.clone();
        let reply = client.post(&app, "/logout").await;
        let removal = session_set_cookie(&reply).expect("a removal");
        assert!(removal.contains("Max-Age=0") && removal.contains("Path=/"));
        assert_eq!(reply.header("clear-site-data"), Some("\"cookies\""));
        // 10. The signed-in cookie now gives nothing; Tessera clears it
        // instead of setting no cookie.
        let mut after = signed_in;
        let reply = after.get(&app, "/get/n").await;
        assert_eq!(reply.body, "null", "{mode:?}");
        assert!(only_removals(&reply), "{:?}", reply.set_cookies());
        assert_eq!(after.get(&app, "/whoami").await.body, "anonymous");
    }
}

/// actix-session `guard`: a protected route refuses a request without a
/// signed-in session and serves it after login.
pub async fn actix_session_guard<A: AppUnderTest>() {
    for mode in MODES {
        let app = app::<A>(mode).await;
        let mut client = Client::new();
        let reply = client.get(&app, "/private").await;
        assert_eq!(reply.status, 401, "{mode:?}");
        assert_eq!(reply.header("tessera-error"), Some("not_authenticated"));
        client.post(&app, "/login/ferris").await;
        assert_eq!(client.post(&app, "/incr").await.body, "1");
        let reply = client.get(&app, "/private").await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "private"));
        // Differs: actix-session's guard looks for a `user_id` value;
        // Tessera's `require_auth` checks the signed-in subject, its
        // authentication level and how long ago it signed in.
        app.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(client.get(&app, "/private").await.status, 200);
    }
}

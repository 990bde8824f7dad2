//! End-to-end tests of the demo in headless Chromium, in both modes: the
//! browser-side threats (fixation, theft through scripts, CSRF, stale
//! sessions) met in a real browser, with cookie attributes read from the
//! browser's own jar. Every scenario runs against the axum build and the
//! actix-web build (`actix::…`).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::{Browser, COOKIE, Demo, DemoBrowser, Framework, Mode, key, with_browsers};
use tessera::sealed::KeyRing;

/// Runs each scenario against both builds once per mode, as
/// `server::<name>` and `cookie::<name>` (axum) and `actix::server::<name>`
/// and `actix::cookie::<name>` (actix-web).
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod server {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Framework::Axum, super::Mode::Server).await; })*
        }
        mod cookie {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Framework::Axum, super::Mode::Cookie).await; })*
        }
        mod actix {
            mod server {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::super::$name(super::super::Framework::Actix, super::super::Mode::Server).await;
                })*
            }
            mod cookie {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::super::$name(super::super::Framework::Actix, super::super::Mode::Cookie).await;
                })*
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dbsc_chromium_registers_refreshes_and_a_copied_jar_expires() {
                super::dbsc_scenario(super::Framework::Actix).await;
            }
        }
    };
}

in_both_modes!(
    login_sets_the_cookie_with_every_attribute,
    scripts_and_storage_never_see_the_token,
    a_planted_cookie_is_replaced_at_login_and_dies,
    logout_clears_the_cookie_refuses_it_and_back_shows_nothing,
    sign_out_everywhere_else_ends_the_other_browser,
    a_cross_site_form_cannot_change_the_counter,
    idle_timeout_signs_the_user_out,
    a_tampered_cookie_signs_the_user_out,
);

fn browser(browsers: &[Arc<Browser>], index: usize) -> &Browser {
    &browsers[index]
}

/// 1. Login sets the cookie with every attribute, read from the browser's jar.
async fn login_sets_the_cookie_with_every_attribute(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "anonymous");
        assert!(
            b.session_cookie().await.is_none(),
            "a visit creates no session"
        );
        b.login(&demo.base, "alice").await;
        assert_eq!(b.whoami().await, "alice");
        let cookie = b
            .session_cookie()
            .await
            .expect("session cookie after login");
        assert_eq!(cookie.secure(), Some(true), "Secure");
        assert_eq!(cookie.http_only(), Some(true), "HttpOnly");
        assert_eq!(
            cookie.same_site(),
            Some(::cookie::SameSite::Lax),
            "SameSite=Lax"
        );
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), Some("localhost"), "host-only, no Domain");
        assert!(
            cookie.expires().is_none(),
            "a browser-session cookie: no Max-Age/Expires"
        );
        if mode == Mode::Server {
            assert!(cookie.value().starts_with("tss_"));
            assert_eq!(cookie.value().len(), 74, "a format 2 token");
        }
        let cookies = b.client.get_all_cookies().await.expect("cookies");
        assert_eq!(
            cookies.iter().filter(|c| c.name() == COOKIE).count(),
            1,
            "one session cookie"
        );
    })
    .await;
}

/// 2. `document.cookie`, `localStorage` and `sessionStorage` never hold the token.
async fn scripts_and_storage_never_see_the_token(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&demo.base, "alice").await;
        b.click("#increment").await;
        let value = b.session_cookie().await.expect("cookie").value().to_owned();
        for path in ["/", "/sessions", "/login"] {
            b.goto(&demo.url(path)).await;
            let seen = b
                .client
                .execute(
                    "const all = [document.cookie];
                     for (const s of [localStorage, sessionStorage]) {
                       for (let i = 0; i < s.length; i++) { all.push(s.key(i), s.getItem(s.key(i))); }
                     }
                     return all.join('\\n');",
                    vec![],
                )
                .await
                .expect("script");
            let seen = seen.as_str().unwrap_or_default();
            assert!(!seen.contains(&value), "{path}: the token is visible to scripts");
            assert!(!seen.contains(COOKIE), "{path}: the cookie is visible to scripts");
            let html = b.client.source().await.expect("source");
            assert!(!html.contains(&value), "{path}: the token is in the page");
        }
    })
    .await;
}

/// 3. Fixation: a visit of the sign-in page creates no session to plant
///    (its form's CSRF token is stateless); a cookie planted before login
///    (the attacker's own signed-in session) is replaced at login, and the
///    planted value never gives the victim's session: in server mode it
///    is dead (login issues a new token and kills the old one at once); a
///    sealed cookie stays the attacker's own session.
async fn a_planted_cookie_is_replaced_at_login_and_dies(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.goto(&demo.url("/login")).await;
        assert!(
            b.session_cookie().await.is_none(),
            "the sign-in page creates no session"
        );
        // The attacker's own session…
        b.login(&demo.base, "bob").await;
        let planted = b
            .session_cookie()
            .await
            .expect("bob's cookie")
            .value()
            .to_owned();
        // …planted into the victim's browser, who then signs in.
        b.plant(&planted).await;
        b.login(&demo.base, "alice").await;
        assert_eq!(b.whoami().await, "alice");
        let after = b.session_cookie().await.expect("cookie").value().to_owned();
        assert_ne!(after, planted, "login replaced the planted cookie");
        // The attacker replays the planted value: no way into alice's session.
        b.plant(&planted).await;
        b.goto(&demo.url("/")).await;
        let replayed = b.whoami().await;
        assert_ne!(replayed, "alice", "the planted value gives alice's session");
        if mode == Mode::Server {
            assert_eq!(replayed, "anonymous", "the planted token died at login");
            b.goto(&demo.url("/sessions")).await;
            assert!(
                b.client
                    .current_url()
                    .await
                    .expect("url")
                    .path()
                    .ends_with("/login")
            );
        }
    })
    .await;
}

/// 4. Logout: the cookie is gone, the old value is refused, and going back
///    in history does not show the signed-in page.
async fn logout_clears_the_cookie_refuses_it_and_back_shows_nothing(
    framework: Framework,
    mode: Mode,
) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&demo.base, "alice").await;
        let old = b.session_cookie().await.expect("cookie").value().to_owned();
        b.click("#logout").await;
        assert_eq!(b.whoami().await, "anonymous");
        assert!(
            b.session_cookie().await.is_none(),
            "logout removed the cookie"
        );
        b.client.back().await.expect("back");
        assert_eq!(
            b.whoami().await,
            "anonymous",
            "history shows no signed-in page"
        );
        b.plant(&old).await;
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "anonymous", "the old cookie is refused");
    })
    .await;
}

/// 5. Two browsers signed in as one user: "sign out everywhere else" in one
///    signs the other out on its next request.
async fn sign_out_everywhere_else_ends_the_other_browser(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(2, move |browsers| async move {
        let (laptop, phone) = (browser(&browsers, 0), browser(&browsers, 1));
        laptop.login(&demo.base, "alice").await;
        phone.login(&demo.base, "alice").await;
        laptop.goto(&demo.url("/sessions")).await;
        let listed = laptop
            .client
            .find_all(fantoccini::Locator::Css("#sessions li[data-session-id]"))
            .await
            .expect("session list");
        let expected = if mode == Mode::Server { 2 } else { 1 };
        assert_eq!(listed.len(), expected, "sessions listed");
        let current = laptop
            .client
            .find_all(fantoccini::Locator::Css(
                "#sessions li[data-session-id][data-current=\"true\"]",
            ))
            .await
            .expect("current session");
        assert_eq!(current.len(), 1);
        laptop.click("#revoke-others").await;
        phone.goto(&demo.url("/")).await;
        assert_eq!(
            phone.whoami().await,
            "anonymous",
            "the other browser is signed out"
        );
        laptop.goto(&demo.url("/")).await;
        assert_eq!(
            laptop.whoami().await,
            "alice",
            "this browser stays signed in"
        );
    })
    .await;
}

/// 6. CSRF: a form on another site (127.0.0.1, while the demo is on
///    localhost) posting to the counter is refused; the counter is unchanged.
async fn a_cross_site_form_cannot_change_the_counter(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    let attacker = attacker_site(&demo.url("/counter")).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&demo.base, "alice").await;
        b.click("#increment").await;
        assert_eq!(b.text("#counter").await, "1");
        b.goto(&format!("http://127.0.0.1:{}/", attacker.port()))
            .await;
        // The page submits itself; wait for the demo's answer.
        b.client
            .wait()
            .for_url(&url_of(&demo.url("/counter")))
            .await
            .expect("the forged form was submitted");
        let answer = b.client.source().await.expect("source");
        assert!(
            answer.contains("cross-site") || answer.contains("CSRF"),
            "{answer}"
        );
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "alice");
        assert_eq!(b.text("#counter").await, "1", "the counter did not change");
    })
    .await;
}

fn url_of(text: &str) -> url::Url {
    text.parse().expect("url")
}

/// A page on another site with a form that posts to `target` by itself.
async fn attacker_site(target: &str) -> SocketAddr {
    let page = format!(
        "<!DOCTYPE html><html><body>\
         <form id=f method=post action=\"{target}\">\
         <input type=hidden name=csrf_token value=forged>\
         <button>win a prize</button></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
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
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// 7. The idle timeout (5 minutes here, on a manual clock) signs the user out.
async fn idle_timeout_signs_the_user_out(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&demo.base, "alice").await;
        demo.clock.advance(Duration::from_secs(4 * 60));
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "alice", "active within the idle timeout");
        demo.clock.advance(Duration::from_secs(5 * 60 + 1));
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "anonymous", "idle too long");
    })
    .await;
}

/// 8a. A tampered cookie signs the user out (sealed: the seal breaks;
///     server: the token no longer exists).
async fn a_tampered_cookie_signs_the_user_out(framework: Framework, mode: Mode) {
    let demo = Demo::start(framework, mode).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&demo.base, "alice").await;
        let value = b.session_cookie().await.expect("cookie").value().to_owned();
        let mut bytes = value.into_bytes();
        let middle = bytes.len() / 2;
        bytes[middle] = if bytes[middle] == b'x' { b'y' } else { b'x' };
        b.plant(&String::from_utf8(bytes).expect("ascii")).await;
        b.goto(&demo.url("/")).await;
        assert_eq!(b.whoami().await, "anonymous");
    })
    .await;
}

/// 8b. Sealed mode: rotating the key (new key first, old one kept) keeps the
///     user signed in; once the old key is retired, its cookies sign out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_key_rotation_keeps_the_user_signed_in() {
    let first = Demo::start(Framework::Axum, Mode::Cookie).await;
    with_browsers(1, move |browsers| async move {
        let b = browser(&browsers, 0);
        b.login(&first.base, "alice").await;
        let sealed_with_1 = b.session_cookie().await.expect("cookie").value().to_owned();
        // The same site restarted with key 2 sealing and key 1 still opening.
        let rotated_keys = KeyRing::new(key(2)).with_previous(key(1)).expect("ring");
        let rotated = Demo::start_with(
            Framework::Axum,
            Mode::Cookie,
            rotated_keys,
            first.store.clone(),
            first.clock.clone(),
        )
        .await;
        drop(first);
        b.goto(&rotated.url("/")).await;
        assert_eq!(
            b.whoami().await,
            "alice",
            "still signed in after the rotation"
        );
        // New writes are sealed with key 2 and keep working after key 1 retires.
        b.click("#increment").await;
        let retired = Demo::start_with(
            Framework::Axum,
            Mode::Cookie,
            KeyRing::new(key(2)),
            rotated.store.clone(),
            rotated.clock.clone(),
        )
        .await;
        b.goto(&retired.url("/")).await;
        assert_eq!(
            b.whoami().await,
            "alice",
            "a key-2 seal survives key 1's retirement"
        );
        assert_eq!(b.text("#counter").await, "1");
        // A cookie sealed with the retired key no longer opens.
        b.plant(&sealed_with_1).await;
        b.goto(&retired.url("/")).await;
        assert_eq!(b.whoami().await, "anonymous", "retired-key cookie refused");
    })
    .await;
}

/// The bound cookie's name.
const BOUND: &str = "__Host-tessera-bound";

/// The bound cookie in a browser's jar.
async fn bound_cookie(b: &Browser) -> Option<::cookie::Cookie<'static>> {
    b.client
        .get_all_cookies()
        .await
        .expect("cookies")
        .into_iter()
        .find(|c| c.name() == BOUND)
}

/// Waits until the sessions page says the current session is bound (the
/// browser registers in the background after the login's response).
async fn wait_until_bound(b: &Browser, demo: &support::Demo) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        b.goto(&demo.url("/sessions")).await;
        let bound = b
            .client
            .execute(
                "const li = document.querySelector('#sessions li[data-current=true]');
                 return li ? li.dataset.deviceBound : 'none';",
                vec![],
            )
            .await
            .expect("script");
        if bound.as_str() == Some("true") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the browser did not register its device key (data-device-bound={bound})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Device-bound sessions in Chromium (software keys, over HTTPS): the
/// browser registers after login; when the bound cookie is gone it
/// refreshes with a signed proof and the page loads; a copy of every
/// cookie in a fresh profile works only until the bound cookie expires,
/// while the original browser goes on; a browser without DBSC is served
/// as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbsc_chromium_registers_refreshes_and_a_copied_jar_expires() {
    dbsc_scenario(Framework::Axum).await;
}

async fn dbsc_scenario(framework: Framework) {
    // Long enough that the bound cookie does not expire in the browser
    // between its registration and the next page on a loaded machine (the
    // server's clock is moved by hand below; the browser's runs in real time).
    let lifetime = Duration::from_secs(6);
    let demo = Arc::new(support::Demo::start_dbsc(framework, lifetime).await);
    let args = vec![
        demo.browser_args(true),
        demo.browser_args(true),
        demo.browser_args(false),
    ];
    let scenario_demo = demo.clone();
    support::with_browsers_args(args, move |browsers| async move {
        let demo = scenario_demo;
        let (device, thief, plain) = (&browsers[0], &browsers[1], &browsers[2]);

        device.login(&demo.base, "alice").await;
        wait_until_bound(device, &demo).await;
        device.goto(&demo.url("/")).await;
        assert_eq!(device.whoami().await, "alice");
        let first = bound_cookie(device).await.expect("a bound cookie").value().to_owned();

        // The bound cookie is gone: the browser refreshes before the page.
        device
            .client
            .delete_cookie(BOUND)
            .await
            .expect("delete the bound cookie");
        device.goto(&demo.url("/")).await;
        assert_eq!(device.whoami().await, "alice", "refreshed with a proof");
        let second = bound_cookie(device).await.expect("a new bound cookie");
        assert_ne!(second.value(), first, "a new value at each refresh");

        // Theft: every cookie copied into a fresh profile (no device key).
        thief.goto(&demo.url("/login")).await;
        thief.client.delete_all_cookies().await.expect("clean jar");
        for cookie in device.client.get_all_cookies().await.expect("cookies") {
            // Set from a script on the origin (so not HttpOnly, which the
            // server cannot tell) and without an expiry: a thief keeps the
            // values however long the browser would have.
            thief
                .client
                .execute(
                    "document.cookie = arguments[0] + '=' + arguments[1] + '; Secure; Path=/; SameSite=Lax';",
                    vec![cookie.name().into(), cookie.value().into()],
                )
                .await
                .expect("copy a cookie");
        }
        thief.goto(&demo.url("/")).await;
        assert_eq!(thief.whoami().await, "alice", "a copy works until expiry");
        // The bound cookie expires (on the server's clock; the copy is kept).
        demo.clock.advance(lifetime + Duration::from_millis(1));
        thief.goto(&demo.url("/")).await;
        assert_eq!(thief.whoami().await, "anonymous", "the copy stops working");
        thief.goto(&demo.url("/sessions")).await;
        let at = thief.client.current_url().await.expect("url");
        assert_eq!(at.path(), "/login", "the sessions page sends the thief to log in");

        // The original browser goes on: its cookie expires in the browser
        // too, and it refreshes.
        tokio::time::sleep(lifetime + Duration::from_millis(500)).await;
        device.goto(&demo.url("/")).await;
        assert_eq!(device.whoami().await, "alice", "the device keeps working");
        let third = bound_cookie(device).await.expect("a bound cookie");
        assert_ne!(third.value(), second.value());

        // A browser without DBSC uses the site as before.
        plain.login(&demo.base, "bob").await;
        assert_eq!(plain.whoami().await, "bob");
        demo.clock.advance(Duration::from_secs(60));
        plain.goto(&demo.url("/")).await;
        assert_eq!(plain.whoami().await, "bob");
        assert!(bound_cookie(plain).await.is_none());
        plain.goto(&demo.url("/sessions")).await;
        let bound = plain
            .client
            .execute(
                "return document.querySelector('#sessions li[data-current=true]').dataset.deviceBound;",
                vec![],
            )
            .await
            .expect("script");
        assert_eq!(bound.as_str(), Some("false"));
    })
    .await;
}

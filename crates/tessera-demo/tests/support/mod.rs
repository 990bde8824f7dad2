//! Harness for the browser tests: the demo served in-process on a free
//! port with a manual clock, and the demo's own steps on the shared
//! headless Chromium of `crates/tessera-test-browser`.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::cookies::Cookie;
use tessera::sealed::{KeyRing, SealingKey};
use tessera::store::SessionStore;
use tessera::{ManualClock, MemoryStore, SessionManager, Timestamp};
use tessera_demo::DemoMode;
pub use tessera_test_browser::{Browser, with_browsers, with_browsers_args};

/// The session cookie's name.
pub const COOKIE: &str = "__Host-tessera";

/// Which mode a scenario runs the demo in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Server,
    Cookie,
}

/// The first sealing key of cookie-mode demos.
pub fn key(id: u32) -> SealingKey {
    SealingKey::new(id, [id as u8; 32])
}

/// Chromium's switches for device-bound sessions with software keys (no
/// TPM), without origin-trial tokens or a refresh quota.
pub const DBSC_FEATURES: &str = "--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting";

/// The demo's own steps, on the shared browser.
#[allow(async_fn_in_trait)]
pub trait DemoBrowser {
    /// The signed-in user the home page shows.
    async fn whoami(&self) -> String;
    /// Signs in through the login form and waits for the home page.
    async fn login(&self, base: &str, user: &str);
    /// The session cookie in the browser's own jar (HttpOnly included).
    async fn session_cookie(&self) -> Option<Cookie<'static>>;
    /// Replaces the browser's cookies with a session cookie of this value.
    async fn plant(&self, value: &str);
}

impl DemoBrowser for Browser {
    async fn whoami(&self) -> String {
        self.text("#whoami").await
    }

    /// Signs in through the login form and waits for the home page.
    async fn login(&self, base: &str, user: &str) {
        self.goto(&format!("{base}/login")).await;
        let form = self
            .client
            .form(Locator::Css("#login-form"))
            .await
            .expect("login form");
        form.set_by_name("username", user).await.expect("username");
        form.set_by_name("password", &format!("{user}-demo-password"))
            .await
            .expect("password");
        form.submit().await.expect("submit");
        self.client
            .wait()
            .for_element(Locator::Css("#whoami"))
            .await
            .expect("home page after login");
    }

    /// The session cookie in the browser's own jar (HttpOnly included).
    async fn session_cookie(&self) -> Option<Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name() == COOKIE)
    }

    /// Replaces the browser's cookies with a session cookie of this value,
    /// as an attacker planting or replaying one would. (Set from a script on
    /// the demo's origin, so it is not HttpOnly; the server cannot tell.)
    async fn plant(&self, value: &str) {
        self.client
            .delete_all_cookies()
            .await
            .expect("delete cookies");
        self.client
            .execute(
                "document.cookie = arguments[0] + '=' + arguments[1] + '; Secure; Path=/; SameSite=Lax';",
                vec![COOKIE.into(), value.into()],
            )
            .await
            .expect("plant cookie");
        let planted = self.session_cookie().await.map(|c| c.value().to_owned());
        assert_eq!(
            planted.as_deref(),
            Some(value),
            "the browser took the planted cookie"
        );
    }
}

/// The demo served in-process: its URL, clock and store.
pub struct Demo {
    pub base: String,
    pub clock: ManualClock,
    pub store: Arc<dyn SessionStore>,
    /// Over HTTPS: the base64 SHA-256 of the certificate's public key, for
    /// `--ignore-certificate-errors-spki-list`.
    pub spki: Option<String>,
    server: tokio::task::JoinHandle<()>,
}

impl Demo {
    pub async fn start(mode: Mode) -> Demo {
        let keys = KeyRing::new(key(1));
        Self::start_with(
            mode,
            keys,
            Arc::new(MemoryStore::new()),
            ManualClock::new(Timestamp(1_800_000_000_000)),
        )
        .await
    }

    /// A demo over an existing store and clock (a restart with new keys).
    pub async fn start_with(
        mode: Mode,
        keys: KeyRing,
        store: Arc<dyn SessionStore>,
        clock: ManualClock,
    ) -> Demo {
        let manager = SessionManager::builder_shared(store.clone())
            .clock(clock.clone())
            .idle_timeout(Duration::from_secs(5 * 60))
            // Cookie mode keeps its epochs in this memory store.
            .allow_volatile_epochs()
            .build()
            .expect("manager");
        let mode = match mode {
            Mode::Server => DemoMode::Server,
            Mode::Cookie => DemoMode::Cookie(keys),
        };
        let app = tessera_demo::app(manager, mode).expect("demo app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Demo {
            base: format!("http://localhost:{port}"),
            clock,
            store,
            spki: None,
            server,
        }
    }

    /// The demo in server mode over HTTPS (a certificate made here for
    /// localhost), with device-bound sessions whose bound cookie lives
    /// `cookie_lifetime`.
    pub async fn start_dbsc(cookie_lifetime: Duration) -> Demo {
        use base64::Engine as _;
        use sha2::Digest as _;
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let manager = SessionManager::builder_shared(store.clone())
            .clock(clock.clone())
            .build()
            .expect("manager");
        let policy =
            tessera::device::DeviceBindingPolicy::new(cookie_lifetime).expect("DBSC policy");
        let app = tessera_demo::app_with_dbsc(
            manager,
            DemoMode::Server,
            Some(tessera::axum::DbscSettings::new(policy)),
        )
        .expect("demo app");
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let spki = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(certified.key_pair.public_key_der()));
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            certified.cert.pem().into_bytes(),
            certified.key_pair.serialize_pem().into_bytes(),
        )
        .await
        .expect("TLS configuration");
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let _ = axum_server::from_tcp_rustls(listener, tls)
                .expect("a listener for TLS")
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await;
        });
        Demo {
            base: format!("https://localhost:{port}"),
            clock,
            store,
            spki: Some(spki),
            server,
        }
    }

    /// Switches for a browser that trusts this demo's certificate, with
    /// DBSC on (`dbsc`) or as Chromium ships.
    pub fn browser_args(&self, dbsc: bool) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(spki) = &self.spki {
            args.push(format!("--ignore-certificate-errors-spki-list={spki}"));
        }
        if dbsc {
            args.push(DBSC_FEATURES.to_owned());
        }
        args
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

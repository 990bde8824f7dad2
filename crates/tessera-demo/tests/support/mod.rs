//! Harness for the browser tests: one chromedriver per test binary, a
//! fresh headless Chromium profile per browser, and the demo served
//! in-process on a free port with a manual clock.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tessera::sealed::{KeyRing, SealingKey};
use tessera::store::SessionStore;
use tessera::{ManualClock, MemoryStore, SessionManager, Timestamp};
use tessera_demo::DemoMode;
use tokio::sync::Semaphore;

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

/// chromedriver's port, started once for the whole test binary. A watcher
/// shell owns the process group and ends it (chromedriver and every
/// Chromium) as soon as this test process is gone.
fn chromedriver() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let port = free_port();
        let script = format!(
            "chromedriver --port={port} --allowed-ips=127.0.0.1 --log-level=SEVERE >/dev/null 2>&1 &\n\
             while kill -0 {parent} 2>/dev/null; do sleep 0.3; done\n\
             kill -TERM 0",
            parent = std::process::id()
        );
        let spawned = {
            use std::os::unix::process::CommandExt as _;
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
        };
        if let Err(err) = spawned {
            panic!("cannot start chromedriver (run scripts/setup/chromium.sh): {err}");
        }
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return port;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chromedriver did not start listening on port {port}");
    })
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// At most this many browsers at once on a 2-core machine.
fn browser_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(3))
}

/// A headless Chromium with its own fresh profile.
pub struct Browser {
    pub client: Client,
    profile: PathBuf,
}

/// Chromium's switches for device-bound sessions with software keys (no
/// TPM), without origin-trial tokens or a refresh quota.
pub const DBSC_FEATURES: &str = "--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false/RefreshQuota/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting";

impl Browser {
    /// A browser with these further command-line switches.
    pub async fn launch_with(extra: &[String]) -> Browser {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let port = chromedriver();
        let profile = std::env::temp_dir().join(format!(
            "tessera-browser-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let mut last_error = None;
        for _ in 0..3 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => return Browser { client, profile },
                Err(err) => last_error = Some(err),
            }
        }
        panic!("cannot start Chromium through chromedriver: {last_error:?}");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .text()
            .await
            .expect("element text")
    }

    /// Clicks a form's submit button and waits for the answer page: until
    /// the page the click was on is gone and the new one has loaded (WebDriver
    /// may return from the click before the form's request is answered).
    pub async fn click(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.ok();
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .expect("click");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        if let Some(old_page) = old_page {
            // A stale reference means the old document was replaced.
            while old_page.tag_name().await.is_ok() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "clicking {css} did not lead to a new page"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        loop {
            let state = self
                .client
                .execute("return document.readyState", Vec::new())
                .await
                .ok();
            if state.as_ref().and_then(|s| s.as_str()) == Some("complete") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page after clicking {css} never finished loading"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn whoami(&self) -> String {
        self.text("#whoami").await
    }

    /// Signs in through the login form and waits for the home page.
    pub async fn login(&self, base: &str, user: &str) {
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
    pub async fn session_cookie(&self) -> Option<Cookie<'static>> {
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
    pub async fn plant(&self, value: &str) {
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

/// Runs a scenario with `count` fresh browsers, closing them even when it
/// fails, and with at most a few browsers alive across the test binary.
pub async fn with_browsers<F, Fut>(count: u32, scenario: F)
where
    F: FnOnce(Vec<Arc<Browser>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let args = vec![Vec::new(); count as usize];
    with_browsers_args(args, scenario).await;
}

/// [`with_browsers`] with each browser's own further switches.
pub async fn with_browsers_args<F, Fut>(args: Vec<Vec<String>>, scenario: F)
where
    F: FnOnce(Vec<Arc<Browser>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let count = u32::try_from(args.len()).expect("a few browsers");
    let _slots = browser_slots()
        .acquire_many(count)
        .await
        .expect("semaphore open");
    let mut browsers = Vec::new();
    for extra in &args {
        browsers.push(Arc::new(Browser::launch_with(extra).await));
    }
    let outcome = tokio::spawn(scenario(browsers.clone())).await;
    for browser in browsers {
        if let Ok(browser) = Arc::try_unwrap(browser) {
            browser.close().await;
        }
    }
    if let Err(err) = outcome {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
        panic!("scenario task failed: {err}");
    }
}

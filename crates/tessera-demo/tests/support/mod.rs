//! Harness for the browser tests: the demo served in-process on a free
//! port with a manual clock, by its axum or its actix-web build, and the
//! demo's own steps on the shared headless Chromium of
//! `crates/tessera-test-browser`.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::cookies::Cookie;
use tessera::axum::DbscSettings;
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

/// Which build of the demo a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `tessera-demo --framework axum` (the default).
    Axum,
    /// `tessera-demo --framework actix`.
    Actix,
}

/// A running server, stopped when its [`Demo`] is dropped.
enum Server {
    Axum(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle, tokio::task::JoinHandle<()>),
}

/// The demo served in-process: its URL, clock and store.
pub struct Demo {
    pub base: String,
    pub clock: ManualClock,
    pub store: Arc<dyn SessionStore>,
    /// Over HTTPS: the base64 SHA-256 of the certificate's public key, for
    /// `--ignore-certificate-errors-spki-list`.
    pub spki: Option<String>,
    server: Server,
}

/// A certificate for localhost made here: (chain PEM, key PEM, SPKI hash).
fn localhost_certificate() -> (String, String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let spki = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(certified.key_pair.public_key_der()));
    (
        certified.cert.pem(),
        certified.key_pair.serialize_pem(),
        spki,
    )
}

/// Serves the demo on a free port of 127.0.0.1 with `framework`, over TLS
/// with `tls` (chain PEM, key PEM); answers the port and the server.
async fn serve(
    framework: Framework,
    manager: SessionManager,
    mode: DemoMode,
    dbsc: Option<DbscSettings>,
    tls: Option<(String, String)>,
) -> (u16, Server) {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("addr").port();
    let server = match framework {
        Framework::Axum => {
            let app = tessera_demo::app_with_dbsc(manager, mode, dbsc).expect("demo app");
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            Server::Axum(match tls {
                None => {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, service).await;
                    })
                }
                Some((cert, key)) => {
                    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
                        cert.into_bytes(),
                        key.into_bytes(),
                    )
                    .await
                    .expect("TLS configuration");
                    tokio::spawn(async move {
                        let _ = axum_server::from_tcp_rustls(listener, tls)
                            .expect("a listener for TLS")
                            .serve(service)
                            .await;
                    })
                }
            })
        }
        Framework::Actix => {
            let demo = tessera_demo::ActixDemo::new(manager, mode, dbsc).expect("demo app");
            listener.set_nonblocking(false).expect("blocking");
            let server = actix_web::HttpServer::new(move || demo.app())
                .workers(1)
                .disable_signals();
            let server = match tls {
                None => server.listen(listener),
                Some((cert, key)) => {
                    let tls = tessera_demo::with_actix::tls_config(cert.as_bytes(), key.as_bytes())
                        .expect("TLS configuration");
                    server.listen_rustls_0_23(listener, tls)
                }
            }
            .expect("listen")
            .run();
            let handle = server.handle();
            Server::Actix(
                handle,
                tokio::spawn(async move {
                    let _ = server.await;
                }),
            )
        }
    };
    (port, server)
}

impl Demo {
    pub async fn start(framework: Framework, mode: Mode) -> Demo {
        let keys = KeyRing::new(key(1));
        Self::start_with(
            framework,
            mode,
            keys,
            Arc::new(MemoryStore::new()),
            ManualClock::new(Timestamp(1_800_000_000_000)),
        )
        .await
    }

    /// A demo over an existing store and clock (a restart with new keys).
    pub async fn start_with(
        framework: Framework,
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
        let (port, server) = serve(framework, manager, mode, None, None).await;
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
    pub async fn start_dbsc(framework: Framework, cookie_lifetime: Duration) -> Demo {
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let manager = SessionManager::builder_shared(store.clone())
            .clock(clock.clone())
            .build()
            .expect("manager");
        let policy =
            tessera::device::DeviceBindingPolicy::new(cookie_lifetime).expect("DBSC policy");
        let (cert, key, spki) = localhost_certificate();
        let (port, server) = serve(
            framework,
            manager,
            DemoMode::Server,
            Some(DbscSettings::new(policy)),
            Some((cert, key)),
        )
        .await;
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
        match &self.server {
            Server::Axum(task) => task.abort(),
            Server::Actix(handle, task) => {
                // The stop command is sent at once; its completion is not awaited.
                drop(handle.stop(false));
                task.abort();
            }
        }
    }
}

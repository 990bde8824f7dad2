//! Headless Chromium for browser tests: one chromedriver per test binary,
//! a fresh profile per browser, at most a few browsers at once, and each
//! scenario's browsers closed even when it fails. Shared by the demo's
//! browser tests (`crates/tessera-demo/tests/browser.rs`) and tesserad's
//! console tests (`crates/tesserad/tests/console.rs`).

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::Semaphore;

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

/// A free loopback port.
pub fn free_port() -> u16 {
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
    /// The WebDriver client, for anything the helpers do not cover.
    pub client: Client,
    profile: PathBuf,
}

impl Browser {
    /// Starts a browser with a fresh profile.
    pub async fn launch() -> Browser {
        Self::launch_with(&[]).await
    }

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

    /// Ends the browser and removes its profile.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    /// Navigates to `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The text of the first element matching `css`.
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

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// The URL the browser shows.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// Types `value` into the form field matching `css` (replacing what was there).
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"));
        field.clear().await.expect("clear field");
        field.send_keys(value).await.expect("type into field");
    }

    /// The attribute `name` of the first element matching `css`.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .attr(name)
            .await
            .expect("attribute")
    }

    /// The cookie `name` in the browser's own jar (HttpOnly included).
    pub async fn cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("cookies")
            .into_iter()
            .find(|c| c.name() == name)
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

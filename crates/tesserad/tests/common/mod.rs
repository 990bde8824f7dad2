//! Starts the real `tesserad` binary on a free loopback port with its own
//! data directory, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The API key the test servers accept.
pub const API_KEY: &str = "test-api-key-0123456789-abcdefghijkl";

/// How long to wait for the server to say something before failing the test.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// A fresh, empty, unique directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random");
    let dir = std::env::temp_dir().join(format!(
        "tesserad-test-{name}-{}-{}",
        std::process::id(),
        hex::encode(random)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running `tesserad serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    output: Arc<Mutex<String>>,
    lines: Receiver<String>,
    /// The threads reading standard output and error, done at end of file.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts on `memory:` with [`API_KEY`] and the given extra flags.
    pub fn start(extra: &[&str]) -> Server {
        let data_dir = temp_dir("server");
        let mut args = vec!["--store", "memory:", "--api-key", API_KEY];
        args.extend_from_slice(extra);
        Server::start_raw(&data_dir, &args, &[])
    }

    /// Starts `tesserad serve` with exactly these arguments and environment.
    pub fn start_raw(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = tesserad_command();
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        Server::spawn(command, data_dir)
    }

    /// Starts a prepared command and waits until it listens.
    pub fn spawn(mut command: Command, data_dir: &Path) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start tesserad");
        let output = Arc::new(Mutex::new(String::new()));
        let (sender, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut readers = Vec::with_capacity(2);
        for stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let output = output.clone();
            let sender = sender.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut all) = output.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                    let _ = sender.send(line);
                }
            }));
        }
        let mut server = Server {
            child,
            url: String::new(),
            data_dir: data_dir.to_owned(),
            output,
            lines,
            readers,
        };
        let line = server.wait_for_line("tesserad listening on ");
        let url = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("listening line has a URL");
        server.url = url.to_owned();
        server
    }

    /// Waits until a line containing `needle` is printed; returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + STARTUP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "tesserad never printed `{needle}`; output so far:\n{}",
                    self.output()
                ),
            }
        }
    }

    /// Everything printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and for its last output to be read
    /// (so that [`output`](Self::output) then holds every line it printed).
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().expect("wait");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// A URL on this server.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The `tesserad` binary with no `TESSERA_*` variables inherited.
pub fn tesserad_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tesserad"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TESSERA_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// An HTTP client for the tests (no proxies, rustls).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A JSON API call with the test key: returns status and body (`null` when empty).
pub async fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client()
        .request(method, server.at(path))
        .bearer_auth(API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, value)
}

/// The server's Prometheus metrics, as text.
pub async fn metrics_text(server: &Server) -> String {
    let response = client()
        .get(server.at("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// Sends raw bytes as a body with the test key.
pub async fn call_raw(server: &Server, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = client()
        .request(method, server.at(path))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

/// Creates a session (optionally signed in); returns `(token, session)`.
pub async fn create(server: &Server, subject: Option<&str>) -> (String, Value) {
    let body = match subject {
        Some(subject) => json!({"subject": subject}),
        None => json!({}),
    };
    let (status, body) = call(server, "POST", "/v1/sessions", Some(body)).await;
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().expect("token").to_owned(),
        body["session"].clone(),
    )
}

//! What every benchmark app of `bench/peers` shares: the command line, the
//! idle timeout, and the cookie file that the bench-only preload writes.
//!
//! Every app serves the same three routes:
//!
//! * `POST /login`: create a session, regenerate its id, store
//!   `{"user_id": n, "counter": 0}`, set the cookie; answers `{"user_id": n}`;
//! * `GET /me`: answers `{"user_id": n, "counter": c}` from the session
//!   (401 without one), writes nothing;
//! * `POST /incr`: loads the session, increments `counter`, saves it;
//!   answers `{"counter": c}` (401 without a session).
#![forbid(unsafe_code)]

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The one idle timeout every contender uses.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The command line every app takes.
#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// Address to listen on (loopback only in the benchmark).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where sessions live: `memory:`, `redis://HOST:PORT`, `cookie:`, …
    /// (each app lists the ones it supports).
    #[arg(long, default_value = "memory:")]
    pub store: String,
    /// Bench only: create this many logged-in sessions in-process before
    /// listening, exactly as `POST /login` would, and write their cookies to
    /// `--cookies-out`. Creating a million sessions over HTTP takes minutes;
    /// this takes seconds. Not a feature of any session library.
    #[arg(long, default_value_t = 0)]
    pub preload: usize,
    /// Bench only: the file `--preload` writes, one `Cookie` header value per line.
    #[arg(long, requires = "preload")]
    pub cookies_out: Option<PathBuf>,
}

impl Args {
    /// Parses the process's command line.
    pub fn from_env() -> Self {
        Self::parse()
    }
}

/// Hands out user ids for `POST /login`: 1, 2, 3, …
#[derive(Debug, Default)]
pub struct UserIds(AtomicU64);

impl UserIds {
    /// The next user id.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Where `--preload` writes cookies: one `Cookie` header value per line,
/// streamed to the file so that the cookies of a million sessions are never
/// all held in memory (they would inflate the resident memory measured).
pub struct CookieFile {
    path: PathBuf,
    out: Option<BufWriter<std::fs::File>>,
}

impl CookieFile {
    /// Opens `--cookies-out` for writing; without it, cookies are dropped.
    pub fn create(args: &Args) -> anyhow::Result<Self> {
        let path = args.cookies_out.clone().unwrap_or_default();
        let out = match &args.cookies_out {
            Some(path) => Some(BufWriter::new(std::fs::File::create(path).with_context(
                || format!("cannot create the cookie file {}", path.display()),
            )?)),
            None => None,
        };
        Ok(Self { path, out })
    }

    /// Writes one cookie line (e.g. `id=abc`).
    pub fn push(&mut self, cookie: &str) -> anyhow::Result<()> {
        if let Some(out) = &mut self.out {
            writeln!(out, "{cookie}")
                .with_context(|| format!("cannot write the cookie file {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> anyhow::Result<()> {
        if let Some(mut out) = self.out {
            out.flush()
                .with_context(|| format!("cannot write the cookie file {}", self.path.display()))?;
        }
        Ok(())
    }
}

/// Prints the line the benchmark scripts wait for, once the socket is bound.
pub fn announce(name: &str, args: &Args) {
    println!("{name} listening on {} (store {})", args.listen, args.store);
}

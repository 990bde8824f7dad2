//! What the two Tessera apps of `bench/peers` (`apps/tessera`, on axum, and
//! `apps/tessera-actix`) share, whatever their server framework: the
//! sealed-mode options, the session keys the handlers use, and everything
//! before the server starts (the log, the manager over `--store`, the
//! bench-only preload).
#![forbid(unsafe_code)]

use futures_util::StreamExt;
use peers_common::{CookieFile, IDLE_TIMEOUT};
use serde_json::json;
use tessera::open::{OpenOptions, OpenedStore, StoreUrl, open_store_with};
use tessera::sealed::{KeyRing, SealingKey};
use tessera::{Login, SessionData, SessionManager};

/// The session key of the user id `POST /login` stores.
pub const USER_ID: &str = "user_id";
/// The session key of the counter `POST /incr` increments.
pub const COUNTER: &str = "counter";

/// The sealed-cookie mode's options.
#[derive(Debug, clap::Args)]
pub struct SealedArgs {
    /// Keep sessions sealed in the cookie; the store keeps only revocation epochs.
    #[arg(long)]
    pub sealed: bool,
    /// Sealed mode: the sealing key (32 bytes, base64url), so that several
    /// servers open each other's cookies; generated when absent.
    #[arg(long)]
    pub sealing_key: Option<String>,
}

impl SealedArgs {
    /// The key ring sessions are sealed with: `None` unless `--sealed`.
    pub fn key_ring(&self) -> anyhow::Result<Option<KeyRing>> {
        if !self.sealed {
            return Ok(None);
        }
        let key = match &self.sealing_key {
            Some(text) => SealingKey::from_base64(1, text)?,
            None => SealingKey::generate(1)?,
        };
        Ok(Some(KeyRing::new(key)))
    }
}

/// Everything before the server starts: the log (errors, such as a failed
/// store call or a lost race, go to the server log that run.sh keeps beside
/// a rejected run), the manager over the store `--store` names (through the
/// same opener as tesserad, with `options`) with a one-hour idle timeout,
/// and the bench-only preload, whose cookies are named `cookie_name`. The
/// opened store (its sweeper, its near cache) must live as long as the
/// process.
pub async fn start(
    args: &peers_common::Args,
    sealed: &SealedArgs,
    options: &OpenOptions,
    cookie_name: &str,
) -> anyhow::Result<(SessionManager, OpenedStore)> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(false)
        .init();
    let url: StoreUrl = args.store.parse()?;
    let opened = open_store_with(&url, options).await?;
    let mut builder =
        SessionManager::builder_shared(opened.store.clone()).idle_timeout(IDLE_TIMEOUT);
    if sealed.sealed {
        // The memory store's epochs start over with the process, which is
        // what a one-process benchmark wants.
        builder = builder.allow_volatile_epochs();
    }
    let manager = builder.build()?;
    let mut cookies = CookieFile::create(args)?;
    if args.preload > 0 {
        if sealed.sealed {
            anyhow::bail!("--preload creates server-side sessions; not with --sealed");
        }
        preload(&manager, args.preload, cookie_name, &mut cookies).await?;
    }
    cookies.finish()?;
    Ok((manager, opened))
}

/// Bench only: signs in `count` sessions through the manager, as
/// `POST /login` does (64 at a time), and writes their cookies.
async fn preload(
    manager: &SessionManager,
    count: usize,
    cookie_name: &str,
    cookies: &mut CookieFile,
) -> anyhow::Result<()> {
    let mut created = futures_util::stream::iter(1..=count as u64)
        .map(|user_id| async move {
            let data = SessionData::from_value(&json!({USER_ID: user_id, COUNTER: 0}))?;
            let login = Login::new(format!("user-{user_id}")).level(1).data(data);
            let mut session = manager.login(None, login).await?;
            session
                .take_issued()
                .ok_or_else(|| anyhow::anyhow!("a login issued no credential"))
        })
        .buffer_unordered(64);
    while let Some(token) = created.next().await {
        cookies.push(&format!("{cookie_name}={}", token?.expose()))?;
    }
    Ok(())
}

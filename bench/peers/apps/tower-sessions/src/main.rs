//! The three benchmark routes with tower-sessions: `--store memory:` (its
//! MemoryStore, on the latest tower-sessions) or `--store redis://HOST:PORT`
//! (tower-sessions-redis-store over a fred pool of 6 connections, as its
//! documentation sets it up, on the latest tower-sessions that store supports).
#![forbid(unsafe_code)]

/// The routes on the latest tower-sessions.
mod latest {
    use tower_sessions as ts;
    include!("routes.rs");
}

/// The routes on the tower-sessions release the Redis store implements.
mod redis_compatible {
    use tower_sessions_014 as ts;
    include!("routes.rs");
}

use peers_common::Args;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    let mut cookies = peers_common::CookieFile::create(&args)?;
    let app = if args.store == "memory:" {
        let store = tower_sessions::MemoryStore::default();
        latest::preload(store.clone(), args.preload, &mut cookies).await?;
        latest::app(store)
    } else if args.store.starts_with("redis://") {
        let config = Config::from_url(&args.store)?;
        let pool = Pool::new(config, None, None, None, 6)?;
        pool.init().await?;
        let store = RedisStore::new(pool);
        redis_compatible::preload(store.clone(), args.preload, &mut cookies).await?;
        redis_compatible::app(store)
    } else {
        anyhow::bail!("--store must be `memory:` or `redis://HOST:PORT`");
    };
    cookies.finish()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    peers_common::announce("tower-sessions", &args);
    axum::serve(listener, app).await?;
    Ok(())
}

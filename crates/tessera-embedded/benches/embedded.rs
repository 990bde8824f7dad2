//! Throughput of the embedded store through its `SessionStore` API, beside
//! the memory store: durable creates at several concurrencies (group
//! commit), loads, compare-and-swap updates, rotations, and validations
//! through a `SessionManager`.
//!
//! `cargo bench -p tessera-embedded --bench embedded` (each phase runs about
//! `PHASE_SECS` seconds, default 2; data goes to a temporary directory under
//! `BENCH_DIR`, default the system's).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_core::{
    Clock, MemoryStore, NewSession, Session, SessionData, SessionId, SessionManager, SessionStore,
    SessionToken, SystemClock, Timestamp, TokenHash, Tombstone, WriteOutcome,
};
use tessera_embedded::EmbeddedStore;

fn phase() -> Duration {
    let secs = std::env::var("PHASE_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn sample(now: Timestamp) -> (TokenHash, Session) {
    let key = SessionToken::generate().expect("token").hash();
    let session = Session {
        id: SessionId::generate().expect("id"),
        subject: Some("bench-user".into()),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::from_json(
            r#"{"cart":[1,2,3],"theme":"dark","csrf":"abcdefghijklmnop"}"#,
        )
        .expect("data"),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 30 * 60 * 1000,
        absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    };
    (key, session)
}

/// Runs `tasks` concurrent loops of `op` for one phase; returns ops per second.
async fn concurrent<F, Fut>(tasks: usize, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + phase();
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = t as u64 * 1_000_000_000;
                while Instant::now() < deadline {
                    op(i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Creates `n` sessions concurrently; returns them.
async fn fill<S: SessionStore + Clone>(store: &S, n: usize) -> Arc<Vec<(TokenHash, Session)>> {
    let now = SystemClock.now();
    let items: Vec<_> = (0..n).map(|_| sample(now)).collect();
    let mut handles = Vec::new();
    for chunk in items.chunks(n.div_ceil(64)) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        handles.push(tokio::spawn(async move {
            for (key, session) in chunk {
                store.create(&key, &session).await.expect("create");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("fill");
    }
    Arc::new(items)
}

async fn store_phases<S: SessionStore + Clone>(name: &str, store: S) {
    for tasks in [1, 16, 64] {
        let s = store.clone();
        let rate = concurrent(tasks, move |_| {
            let s = s.clone();
            async move {
                let (key, session) = sample(SystemClock.now());
                s.create(&key, &session).await.expect("create");
            }
        })
        .await;
        println!("{name:<9} create, {tasks:>2} concurrent          {rate:>10.0}/s");
    }

    let items = fill(&store, 10_000).await;
    let s = store.clone();
    let loaded = items.clone();
    let rate = concurrent(2, move |i| {
        let (s, items) = (s.clone(), loaded.clone());
        async move {
            let (key, _) = &items[(i.wrapping_mul(7919) % items.len() as u64) as usize];
            s.load(key, SystemClock.now())
                .await
                .expect("load")
                .expect("found");
        }
    })
    .await;
    println!("{name:<9} load                          {rate:>10.0}/s");

    // CAS updates and rotations: 64 tasks, each on its own sessions.
    let per_task = items.len() / 64;
    let state: Arc<Vec<tokio::sync::Mutex<(TokenHash, Session)>>> =
        Arc::new(items.iter().cloned().map(tokio::sync::Mutex::new).collect());
    let (s, st) = (store.clone(), state.clone());
    let rate = concurrent(64, move |i| {
        let (s, st) = (s.clone(), st.clone());
        async move {
            let task = (i / 1_000_000_000) as usize;
            let slot = task * per_task + (i % per_task as u64) as usize;
            let mut guard = st[slot].lock().await;
            let (key, session) = &mut *guard;
            let mut next = session.clone();
            next.version += 1;
            let outcome = s
                .update(key, &next, session.version, SystemClock.now())
                .await;
            assert_eq!(outcome.expect("update"), WriteOutcome::Written);
            *session = next;
        }
    })
    .await;
    println!("{name:<9} update (CAS), 64 concurrent   {rate:>10.0}/s");

    let (s, st) = (store.clone(), state.clone());
    let rate = concurrent(64, move |i| {
        let (s, st) = (s.clone(), st.clone());
        async move {
            let task = (i / 1_000_000_000) as usize;
            let slot = task * per_task + (i % per_task as u64) as usize;
            let mut guard = st[slot].lock().await;
            let (key, session) = &mut *guard;
            let new = SessionToken::generate().expect("token").hash();
            let now = SystemClock.now();
            let tombstone = Tombstone {
                session_id: session.id,
                successor: new,
                grace_until: Some(now.plus(Duration::from_secs(10))),
                forget_at: session.absolute_expires_at,
            };
            let outcome = s
                .rotate(key, &new, session, session.version, &tombstone, now)
                .await;
            assert_eq!(outcome.expect("rotate"), WriteOutcome::Written);
            *key = new;
        }
    })
    .await;
    println!("{name:<9} rotate, 64 concurrent         {rate:>10.0}/s");

    // Validation through the manager (reads only: no renewal, no touch).
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        let issued = manager.create(NewSession::default()).await.expect("create");
        tokens.push(issued.token.expose().to_owned());
    }
    let tokens = Arc::new(tokens);
    let rate = concurrent(2, move |i| {
        let (m, tokens) = (manager.clone(), tokens.clone());
        async move {
            let token = &tokens[(i % tokens.len() as u64) as usize];
            m.validate(token, None).await.expect("validate");
        }
    })
    .await;
    println!("{name:<9} validate (manager)            {rate:>10.0}/s");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base =
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let dir = tempfile::Builder::new()
        .prefix("tessera-embedded-bench-")
        .tempdir_in(base)
        .expect("temp dir");
    println!("phase {:?}, data in {}", phase(), dir.path().display());
    runtime.block_on(async {
        store_phases("memory", MemoryStore::new()).await;
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store_phases("embedded", store.clone()).await;
        store.close().expect("close");
    });
}

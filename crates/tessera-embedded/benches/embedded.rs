//! Throughput of the embedded store beside the memory store: through the
//! store contract (durable creates at several concurrencies, which group
//! commit turns into many writes per fsync; loads; compare-and-swap updates;
//! rotations) and through a `SessionManager` (durable logins by 1, 16 and
//! 64 concurrent clients; validations).
//!
//! `cargo bench -p tessera-embedded --bench embedded` (each phase runs about
//! `PHASE_SECS` seconds, default 2; data goes to a temporary directory under
//! `BENCH_DIR`, default the system's).
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_core::store::{SessionStore, WriteOutcome};
use tessera_core::{
    Clock, Login, MemoryStore, NewSession, SessionData, SessionManager, SessionRecord, SystemClock,
    forget_at,
};
use tessera_embedded::EmbeddedStore;

fn phase() -> Duration {
    let secs: Option<f64> = std::env::var("PHASE_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs_f64(secs.unwrap_or(2.0))
}

fn sample() -> SessionRecord {
    let mut record = common::record(
        SystemClock.now(),
        Some("bench-user"),
        Duration::from_secs(30 * 60),
    );
    record.data =
        SessionData::from_json(r#"{"cart":[1,2,3],"theme":"dark","csrf":"abcdefghijklmnop"}"#)
            .expect("data");
    record
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

/// Creates `n` records concurrently; returns them.
async fn fill<S: SessionStore + Clone>(store: &S, n: usize) -> Vec<SessionRecord> {
    let items: Vec<_> = (0..n).map(|_| sample()).collect();
    let mut handles = Vec::new();
    for chunk in items.chunks(n.div_ceil(64)) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        handles.push(tokio::spawn(async move {
            for record in chunk {
                store
                    .create(&record, forget_at(&record))
                    .await
                    .expect("create");
            }
        }));
    }
    for handle in handles {
        handle.await.expect("fill");
    }
    items
}

/// Compare-and-swap writes by 64 tasks, each on its own `per_task` of
/// `state`'s records, of the record `next` makes from the stored one;
/// returns writes per second.
async fn cas_writes<S: SessionStore + Clone>(
    store: &S,
    state: &Arc<Vec<tokio::sync::Mutex<SessionRecord>>>,
    per_task: usize,
    what: &'static str,
    next: fn(&SessionRecord) -> SessionRecord,
) -> f64 {
    let (s, st) = (store.clone(), state.clone());
    concurrent(64, move |i| {
        let (s, st) = (s.clone(), st.clone());
        async move {
            let task = (i / 1_000_000_000) as usize;
            let slot = task * per_task + (i % per_task as u64) as usize;
            let mut record = st[slot].lock().await;
            let next = next(&record);
            let outcome = s
                .update(
                    &next,
                    record.revision(),
                    forget_at(&next),
                    SystemClock.now(),
                )
                .await;
            assert_eq!(outcome.expect(what), WriteOutcome::Written);
            *record = next;
        }
    })
    .await
}

async fn store_phases<S: SessionStore + Clone>(name: &str, store: S) {
    for tasks in [1, 16, 64] {
        let s = store.clone();
        let rate = concurrent(tasks, move |_| {
            let s = s.clone();
            async move {
                let record = sample();
                s.create(&record, forget_at(&record)).await.expect("create");
            }
        })
        .await;
        println!("{name:<9} create, {tasks:>2} concurrent          {rate:>10.0}/s");
    }

    let items = Arc::new(fill(&store, 10_000).await);
    let s = store.clone();
    let loaded = items.clone();
    let rate = concurrent(2, move |i| {
        let (s, items) = (s.clone(), loaded.clone());
        async move {
            let record = &items[(i.wrapping_mul(7919) % items.len() as u64) as usize];
            s.load(&record.id, SystemClock.now())
                .await
                .expect("load")
                .expect("found");
        }
    })
    .await;
    println!("{name:<9} load                          {rate:>10.0}/s");

    // CAS updates and rotations: 64 tasks, each on its own records.
    let per_task = items.len() / 64;
    let state: Arc<Vec<tokio::sync::Mutex<SessionRecord>>> =
        Arc::new(items.iter().cloned().map(tokio::sync::Mutex::new).collect());
    let bump = |record: &SessionRecord| {
        let mut next = record.clone();
        next.version += 1;
        next
    };
    let rate = cas_writes(&store, &state, per_task, "update", bump).await;
    println!("{name:<9} update (CAS), 64 concurrent   {rate:>10.0}/s");
    let rotate = |record: &SessionRecord| common::rotated(record, common::token_hash());
    let rate = cas_writes(&store, &state, per_task, "rotate", rotate).await;
    println!("{name:<9} rotate, 64 concurrent         {rate:>10.0}/s");

    // Through the manager: durable logins (a new signed-in session each),
    // then validations (reads only: no renewal, no touch).
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    for tasks in [1, 16, 64] {
        let m = manager.clone();
        let rate = concurrent(tasks, move |i| {
            let m = m.clone();
            async move {
                m.login(None, Login::new(format!("user-{i}")))
                    .await
                    .expect("login");
            }
        })
        .await;
        println!("{name:<9} login (manager), {tasks:>2} clients  {rate:>10.0}/s");
    }
    let mut tokens = Vec::new();
    for _ in 0..1000 {
        let issued = manager.create(NewSession::default()).await.expect("create");
        tokens.push(issued.issued().expect("token").expose().to_owned());
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

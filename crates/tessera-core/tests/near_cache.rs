//! The near cache: passes the store conformance suite, and never serves a
//! changed or revoked session — not after a change on another node, not
//! while its invalidation bus is lost or silent, not after a load that a
//! change overtook, not after a write whose request was dropped. Its
//! background tasks end with its last clone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use tessera_core::near_cache::{
    BusEvent, Invalidation, InvalidationBus, LocalBus, NearCache, NearCacheConfig,
};
use tessera_core::store::{Intercept, Intercepted, Operation, Records, SessionStore, StoreError};
use tessera_core::testkit::{self, ConformanceOptions, run_conformance_with};
use tessera_core::{
    ActiveSession, Clock, DataChange, MemoryStore, NewSession, SessionError, SessionId,
    SessionManager, SystemClock,
};
use tokio::sync::mpsc;

fn cached<S: SessionStore>(store: S, bus: &LocalBus) -> NearCache<S> {
    NearCache::new(store, Arc::new(bus.clone()), NearCacheConfig::default())
}

async fn until_usable<S: SessionStore>(cache: &NearCache<S>) {
    until(
        Duration::from_secs(5),
        "the cache never became usable",
        || cache.stats().usable,
    )
    .await;
}

/// Waits for `done`, checking every few milliseconds, and fails with
/// `what` if it takes longer than `limit`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A manager over `cache`: one node.
fn node<S: SessionStore + Clone>(cache: &NearCache<S>) -> SessionManager {
    SessionManager::builder(cache.clone())
        .build()
        .expect("manager")
}

/// A new anonymous session on `node`: its id and token.
async fn anonymous(node: &SessionManager) -> (SessionId, String) {
    let created = node.create(NewSession::anonymous()).await.expect("create");
    (created.record().id, token(&created))
}

/// Two nodes with caches in front of `store`, both usable.
async fn two_nodes(
    store: &MemoryStore,
    bus: &LocalBus,
) -> [(NearCache<MemoryStore>, SessionManager); 2] {
    let (a, b) = (cached(store.clone(), bus), cached(store.clone(), bus));
    until_usable(&a).await;
    until_usable(&b).await;
    let (node_a, node_b) = (node(&a), node(&b));
    [(a, node_a), (b, node_b)]
}

fn token(session: &ActiveSession) -> String {
    session.issued().expect("a credential").expose().to_owned()
}

/// What an API call does: present the token, change the data.
async fn update(manager: &SessionManager, token: &str, n: u64) -> Result<(), SessionError> {
    let current = manager.resolve(token, None).await?;
    let change = DataChange::MergePatch(json!({"n": n}));
    manager.update(&current, change, None, None).await.map(drop)
}

/// The version the store holds and the version the cache serves.
async fn versions<S: SessionStore>(
    store: &MemoryStore,
    cache: &NearCache<S>,
    id: &SessionId,
) -> (Option<u64>, Option<u64>) {
    let now = SystemClock.now();
    let truth = store.load(id, now).await.expect("store");
    let seen = cache.load(id, now).await.expect("cache");
    (truth.map(|r| r.version), seen.map(|r| r.version))
}

/// Waits until the cache agrees with the store (an announcement takes a
/// moment to arrive); a value that slipped into the cache would stay.
async fn agrees<S: SessionStore>(
    store: &MemoryStore,
    cache: &NearCache<S>,
    id: &SessionId,
    what: &str,
) {
    let settled_by = Instant::now() + Duration::from_secs(2);
    loop {
        let (truth, seen) = versions(store, cache, id).await;
        if truth == seen {
            return;
        }
        assert!(
            Instant::now() < settled_by,
            "{what}: the cache serves version {seen:?}, the store holds {truth:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_passes_the_store_conformance_suite() {
    let report = run_conformance_with(ConformanceOptions::default(), || async {
        let bus = LocalBus::new();
        let cache = cached(MemoryStore::new(), &bus);
        until_usable(&cache).await;
        cache
    })
    .await;
    assert!(report.is_success(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), testkit::cases().len(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_revocation_on_one_node_reaches_every_node() {
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let [(a, node_a), (_, node_b)] = two_nodes(&store, &bus).await;

    let mut delays = Vec::new();
    for _ in 0..50 {
        let (id, token) = anonymous(&node_a).await;
        // Both nodes have it cached.
        for _ in 0..3 {
            node_a.validate(&token, None).await.expect("valid on A");
            node_b.validate(&token, None).await.expect("valid on B");
        }
        node_b.revoke(&id).await.expect("revoke on B");
        let revoked_at = Instant::now();
        // B forgot synchronously; A within the bus's delivery time.
        assert!(node_b.validate(&token, None).await.is_err());
        loop {
            if node_a.validate(&token, None).await.is_err() {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(2),
                "A kept serving a revoked session"
            );
            tokio::task::yield_now().await;
        }
        delays.push(revoked_at.elapsed());
    }
    delays.sort();
    println!(
        "revocation reached the other node: p50 {:?}, max {:?}",
        delays[25], delays[49]
    );
    assert!(a.stats().hits > 0, "the cache was used: {:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_updates_elsewhere_are_seen_at_once() {
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let [(a, node_a), (_, node_b)] = two_nodes(&store, &bus).await;
    let (_, token) = anonymous(&node_a).await;
    node_a.validate(&token, None).await.expect("cached on A");
    for n in 0..200u64 {
        update(&node_b, &token, n).await.expect("update on B");
        let started = Instant::now();
        loop {
            let seen = node_a.validate(&token, None).await.expect("valid");
            if seen.record().data.get::<u64>("n") == Some(n) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "A never saw update {n}"
            );
            tokio::task::yield_now().await;
        }
    }
    assert!(a.stats().hits > 0, "the cache was used: {:?}", a.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_is_bypassed_while_its_bus_is_lost() {
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = cached(store.clone(), &bus);
    until_usable(&a).await;
    let node_a = node(&a);
    let (id, token) = anonymous(&node_a).await;
    node_a.validate(&token, None).await.expect("valid");
    let hits = a.stats().hits;
    node_a
        .validate(&token, None)
        .await
        .expect("valid, from the cache");
    assert!(a.stats().hits > hits, "{:?}", a.stats());

    bus.break_connection();
    until(
        Duration::from_secs(2),
        "the bus was never taken as lost",
        || !a.stats().usable,
    )
    .await;
    assert_eq!(a.stats().entries, 0, "cleared when the bus was lost");
    // A revocation the bus never carried (written straight to the store):
    // a bypassed cache cannot serve it stale.
    store.delete(&id).await.expect("delete");
    assert!(node_a.validate(&token, None).await.is_err());
    let misses = a.stats().misses;
    let _ = node_a.validate(&token, None).await;
    assert!(
        a.stats().misses > misses,
        "bypassed: every load goes to the store"
    );

    bus.restore_connection();
    until_usable(&a).await;
}

/// A bus that connects and then never says anything again, as a
/// subscription whose connection died without an error.
struct SilentBus;

#[async_trait]
impl InvalidationBus for SilentBus {
    async fn publish(&self, _: &Invalidation) -> Result<(), StoreError> {
        Ok(())
    }
    async fn heartbeat(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn subscribe(&self, events: mpsc::Sender<BusEvent>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = events.send(BusEvent::Connected).await;
            std::future::pending::<()>().await;
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_is_bypassed_when_its_bus_goes_silent() {
    let config = NearCacheConfig {
        heartbeat: Duration::from_millis(20),
        silence_limit: Duration::from_millis(100),
        ..NearCacheConfig::default()
    };
    let cache = NearCache::new(MemoryStore::new(), Arc::new(SilentBus), config);
    until_usable(&cache).await;
    until(
        Duration::from_secs(5),
        "a silent bus must be taken as lost",
        || !cache.stats().usable,
    )
    .await;
}

/// Pauses around a store's operations: after a load has read (the window
/// in which a change made elsewhere can overtake it), or after an update
/// or delete has written (the window in which its request can be dropped
/// with the write done).
#[derive(Debug, Clone, Copy, Default)]
struct Pauses {
    after_load: Duration,
    after_write: Duration,
}

impl Intercept for Pauses {
    async fn after(&self, op: Operation) {
        let pause = match op {
            Operation::Load => self.after_load,
            Operation::Update | Operation::Delete => self.after_write,
            _ => Duration::ZERO,
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

type Slow = Intercepted<MemoryStore, Pauses>;

/// Loads that take `ms` milliseconds after reading.
fn slow_loads(store: MemoryStore, ms: u64) -> Slow {
    let after_load = Duration::from_millis(ms);
    Intercepted::new(
        store,
        Pauses {
            after_load,
            ..Pauses::default()
        },
    )
}

/// Updates and deletes that take 200 ms after writing.
fn slow_writes(store: MemoryStore) -> Slow {
    let after_write = Duration::from_millis(200);
    Intercepted::new(
        store,
        Pauses {
            after_write,
            ..Pauses::default()
        },
    )
}

/// Must fail if `Shared::remember` stops checking the marks that
/// announcements leave (checked once by removing that check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_loads_racing_with_changes_never_stick() {
    // Each load on A is overtaken by an update on B: A's load has read the
    // old version and is still on its way (20 ms) when the update's
    // announcement arrives.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = cached(slow_loads(store.clone(), 20), &bus);
    let b = cached(store.clone(), &bus);
    until_usable(&a).await;
    until_usable(&b).await;
    let node_b = node(&b);
    let mut overtaken = 0;
    for n in 0..50u64 {
        // A session A has never loaded: its load goes to the store.
        let (id, token) = anonymous(&node_b).await;
        let load = {
            let a = a.clone();
            tokio::spawn(async move { a.load(&id, SystemClock.now()).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        update(&node_b, &token, n).await.expect("update");
        let loaded = load.await.expect("load task").expect("load");
        if loaded.is_some_and(|record| record.version == 1) {
            overtaken += 1;
        }
        agrees(&store, &a, &id, &format!("round {n}")).await;
    }
    assert!(overtaken > 0, "no load was overtaken by a change");
    println!("{overtaken} of 50 loads were overtaken by a change");
}

#[test]
fn invalidations_round_trip_and_refuse_garbage() {
    let change = Invalidation {
        ids: vec![SessionId([3; 16]), SessionId([4; 16])],
    };
    let bytes = change.to_bytes();
    assert_eq!(bytes.len(), 1 + 2 + 2 * 16, "format, count, ids");
    assert_eq!(Invalidation::from_bytes(&bytes), Some(change.clone()));
    assert_eq!(
        Invalidation::from_bytes(&Invalidation::default().to_bytes()),
        Some(Invalidation::default())
    );
    assert_eq!(Invalidation::from_bytes(b""), None);
    assert_eq!(Invalidation::from_bytes(b"\x00\x01abc"), None);
    let mut other_format = bytes.clone();
    other_format[0] = 1;
    assert_eq!(Invalidation::from_bytes(&other_format), None);
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(Invalidation::from_bytes(&long), None);
    assert_eq!(Invalidation::from_bytes(&bytes[..bytes.len() - 1]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_local_writes_racing_local_loads_never_stick() {
    // One node, many requests on few sessions at once: each validates
    // (through the cache, loads that take a while), then writes with
    // compare-and-swap, retrying a lost race as the web layer does. When
    // the dust settles, the cache must agree with the store.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let cache = cached(slow_loads(store.clone(), 2), &bus);
    until_usable(&cache).await;
    let node = node(&cache);
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(anonymous(&node).await);
    }
    let sessions = Arc::new(sessions);
    let tasks: Vec<_> = (0..24usize)
        .map(|worker| {
            let (node, sessions) = (node.clone(), sessions.clone());
            tokio::spawn(async move {
                for round in 0..40usize {
                    let (_, token) = &sessions[(worker + round) % sessions.len()];
                    let mut written = false;
                    // Losing races for a while is contention; losing them for
                    // seconds means the cache keeps serving a replaced version.
                    let give_up = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < give_up {
                        let valid = node.validate(token, None).await.expect("valid");
                        let version = valid.record().version;
                        match node
                            .update(
                                &valid,
                                DataChange::MergePatch(json!({"w": worker, "r": round})),
                                Some(version),
                                None,
                            )
                            .await
                        {
                            Ok(_) => {
                                written = true;
                                break;
                            }
                            Err(SessionError::VersionConflict { .. }) => {}
                            Err(other) => panic!("{other}"),
                        }
                    }
                    assert!(
                        written,
                        "worker {worker} round {round}: every retry lost for 20 s"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    for (id, _) in sessions.iter() {
        let (truth, seen) = versions(&store, &cache, id).await;
        assert!(truth.is_some(), "the session is live");
        assert_eq!(seen, truth, "the cache kept a replaced version");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_writes_of_dropped_requests_are_still_announced() {
    // A request is dropped (its client went away) after its write reached
    // the store but before the write was announced: neither this node nor
    // another may keep serving what the write replaced.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = cached(slow_writes(store.clone()), &bus);
    let b = cached(Intercepted::new(store.clone(), Pauses::default()), &bus);
    until_usable(&a).await;
    until_usable(&b).await;
    let node_a = node(&a);
    let (id, token) = anonymous(&node_a).await;
    for (node, cache) in [("A", &a), ("B", &b)] {
        let loaded = cache.load(&id, SystemClock.now()).await.expect("load");
        assert!(loaded.is_some(), "{node}: the session is live");
    }

    // An update, dropped while the store is still answering.
    let request = {
        let (node_a, token) = (node_a.clone(), token.clone());
        tokio::spawn(async move { update(&node_a, &token, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    request.abort();
    assert!(request.await.is_err(), "the request was dropped mid-write");
    let (written, _) = versions(&store, &a, &id).await;
    assert_eq!(written, Some(2), "the write itself landed");
    agrees(&store, &a, &id, "update, node A").await;
    agrees(&store, &b, &id, "update, node B").await;

    // A revocation, dropped the same way.
    for cache in [&a, &b] {
        cache.load(&id, SystemClock.now()).await.expect("load");
    }
    let request = {
        let node_a = node_a.clone();
        tokio::spawn(async move { node_a.revoke(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    request.abort();
    assert!(request.await.is_err(), "the request was dropped mid-write");
    agrees(&store, &a, &id, "revocation, node A").await;
    agrees(&store, &b, &id, "revocation, node B").await;
    assert_eq!(versions(&store, &b, &id).await, (None, None));
}

/// A [`LocalBus`] whose listener tasks each hold a clone of `alive`: the
/// count of clones says how many are running.
struct ProbeBus {
    bus: LocalBus,
    alive: Arc<()>,
}

/// Aborts a task when dropped (as the cache does with its own).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl InvalidationBus for ProbeBus {
    async fn publish(&self, change: &Invalidation) -> Result<(), StoreError> {
        self.bus.publish(change).await
    }
    async fn heartbeat(&self) -> Result<(), StoreError> {
        self.bus.heartbeat().await
    }
    fn subscribe(&self, events: mpsc::Sender<BusEvent>) -> tokio::task::JoinHandle<()> {
        let (sender, mut receiver) = mpsc::channel(16);
        let inner = AbortOnDrop(self.bus.subscribe(sender));
        let alive = self.alive.clone();
        tokio::spawn(async move {
            let _held = (inner, alive);
            while let Some(event) = receiver.recv().await {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// Heartbeats heard on the bus for `window`.
async fn heartbeats(heard: &mut mpsc::Receiver<BusEvent>, window: Duration) -> usize {
    let until = tokio::time::Instant::now() + window;
    let mut count = 0;
    while let Ok(Some(event)) = tokio::time::timeout_at(until, heard.recv()).await {
        if event == BusEvent::Alive {
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_near_cache_stops_its_tasks() {
    let bus = LocalBus::new();
    // Our own listener on the bus hears every node's heartbeats.
    let (sender, mut heard) = mpsc::channel(4096);
    let listener = bus.subscribe(sender);
    let alive = Arc::new(());
    let config = NearCacheConfig {
        heartbeat: Duration::from_millis(10),
        ..NearCacheConfig::default()
    };
    let probe = ProbeBus {
        bus: bus.clone(),
        alive: alive.clone(),
    };
    let cache = NearCache::new(MemoryStore::new(), Arc::new(probe), config);
    until_usable(&cache).await;
    let window = Duration::from_millis(200);
    assert!(heartbeats(&mut heard, window).await >= 5, "heartbeats");

    // Dropped without `shutdown()`, but a clone lives on: so do the tasks.
    let clone = cache.clone();
    drop(cache);
    assert!(
        heartbeats(&mut heard, window).await >= 5,
        "a clone keeps the tasks running"
    );
    assert!(Arc::strong_count(&alive) > 2, "the listener runs");

    // The last clone goes: the heartbeat and the listener stop.
    drop(clone);
    until(
        Duration::from_secs(2),
        "the listener outlived the cache",
        || Arc::strong_count(&alive) == 1,
    )
    .await;
    // A heartbeat already on its way may still arrive; then none.
    heartbeats(&mut heard, Duration::from_millis(30)).await;
    assert_eq!(
        heartbeats(&mut heard, Duration::from_millis(300)).await,
        0,
        "a dropped cache publishes no heartbeat"
    );
    listener.abort();
}

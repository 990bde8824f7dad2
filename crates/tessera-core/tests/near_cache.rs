//! The near cache: passes the store conformance suite, and never serves a
//! changed or revoked session — not after a change on another node, not
//! while its invalidation bus is lost or silent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::near_cache::{
    BusEvent, Invalidation, InvalidationBus, LocalBus, NearCache, NearCacheConfig,
};
use tessera_core::testkit::{ConformanceOptions, run_conformance_with};
use tessera_core::{
    Clock, CreateOutcome, MemoryStore, NewSession, Session, SessionId, SessionManager,
    SessionStore, StoreError, StoredEntry, SystemClock, Timestamp, TokenHash, Tombstone,
    WriteOutcome, async_trait,
};
use tokio::sync::mpsc;

fn cached(store: MemoryStore, bus: &LocalBus) -> NearCache<MemoryStore> {
    NearCache::new(store, Arc::new(bus.clone()), NearCacheConfig::default())
}

async fn until_usable<S: SessionStore>(cache: &NearCache<S>) {
    let started = Instant::now();
    while !cache.stats().usable {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cache never became usable"
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_revocation_on_one_node_reaches_every_node() {
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let (a, b) = (cached(store.clone(), &bus), cached(store.clone(), &bus));
    until_usable(&a).await;
    until_usable(&b).await;
    let node_a = SessionManager::builder(a.clone()).build().expect("manager");
    let node_b = SessionManager::builder(b.clone()).build().expect("manager");

    let mut delays = Vec::new();
    for _ in 0..50 {
        let issued = node_a.create(NewSession::default()).await.expect("create");
        let token = issued.token.expose().to_owned();
        // Both nodes have it cached.
        for _ in 0..3 {
            node_a.validate(&token, None).await.expect("valid on A");
            node_b.validate(&token, None).await.expect("valid on B");
        }
        node_b
            .revoke(&issued.session.id)
            .await
            .expect("revoke on B");
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
    let (a, b) = (cached(store.clone(), &bus), cached(store.clone(), &bus));
    until_usable(&a).await;
    until_usable(&b).await;
    let node_a = SessionManager::builder(a.clone()).build().expect("manager");
    let node_b = SessionManager::builder(b.clone()).build().expect("manager");
    let issued = node_a.create(NewSession::default()).await.expect("create");
    let token = issued.token.expose();
    node_a.validate(token, None).await.expect("cached on A");
    for n in 0..200u64 {
        node_b
            .update(
                token,
                tessera_core::DataChange::MergePatch(serde_json::json!({"n": n})),
                None,
                None,
            )
            .await
            .expect("update on B");
        let started = Instant::now();
        loop {
            let seen = node_a.validate(token, None).await.expect("valid");
            if seen.session.data.get::<u64>("n") == Some(n) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "A never saw update {n}"
            );
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_is_bypassed_while_its_bus_is_lost() {
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = cached(store.clone(), &bus);
    until_usable(&a).await;
    let node_a = SessionManager::builder(a.clone()).build().expect("manager");
    let issued = node_a.create(NewSession::default()).await.expect("create");
    let token = issued.token.expose();
    node_a.validate(token, None).await.expect("valid");
    node_a
        .validate(token, None)
        .await
        .expect("valid, from the cache");
    assert!(a.stats().hits >= 1);

    bus.break_connection();
    let started = Instant::now();
    while a.stats().usable {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(a.stats().entries, 0, "cleared when the bus was lost");
    // A revocation the bus never carried (written straight to the store):
    // a bypassed cache cannot serve it stale.
    store.delete(&issued.session.id).await.expect("delete");
    assert!(node_a.validate(token, None).await.is_err());
    let misses = a.stats().misses;
    let _ = node_a.validate(token, None).await;
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
    let started = Instant::now();
    while cache.stats().usable {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a silent bus must be taken as lost"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A store whose loads take a while after reading (the window in which a
/// change made elsewhere can overtake a load), or whose updates and
/// deletes take a while after writing (the window in which a request can
/// be dropped with its write done).
#[derive(Clone)]
struct Slow {
    store: MemoryStore,
    after_load: Duration,
    after_write: Duration,
}

impl Slow {
    fn loads(store: MemoryStore) -> Self {
        Self {
            store,
            after_load: Duration::from_millis(2),
            after_write: Duration::ZERO,
        }
    }

    fn plain(store: MemoryStore) -> Self {
        Self {
            store,
            after_load: Duration::ZERO,
            after_write: Duration::ZERO,
        }
    }

    fn writes(store: MemoryStore) -> Self {
        Self {
            store,
            after_load: Duration::ZERO,
            after_write: Duration::from_millis(200),
        }
    }
}

#[async_trait]
impl SessionStore for Slow {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        self.store.create(key, session).await
    }
    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        let read = self.store.load(key, now).await;
        tokio::time::sleep(self.after_load).await;
        read
    }
    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        self.store.load_by_id(id, now).await
    }
    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let written = self.store.update(key, session, expected_version, now).await;
        tokio::time::sleep(self.after_write).await;
        written
    }
    async fn touch(
        &self,
        key: &TokenHash,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.store.touch(key, at, now).await
    }
    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.store
            .rotate(old_key, new_key, session, expected_version, tombstone, now)
            .await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let deleted = self.store.delete(id).await;
        tokio::time::sleep(self.after_write).await;
        deleted
    }
    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        self.store.list_by_subject(subject, now).await
    }
    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.store.global_epoch().await
    }
    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.store.bump_global_epoch().await
    }
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.store.subject_epoch(subject).await
    }
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.store.bump_subject_epoch(subject).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_loads_racing_with_changes_never_stick() {
    // Every load on A is overtaken by an update on B: the update's
    // announcement arrives while A's load of the old version is in flight.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = NearCache::new(
        Slow::loads(store.clone()),
        Arc::new(bus.clone()),
        NearCacheConfig::default(),
    );
    let b = cached(store.clone(), &bus);
    until_usable(&a).await;
    until_usable(&b).await;
    let node_b = SessionManager::builder(b.clone()).build().expect("manager");
    let issued = node_b.create(NewSession::default()).await.expect("create");
    let key = issued.token.hash();
    for n in 0..50u64 {
        let load = {
            let a = a.clone();
            tokio::spawn(async move { a.load(&key, SystemClock.now()).await })
        };
        tokio::time::sleep(Duration::from_micros(500)).await;
        node_b
            .update(
                issued.token.expose(),
                tessera_core::DataChange::MergePatch(serde_json::json!({"n": n})),
                None,
                None,
            )
            .await
            .expect("update");
        load.await.expect("load task").expect("load");
        // Once the announcement has arrived, A must agree with the store
        // (a value that slipped into the cache would stay there for good).
        let settled_by = Instant::now() + Duration::from_secs(2);
        loop {
            let now = SystemClock.now();
            let (Some(StoredEntry::Live(truth)), Some(StoredEntry::Live(seen))) = (
                store.load(&key, now).await.expect("store"),
                a.load(&key, now).await.expect("cache"),
            ) else {
                panic!("the session is live");
            };
            if seen.version == truth.version {
                break;
            }
            assert!(
                Instant::now() < settled_by,
                "round {n}: A's cache kept a version the store replaced"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[test]
fn invalidations_round_trip_and_refuse_garbage() {
    let change = Invalidation {
        keys: vec![
            tessera_core::TokenHash([1; 32]),
            tessera_core::TokenHash([2; 32]),
        ],
        ids: vec![tessera_core::SessionId([3; 16])],
    };
    assert_eq!(
        Invalidation::from_bytes(&change.to_bytes()),
        Some(change.clone())
    );
    assert_eq!(Invalidation::from_bytes(b""), None);
    assert_eq!(Invalidation::from_bytes(b"\\x00\\x01abc"), None);
    let mut long = change.to_bytes();
    long.push(0);
    assert_eq!(Invalidation::from_bytes(&long), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_local_writes_racing_local_loads_never_stick() {
    // One node, many requests on few sessions at once: each validates
    // (through the cache, loads that take a while), then writes with
    // compare-and-swap, retrying a lost race as the web layer does. When
    // the dust settles, the cache must agree with the store.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let cache = NearCache::new(
        Slow::loads(store.clone()),
        Arc::new(bus.clone()),
        NearCacheConfig::default(),
    );
    until_usable(&cache).await;
    let node = SessionManager::builder(cache.clone())
        .build()
        .expect("manager");
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let issued = node.create(NewSession::default()).await.expect("create");
        tokens.push(issued.token.expose().to_owned());
    }
    let tokens = Arc::new(tokens);
    let mut tasks = Vec::new();
    for worker in 0..24usize {
        let (node, tokens) = (node.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..40usize {
                let token = &tokens[(worker + round) % tokens.len()];
                let mut written = false;
                // Losing races for a while is contention; losing them for
                // seconds means the cache keeps serving a replaced version.
                let give_up = Instant::now() + Duration::from_secs(20);
                while Instant::now() < give_up {
                    let valid = node.validate(token, None).await.expect("valid");
                    let version = valid.session.version;
                    match node
                        .update_validated(
                            &valid,
                            tessera_core::DataChange::MergePatch(
                                serde_json::json!({"w": worker, "r": round}),
                            ),
                            Some(version),
                            None,
                        )
                        .await
                    {
                        Ok(_) => {
                            written = true;
                            break;
                        }
                        Err(tessera_core::SessionError::VersionConflict { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                assert!(
                    written,
                    "worker {worker} round {round}: every retry lost for 20 s"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    for token in tokens.iter() {
        let key = tessera_core::SessionToken::parse(token)
            .expect("token")
            .hash();
        let now = SystemClock.now();
        let (Some(StoredEntry::Live(truth)), Some(StoredEntry::Live(seen))) = (
            store.load(&key, now).await.expect("store"),
            cache.load(&key, now).await.expect("cache"),
        ) else {
            panic!("the session is live");
        };
        assert_eq!(
            seen.version, truth.version,
            "the cache kept a replaced version"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_writes_of_dropped_requests_are_still_announced() {
    // A request is dropped (its client went away) after its write reached
    // the store but before the write was announced: neither this node nor
    // another may keep serving what the write replaced.
    let store = MemoryStore::new();
    let bus = LocalBus::new();
    let a = NearCache::new(
        Slow::writes(store.clone()),
        Arc::new(bus.clone()),
        NearCacheConfig::default(),
    );
    let b = NearCache::new(
        Slow::plain(store.clone()),
        Arc::new(bus.clone()),
        NearCacheConfig::default(),
    );
    until_usable(&a).await;
    until_usable(&b).await;
    let node_a = SessionManager::builder(a.clone()).build().expect("manager");
    let issued = node_a.create(NewSession::default()).await.expect("create");
    let key = issued.token.hash();
    for (node, cache) in [("A", &a), ("B", &b)] {
        let Some(StoredEntry::Live(_)) = cache.load(&key, SystemClock.now()).await.expect("load")
        else {
            panic!("{node}: the session is live")
        };
    }
    let agrees = |cache: NearCache<_>, store: MemoryStore, what: &'static str| async move {
        let settled_by = Instant::now() + Duration::from_secs(2);
        loop {
            let now = SystemClock.now();
            let truth = store.load(&key, now).await.expect("store");
            let seen = cache.load(&key, now).await.expect("cache");
            let version = |entry: &Option<StoredEntry>| match entry {
                Some(StoredEntry::Live(session)) => Some(session.version),
                _ => None,
            };
            if version(&truth) == version(&seen) {
                return;
            }
            assert!(
                Instant::now() < settled_by,
                "{what}: a dropped write left a stale entry"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    // An update, dropped while the store is still answering.
    let request = {
        let (node_a, token) = (node_a.clone(), issued.token.expose().to_owned());
        tokio::spawn(async move {
            node_a
                .update(
                    &token,
                    tessera_core::DataChange::MergePatch(serde_json::json!({"n": 1})),
                    None,
                    None,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    request.abort();
    assert!(request.await.is_err(), "the request was dropped mid-write");
    let Some(StoredEntry::Live(written)) =
        store.load(&key, SystemClock.now()).await.expect("store")
    else {
        panic!("the session is live")
    };
    assert_eq!(written.version, 2, "the write itself landed");
    agrees(a.clone(), store.clone(), "update, node A").await;
    agrees(b.clone(), store.clone(), "update, node B").await;

    // A revocation, dropped the same way.
    for cache in [&a, &b] {
        cache.load(&key, SystemClock.now()).await.expect("load");
    }
    let request = {
        let (node_a, id) = (node_a.clone(), written.id);
        tokio::spawn(async move { node_a.revoke(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    request.abort();
    assert!(request.await.is_err(), "the request was dropped mid-write");
    agrees(a.clone(), store.clone(), "revocation, node A").await;
    agrees(b.clone(), store.clone(), "revocation, node B").await;
}

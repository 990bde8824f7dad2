//! The memory store passes the shared conformance suite.

use std::time::Duration;

use tessera_core::store::{Maintenance, spawn_sweeper_with_clock};
use tessera_core::testkit;
use tessera_core::{
    Clock, ManualClock, MemoryStore, NewSession, SessionManager, SessionManagerBuilder,
};

/// A memory store holding `sessions` new sessions, made by a manager on a
/// manual clock with the settings of `configure`.
async fn filled(
    sessions: usize,
    configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
) -> (MemoryStore, ManualClock, SessionManager) {
    let clock = ManualClock::starting_now();
    let store = MemoryStore::new();
    let manager = configure(SessionManager::builder(store.clone()).clock(clock.clone()))
        .build()
        .expect("config");
    for _ in 0..sessions {
        manager.create(NewSession::default()).await.expect("create");
    }
    (store, clock, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    let report = testkit::run_conformance(|| async { MemoryStore::new() }).await;
    assert!(report.is_success(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
    assert_eq!(report.passed.len(), testkit::cases().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_background_sweeper_frees_expired_sessions() {
    let (store, clock, _) = filled(100, |b| {
        b.idle_timeout(Duration::from_secs(60))
            .touch_after(Duration::from_secs(10))
    })
    .await;
    assert_eq!(store.len(), 100);
    clock.advance(Duration::from_secs(60) + tessera_core::EXPIRED_RETENTION);
    let sweeper = spawn_sweeper_with_clock(
        store.clone(),
        Duration::from_millis(5),
        std::sync::Arc::new(clock.clone()),
    );
    for _ in 0..200 {
        if store.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sweeper.stop();
    assert!(
        store.is_empty(),
        "{} entries left after sweeping",
        store.len()
    );
    assert_eq!(store.sweep_expired(clock.now()).await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_follows_live_sessions_after_mass_expiry() {
    let (store, clock, manager) = filled(20_000, |b| b).await;
    let full = store.capacity();
    assert!(full >= 20_000);
    clock.advance(manager.config().idle_timeout + tessera_core::EXPIRED_RETENTION);
    let keep = manager.create(NewSession::default()).await.expect("create");
    assert_eq!(
        store.sweep_expired(clock.now()).await.expect("sweep"),
        20_000
    );
    assert_eq!(store.len(), 1);
    assert!(
        store.capacity() * 8 < full,
        "capacity {} did not shrink from {full}",
        store.capacity()
    );
    let token = keep.issued().expect("a credential").expose();
    manager
        .validate(token, None)
        .await
        .expect("the live session survives the shrink");
}

//! Revocations that must survive what can happen to a Redis server: the
//! loss of its data (`FLUSHALL`, a restart without persistence), an
//! eviction policy that may drop keys without an expiry, and a replica that
//! has not acknowledged a revocation. Each on a private redis-server.

mod common;

use std::time::{Duration, Instant};

use common::{TempRedis, unique_prefix};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::{Durability, Epochs, StoreError};
use tessera_core::testkit::invalid_reason as reason;
use tessera_core::{
    Clock, ConfigError, InvalidReason, Login, ManualClock, NewSession, SessionError, SessionManager,
};
use tessera_redis::{RedisConfig, RedisStore, RedisStoreError};

fn config(url: &str, tag: &str) -> RedisConfig {
    RedisConfig::from_url(url)
        .expect("url")
        .prefix(&unique_prefix(tag))
        .operation_timeout(Duration::from_millis(1000))
        .connect_timeout(Duration::from_millis(1000))
}

fn now_ms() -> u64 {
    u64::try_from(tessera_core::SystemClock.now().as_millis()).expect("after 1970")
}

fn seal(session: &tessera_core::ActiveSession) -> String {
    session.issued().expect("a seal").expose().to_owned()
}

/// A fresh store's global epoch starts at the current time; a store of an
/// earlier version (its keys there, no epoch) at 0; an existing epoch is
/// kept as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_global_epoch_starts_at_the_current_time_or_beside_old_data_at_0() {
    let server = TempRedis::start();
    let before = now_ms();
    let fresh = RedisStore::connect_with(config(&server.url(), "fresh"))
        .await
        .expect("connect");
    let started = fresh.global_epoch().await.expect("epoch");
    assert!(
        started >= before && started <= now_ms(),
        "{started} is the time of the first connect"
    );
    assert_eq!(
        fresh.bump_global_epoch().await.expect("bump"),
        started + 1,
        "then it counts"
    );

    // An earlier version's data: a signed-out subject's epoch, no global one.
    let old = config(&server.url(), "old");
    let prefix = old.prefix_value().to_owned();
    server.cli(&["SET", &format!("{prefix}epoch:alice"), "2"]);
    let upgraded = RedisStore::connect_with(old).await.expect("connect");
    assert_eq!(upgraded.global_epoch().await.expect("epoch"), 0);
    assert_eq!(upgraded.subject_epoch("alice").await.expect("epoch"), 2);

    // An existing epoch is never lowered nor restarted.
    let kept = config(&server.url(), "kept");
    let prefix = kept.prefix_value().to_owned();
    server.cli(&["SET", &format!("{prefix}epoch"), "7"]);
    let store = RedisStore::connect_with(kept).await.expect("connect");
    assert_eq!(store.global_epoch().await.expect("epoch"), 7);
    assert_eq!(store.raise_global_epoch(3).await.expect("raise"), 7);
}

/// `durability()` follows the server: volatile without an append-only
/// file (and sealing then needs the opt-in), persistent with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_follows_the_servers_append_only_file() {
    let volatile = TempRedis::start();
    let store = RedisStore::connect_with(config(&volatile.url(), "vol"))
        .await
        .expect("connect");
    assert_eq!(store.durability(), Durability::Volatile);
    let refused = SessionManager::builder(store.clone())
        .sealed(KeyRing::new(SealingKey::new(1, [3; 32])))
        .build();
    assert!(
        matches!(refused, Err(ConfigError::VolatileEpochs)),
        "{refused:?}"
    );

    let persistent = TempRedis::start_with(&["--appendonly", "yes"]);
    let store = RedisStore::connect_with(config(&persistent.url(), "aof"))
        .await
        .expect("connect");
    assert_eq!(store.durability(), Durability::Persistent);
    SessionManager::builder(store)
        .sealed(KeyRing::new(SealingKey::new(1, [3; 32])))
        .build()
        .expect("sealing over persistent epochs needs no opt-in");
}

/// A server that may evict keys without an expiry (epochs, subject
/// indexes) is refused with an error that says what to change, unless the
/// application accepts it by name; policies that evict only keys with an
/// expiry are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_policy_is_refused_unless_allowed() {
    let server = TempRedis::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    match RedisStore::connect_with(config(&server.url(), "evict")).await {
        Err(RedisStoreError::Server(message)) => {
            assert!(message.contains("allkeys-lru"), "{message}");
            assert!(message.contains("noeviction"), "says what to do: {message}");
            assert!(message.contains("allow_evicting_policy"), "{message}");
        }
        other => panic!("expected the policy to be refused, got {other:?}"),
    }
    let lazily = RedisStore::connect_lazy(config(&server.url(), "evict")).await;
    assert!(
        matches!(lazily, Err(RedisStoreError::Server(_))),
        "a lazy store checks a server that answers"
    );
    RedisStore::connect_with(config(&server.url(), "evict").allow_evicting_policy(true))
        .await
        .expect("allowed by name");
    let url = format!("{}?allow_evicting_policy=true", server.url());
    RedisStore::connect(&url).await.expect("allowed in the URL");

    server.cli(&["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    RedisStore::connect_with(config(&server.url(), "evict"))
        .await
        .expect("volatile-lru evicts only keys with an expiry");
}

/// A sealed session of a revoked subject stays revoked when Redis loses
/// its data, even while the manager still holds the global epoch it read
/// before the loss: the subject epoch (0 again) is read with the global
/// one, which moved on, and the read fails closed until the manager has
/// read the new global epoch, which ends every seal of before the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_seals_stay_revoked_when_redis_loses_its_data() {
    let mut server = TempRedis::start();
    let store = RedisStore::connect_with(config(&server.url(), "loss"))
        .await
        .expect("connect");
    let clock = ManualClock::starting_now();
    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .sealed(KeyRing::new(SealingKey::new(1, [9; 32])))
        .allow_volatile_epochs()
        .build()
        .expect("manager");
    let refresh = manager.config().epoch_refresh;

    for loss in ["FLUSHALL", "a restart without persistence"] {
        let alice = seal(
            &manager
                .login(None, Login::new("alice"))
                .await
                .expect("login"),
        );
        let bob = seal(&manager.login(None, Login::new("bob")).await.expect("login"));
        manager.validate(&alice, None).await.expect("alice's seal");
        manager
            .revoke_subject("alice", None)
            .await
            .expect("sign alice out everywhere");
        assert_eq!(
            reason(manager.validate(&alice, None).await),
            InvalidReason::Revoked
        );

        if loss == "FLUSHALL" {
            assert_eq!(server.cli(&["FLUSHALL"]), "OK");
        } else {
            server.kill();
            server.start_server();
            let started = Instant::now();
            while tessera_core::store::Records::ping(&store).await.is_err() {
                assert!(started.elapsed() < Duration::from_secs(20), "reconnect");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The manager's global epoch is from before the loss, and alice's
        // subject epoch reads 0 again: her seal must not come back.
        for attempt in 0..3 {
            match manager.validate(&alice, None).await {
                Err(SessionError::Store(StoreError::Unavailable { message, .. }))
                    if message.contains("moved on") => {}
                other => panic!("{loss}, attempt {attempt}: a revoked seal came back: {other:?}"),
            }
        }
        // Once the manager reads the global epoch anew, every seal of
        // before the loss has ended.
        clock.advance(refresh + Duration::from_millis(1));
        let started = Instant::now();
        let outcome = loop {
            match manager.validate(&alice, None).await {
                Err(SessionError::Store(_)) if started.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        assert_eq!(reason(outcome), InvalidReason::Revoked, "{loss}");
        assert_eq!(
            reason(manager.validate(&bob, None).await),
            InvalidReason::Revoked,
            "{loss}: every seal of before the loss ends"
        );
        let carol = seal(
            &manager
                .login(None, Login::new("carol"))
                .await
                .expect("login"),
        );
        let made_after = manager.validate(&carol, None).await;
        made_after.expect("a seal made after the loss");
    }
}

/// With `wait_replicas`, a revocation the replica does not acknowledge in
/// time fails as unavailable (it may not survive a failover), within the
/// wait timeout; other operations go on meanwhile; once the replica is
/// back, revocations work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_not_acknowledged_by_a_replica_fails_closed() {
    let primary = TempRedis::start();
    let replica = TempRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    let started = Instant::now();
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "replica not linked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("{}?wait_replicas=1&wait_timeout_ms=300", primary.url());
    let store = RedisStore::connect_with(config(&url, "wait"))
        .await
        .expect("connect");
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let dora = || async {
        manager
            .login(None, Login::new("dora"))
            .await
            .expect("login")
    };
    let first = dora().await;
    manager
        .logout(&first)
        .await
        .expect("acknowledged by the replica");

    replica.pause();
    let second = dora().await;
    let asked = Instant::now();
    match manager.logout(&second).await {
        Err(SessionError::Store(StoreError::Unavailable { message, .. })) => {
            assert!(message.contains("0 of 1 replicas"), "{message}");
        }
        other => panic!("an unacknowledged logout must fail, got {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "failed after {:?}",
        asked.elapsed()
    );
    assert!(
        matches!(
            manager.revoke_everything().await,
            Err(SessionError::Store(StoreError::Unavailable { .. }))
        ),
        "an epoch change waits too"
    );
    let other = manager
        .create(NewSession::default())
        .await
        .expect("other writes do not wait");
    manager
        .validate(other.issued().expect("token").expose(), None)
        .await
        .expect("nor do reads");

    replica.resume();
    let third = dora().await;
    let started = Instant::now();
    while manager.logout(&third).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "replica back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Revocations survive the failover of a Redis Cluster primary: with
//! `wait_replicas=1`, a logout or revoke-all is acknowledged only once the
//! primary's replica has it, so when the primary dies right after (SIGKILL)
//! and its replica takes over, no revoked session validates, and every
//! session created before still does. On a cluster of three primaries with
//! one replica each, on loopback. On loopback a replica is never far
//! behind, so it is made to lag: frozen (SIGSTOP) behind 16 MB of
//! replication stream, and thawed a moment later. Without the wait, the
//! revocations would be acknowledged while they sit in the primary's
//! output buffer, and the kill would lose them (the test fails then).

mod common;

use std::time::{Duration, Instant};

use common::{TempCluster, store_with_timeouts};
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::{InvalidReason, Login, NewSession, SessionError, SessionManager};

const PATIENCE: Duration = Duration::from_secs(30);

fn token(session: &tessera_core::ActiveSession) -> String {
    session.issued().expect("a credential").expose().to_owned()
}

/// Validates until the store answers (it finds the new primary by itself);
/// `Ok(())` for a valid session, the reason for an invalid one.
async fn judged(manager: &SessionManager, token: &str) -> Result<(), InvalidReason> {
    let started = Instant::now();
    loop {
        match manager.validate(token, None).await {
            Ok(_) => return Ok(()),
            Err(SessionError::Invalid { reason }) => return Err(reason),
            Err(other) => {
                assert!(
                    started.elapsed() < PATIENCE,
                    "the store did not recover: {other}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_a_primary_failover_and_earlier_sessions_still_validate() {
    let began = Instant::now();
    let mut cluster = TempCluster::start_with_replicas(1, 2000);
    println!("cluster of 3 + 3 up in {:?}", began.elapsed());
    let url = format!("{}?wait_replicas=1&wait_timeout_ms=3000", cluster.url());
    let (operation, connect) = (Duration::from_millis(2000), Duration::from_millis(1500));
    let store = store_with_timeouts(&url, "fo:", operation, connect).await;
    let manager = SessionManager::builder(store.clone())
        .allow_volatile_epochs()
        .build()
        .expect("manager");
    let sealed = manager
        .with_sealing(KeyRing::new(SealingKey::new(1, [4; 32])), b"cookie")
        .expect("sealing");

    // Sessions on every primary: some to keep, some to log out, and a
    // subject (stored and sealed sessions) to sign out everywhere.
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for _ in 0..30 {
        kept.push(token(
            &manager.create(NewSession::default()).await.expect("create"),
        ));
        doomed.push(manager.create(NewSession::default()).await.expect("create"));
    }
    let mut erin = Vec::new();
    for _ in 0..5 {
        erin.push(token(
            &manager
                .login(None, Login::new("erin"))
                .await
                .expect("login"),
        ));
    }
    let erin_sealed = token(&sealed.login(None, Login::new("erin")).await.expect("login"));
    let kept_sealed = token(&sealed.login(None, Login::new("fred")).await.expect("login"));

    // The primary that holds erin's subject epoch dies right after the
    // revocations it took were acknowledged.
    let victim = cluster.primary_of("fo:epoch:erin");
    let replica = cluster.replica_of(victim);
    cluster.nodes()[replica].pause();
    let filler = cluster.nodes()[victim].cli(&[
        "EVAL",
        "redis.call('SET', KEYS[1], string.rep('x', 16777216)) return 1",
        "1",
        "{fo:epoch:erin}filler",
    ]);
    assert_eq!(filler, "1");
    let thaw = {
        let replica_pid = cluster.nodes()[replica].pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            common::signal(replica_pid, "-CONT");
        })
    };
    let revoking = Instant::now();
    for session in &doomed {
        manager.logout(session).await.expect("logout");
    }
    manager
        .revoke_subject("erin", None)
        .await
        .expect("sign erin out everywhere");
    println!("revocations acknowledged in {:?}", revoking.elapsed());
    cluster.nodes_mut()[victim].kill();
    thaw.join().expect("thaw the replica");
    let killed = Instant::now();
    assert_eq!(
        cluster.nodes()[replica].cli(&["CLUSTER", "FAILOVER", "TAKEOVER"]),
        "OK"
    );
    cluster.wait_until_ok();
    println!("replica in charge {:?} after the kill", killed.elapsed());

    for session in &doomed {
        assert_eq!(
            judged(&manager, &token(session)).await,
            Err(InvalidReason::Unknown),
            "a logged-out session came back"
        );
    }
    for erin in &erin {
        assert_eq!(
            judged(&manager, erin).await,
            Err(InvalidReason::Unknown),
            "a session revoked with its subject came back"
        );
    }
    assert_eq!(
        judged(&sealed, &erin_sealed).await,
        Err(InvalidReason::Revoked),
        "a sealed session of the revoked subject came back"
    );
    for token in &kept {
        assert_eq!(
            judged(&manager, token).await,
            Ok(()),
            "lost in the failover"
        );
    }
    assert_eq!(judged(&sealed, &kept_sealed).await, Ok(()));
    println!("whole test {:?}", began.elapsed());
}

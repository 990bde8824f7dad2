//! A cluster primary dies: operations on its slots fail as unavailable
//! (never hang, never answer "valid" or "unknown" for a session they cannot
//! see), the rest keeps working, and the same store recovers when the node
//! is back.

mod common;

use std::time::Duration;

use common::{TempCluster, store_with_timeouts};
use tessera_core::{Login, NewSession, SessionError, SessionManager};

const HANG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_fails_closed_and_the_cluster_store_recovers() {
    let mut cluster = TempCluster::start();
    let timeout = Duration::from_millis(500);
    let store = store_with_timeouts(&cluster.url(), "cf:", timeout, timeout).await;
    let manager = SessionManager::builder(store.clone())
        .build()
        .expect("manager");
    let mut issued = Vec::new();
    for _ in 0..30 {
        issued.push(manager.create(NewSession::default()).await.expect("create"));
    }

    cluster.nodes_mut()[1].kill();
    let (mut valid, mut unavailable) = (0, 0);
    for session in &issued {
        let token = session.issued().expect("token").expose();
        let outcome = tokio::time::timeout(HANG, manager.validate(token, None))
            .await
            .expect("validation returned instead of hanging");
        match outcome {
            Ok(_) => valid += 1,
            Err(SessionError::Store(_)) => unavailable += 1,
            Err(other) => panic!("a session the store cannot see must not be judged: {other:?}"),
        }
    }
    assert!(
        unavailable > 0,
        "30 sessions spread over three primaries, none on the dead one?"
    );
    println!("with one primary down: {valid} valid, {unavailable} unavailable");

    // The node comes back on the same port, with its cluster identity (but
    // empty: the test servers keep nothing on disk).
    cluster.nodes_mut()[1].start_server();
    cluster.wait_until_ok();
    let started = std::time::Instant::now();
    loop {
        match manager.create(NewSession::default()).await {
            Ok(fresh)
                if manager
                    .validate(fresh.issued().expect("token").expose(), None)
                    .await
                    .is_ok() =>
            {
                for _ in 0..10 {
                    let created = manager
                        .create(NewSession::default())
                        .await
                        .expect("create on every primary");
                    let valid = manager
                        .validate(created.issued().expect("token").expose(), None)
                        .await
                        .expect("validate on every primary");
                    // Scripts too: the restarted node has none until it
                    // answers NOSCRIPT and is given them again.
                    manager
                        .login(Some(&valid), Login::new("back"))
                        .await
                        .expect("a login (a script) on every primary");
                }
                break;
            }
            _ => {
                assert!(
                    started.elapsed() < HANG,
                    "the cluster store did not recover"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

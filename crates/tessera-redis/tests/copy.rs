//! Copying sessions into and out of Redis (what `tesserad migrate` does):
//! memory → Redis Cluster → standalone Redis, twice, page by page through
//! the Redis store's `SCAN` cursors.

mod common;

use std::sync::Arc;

use common::{TempCluster, TempRedis, fresh_store};
use tessera_core::copy::copy_page;
use tessera_core::store::{SessionStore, SubjectIndex};
use tessera_core::{Clock, Login, MemoryStore, NewSession, SessionManager, SystemClock};

async fn copy_all(from: &dyn SessionStore, to: &dyn SessionStore) -> u64 {
    let (mut cursor, mut created) = (None, 0);
    loop {
        let page = copy_page(from, to, cursor.as_deref(), 7, SystemClock.now())
            .await
            .expect("copy a page");
        created += page.created;
        cursor = page.next;
        if cursor.is_none() {
            return created;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_copy_from_memory_to_a_cluster_and_on_to_a_server() {
    let memory = MemoryStore::new();
    let manager = SessionManager::builder(memory.clone())
        .build()
        .expect("manager");
    let mut tokens = Vec::new();
    for n in 0..40 {
        let mut session = manager.create(NewSession::default()).await.expect("create");
        if n % 4 == 0 {
            session = manager
                .login(Some(&session), Login::new(format!("user-{}", n % 3)))
                .await
                .expect("login");
        }
        let token = session.issued().expect("a token").expose().to_owned();
        tokens.push((session.record().id, token));
    }

    let cluster = TempCluster::start();
    let on_cluster = Arc::new(fresh_store(&cluster.url(), "copyc").await);
    assert_eq!(copy_all(&memory, &*on_cluster).await, 40);
    assert_eq!(
        copy_all(&memory, &*on_cluster).await,
        0,
        "a second run copies nothing"
    );

    let server = TempRedis::start();
    let on_server = Arc::new(fresh_store(&server.url(), "copys").await);
    assert_eq!(copy_all(&*on_cluster, &*on_server).await, 40);

    for store in [
        on_cluster.clone() as Arc<dyn SessionStore>,
        on_server.clone(),
    ] {
        let moved = SessionManager::builder_shared(store.clone())
            .build()
            .expect("manager");
        for (id, token) in &tokens {
            let valid = moved
                .validate(token, None)
                .await
                .expect("a copied token validates");
            assert_eq!(valid.record().id, *id);
        }
        let listed = store
            .list_subject("user-0", None, 100, SystemClock.now())
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 4, "the subject index is copied too");
    }
}

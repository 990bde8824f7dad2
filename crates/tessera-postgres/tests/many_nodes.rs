//! Two nodes (each its own pool and `SessionManager`) on one database see
//! one set of sessions: what one writes, the other reads at once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Schemas;
use serde_json::json;
use tessera_core::{
    DataChange, InvalidReason, Login, ManualClock, NewSession, SessionData, SessionError,
    SessionManager,
};
use tessera_postgres::PostgresStore;

async fn two_nodes(schemas: &Schemas, clock: &ManualClock) -> (SessionManager, SessionManager) {
    let config = schemas.config().max_connections(8);
    let a = PostgresStore::connect_with(config.clone())
        .await
        .expect("node a");
    let b = PostgresStore::connect_with(config).await.expect("node b");
    let manager = |store| {
        SessionManager::builder(store)
            .clock(clock.clone())
            .build()
            .expect("manager")
    };
    (manager(a), manager(b))
}

fn is_invalid(result: &Result<impl std::fmt::Debug, SessionError>) -> bool {
    matches!(result, Err(SessionError::Invalid { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_every_change() {
    let schemas = Schemas::new("nodes");
    let clock = ManualClock::starting_now();
    let (a, b) = two_nodes(&schemas, &clock).await;

    // Created on A, valid on B.
    let issued = a.login(None, Login::new("ann")).await.expect("login on a");
    let token = issued.issued().expect("token").expose().to_owned();
    let on_b = b.validate(&token, None).await.expect("valid on b");
    assert_eq!(on_b.record().id, issued.record().id);

    // Updated on B, seen by A.
    b.update(
        &on_b,
        DataChange::MergePatch(json!({"theme": "dark"})),
        None,
        None,
    )
    .await
    .expect("update on b");
    let on_a = a.validate(&token, None).await.expect("valid on a");
    assert_eq!(
        on_a.record().data.get::<String>("theme").as_deref(),
        Some("dark")
    );

    // Listed on both; revoked on A, refused by B.
    assert_eq!(b.list_subject("ann").await.expect("list").len(), 1);
    a.revoke(&issued.record().id).await.expect("revoke on a");
    assert!(
        is_invalid(&b.validate(&token, None).await),
        "revoked on a, refused by b"
    );

    // Revoke-all on B ends A's sessions once A's epoch cache refreshes.
    let other = a.create(NewSession::default()).await.expect("create on a");
    b.revoke_everything().await.expect("revoke all on b");
    clock.advance(Duration::from_secs(2));
    match a
        .validate(other.issued().expect("token").expose(), None)
        .await
    {
        Err(SessionError::Invalid { reason }) => assert_eq!(reason, InvalidReason::Revoked),
        other => panic!("revoke-all on b must end sessions on a, got {other:?}"),
    }
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_across_two_nodes_lose_no_update() {
    let schemas = Schemas::new("nodesw");
    let clock = ManualClock::starting_now();
    let (a, b) = two_nodes(&schemas, &clock).await;
    let issued = a
        .create(
            NewSession::default()
                .data(SessionData::from_value(&json!({"counter": 0})).expect("data")),
        )
        .await
        .expect("create");
    let token: Arc<str> = issued.issued().expect("token").expose().into();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (m, token) = (
            if w % 2 == 0 { a.clone() } else { b.clone() },
            token.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let current = m.validate(&token, None).await.expect("read");
                let counter: u64 = current.record().data.get("counter").expect("counter");
                let next = SessionData::from_value(&json!({"counter": counter + 1})).expect("data");
                let version = current.record().version;
                match m
                    .update(&current, DataChange::Replace(next), Some(version), None)
                    .await
                {
                    Ok(_) => done += 1,
                    Err(SessionError::VersionConflict { .. }) => {}
                    Err(other) => panic!("update: {other}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let last = b.validate(&token, None).await.expect("final");
    let last = last.record();
    assert_eq!(
        last.data.get::<u64>("counter"),
        Some(160),
        "16 × 10 increments"
    );
    assert_eq!(last.version, 161, "one version per write");
    schemas.drop_all().await;
}

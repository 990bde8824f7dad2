//! The schema: versioned migrations, table prefixes, and records written by
//! older versions that must keep loading.

mod common;

use std::sync::Arc;

use common::{Schemas, admin, base_url};
use tessera_core::{
    Session, SessionData, SessionId, SessionStore, StoreError, StoredEntry, Timestamp, TokenHash,
};
use tessera_postgres::{PostgresConfig, PostgresError, PostgresStore, migrate, migrations};

async fn applied_versions(schema: &str) -> Vec<i32> {
    admin()
        .await
        .query(
            &format!(r#"SELECT version FROM "{schema}".schema_migrations ORDER BY version"#),
            &[],
        )
        .await
        .expect("read migrations")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_once_and_rerunning_is_a_no_op() {
    let schemas = Schemas::new("mig");
    let config = schemas.config();
    let applied = migrate(&config).await.expect("first migration");
    let all: Vec<i32> = migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "a fresh schema gets every migration");
    assert!(
        migrate(&config).await.expect("again").is_empty(),
        "nothing left to apply"
    );
    PostgresStore::connect_with(config.clone())
        .await
        .expect("connect migrates nothing more");
    assert_eq!(applied_versions(config.schema_name()).await, all);
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let schemas = Schemas::new("migc");
    let config = schemas.config().max_connections(2);
    let mut starts = Vec::new();
    for _ in 0..6 {
        let config = config.clone();
        starts.push(tokio::spawn(async move {
            PostgresStore::connect_with(config).await
        }));
    }
    for start in starts {
        start.await.expect("task").expect("every node starts");
    }
    assert_eq!(
        applied_versions(config.schema_name()).await,
        vec![migrations::latest_version()]
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_release_is_refused() {
    let schemas = Schemas::new("mign");
    let config = schemas.config();
    migrate(&config).await.expect("migrate");
    admin()
        .await
        .execute(
            &format!(
                r#"INSERT INTO "{}".schema_migrations (version, name) VALUES (999, 'future')"#,
                config.schema_name()
            ),
            &[],
        )
        .await
        .expect("pretend a newer release migrated");
    match PostgresStore::connect_with(config).await {
        Err(PostgresError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrations_an_unmigrated_schema_is_refused() {
    let schemas = Schemas::new("migo");
    match PostgresStore::connect_with(schemas.config().run_migrations(false)).await {
        Err(PostgresError::SchemaTooOld { found: 0, .. }) => {}
        other => panic!("expected SchemaTooOld, got {other:?}"),
    }
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_prefixes_keep_deployments_in_one_schema_apart() {
    let schemas = Schemas::new("pfx");
    let schema = schemas.name();
    let config = PostgresConfig::from_url(&base_url())
        .expect("url")
        .schema(&schema);
    let blue = PostgresStore::connect_with(config.clone().table_prefix("blue_"))
        .await
        .expect("blue");
    let green = PostgresStore::connect_with(config.table_prefix("green_"))
        .await
        .expect("green");
    let now = Timestamp(1_000_000);
    let key = TokenHash([7; 32]);
    let session = sample(now);
    blue.create(&key, &session).await.expect("create in blue");
    assert!(blue.load(&key, now).await.expect("blue").is_some());
    assert!(green.load(&key, now).await.expect("green").is_none());
    blue.bump_global_epoch().await.expect("bump");
    assert_eq!(blue.global_epoch().await.expect("blue epoch"), 1);
    assert_eq!(green.global_epoch().await.expect("green epoch"), 0);
    let tables: i64 = admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 8, "four tables per prefix");
    schemas.drop_all().await;
}

fn sample(now: Timestamp) -> Session {
    Session {
        id: SessionId([1; 16]),
        subject: Some("alice".into()),
        auth_level: 1,
        authenticated_at: Some(now),
        data: SessionData::from_json(r#"{"n":1}"#).expect("data"),
        created_at: now,
        last_seen_at: now,
        token_issued_at: now,
        idle_timeout_ms: 60_000,
        absolute_expires_at: Timestamp(now.0 + 3_600_000),
        version: 1,
        epoch: 0,
        client: None,
        binding: None,
    }
}

/// Inserts a live row by hand, as an older release would have written it.
async fn insert_raw(schema: &str, key: &TokenHash, id: &SessionId, record: &[u8]) {
    admin()
        .await
        .execute(
            &format!(
                r#"INSERT INTO "{schema}".sessions (token_hash, session_id, live, subject, version,
                   last_seen_at, idle_timeout_ms, absolute_expires_at, forget_at, record)
                   VALUES ($1, $2, true, 'alice', 4, 2, 1000, 10000, 301002, $3)"#
            ),
            &[&&key.0[..], &&id.0[..], &record],
        )
        .await
        .expect("insert a raw row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_record_written_by_hand_still_loads() {
    let schemas = Schemas::new("old");
    let store = schemas.fresh_store().await;
    let key = TokenHash([3; 32]);
    let id = SessionId([1; 16]);
    let record = br#"{"v":1,"session":{"id":"AQEBAQEBAQEBAQEBAQEBAQ","subject":"alice","auth_level":1,"authenticated_at":5,"data":{"n":1},"created_at":1,"last_seen_at":2,"token_issued_at":3,"idle_timeout_ms":1000,"absolute_expires_at":10000,"version":4,"epoch":0}}"#;
    insert_raw(store.schema(), &key, &id, record).await;
    let now = Timestamp(100);
    let Some(StoredEntry::Live(session)) = store.load(&key, now).await.expect("load") else {
        panic!("the old record must load as a live session");
    };
    assert_eq!(session.id, id);
    assert_eq!(session.subject.as_deref(), Some("alice"));
    assert_eq!(session.version, 4);
    assert_eq!(session.data.get::<u64>("n"), Some(1));
    let (found, by_id) = store
        .load_by_id(&id, now)
        .await
        .expect("by id")
        .expect("found by id");
    assert_eq!((found, Arc::clone(&by_id)), (key, session.clone()));
    assert_eq!(
        store
            .list_by_subject("alice", now)
            .await
            .expect("list")
            .len(),
        1
    );
    // It can be written in the current format and read back.
    let mut next = Session::clone(&session);
    next.version = 5;
    assert_eq!(
        store.update(&key, &next, 4, now).await.expect("update"),
        tessera_core::WriteOutcome::Written
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_a_newer_format_is_reported_not_misread() {
    let schemas = Schemas::new("fut");
    let store = schemas.fresh_store().await;
    let key = TokenHash([4; 32]);
    insert_raw(store.schema(), &key, &SessionId([2; 16]), br#"{"v":99}"#).await;
    match store.load(&key, Timestamp(100)).await {
        Err(StoreError::Corrupt { message }) => assert!(message.contains("99"), "{message}"),
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    schemas.drop_all().await;
}

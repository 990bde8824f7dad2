//! The schema: versioned migrations, table prefixes, and tables whose
//! shape or contents this build does not expect (reported, never a panic).

mod common;

use common::{Schemas, admin, admin_execute, config_at, now, sample_record};
use tessera_core::forget_at;
use tessera_core::store::{Epochs, Maintenance, Records, StoreError, SubjectIndex};
use tessera_postgres::{PostgresError, PostgresStore, migrate, migrations};

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

fn all_versions() -> Vec<i32> {
    migrations::MIGRATIONS.iter().map(|m| m.version).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_once_and_rerunning_is_a_no_op() {
    let schemas = Schemas::new("mig");
    let config = schemas.config();
    let applied = migrate(&config).await.expect("first migration");
    assert_eq!(
        applied,
        all_versions(),
        "a fresh schema gets every migration"
    );
    assert!(
        migrate(&config).await.expect("again").is_empty(),
        "nothing left to apply"
    );
    PostgresStore::connect_with(config.clone())
        .await
        .expect("connect migrates nothing more");
    assert_eq!(applied_versions(config.schema_name()).await, all_versions());
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let schemas = Schemas::new("migc");
    let config = schemas.config().max_connections(2);
    let mut starts = Vec::new();
    for _ in 0..6 {
        let config = config.clone();
        starts.push(tokio::spawn(async move { migrate(&config).await }));
    }
    let mut applied = Vec::new();
    for start in starts {
        applied.push(start.await.expect("task").expect("every node starts"));
    }
    let migrated: Vec<&Vec<i32>> = applied.iter().filter(|a| !a.is_empty()).collect();
    assert_eq!(migrated, vec![&all_versions()], "one node migrated, once");
    assert_eq!(applied_versions(config.schema_name()).await, all_versions());
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_release_is_refused() {
    let schemas = Schemas::new("mign");
    let config = schemas.config();
    migrate(&config).await.expect("migrate");
    admin_execute(
        &format!(
            r#"INSERT INTO "{}".schema_migrations (version, name) VALUES (999, 'future')"#,
            config.schema_name()
        ),
        "pretend a newer release migrated",
    )
    .await;
    match PostgresStore::connect_with(config.clone()).await {
        Err(error @ PostgresError::SchemaTooNew { found: 999, .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("999") && message.contains("upgrade Tessera"),
                "the error says what to do: {message}"
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let refused = PostgresStore::connect_with(config.run_migrations(false)).await;
    assert!(
        matches!(refused, Err(PostgresError::SchemaTooNew { found: 999, .. })),
        "expected SchemaTooNew without migrations too, got {refused:?}"
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrations_an_unmigrated_schema_is_refused() {
    let schemas = Schemas::new("migo");
    let refused = PostgresStore::connect_with(schemas.config().run_migrations(false)).await;
    schemas.drop_all().await;
    assert!(
        matches!(refused, Err(PostgresError::SchemaTooOld { found: 0, .. })),
        "expected SchemaTooOld, got {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_prefixes_keep_deployments_in_one_schema_apart() {
    let schemas = Schemas::new("pfx");
    let schema = schemas.name();
    let config = config_at(&schema);
    let blue = PostgresStore::connect_with(config.clone().table_prefix("blue_"))
        .await
        .expect("blue");
    let green = PostgresStore::connect_with(config.table_prefix("green_"))
        .await
        .expect("green");
    let record = sample_record(&blue, Some("alice"));
    blue.create(&record, forget_at(&record))
        .await
        .expect("create in blue");
    assert!(blue.load(&record.id, now()).await.expect("blue").is_some());
    assert!(
        green
            .load(&record.id, now())
            .await
            .expect("green")
            .is_none()
    );
    let green_epoch = green.global_epoch().await.expect("green epoch");
    let bumped = blue.bump_global_epoch().await.expect("bump");
    assert_eq!(blue.global_epoch().await.expect("blue epoch"), bumped);
    assert_eq!(
        green.global_epoch().await.expect("green epoch"),
        green_epoch,
        "green's epoch did not move with blue's"
    );
    // A schema made from nothing starts its global epoch at the current
    // time: above anything a lost schema in its place handed out.
    let now_ms = u64::try_from(now().as_millis()).expect("after 1970");
    assert!(
        green_epoch + 60_000 > now_ms && green_epoch <= now_ms + 60_000,
        "{green_epoch} is not about {now_ms}"
    );
    let tables: Vec<String> = admin()
        .await
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut expected = Vec::new();
    for prefix in ["blue_", "green_"] {
        for table in [
            "attachments",
            "global_epoch",
            "journal",
            "legacy_tokens",
            "records",
            "schema_migrations",
            "subject_epochs",
        ] {
            expected.push(format!("{prefix}{table}"));
        }
    }
    assert_eq!(
        tables, expected,
        "seven tables per prefix, the old one gone"
    );
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_prefix_still_fits_every_name() {
    let schemas = Schemas::new("pfxl");
    let prefix = "p".repeat(tessera_postgres::MAX_TABLE_PREFIX_LEN);
    let store = PostgresStore::connect_with(schemas.config().table_prefix(&prefix))
        .await
        .expect("a store with the longest prefix");
    let indexes: Vec<String> = admin()
        .await
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1",
            &[&store.schema()],
        )
        .await
        .expect("list indexes")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for name in [
        "records_subject",
        "records_forget_at",
        "legacy_tokens_forget_at",
    ] {
        let full = format!("{prefix}{name}");
        assert!(indexes.contains(&full), "{full} is not cut: {indexes:?}");
    }
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_an_unknown_format_is_reported_not_misread() {
    let schemas = Schemas::new("fut");
    let store = schemas.fresh_store().await;
    let record = sample_record(&store, Some("alice"));
    store
        .create(&record, forget_at(&record))
        .await
        .expect("create");
    let sql = format!(
        r#"UPDATE "{}".records SET record = overlay(record placing '\x63'::bytea from 1 for 1)"#,
        store.schema()
    );
    admin_execute(&sql, "pretend a newer release wrote format 99").await;
    match store.load(&record.id, now()).await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    match store.list_subject("alice", None, 10, now()).await {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("expected a corrupt-record error from a listing, got {other:?}"),
    }
    schemas.drop_all().await;
}

/// A table changed by hand (a column of another type) makes the operations
/// that read it fail with an error naming the column; none panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_of_an_unexpected_type_is_an_error_not_a_panic() {
    let schemas = Schemas::new("drift");
    let config = schemas.config();
    let store = PostgresStore::connect_with(config.clone())
        .await
        .expect("store");
    let record = sample_record(&store, Some("alice"));
    store
        .create(&record, forget_at(&record))
        .await
        .expect("create");
    let schema = store.schema().to_owned();
    admin()
        .await
        .batch_execute(&format!(
            r#"ALTER TABLE "{schema}".records ALTER COLUMN record TYPE text USING encode(record, 'hex');
               ALTER TABLE "{schema}".global_epoch ALTER COLUMN epoch TYPE numeric;"#
        ))
        .await
        .expect("alter the tables by hand");
    // A new pool: statements prepared before the change would fail anyway.
    let drifted = PostgresStore::connect_with(config).await.expect("store");
    let corrupt = |what: &str, result: Result<String, StoreError>| match result {
        Err(StoreError::Corrupt { message }) => assert!(
            message.contains("changed by hand"),
            "{what}: the error says what is wrong: {message}"
        ),
        other => panic!("{what}: expected a corrupt-table error, got {other:?}"),
    };
    let at = now();
    corrupt(
        "global epoch",
        drifted.global_epoch().await.map(|e| e.to_string()),
    );
    corrupt(
        "load",
        drifted.load(&record.id, at).await.map(|r| format!("{r:?}")),
    );
    corrupt(
        "export",
        drifted
            .export_page(None, 10, at)
            .await
            .map(|p| format!("{p:?}")),
    );
    corrupt(
        "list",
        drifted
            .list_subject("alice", None, 10, at)
            .await
            .map(|p| format!("{p:?}")),
    );
    schemas.drop_all().await;
}

/// The global epoch row emptied by hand comes back at the current time,
/// not at 0: sealed sessions revoked before stay revoked. An existing
/// epoch is never lowered, whatever the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_global_epoch_comes_back_at_the_current_time() {
    let schemas = Schemas::new("epoch");
    let store = PostgresStore::connect_with(schemas.config())
        .await
        .expect("store");
    assert_eq!(
        store.durability(),
        tessera_core::store::Durability::Persistent
    );
    let far = u64::try_from(now().as_millis()).expect("after 1970") + 86_400_000;
    assert_eq!(store.raise_global_epoch(far).await.expect("raise"), far);
    assert_eq!(
        store.global_epoch().await.expect("epoch"),
        far,
        "an epoch ahead of the clock stays where it is"
    );
    let schema = store.schema().to_owned();
    admin()
        .await
        .batch_execute(&format!(r#"DELETE FROM "{schema}".global_epoch"#))
        .await
        .expect("empty the table by hand");
    let before = u64::try_from(now().as_millis()).expect("after 1970");
    let back = store.global_epoch().await.expect("epoch");
    assert!(back >= before && back < far, "{back} is about {before}");
    assert_eq!(store.bump_global_epoch().await.expect("bump"), back + 1);
    schemas.drop_all().await;
}

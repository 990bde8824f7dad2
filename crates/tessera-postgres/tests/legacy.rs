//! Sessions of the layout before migration 2, written here as that release
//! wrote them (its migration's SQL, its JSON rows, its tombstones): the
//! migration converts them once, under the advisory lock, and they keep
//! working through a `SessionManager` until they expire.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Schemas, admin, admin_at, base_url, config_at, count_rows};
use serde_json::json;
use tessera_core::store::{Maintenance, Records};
use tessera_core::{
    ClientInfo, Clock, EXPIRED_RETENTION, InvalidReason, ManualClock, SessionError, SessionId,
    SessionManager, SessionToken, Timestamp,
};
use tessera_postgres::{PostgresStore, migrate};

const MIGRATION_1: &str = include_str!("../migrations/0001_sessions.sql");

/// A schema at migration 1, made as the release before did: its
/// bookkeeping table, its one migration, recorded.
async fn old_layout(schema: &str, prefix: &str) {
    let sql = format!(
        r#"CREATE SCHEMA IF NOT EXISTS "{schema}";
           CREATE TABLE "{schema}"."{prefix}schema_migrations" (
               version    integer     PRIMARY KEY,
               name       text        NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now()
           );
           INSERT INTO "{schema}"."{prefix}schema_migrations" (version, name) VALUES (1, 'sessions');
           {}"#,
        MIGRATION_1
            .replace("{schema}", schema)
            .replace("{prefix}", prefix)
    );
    admin()
        .await
        .batch_execute(&sql)
        .await
        .expect("migration 1");
}

/// A session as the previous release kept it.
struct OldSession {
    token: SessionToken,
    id: SessionId,
    subject: Option<String>,
    created_at: i64,
    /// `last_seen_at` inside the JSON.
    last_seen_at: i64,
    /// The `last_seen_at` column, which that release's touch moved alone.
    last_seen_column: i64,
    idle_timeout_ms: i64,
    absolute_expires_at: i64,
    version: i64,
    data: serde_json::Value,
    client: Option<serde_json::Value>,
}

impl OldSession {
    fn new(n: u64, subject: Option<&str>, now: Timestamp) -> Self {
        let mut secret = [0x5a; 32];
        secret[..8].copy_from_slice(&n.to_be_bytes());
        let mut id = [0xab; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        let t = now.as_millis();
        Self {
            token: SessionToken::legacy_from_secret(secret),
            id: SessionId(id),
            subject: subject.map(str::to_owned),
            created_at: t - 600_000,
            last_seen_at: t - 120_000,
            last_seen_column: t - 60_000,
            idle_timeout_ms: 30 * 60_000,
            absolute_expires_at: t + 11 * 3_600_000,
            version: 3,
            data: json!({"n": n, "__tessera_csrf": "c3JmLXNlY3JldA"}),
            client: None,
        }
    }

    /// The deadline that release stored: the end of the session plus the
    /// retention, from the `last_seen_at` column.
    fn forget_at(&self) -> i64 {
        let retention = i64::try_from(EXPIRED_RETENTION.as_millis()).expect("fits");
        (self.last_seen_column + self.idle_timeout_ms).min(self.absolute_expires_at) + retention
    }

    fn json(&self) -> Vec<u8> {
        let mut session = json!({
            "id": self.id.to_string(),
            "subject": self.subject,
            "auth_level": if self.subject.is_some() { 1 } else { 0 },
            "authenticated_at": self.subject.as_ref().map(|_| self.created_at),
            "data": self.data,
            "created_at": self.created_at,
            "last_seen_at": self.last_seen_at,
            "token_issued_at": self.created_at,
            "idle_timeout_ms": self.idle_timeout_ms,
            "absolute_expires_at": self.absolute_expires_at,
            "version": self.version,
            "epoch": 0,
        });
        if let Some(client) = &self.client {
            session["client"] = client.clone();
        }
        serde_json::to_vec(&json!({"v": 1, "session": session})).expect("json")
    }
}

/// Writes live rows as the previous release's `create` did, in one statement.
async fn insert_old(schema: &str, prefix: &str, sessions: &[OldSession]) {
    let keys: Vec<Vec<u8>> = sessions.iter().map(|s| s.token.hash().0.to_vec()).collect();
    let ids: Vec<Vec<u8>> = sessions.iter().map(|s| s.id.0.to_vec()).collect();
    let subjects: Vec<Option<String>> = sessions.iter().map(|s| s.subject.clone()).collect();
    let versions: Vec<i64> = sessions.iter().map(|s| s.version).collect();
    let seen: Vec<i64> = sessions.iter().map(|s| s.last_seen_column).collect();
    let idle: Vec<i64> = sessions.iter().map(|s| s.idle_timeout_ms).collect();
    let absolute: Vec<i64> = sessions.iter().map(|s| s.absolute_expires_at).collect();
    let forget: Vec<i64> = sessions.iter().map(OldSession::forget_at).collect();
    let records: Vec<Vec<u8>> = sessions.iter().map(OldSession::json).collect();
    insert_old_rows(
        schema,
        prefix,
        r#"SELECT k, i, true, s, v, l, d, a, f, r
           FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bigint[], $5::bigint[],
                       $6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[])
                AS t(k, i, s, v, l, d, a, f, r)"#,
        &[
            &keys, &ids, &subjects, &versions, &seen, &idle, &absolute, &forget, &records,
        ],
    )
    .await
    .expect("insert rows of the previous layout");
}

/// Inserts rows into the previous layout's sessions table: `rows` is
/// what follows the column list (a `VALUES` or a `SELECT`).
async fn insert_old_rows(
    schema: &str,
    prefix: &str,
    rows: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let sql = format!(
        r#"INSERT INTO "{schema}"."{prefix}sessions"
           (token_hash, session_id, live, subject, version, last_seen_at,
            idle_timeout_ms, absolute_expires_at, forget_at, record)
           {rows}"#
    );
    admin().await.execute(&sql, params).await
}

/// A tombstone row as the previous release's `rotate` left it.
async fn insert_tombstone(schema: &str, prefix: &str, key: &[u8], of: &OldSession) {
    let record = json!({"v": 1, "tombstone": {
        "session_id": of.id.to_string(),
        "successor": of.token.hash().to_hex(),
        "grace_until": null,
        "forget_at": of.absolute_expires_at,
    }});
    insert_old_rows(
        schema,
        prefix,
        "VALUES ($1, $2, false, NULL, 0, 0, 0, 0, $3, $4)",
        &[
            &key,
            &&of.id.0[..],
            &of.absolute_expires_at,
            &serde_json::to_vec(&record).expect("json"),
        ],
    )
    .await
    .expect("insert a tombstone");
}

async fn table_exists(schema: &str, table: &str) -> bool {
    admin()
        .await
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!(r#""{schema}".{table}"#)],
        )
        .await
        .expect("look for a table")
        .get(0)
}

fn invalid(result: Result<impl std::fmt::Debug, SessionError>) -> InvalidReason {
    match result {
        Err(SessionError::Invalid { reason }) => reason,
        other => panic!("expected an invalid session, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_the_previous_layout_keep_working_after_the_conversion() {
    let schemas = Schemas::new("legacy");
    let schema = schemas.name();
    let prefix = "web_";
    old_layout(&schema, prefix).await;
    let clock = ManualClock::starting_now();
    let t = clock.now();
    let mut alice = OldSession::new(1, Some("alice"), t);
    alice.data = json!({"cart": [1, 2], "__tessera_csrf": "c3JmLXNlY3JldA"});
    alice.client = Some(json!({"ip": "203.0.113.9", "user_agent": "Firefox/140"}));
    let alice_too = OldSession::new(2, Some("alice"), t);
    let bob = OldSession::new(3, Some("bob"), t);
    let anonymous = OldSession::new(4, None, t);
    let mut expired = OldSession::new(5, Some("alice"), t);
    expired.last_seen_column = t.as_millis() - 3 * 3_600_000;
    let old = [alice, alice_too, bob, anonymous, expired];
    insert_old(&schema, prefix, &old).await;
    let [alice, alice_too, bob, anonymous, expired] = &old;
    // A token the previous release had rotated away, and a row no release reads.
    let rotated_away = SessionToken::legacy_from_secret([0x77; 32]).hash();
    insert_tombstone(&schema, prefix, &rotated_away.0, alice).await;
    let mut unreadable = OldSession::new(6, Some("alice"), t);
    unreadable.version = -1;
    insert_old(&schema, prefix, std::slice::from_ref(&unreadable)).await;

    let config = config_at(&schema).table_prefix(prefix);
    assert_eq!(migrate(&config).await.expect("migrate"), vec![2, 3]);
    assert!(
        !table_exists(&schema, "web_sessions").await,
        "the old table is gone"
    );
    assert_eq!(
        count_rows(&schema, "web_records").await,
        5,
        "every live row, once"
    );
    assert_eq!(
        count_rows(&schema, "web_legacy_tokens").await,
        5,
        "one pointer each"
    );

    let store = PostgresStore::connect_with(config).await.expect("store");
    let converted = store
        .load(&alice.id, t)
        .await
        .expect("load")
        .expect("converted");
    assert_eq!(converted.subject.as_deref(), Some("alice"));
    assert_eq!(converted.version, 3);
    assert_eq!(
        converted.last_seen_at,
        Timestamp(alice.last_seen_column),
        "the column touch moved is kept"
    );
    assert_eq!(converted.data.as_json(), r#"{"cart":[1,2]}"#);
    assert_eq!(
        converted.client.as_deref(),
        Some(&ClientInfo::new(
            Some("203.0.113.9".parse().expect("ip")),
            Some("Firefox/140")
        ))
    );
    for key in [rotated_away, unreadable.token.hash(), expired.token.hash()] {
        assert_eq!(store.find_legacy(&key, t).await.expect("find"), None);
    }

    let manager = SessionManager::builder(store.clone())
        .clock(clock.clone())
        .build()
        .expect("manager");
    // An old token validates once more and is replaced by a new one.
    let valid = manager
        .validate(alice.token.expose(), None)
        .await
        .expect("an old token validates");
    assert_eq!(valid.record().id, alice.id);
    let new = valid
        .issued()
        .expect("the old token is replaced at its first use")
        .expose()
        .to_owned();
    assert_ne!(new, alice.token.expose());
    let renewed = manager.validate(&new, None).await.expect("the new token");
    assert_eq!(renewed.record().id, alice.id);
    assert_eq!(
        renewed.record().data.get::<Vec<u64>>("cart"),
        Some(vec![1, 2])
    );
    assert_eq!(
        invalid(manager.validate(expired.token.expose(), None).await),
        InvalidReason::Unknown,
        "an expired old session stays gone"
    );

    // Listed and revoked by subject, by id and globally.
    let listed: BTreeSet<SessionId> = manager
        .list_subject("alice")
        .await
        .expect("list")
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, BTreeSet::from([alice.id, alice_too.id]));
    assert_eq!(
        manager.revoke_subject("alice", None).await.expect("revoke"),
        2
    );
    assert!(
        manager
            .validate(alice_too.token.expose(), None)
            .await
            .is_err()
    );
    assert!(manager.validate(&new, None).await.is_err());
    manager
        .validate(bob.token.expose(), None)
        .await
        .expect("bob's old token, before his revocation");
    assert!(manager.revoke(&bob.id).await.expect("revoke bob"));
    manager
        .revoke_everything()
        .await
        .expect("revoke everything");
    assert_eq!(
        invalid(manager.validate(anonymous.token.expose(), None).await),
        InvalidReason::Revoked
    );

    // Pointers expire with their sessions.
    let much_later = t.plus(Duration::from_secs(2 * 24 * 3600));
    store.sweep_expired(much_later).await.expect("sweep");
    assert_eq!(count_rows(&schema, "web_legacy_tokens").await, 0);
    assert_eq!(count_rows(&schema, "web_records").await, 0);
    schemas.drop_all().await;
}

/// The advisory-lock key of a schema's migrations, as `pg_locks` shows it.
const WAITING_FOR_MIGRATION: &str = r#"
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)"#;

/// The migration waiting to drop the old table.
const WAITING_TO_DROP: &str = r#"
SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE NOT l.granted AND c.relname = 'sessions' AND c.relnamespace = ($1::text)::regnamespace"#;

async fn wait_for(client: &tokio_postgres::Client, sql: &str, arg: &str, what: &str) {
    for _ in 0..6000 {
        let waiting: i64 = client
            .query_one(sql, &[&arg])
            .await
            .expect("pg_locks")
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starting_during_the_conversion_waits_and_finds_nothing_left() {
    let schemas = Schemas::new("legwait");
    let schema = schemas.name();
    old_layout(&schema, "").await;
    let clock = ManualClock::starting_now();
    let t = clock.now();
    let old: Vec<OldSession> = (0..3000)
        .map(|n| OldSession::new(n, (n % 3 == 0).then_some("many"), t))
        .collect();
    insert_old(&schema, "", &old).await;
    let config = config_at(&schema);

    // The test holds the old table open, so the first node converts
    // everything and then waits to drop it, still holding the migration lock.
    let mut holder = admin_at(&base_url()).await;
    let hold = holder.transaction().await.expect("begin");
    hold.batch_execute(&format!(
        r#"LOCK TABLE "{schema}".sessions IN ACCESS SHARE MODE"#
    ))
    .await
    .expect("lock the old table");
    let first = tokio::spawn({
        let config = config.clone();
        async move { migrate(&config).await }
    });
    let watcher = admin().await;
    wait_for(
        &watcher,
        WAITING_TO_DROP,
        &schema,
        "the first node's conversion",
    )
    .await;
    let second = tokio::spawn({
        let config = config.clone();
        async move {
            let applied = migrate(&config).await?;
            Ok::<_, tessera_postgres::PostgresError>((
                applied,
                PostgresStore::connect_with(config).await?,
            ))
        }
    });
    let key = format!("tessera-migrate:{schema}");
    wait_for(
        &watcher,
        WAITING_FOR_MIGRATION,
        &key,
        "the second node waiting",
    )
    .await;
    assert!(!second.is_finished(), "the second node waits for the first");
    assert!(
        !table_exists(&schema, "records").await,
        "nothing of the conversion is visible before it commits"
    );
    hold.commit().await.expect("let go of the old table");

    assert_eq!(first.await.expect("task").expect("first node"), vec![2, 3]);
    let (applied, store) = second.await.expect("task").expect("second node");
    assert!(
        applied.is_empty(),
        "the second node found nothing left to do"
    );
    assert_eq!(count_rows(&schema, "records").await, 3000);
    assert_eq!(count_rows(&schema, "legacy_tokens").await, 3000);
    assert!(!table_exists(&schema, "sessions").await);

    let manager = SessionManager::builder(store)
        .clock(clock)
        .build()
        .expect("manager");
    let some = &old[1234];
    let valid = manager
        .validate(some.token.expose(), None)
        .await
        .expect("an old token on the second node");
    assert_eq!(valid.record().id, some.id);
    assert_eq!(
        manager.list_subject("many").await.expect("list").len(),
        1000
    );
    schemas.drop_all().await;
}

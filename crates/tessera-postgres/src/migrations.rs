//! The embedded, versioned schema migrations and the runner that applies them.
//!
//! Each migration is SQL with `{schema}` and `{prefix}` placeholders (and,
//! for migration 2, a conversion of the rows of the layout before it, done
//! in Rust), applied once, in version order, in one transaction per run,
//! and recorded in `{schema}.{prefix}schema_migrations`. A
//! transaction-scoped advisory lock per schema lets several nodes start at
//! once: one migrates, the others wait and then find nothing left to do.

use std::time::Duration;

use tokio_postgres::GenericClient;

use crate::error::{PostgresError, store_error};
use crate::legacy;

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version; applied in increasing order.
    pub version: i32,
    /// A short name for logs and the migrations table.
    pub name: &'static str,
    /// The SQL, with `{schema}` and `{prefix}` placeholders.
    sql: &'static str,
    /// What runs after the SQL, in the same transaction.
    then: Then,
}

/// A step of a migration that SQL alone does not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Nothing.
    Nothing,
    /// Converts the sessions of the layout of migration 1 into records and
    /// drops its table (`src/legacy.rs`).
    ConvertLegacySessions,
}

/// Every migration this build knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sessions",
        sql: include_str!("../migrations/0001_sessions.sql"),
        then: Then::Nothing,
    },
    Migration {
        version: 2,
        name: "records",
        sql: include_str!("../migrations/0002_records.sql"),
        then: Then::ConvertLegacySessions,
    },
    Migration {
        version: 3,
        name: "attachments_journal",
        sql: include_str!("../migrations/0003_attachments_journal.sql"),
        then: Then::Nothing,
    },
];

/// The newest migration this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Fills the placeholders. Both names were checked to be plain identifiers,
/// so they cannot break out of the quotes they stand in.
pub(crate) fn render(sql: &str, schema: &str, prefix: &str) -> String {
    sql.replace("{schema}", schema).replace("{prefix}", prefix)
}

/// Applies every pending migration; returns the versions applied. Its
/// statements may take up to `timeout` each: waiting for another node's
/// run, or converting many sessions, takes longer than one operation.
pub(crate) async fn apply(
    client: &mut tokio_postgres::Client,
    schema: &str,
    prefix: &str,
    timeout: Duration,
) -> Result<Vec<i32>, PostgresError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| store_error("begin migration", e))?;
    // PostgreSQL takes at most i32::MAX milliseconds (about 24 days).
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128);
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout_ms}"))
        .await
        .map_err(|e| store_error("set the migration's statement timeout", e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("tessera-migrate:{schema}")],
    )
    .await
    .map_err(|e| store_error("lock for migration", e))?;
    let bookkeeping = render(
        r#"CREATE SCHEMA IF NOT EXISTS "{schema}";
           CREATE TABLE IF NOT EXISTS "{schema}"."{prefix}schema_migrations" (
               version    integer     PRIMARY KEY,
               name       text        NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now()
           );"#,
        schema,
        prefix,
    );
    tx.batch_execute(&bookkeeping)
        .await
        .map_err(|e| store_error("create the migrations table", e))?;
    let current = current_version(&tx, schema, prefix).await?;
    let known = latest_version();
    if current > known {
        return Err(PostgresError::SchemaTooNew {
            schema: schema.to_owned(),
            found: current,
            known,
        });
    }
    let record = render(
        r#"INSERT INTO "{schema}"."{prefix}schema_migrations" (version, name) VALUES ($1, $2)"#,
        schema,
        prefix,
    );
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |source| PostgresError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        tx.batch_execute(&render(migration.sql, schema, prefix))
            .await
            .map_err(failed)?;
        if migration.then == Then::ConvertLegacySessions {
            legacy::convert(&tx, schema, prefix).await.map_err(failed)?;
        }
        tx.execute(&record, &[&migration.version, &migration.name])
            .await
            .map_err(failed)?;
        tracing::info!(
            schema,
            prefix,
            version = migration.version,
            name = migration.name,
            "applied PostgreSQL migration"
        );
        applied.push(migration.version);
    }
    if current == 0 && !applied.is_empty() {
        // A schema made from nothing (new, or made again after it was
        // lost): its global epoch starts at the current time, above every
        // epoch an earlier schema in its place handed out, so that sealed
        // sessions revoked there stay revoked (`tessera_core::store::Epochs`).
        let start = render(
            r#"UPDATE "{schema}"."{prefix}global_epoch" SET epoch = GREATEST(epoch, $1)"#,
            schema,
            prefix,
        );
        tx.execute(&start, &[&crate::maintenance::epoch_now()])
            .await
            .map_err(|e| store_error("start the global epoch", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| store_error("commit migration", e))?;
    Ok(applied)
}

/// The newest migration applied to a schema (0 when none is).
pub(crate) async fn current_version(
    client: &impl GenericClient,
    schema: &str,
    prefix: &str,
) -> Result<i32, PostgresError> {
    let table = format!(r#""{schema}"."{prefix}schema_migrations""#);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| store_error("look for the migrations table", e))?;
    if !exists {
        return Ok(0);
    }
    client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            &[],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| store_error("read the schema version", e).into())
}

/// Fails unless the schema is exactly at this build's version.
pub(crate) async fn check(
    client: &impl GenericClient,
    schema: &str,
    prefix: &str,
) -> Result<(), PostgresError> {
    let found = current_version(client, schema, prefix).await?;
    let known = latest_version();
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(PostgresError::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            known,
        }),
        std::cmp::Ordering::Less => Err(PostgresError::SchemaTooOld {
            schema: schema.to_owned(),
            found,
            known,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_strictly_increasing_order() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS.first().map(|m| m.version), Some(1));
        assert_eq!(latest_version(), 3);
    }

    #[test]
    fn every_name_in_the_sql_is_placed_in_the_schema_and_prefixed() {
        for migration in MIGRATIONS {
            let sql = render(migration.sql, "s", "p_");
            assert!(
                !sql.contains("{schema}") && !sql.contains("{prefix}"),
                "unfilled placeholder"
            );
            for line in sql.lines().filter(|l| !l.trim_start().starts_with("--")) {
                let upper = line.to_ascii_uppercase();
                if upper.contains("CREATE TABLE") || upper.contains(" ON ") {
                    assert!(line.contains(r#""s"."p_"#), "unqualified name: {line}");
                }
            }
        }
    }
}

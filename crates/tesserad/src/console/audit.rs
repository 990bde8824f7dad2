//! The console's audit trail: every action is appended to the store's
//! journal (the `Journal` part of the store contract,
//! `crates/tessera-core/src/store/extra.rs`), shared by every node on the
//! store, and emitted as an `admin_action` lifecycle event.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera::events::{EventSink, SessionEvent};
use tessera::store::{JournalEntry, Page, StoreError};
use tessera::{SessionManager, Timestamp};

/// How long an audit entry is kept.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// One console action, as kept in the journal (`{"v":1,…}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The format version.
    pub v: u32,
    /// The public id of the API key that signed in.
    pub key_id: String,
    /// What was done, for people.
    pub action: String,
    /// The client address it came from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// An entry read back: when, and what.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// The action; `None` for an entry this version cannot read.
    pub record: Option<AuditRecord>,
}

/// Keeps `action` by `key_id` in the journal and emits it as an event.
/// The event goes out even when the store fails (the caller then reports
/// the failure).
pub async fn record(
    manager: &SessionManager,
    events: &dyn EventSink,
    key_id: &str,
    action: String,
    ip: Option<String>,
) -> Result<(), StoreError> {
    events.emit(&SessionEvent::AdminAction {
        actor: format!("api key {key_id}"),
        action: action.clone(),
    });
    let record = AuditRecord {
        v: 1,
        key_id: key_id.to_owned(),
        action,
        ip,
    };
    let value = serde_json::to_vec(&record)
        .map_err(|e| StoreError::invalid(format!("cannot encode an audit entry: {e}")))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::invalid(e.to_string()))?;
    let now = manager.now();
    let retention = i64::try_from(AUDIT_RETENTION.as_millis()).unwrap_or(i64::MAX);
    manager
        .store()
        .append_journal(
            &JournalEntry {
                at: now,
                nonce,
                value,
            },
            Timestamp(now.0.saturating_add(retention)),
        )
        .await
}

/// A page of the audit trail, newest first.
pub async fn page(
    manager: &SessionManager,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<AuditEntry>, StoreError> {
    let page = manager
        .store()
        .journal_page(cursor, limit, manager.now())
        .await?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|entry| AuditEntry {
                at: entry.at,
                record: serde_json::from_slice(&entry.value).ok(),
            })
            .collect(),
        next: page.next,
    })
}

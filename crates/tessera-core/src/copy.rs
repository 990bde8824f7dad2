//! Copying every live session from one store to another (`tesserad
//! migrate`), page by page, so that a copy can stop anywhere and resume.
//!
//! A copy keeps what makes a session what it is: its key (the hash of the
//! token users hold, so their cookies keep working), its id, subject,
//! version, data and every deadline. It raises the destination's global
//! revocation epoch, and the epoch of every subject with a session in the
//! copy, to at least the source's, so what was revoked stays revoked; a
//! session the global epoch already ended is not copied.
//!
//! Running a copy twice is safe: a session already in the destination is
//! left alone when the destination's version is the same or newer, brought
//! up to date when the source's is newer, and followed to its new key when
//! the source rotated it meanwhile. Tombstones are not copied, so a token
//! rotated away just before the copy is unknown (not "reused") in the
//! destination.
//!
//! ```
//! use std::sync::Arc;
//! use tessera_core::copy::copy_page;
//! use tessera_core::{Clock, MemoryStore, NewSession, SessionManager, SystemClock};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let from = Arc::new(MemoryStore::new());
//! let to = Arc::new(MemoryStore::new());
//! let manager = SessionManager::builder_shared(from.clone()).build()?;
//! let issued = manager.create(NewSession::default()).await?;
//!
//! let mut cursor = None;
//! loop {
//!     let page = copy_page(&*from, &*to, cursor.as_deref(), 500, SystemClock.now()).await?;
//!     cursor = page.next;
//!     if cursor.is_none() {
//!         break;
//!     }
//! }
//! let moved = SessionManager::builder_shared(to).build()?;
//! assert!(moved.validate(issued.token.expose(), None).await.is_ok());
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::record::{Session, StoredEntry, Tombstone};
use crate::store::{CreateOutcome, SessionStore, StoreError, WriteOutcome};
use crate::token::TokenHash;

/// Which side of a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading from the source store failed.
    #[error("reading the source store failed: {0}")]
    Source(#[source] StoreError),
    /// Writing to the destination store failed.
    #[error("writing the destination store failed: {0}")]
    Destination(#[source] StoreError),
}

/// What one page of a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyPage {
    /// Sessions written to the destination for the first time.
    pub created: u64,
    /// Sessions whose destination copy was older and was brought up to date.
    pub updated: u64,
    /// Sessions the destination already held at the same or a newer version.
    pub unchanged: u64,
    /// Sessions the destination could not take (a different session under
    /// the same key, or a concurrent change in the destination).
    pub conflicts: u64,
    /// Sessions not copied because a global revocation already ended them.
    pub revoked: u64,
    /// Where the next page starts; `None` when the copy is complete.
    pub next: Option<String>,
}

impl CopyPage {
    /// How many sessions the page read from the source.
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.conflicts + self.revoked
    }
}

/// Copies the page of sessions that starts at `cursor` (`None`: the first
/// page) from `from` to `to`, after raising the destination's revocation
/// epochs to the source's. Pass [`CopyPage::next`] back to continue.
pub async fn copy_page(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
    cursor: Option<&str>,
    limit: usize,
    now: Timestamp,
) -> Result<CopyPage, CopyError> {
    let page = from
        .export_page(cursor, limit, now)
        .await
        .map_err(CopyError::Source)?;
    let global_epoch = raise_global_epoch(from, to).await?;
    let mut subjects: HashSet<&str> = HashSet::new();
    for (_, session) in &page.sessions {
        if let Some(subject) = session.subject.as_deref()
            && subjects.insert(subject)
        {
            raise_subject_epoch(from, to, subject).await?;
        }
    }
    let mut report = CopyPage {
        next: page.next.clone(),
        ..CopyPage::default()
    };
    for (key, session) in &page.sessions {
        if session.epoch < global_epoch {
            report.revoked += 1;
            continue;
        }
        match copy_one(to, key, session, now)
            .await
            .map_err(CopyError::Destination)?
        {
            Copied::Created => report.created += 1,
            Copied::Updated => report.updated += 1,
            Copied::Unchanged => report.unchanged += 1,
            Copied::Conflict => report.conflicts += 1,
        }
    }
    Ok(report)
}

enum Copied {
    Created,
    Updated,
    Unchanged,
    Conflict,
}

async fn copy_one(
    to: &dyn SessionStore,
    key: &TokenHash,
    session: &Arc<Session>,
    now: Timestamp,
) -> Result<Copied, StoreError> {
    if to.create(key, session).await? == CreateOutcome::Created {
        return Ok(Copied::Created);
    }
    // Already there: under this key, or under the key it had before the
    // source rotated it.
    let Some((held_key, held)) = to.load_by_id(&session.id, now).await? else {
        // The key holds a tombstone or another session.
        return Ok(match to.load(key, now).await? {
            Some(StoredEntry::Live(other)) if other.id == session.id => Copied::Unchanged,
            _ => Copied::Conflict,
        });
    };
    if held.version >= session.version && held_key == *key {
        return Ok(Copied::Unchanged);
    }
    let outcome = if held_key == *key {
        to.update(key, session, held.version, now).await?
    } else {
        let tombstone = Tombstone {
            session_id: session.id,
            successor: *key,
            grace_until: None,
            forget_at: session.forget_at(),
        };
        to.rotate(&held_key, key, session, held.version, &tombstone, now)
            .await?
    };
    Ok(match outcome {
        WriteOutcome::Written => Copied::Updated,
        WriteOutcome::VersionConflict { .. } | WriteOutcome::NotFound => Copied::Conflict,
    })
}

/// Raises the destination's global epoch to the source's; returns it.
async fn raise_global_epoch(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
) -> Result<u64, CopyError> {
    let wanted = from.global_epoch().await.map_err(CopyError::Source)?;
    let mut held = to.global_epoch().await.map_err(CopyError::Destination)?;
    while held < wanted {
        held = to
            .bump_global_epoch()
            .await
            .map_err(CopyError::Destination)?;
    }
    Ok(wanted)
}

async fn raise_subject_epoch(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
    subject: &str,
) -> Result<(), CopyError> {
    let wanted = from
        .subject_epoch(subject)
        .await
        .map_err(CopyError::Source)?;
    let mut held = to
        .subject_epoch(subject)
        .await
        .map_err(CopyError::Destination)?;
    while held < wanted {
        held = to
            .bump_subject_epoch(subject)
            .await
            .map_err(CopyError::Destination)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, MemoryStore, NewSession, SessionManager, SystemClock};

    async fn copy_all(from: &dyn SessionStore, to: &dyn SessionStore) -> CopyPage {
        let mut total = CopyPage::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = copy_page(from, to, cursor.as_deref(), 7, SystemClock.now())
                .await
                .expect("copy a page");
            total.created += page.created;
            total.updated += page.updated;
            total.unchanged += page.unchanged;
            total.conflicts += page.conflicts;
            total.revoked += page.revoked;
            cursor = page.next;
            if cursor.is_none() {
                return total;
            }
        }
    }

    fn signed_in(subject: &str) -> NewSession {
        NewSession {
            subject: Some(subject.to_owned()),
            ..NewSession::default()
        }
    }

    #[tokio::test]
    async fn copy_keeps_tokens_versions_subjects_and_epochs_and_can_run_twice() {
        let from = Arc::new(MemoryStore::new());
        let to = Arc::new(MemoryStore::new());
        let source = SessionManager::builder_shared(from.clone())
            .build()
            .expect("manager");
        let mut before_revocation = Vec::new();
        for n in 0..30 {
            let issued = source
                .create(signed_in(&format!("user-{}", n % 4)))
                .await
                .expect("create");
            before_revocation.push(issued.token);
        }
        assert_eq!(source.revoke_everything().await.expect("revoke"), 1);
        let mut live = Vec::new();
        for n in 0..20 {
            let issued = source
                .create(signed_in(&format!("user-{}", n % 4)))
                .await
                .expect("create");
            live.push(issued.token);
        }
        source
            .revoke_subject("user-0", None)
            .await
            .expect("revoke-all");
        let returning = source.create(signed_in("user-0")).await.expect("create");
        live.push(returning.token);

        let first = copy_all(&*from, &*to).await;
        assert_eq!(first.conflicts, 0);
        assert_eq!(
            first.revoked, 22,
            "ended by the global revocation: {first:?}"
        );
        assert_eq!(first.created, 16, "{first:?}");
        assert_eq!(to.global_epoch().await.ok(), Some(1));
        assert_eq!(to.subject_epoch("user-1").await.ok(), Some(0));
        assert_eq!(
            to.subject_epoch("user-0").await.ok(),
            from.subject_epoch("user-0").await.ok(),
            "a revoke-all in the source moved the subject's epoch; so it does in the copy"
        );

        let target = SessionManager::builder_shared(to.clone())
            .build()
            .expect("manager");
        for token in &before_revocation {
            assert!(
                target.validate(token.expose(), None).await.is_err(),
                "revoked by the global epoch in the source, so in the destination too"
            );
        }
        let mut valid = 0;
        for token in &live {
            if target.validate(token.expose(), None).await.is_ok() {
                valid += 1;
            }
        }
        assert_eq!(valid, 16, "every live session moved over");

        // The source changes; a second run brings the destination up to date.
        let token = live[1].expose().to_owned();
        source
            .update(
                &token,
                crate::DataChange::MergePatch(serde_json::json!({"n": 2})),
                None,
                None,
            )
            .await
            .expect("update in the source");
        let rotated = source.rotate(live[2].expose()).await.expect("rotate");
        let again = copy_all(&*from, &*to).await;
        assert_eq!(again.created, 0);
        assert_eq!(again.updated, 2, "{again:?}");
        assert_eq!(again.conflicts, 0);
        let seen = target
            .validate(&token, None)
            .await
            .expect("valid in the destination");
        assert_eq!(seen.session.data.get::<u64>("n"), Some(2));
        assert!(target.validate(rotated.token.expose(), None).await.is_ok());
        let third = copy_all(&*from, &*to).await;
        assert_eq!(
            third.unchanged + third.revoked,
            third.total(),
            "nothing left to do: {third:?}"
        );
    }
}

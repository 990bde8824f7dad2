//! Copying every live session from one store to another (`tesserad
//! migrate`), page by page, so that a copy can stop anywhere and resume.
//!
//! A copy keeps what makes a session what it is: its id, the hashes of its
//! tokens (so the cookies users hold keep working), subject, version, data
//! and every deadline. It raises the destination's global
//! revocation epoch, and the epoch of every subject with a session in the
//! copy, to at least the source's, so what was revoked stays revoked; a
//! session the global epoch already ended is not copied. A destination
//! whose global epoch is already higher (a store made after the source:
//! a new global epoch starts at the current time, see
//! [`Epochs`](crate::store::Epochs)) takes each copied session at its own
//! epoch, so that it stays valid there. (Sealed sessions carry the source's
//! epoch in their credential: a copy into such a destination ends them.)
//!
//! Running a copy twice is safe: a session already in the destination is
//! left alone when the destination's copy is the same or newer, and brought
//! up to date when the source's is newer (a higher version, or the same
//! version with a later token after a rotation).
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
//! let created = manager.create(NewSession::anonymous()).await?;
//! let token = created.issued().expect("a credential").expose().to_owned();
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
//! assert!(moved.validate(&token, None).await.is_ok());
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;

use crate::clock::Timestamp;
use crate::manager::forget_at;
use crate::record::SessionRecord;
use crate::store::{CreateOutcome, SessionStore, StoreError, WriteOutcome};

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
    /// Sessions the destination could not take (a concurrent change in the
    /// destination, or a record it holds but no longer serves).
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
    let (global_epoch, destination_epoch) = raise_global_epoch(from, to).await?;
    let mut subjects: HashSet<&str> = HashSet::new();
    for session in &page.items {
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
    for session in &page.items {
        if session.epoch < global_epoch {
            report.revoked += 1;
            continue;
        }
        // Live in the source, so live in the destination: at its epoch if
        // that is higher.
        let rebased;
        let session = if session.epoch < destination_epoch {
            rebased = SessionRecord {
                epoch: destination_epoch,
                ..session.clone()
            };
            &rebased
        } else {
            session
        };
        match copy_one(to, session, now)
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
    session: &SessionRecord,
    now: Timestamp,
) -> Result<Copied, StoreError> {
    let forget = forget_at(session);
    if to.create(session, forget).await? == CreateOutcome::Created {
        return Ok(Copied::Created);
    }
    let Some(held) = to.load(&session.id, now).await? else {
        return Ok(Copied::Conflict);
    };
    // Newer: a higher version, or the same one with a later token (the
    // source rotated it since the last copy); on a tie of both, another
    // revision means a rotation within the same millisecond, and the
    // source wins.
    let source = (session.version, session.token_issued_at);
    let destination = (held.version, held.token_issued_at);
    let newer =
        source > destination || (source == destination && session.revision() != held.revision());
    if !newer {
        return Ok(Copied::Unchanged);
    }
    Ok(
        match to.update(session, held.revision(), forget, now).await? {
            WriteOutcome::Written => Copied::Updated,
            WriteOutcome::Conflict { .. } | WriteOutcome::NotFound => Copied::Conflict,
        },
    )
}

/// Raises the destination's global epoch to the source's; returns the
/// source's and the destination's (at least as high).
async fn raise_global_epoch(
    from: &dyn SessionStore,
    to: &dyn SessionStore,
) -> Result<(u64, u64), CopyError> {
    let wanted = from.global_epoch().await.map_err(CopyError::Source)?;
    let reached = to
        .raise_global_epoch(wanted)
        .await
        .map_err(CopyError::Destination)?;
    Ok((wanted, reached))
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
    to.raise_subject_epoch(subject, wanted)
        .await
        .map_err(CopyError::Destination)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Epochs;
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
        NewSession::anonymous().subject(subject)
    }

    fn token(session: &crate::ActiveSession) -> String {
        session.issued().expect("a credential").expose().to_owned()
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
            before_revocation.push(token(&issued));
        }
        let start = from.global_epoch().await.expect("epoch");
        assert_eq!(source.revoke_everything().await.expect("revoke"), start + 1);
        // A destination made a second later: its own epoch starts higher.
        let later = start + 1000;
        assert_eq!(to.raise_global_epoch(later).await.ok(), Some(later));
        let mut live = Vec::new();
        for n in 0..20 {
            let issued = source
                .create(signed_in(&format!("user-{}", n % 4)))
                .await
                .expect("create");
            live.push(token(&issued));
        }
        source
            .revoke_subject("user-0", None)
            .await
            .expect("revoke-all");
        let returning = source.create(signed_in("user-0")).await.expect("create");
        live.push(token(&returning));

        let first = copy_all(&*from, &*to).await;
        assert_eq!(first.conflicts, 0);
        assert_eq!(
            first.revoked, 22,
            "ended by the global revocation: {first:?}"
        );
        assert_eq!(first.created, 16, "{first:?}");
        assert_eq!(
            to.global_epoch().await.ok(),
            Some(later),
            "a destination's epoch is never lowered"
        );
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
                target.validate(token, None).await.is_err(),
                "revoked by the global epoch in the source, so in the destination too"
            );
        }
        let mut valid = 0;
        for token in &live {
            if target.validate(token, None).await.is_ok() {
                valid += 1;
            }
        }
        assert_eq!(valid, 16, "every live session moved over");

        // The source changes; a second run brings the destination up to date.
        let token = live[1].clone();
        let current = source.resolve(&token, None).await.expect("live");
        source
            .update(
                &current,
                crate::DataChange::MergePatch(serde_json::json!({"n": 2})),
                None,
                None,
            )
            .await
            .expect("update in the source");
        let current = source.resolve(&live[2], None).await.expect("live");
        let rotated = source.rotate(&current).await.expect("rotate");
        let again = copy_all(&*from, &*to).await;
        assert_eq!(again.created, 0);
        assert_eq!(again.updated, 2, "{again:?}");
        assert_eq!(again.conflicts, 0);
        let seen = target
            .validate(&token, None)
            .await
            .expect("valid in the destination");
        assert_eq!(seen.record().data.get::<u64>("n"), Some(2));
        assert!(
            target
                .validate(&super::tests::token(&rotated), None)
                .await
                .is_ok()
        );
        let third = copy_all(&*from, &*to).await;
        assert_eq!(
            third.unchanged + third.revoked,
            third.total(),
            "nothing left to do: {third:?}"
        );
    }
}

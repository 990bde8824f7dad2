//! Cases that call the store directly: the storage guarantees of DESIGN.md §3.

use std::time::Duration;

use super::{Case, CaseResult, Context, Harness, case_list, ensure, ensure_eq};
use crate::record::{EXPIRED_RETENTION, StoredEntry, Tombstone};
use crate::store::{CreateOutcome, SessionStore, WriteOutcome};
use crate::token::{SessionToken, TokenHash};

pub(super) fn cases() -> Vec<Case> {
    case_list![
        store_create_is_create_if_absent,
        store_load_returns_what_was_stored,
        store_load_hides_expired_records,
        store_update_is_compare_and_swap,
        store_touch_moves_last_seen_forward_only,
        store_rotate_is_atomic_with_tombstone,
        store_rotate_refuses_stale_version,
        store_delete_removes_session,
        store_subject_index_follows_every_change,
        store_delete_by_subject_keeps_the_exception,
        store_global_epoch_is_shared_and_monotonic,
        store_sweep_removes_expired,
        store_write_to_expired_record_is_reported,
        store_export_pages_through_every_live_session,
    ]
}

fn key() -> TokenHash {
    SessionToken::generate()
        .map(|t| t.hash())
        .unwrap_or(TokenHash([9; 32]))
}

async fn store_create_is_create_if_absent(h: Harness) -> CaseResult {
    let (k1, k2) = (key(), key());
    let session = h.sample_session(None);
    let created = h.store.create(&k1, &session).await.context("create")?;
    ensure_eq!(created, CreateOutcome::Created, "first create");
    let mut other = h.sample_session(None);
    let again = h.store.create(&k1, &other).await.context("create again")?;
    ensure_eq!(again, CreateOutcome::AlreadyExists, "same key twice");
    other.id = session.id;
    let same_id = h
        .store
        .create(&k2, &other)
        .await
        .context("create same id")?;
    ensure_eq!(
        same_id,
        CreateOutcome::AlreadyExists,
        "same session id twice"
    );
    match h.store.load(&k1, h.now()).await.context("load")? {
        Some(StoredEntry::Live(stored)) => ensure_eq!(*stored, session, "first write kept"),
        other => return Err(format!("expected the first session, got {other:?}")),
    }
    ensure!(
        h.store
            .load(&k2, h.now())
            .await
            .context("load k2")?
            .is_none(),
        "a refused create must write nothing"
    );
    Ok(())
}

async fn store_load_returns_what_was_stored(h: Harness) -> CaseResult {
    let k = key();
    let mut session = h.sample_session(Some("Zoë 🚀 用户"));
    session.data = crate::record::SessionData::from_json(
        r#"{"cart":[1,2,3],"nested":{"deep":"ü"},"n":1.5,"none":null}"#,
    )
    .context("data")?;
    session.client = Some(Box::new(crate::record::ClientInfo::new(
        "2001:db8::1".parse().ok(),
        Some("Mozilla/5.0 ✓"),
    )));
    session.binding = session.client.as_ref().map(|c| Box::new(c.binding()));
    h.store.create(&k, &session).await.context("create")?;
    match h.store.load(&k, h.now()).await.context("load")? {
        Some(StoredEntry::Live(stored)) => ensure_eq!(*stored, session, "round trip"),
        other => return Err(format!("expected a live session, got {other:?}")),
    }
    match h
        .store
        .load_by_id(&session.id, h.now())
        .await
        .context("by id")?
    {
        Some((found_key, stored)) => {
            ensure_eq!(found_key, k, "key by id");
            ensure_eq!(*stored, session, "session by id");
        }
        None => return Err("load_by_id found nothing".into()),
    }
    ensure!(
        h.store
            .load(&key(), h.now())
            .await
            .context("unknown")?
            .is_none(),
        "unknown key must load nothing"
    );
    Ok(())
}

async fn store_load_hides_expired_records(h: Harness) -> CaseResult {
    let k = key();
    let session = h.sample_session(Some("expiring"));
    h.store.create(&k, &session).await.context("create")?;
    let forget_at = session.forget_at();
    let just_before = forget_at.minus(Duration::from_secs(1));
    ensure!(
        h.store
            .load(&k, just_before)
            .await
            .context("load")?
            .is_some(),
        "record must load one second before it may be forgotten"
    );
    ensure!(
        h.store.load(&k, forget_at).await.context("load")?.is_none(),
        "record must not load once forget_at is reached"
    );
    ensure!(
        h.store
            .load_by_id(&session.id, forget_at)
            .await
            .context("by id")?
            .is_none(),
        "expired record must not load by id"
    );
    ensure!(
        h.store
            .list_by_subject("expiring", forget_at)
            .await
            .context("list")?
            .is_empty(),
        "expired record must not be listed"
    );
    Ok(())
}

async fn store_update_is_compare_and_swap(h: Harness) -> CaseResult {
    let k = key();
    let session = h.sample_session(None);
    h.store.create(&k, &session).await.context("create")?;
    let mut next = session.clone();
    next.version = 2;
    next.data = crate::record::SessionData::from_json(r#"{"a":1}"#).context("data")?;
    let stale = h
        .store
        .update(&k, &next, 5, h.now())
        .await
        .context("stale")?;
    ensure_eq!(
        stale,
        WriteOutcome::VersionConflict { current: 1 },
        "stale version"
    );
    let written = h
        .store
        .update(&k, &next, 1, h.now())
        .await
        .context("update")?;
    ensure_eq!(written, WriteOutcome::Written, "matching version");
    let again = h
        .store
        .update(&k, &next, 1, h.now())
        .await
        .context("again")?;
    ensure_eq!(
        again,
        WriteOutcome::VersionConflict { current: 2 },
        "same version twice"
    );
    let missing = h
        .store
        .update(&key(), &next, 1, h.now())
        .await
        .context("missing")?;
    ensure_eq!(missing, WriteOutcome::NotFound, "unknown key");
    match h.store.load(&k, h.now()).await.context("load")? {
        Some(StoredEntry::Live(stored)) => ensure_eq!(*stored, next, "stored after update"),
        other => return Err(format!("expected live, got {other:?}")),
    }
    Ok(())
}

async fn store_touch_moves_last_seen_forward_only(h: Harness) -> CaseResult {
    let k = key();
    let session = h.sample_session(None);
    h.store.create(&k, &session).await.context("create")?;
    let later = session.last_seen_at.plus(Duration::from_secs(120));
    let touched = h.store.touch(&k, later, h.now()).await.context("touch")?;
    ensure_eq!(touched, WriteOutcome::Written, "touch");
    let earlier = session.last_seen_at.plus(Duration::from_secs(60));
    h.store
        .touch(&k, earlier, h.now())
        .await
        .context("touch back")?;
    match h.store.load(&k, h.now()).await.context("load")? {
        Some(StoredEntry::Live(stored)) => {
            ensure_eq!(stored.last_seen_at, later, "last_seen_at never moves back");
            ensure_eq!(stored.version, session.version, "touch keeps the version");
            ensure_eq!(
                stored.idle_expires_at(),
                later.plus(session.idle_timeout()),
                "idle deadline slides with last_seen_at"
            );
        }
        other => return Err(format!("expected live, got {other:?}")),
    }
    let missing = h
        .store
        .touch(&key(), later, h.now())
        .await
        .context("missing")?;
    ensure_eq!(missing, WriteOutcome::NotFound, "touch of unknown key");
    Ok(())
}

fn tombstone_for(h: &Harness, id: crate::token::SessionId, successor: TokenHash) -> Tombstone {
    Tombstone {
        session_id: id,
        successor,
        grace_until: Some(h.now().plus(Duration::from_secs(10))),
        forget_at: h.now().plus(Duration::from_secs(3600)),
    }
}

async fn store_rotate_is_atomic_with_tombstone(h: Harness) -> CaseResult {
    let (old, new) = (key(), key());
    let session = h.sample_session(Some("rotator"));
    h.store.create(&old, &session).await.context("create")?;
    let mut next = session.clone();
    next.token_issued_at = h.now().plus(Duration::from_secs(1));
    let tombstone = tombstone_for(&h, session.id, new);
    let outcome = h
        .store
        .rotate(&old, &new, &next, 1, &tombstone, h.now())
        .await
        .context("rotate")?;
    ensure_eq!(outcome, WriteOutcome::Written, "rotate");
    match h.store.load(&old, h.now()).await.context("load old")? {
        Some(StoredEntry::Tombstone(found)) => ensure_eq!(found, tombstone, "tombstone"),
        other => return Err(format!("old key must hold the tombstone, got {other:?}")),
    }
    match h.store.load(&new, h.now()).await.context("load new")? {
        Some(StoredEntry::Live(stored)) => ensure_eq!(*stored, next, "new key"),
        other => return Err(format!("new key must hold the session, got {other:?}")),
    }
    match h
        .store
        .load_by_id(&session.id, h.now())
        .await
        .context("by id")?
    {
        Some((k, _)) => ensure_eq!(k, new, "id follows the rotation"),
        None => return Err("id lost by rotation".into()),
    }
    let listed = h
        .store
        .list_by_subject("rotator", h.now())
        .await
        .context("list")?;
    ensure_eq!(listed.len(), 1, "one session listed after rotation");
    let twice = h
        .store
        .rotate(&old, &key(), &next, 1, &tombstone, h.now())
        .await
        .context("rotate again")?;
    ensure_eq!(
        twice,
        WriteOutcome::NotFound,
        "a tombstone cannot be rotated"
    );
    Ok(())
}

async fn store_rotate_refuses_stale_version(h: Harness) -> CaseResult {
    let (old, new) = (key(), key());
    let session = h.sample_session(None);
    h.store.create(&old, &session).await.context("create")?;
    let tombstone = tombstone_for(&h, session.id, new);
    let outcome = h
        .store
        .rotate(&old, &new, &session, 7, &tombstone, h.now())
        .await
        .context("rotate")?;
    ensure_eq!(
        outcome,
        WriteOutcome::VersionConflict { current: 1 },
        "stale rotate"
    );
    ensure!(
        h.store.load(&new, h.now()).await.context("new")?.is_none(),
        "a refused rotate must not create the new key"
    );
    ensure!(
        matches!(
            h.store.load(&old, h.now()).await.context("old")?,
            Some(StoredEntry::Live(_))
        ),
        "a refused rotate must leave the old key live"
    );
    Ok(())
}

async fn store_delete_removes_session(h: Harness) -> CaseResult {
    let k = key();
    let session = h.sample_session(Some("deleter"));
    h.store.create(&k, &session).await.context("create")?;
    ensure!(
        h.store.delete(&session.id).await.context("delete")?,
        "delete of a live session"
    );
    ensure!(
        h.store.load(&k, h.now()).await.context("load")?.is_none(),
        "deleted key loads"
    );
    ensure!(
        h.store
            .load_by_id(&session.id, h.now())
            .await
            .context("by id")?
            .is_none(),
        "deleted id loads"
    );
    ensure!(
        h.store
            .list_by_subject("deleter", h.now())
            .await
            .context("list")?
            .is_empty(),
        "deleted session listed"
    );
    ensure!(
        !h.store.delete(&session.id).await.context("again")?,
        "second delete reports false"
    );
    Ok(())
}

async fn store_subject_index_follows_every_change(h: Harness) -> CaseResult {
    let now = h.now();
    let mut keys = Vec::new();
    for _ in 0..3 {
        let k = key();
        let session = h.sample_session(Some("alice"));
        h.store.create(&k, &session).await.context("create")?;
        keys.push((k, session));
    }
    let bob = h.sample_session(Some("bob"));
    h.store.create(&key(), &bob).await.context("create bob")?;
    let mut short = h.sample_session(Some("alice"));
    short.idle_timeout_ms = 1000;
    h.store
        .create(&key(), &short)
        .await
        .context("create short")?;
    ensure_eq!(
        h.store
            .list_by_subject("alice", now)
            .await
            .context("list")?
            .len(),
        4,
        "alice"
    );
    // Rotation keeps the index, delete drops from it, expiry hides.
    let (k0, s0) = &keys[0];
    let new = key();
    let tomb = tombstone_for(&h, s0.id, new);
    h.store
        .rotate(k0, &new, s0, 1, &tomb, now)
        .await
        .context("rotate")?;
    h.store.delete(&keys[1].1.id).await.context("delete")?;
    let later = short.forget_at();
    let listed = h
        .store
        .list_by_subject("alice", later)
        .await
        .context("list later")?;
    let mut ids: Vec<_> = listed.iter().map(|s| s.id).collect();
    ids.sort();
    let mut expected = vec![s0.id, keys[2].1.id];
    expected.sort();
    ensure_eq!(ids, expected, "alice's live sessions");
    // Changing the subject moves the session between subjects.
    let (k2, s2) = &keys[2];
    let mut moved = s2.clone();
    moved.subject = Some("carol".into());
    moved.version = 2;
    h.store.update(k2, &moved, 1, now).await.context("move")?;
    ensure_eq!(
        h.store
            .list_by_subject("carol", now)
            .await
            .context("carol")?
            .len(),
        1,
        "carol after subject change"
    );
    ensure!(
        h.store
            .list_by_subject("alice", now)
            .await
            .context("alice")?
            .iter()
            .all(|s| s.id != s2.id),
        "subject change leaves the old subject's index"
    );
    ensure_eq!(
        h.store
            .list_by_subject("bob", now)
            .await
            .context("bob")?
            .len(),
        1,
        "bob"
    );
    ensure!(
        h.store
            .list_by_subject("nobody", now)
            .await
            .context("nobody")?
            .is_empty(),
        "unknown subject"
    );
    Ok(())
}

async fn store_delete_by_subject_keeps_the_exception(h: Harness) -> CaseResult {
    let now = h.now();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let session = h.sample_session(Some("dave"));
        h.store.create(&key(), &session).await.context("create")?;
        ids.push(session.id);
    }
    let other = h.sample_session(Some("erin"));
    h.store.create(&key(), &other).await.context("erin")?;
    let deleted = h
        .store
        .delete_by_subject("dave", Some(&ids[0]), now)
        .await
        .context("delete by subject")?;
    ensure_eq!(deleted.len(), 3, "three deleted");
    let left = h.store.list_by_subject("dave", now).await.context("list")?;
    ensure_eq!(left.len(), 1, "one left");
    ensure_eq!(left[0].id, ids[0], "the exception survives");
    ensure_eq!(
        h.store
            .list_by_subject("erin", now)
            .await
            .context("erin")?
            .len(),
        1,
        "others untouched"
    );
    let all = h
        .store
        .delete_by_subject("dave", None, now)
        .await
        .context("all")?;
    ensure_eq!(all.len(), 1, "the rest");
    Ok(())
}

async fn store_global_epoch_is_shared_and_monotonic(h: Harness) -> CaseResult {
    let start = h.store.global_epoch().await.context("epoch")?;
    let bumped = h.store.bump_global_epoch().await.context("bump")?;
    ensure_eq!(bumped, start + 1, "bump returns the new epoch");
    ensure_eq!(
        h.store.global_epoch().await.context("epoch")?,
        start + 1,
        "epoch reads back"
    );
    h.store.ping().await.context("ping")?;
    Ok(())
}

async fn store_sweep_removes_expired(h: Harness) -> CaseResult {
    let now = h.now();
    let mut expired = h.sample_session(Some("sweep"));
    expired.idle_timeout_ms = 1000;
    let live = h.sample_session(Some("sweep"));
    let (k_expired, k_live, k_tomb_new) = (key(), key(), key());
    h.store
        .create(&k_expired, &expired)
        .await
        .context("create")?;
    h.store
        .create(&k_live, &live)
        .await
        .context("create live")?;
    let mut short_tomb = tombstone_for(&h, live.id, k_tomb_new);
    short_tomb.forget_at = now.plus(Duration::from_secs(2));
    h.store
        .rotate(&k_live, &k_tomb_new, &live, 1, &short_tomb, now)
        .await
        .context("rotate")?;
    let after = expired.forget_at().plus(Duration::from_secs(1));
    let removed = h.store.sweep_expired(after).await.context("sweep")?;
    ensure!(
        removed >= 2,
        "sweep removed {removed}, expected the expired session and tombstone"
    );
    // Physically gone: not even a read at an earlier time sees them.
    ensure!(
        h.store
            .load(&k_expired, now)
            .await
            .context("load")?
            .is_none(),
        "swept session still stored"
    );
    ensure!(
        h.store.load(&k_live, now).await.context("load")?.is_none(),
        "swept tombstone still stored"
    );
    ensure!(
        h.store
            .load(&k_tomb_new, now)
            .await
            .context("load")?
            .is_some(),
        "sweep removed a live session"
    );
    ensure_eq!(
        h.store
            .list_by_subject("sweep", now)
            .await
            .context("list")?
            .len(),
        1,
        "sweep leaves no index entry behind"
    );
    let _ = EXPIRED_RETENTION;
    Ok(())
}

async fn store_write_to_expired_record_is_reported(h: Harness) -> CaseResult {
    let k = key();
    let session = h.sample_session(None);
    h.store.create(&k, &session).await.context("create")?;
    let gone = session.forget_at();
    let mut next = session.clone();
    next.version = 2;
    let updated = h.store.update(&k, &next, 1, gone).await.context("update")?;
    ensure_eq!(updated, WriteOutcome::NotFound, "update after expiry");
    let touched = h.store.touch(&k, gone, gone).await.context("touch")?;
    ensure_eq!(touched, WriteOutcome::NotFound, "touch after expiry");
    let tomb = tombstone_for(&h, session.id, key());
    let rotated = h
        .store
        .rotate(&k, &key(), &next, 1, &tomb, gone)
        .await
        .context("rotate")?;
    ensure_eq!(rotated, WriteOutcome::NotFound, "rotate after expiry");
    Ok(())
}

async fn store_export_pages_through_every_live_session(h: Harness) -> CaseResult {
    use std::collections::HashMap;
    let subject = format!(
        "export-{}",
        key().0[0..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut expected: HashMap<TokenHash, crate::record::Session> = HashMap::new();
    let mut excluded = Vec::new();
    for n in 0..10u64 {
        let k = key();
        let mut session = h.sample_session(Some(&subject));
        session.version = n + 1;
        h.store.create(&k, &session).await.context("create")?;
        expected.insert(k, session);
    }
    // A rotated session is exported under its new key only.
    let (old, new) = (key(), key());
    let session = h.sample_session(Some(&subject));
    h.store.create(&old, &session).await.context("create")?;
    let mut next = session.clone();
    next.version = 2;
    let tombstone = tombstone_for(&h, session.id, new);
    let rotated = h
        .store
        .rotate(&old, &new, &next, 1, &tombstone, h.now())
        .await
        .context("rotate")?;
    ensure_eq!(rotated, WriteOutcome::Written, "rotate");
    expected.insert(new, next);
    excluded.push(old);
    // A deleted session and one forgotten by the export time are not exported.
    let deleted = key();
    let session = h.sample_session(Some(&subject));
    h.store.create(&deleted, &session).await.context("create")?;
    h.store.delete(&session.id).await.context("delete")?;
    excluded.push(deleted);
    let short = key();
    let mut session = h.sample_session(Some(&subject));
    session.absolute_expires_at = h.now().plus(Duration::from_secs(60));
    h.store.create(&short, &session).await.context("create")?;
    excluded.push(short);
    let export_at = h
        .now()
        .plus(Duration::from_secs(60) + EXPIRED_RETENTION + Duration::from_secs(1));

    let mut seen: HashMap<TokenHash, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = h
            .store
            .export_page(cursor.as_deref(), 3, export_at)
            .await
            .context("export a page")?;
        pages += 1;
        ensure!(
            page.sessions.len() <= 3,
            "a page of {} sessions with limit 3",
            page.sessions.len()
        );
        for (k, stored) in &page.sessions {
            *seen.entry(*k).or_default() += 1;
            if let Some(want) = expected.get(k) {
                ensure_eq!(**stored, *want, "exported session equals the stored one");
            }
        }
        ensure!(pages < 100_000, "export never ends");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for k in expected.keys() {
        ensure_eq!(
            seen.get(k).copied(),
            Some(1),
            "every live session exported exactly once"
        );
    }
    for k in &excluded {
        ensure!(
            !seen.contains_key(k),
            "a tombstone, deleted or forgotten record was exported"
        );
    }
    ensure!(
        h.store
            .export_page(Some("not a cursor"), 3, export_at)
            .await
            .is_err(),
        "a foreign cursor must be refused"
    );
    Ok(())
}

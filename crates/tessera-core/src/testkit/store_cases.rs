//! Cases that call the store directly: the guarantees of each part of the
//! storage contract (`docs/writing-a-store.md`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Case, CaseResult, Context, Harness, case_list, ensure, ensure_eq, fresh_token_hash};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::manager::forget_at;
use crate::record::{ClientInfo, PreviousToken, SessionData, SessionRecord};
use crate::store::{
    AttachmentKind, AttachmentWrite, Attachments, CreateOutcome, Epochs, Journal, JournalEntry,
    Maintenance, Records, SubjectIndex, WriteOutcome,
};
use crate::token::{SessionId, TokenHash};

pub(super) fn cases() -> Vec<Case> {
    case_list![
        records_create_is_create_if_absent,
        records_load_returns_what_was_stored,
        records_load_hides_forgotten_records,
        records_update_is_compare_and_swap,
        records_touch_moves_forward_only,
        records_write_to_a_forgotten_record_is_not_found,
        records_delete_removes_the_record,
        records_find_legacy_knows_no_stranger,
        subjects_index_follows_every_change,
        subjects_pages_cover_every_session_once,
        subjects_delete_keeps_the_exception,
        epochs_are_shared_and_only_grow,
        maintenance_sweep_removes_forgotten_records,
        maintenance_export_pages_through_every_live_record,
        attachments_are_compare_and_swapped_and_end_with_their_session,
        journal_lists_newest_first_pages_and_forgets,
    ]
}

fn data(json: &str) -> Result<SessionData, String> {
    SessionData::from_json(json).context("data")
}

/// All records of a subject, every page, as ids.
async fn listed(h: &Harness, subject: &str, now: Timestamp) -> Result<BTreeSet<SessionId>, String> {
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let page = h
            .store
            .list_subject(subject, cursor.as_deref(), 2, now)
            .await
            .context("list")?;
        for record in &page.items {
            ensure_eq!(
                record.subject.as_deref(),
                Some(subject),
                "a listing holds only the subject's records"
            );
            ensure!(ids.insert(record.id), "a record listed twice");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
    Err("the listing never ends".into())
}

async fn records_create_is_create_if_absent(h: Harness) -> CaseResult {
    let record = h.sample_record(None);
    let created = h
        .store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    ensure_eq!(created, CreateOutcome::Created, "first create");
    let mut other = h.sample_record(Some("someone"));
    other.id = record.id;
    let again = h
        .store
        .create(&other, forget_at(&other))
        .await
        .context("create again")?;
    ensure_eq!(again, CreateOutcome::AlreadyExists, "same id twice");
    let stored = h.store.load(&record.id, h.now()).await.context("load")?;
    ensure_eq!(stored, Some(record), "the first write is kept");
    ensure!(
        listed(&h, "someone", h.now()).await?.is_empty(),
        "a refused create indexes nothing"
    );
    Ok(())
}

async fn records_load_returns_what_was_stored(h: Harness) -> CaseResult {
    let mut record = h.sample_record(Some("Zoë 🚀 用户"));
    record.data = data(r#"{"cart":[1,2,3],"nested":{"deep":"ü"},"n":1.5,"none":null}"#)?;
    record.client = Some(Box::new(ClientInfo::new(
        "2001:db8::1".parse().ok(),
        Some("Mozilla/5.0 ✓"),
    )));
    record.binding = record.client.as_ref().map(|c| Box::new(c.binding()));
    record.previous = Some(Box::new(PreviousToken {
        hash: fresh_token_hash(record.id),
        rotated_at: h.now(),
        grace_until: Some(h.now().plus(Duration::from_secs(10))),
        successor: Some([4; 32]),
    }));
    h.store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    let stored = h.store.load(&record.id, h.now()).await.context("load")?;
    ensure_eq!(stored, Some(record), "round trip");
    let unknown = SessionId::generate().context("id")?;
    ensure!(
        h.store
            .load(&unknown, h.now())
            .await
            .context("unknown")?
            .is_none(),
        "an unknown id loads nothing"
    );
    Ok(())
}

async fn records_load_hides_forgotten_records(h: Harness) -> CaseResult {
    let record = h.sample_record(Some("expiring"));
    let forget = forget_at(&record);
    h.store.create(&record, forget).await.context("create")?;
    let just_before = forget.minus(Duration::from_millis(1));
    ensure!(
        h.store
            .load(&record.id, just_before)
            .await
            .context("load")?
            .is_some(),
        "a record loads until its forget deadline"
    );
    ensure!(
        h.store
            .load(&record.id, forget)
            .await
            .context("load")?
            .is_none(),
        "a record does not load once its forget deadline is reached"
    );
    ensure!(
        listed(&h, "expiring", forget).await?.is_empty(),
        "a forgotten record is not listed"
    );
    ensure_eq!(
        listed(&h, "expiring", just_before).await?.len(),
        1,
        "listed before its deadline"
    );
    Ok(())
}

async fn records_update_is_compare_and_swap(h: Harness) -> CaseResult {
    let record = h.sample_record(None);
    h.store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    let mut next = record.clone();
    next.version = 2;
    next.data = data(r#"{"a":1}"#)?;
    let mut stale = record.revision();
    stale.version = 5;
    let outcome = h
        .store
        .update(&next, stale, forget_at(&next), h.now())
        .await
        .context("stale version")?;
    ensure_eq!(
        outcome,
        WriteOutcome::Conflict {
            current: record.revision()
        },
        "a stale version is refused with the stored revision"
    );
    let mut other_token = record.revision();
    other_token.token = fresh_token_hash(record.id);
    let outcome = h
        .store
        .update(&next, other_token, forget_at(&next), h.now())
        .await
        .context("other token")?;
    ensure_eq!(
        outcome,
        WriteOutcome::Conflict {
            current: record.revision()
        },
        "a revision with another token is refused"
    );
    let written = h
        .store
        .update(&next, record.revision(), forget_at(&next), h.now())
        .await
        .context("update")?;
    ensure_eq!(
        written,
        WriteOutcome::Written,
        "the matching revision writes"
    );
    let again = h
        .store
        .update(&next, record.revision(), forget_at(&next), h.now())
        .await
        .context("again")?;
    ensure_eq!(
        again,
        WriteOutcome::Conflict {
            current: next.revision()
        },
        "the same expected revision twice"
    );
    let mut rotated = next.clone();
    rotated.token = fresh_token_hash(record.id);
    let moved = h
        .store
        .update(&rotated, next.revision(), forget_at(&rotated), h.now())
        .await
        .context("rotate")?;
    ensure_eq!(moved, WriteOutcome::Written, "a new token, same version");
    let mut unknown = h.sample_record(None);
    unknown.version = 2;
    let missing = h
        .store
        .update(
            &unknown,
            h.sample_record(None).revision(),
            forget_at(&unknown),
            h.now(),
        )
        .await
        .context("missing")?;
    ensure_eq!(missing, WriteOutcome::NotFound, "unknown id");
    ensure_eq!(
        h.store.load(&record.id, h.now()).await.context("load")?,
        Some(rotated),
        "stored after the writes"
    );
    Ok(())
}

async fn records_touch_moves_forward_only(h: Harness) -> CaseResult {
    let record = h.sample_record(None);
    let forget = forget_at(&record);
    h.store.create(&record, forget).await.context("create")?;
    let later = record.last_seen_at.plus(Duration::from_secs(120));
    let later_forget = forget.plus(Duration::from_secs(120));
    let touched = h
        .store
        .touch(&record.id, later, later_forget, h.now())
        .await
        .context("touch")?;
    ensure_eq!(touched, WriteOutcome::Written, "touch");
    let earlier = record.last_seen_at.plus(Duration::from_secs(60));
    h.store
        .touch(&record.id, earlier, forget, h.now())
        .await
        .context("touch back")?;
    let stored = h
        .store
        .load(&record.id, h.now())
        .await
        .context("load")?
        .ok_or("the touched record is gone")?;
    ensure_eq!(stored.last_seen_at, later, "last_seen_at never moves back");
    ensure_eq!(
        stored.revision(),
        record.revision(),
        "touch keeps the revision"
    );
    ensure!(
        h.store
            .load(&record.id, forget.plus(Duration::from_secs(60)))
            .await
            .context("load after the old deadline")?
            .is_some(),
        "the forget deadline moved forward and never back"
    );
    let unknown = SessionId::generate().context("id")?;
    let missing = h
        .store
        .touch(&unknown, later, later_forget, h.now())
        .await
        .context("touch unknown")?;
    ensure_eq!(missing, WriteOutcome::NotFound, "touch of an unknown id");
    ensure!(
        h.store
            .load(&unknown, h.now())
            .await
            .context("load")?
            .is_none(),
        "a touch creates nothing"
    );
    Ok(())
}

async fn records_write_to_a_forgotten_record_is_not_found(h: Harness) -> CaseResult {
    let record = h.sample_record(Some("gone"));
    let forget = forget_at(&record);
    h.store.create(&record, forget).await.context("create")?;
    let mut next = record.clone();
    next.version += 1;
    let updated = h
        .store
        .update(
            &next,
            record.revision(),
            forget.plus(Duration::from_secs(60)),
            forget,
        )
        .await
        .context("update")?;
    ensure_eq!(
        updated,
        WriteOutcome::NotFound,
        "an update after the deadline"
    );
    let touched = h
        .store
        .touch(
            &record.id,
            forget,
            forget.plus(Duration::from_secs(60)),
            forget,
        )
        .await
        .context("touch")?;
    ensure_eq!(
        touched,
        WriteOutcome::NotFound,
        "a touch after the deadline"
    );
    Ok(())
}

async fn records_delete_removes_the_record(h: Harness) -> CaseResult {
    let record = h.sample_record(Some("deleted"));
    h.store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    ensure!(
        h.store.delete(&record.id).await.context("delete")?,
        "deleting a live record says so"
    );
    ensure!(
        h.store
            .load(&record.id, h.now())
            .await
            .context("load")?
            .is_none(),
        "gone after delete"
    );
    ensure!(
        !h.store.delete(&record.id).await.context("delete again")?,
        "deleting twice says nothing was there"
    );
    ensure!(
        listed(&h, "deleted", h.now()).await?.is_empty(),
        "not listed after delete"
    );
    let mut next = record.clone();
    next.version += 1;
    let updated = h
        .store
        .update(&next, record.revision(), forget_at(&next), h.now())
        .await
        .context("update")?;
    ensure_eq!(updated, WriteOutcome::NotFound, "an update after delete");
    Ok(())
}

async fn records_find_legacy_knows_no_stranger(h: Harness) -> CaseResult {
    let record = h.sample_record(None);
    h.store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    for key in [record.token, TokenHash([0x5a; 32])] {
        ensure!(
            h.store
                .find_legacy(&key, h.now())
                .await
                .context("find_legacy")?
                .is_none(),
            "a token hash of the current layout is no legacy pointer"
        );
    }
    Ok(())
}

async fn subjects_index_follows_every_change(h: Harness) -> CaseResult {
    let now = h.now();
    let mut alice = Vec::new();
    for _ in 0..3 {
        let record = h.sample_record(Some("alice"));
        h.store
            .create(&record, forget_at(&record))
            .await
            .context("create")?;
        alice.push(record);
    }
    let anonymous = h.sample_record(None);
    h.store
        .create(&anonymous, forget_at(&anonymous))
        .await
        .context("create")?;
    // The anonymous session signs in as alice; alice's first becomes bob's.
    let mut signed_in = anonymous.clone();
    signed_in.subject = Some("alice".into());
    signed_in.version += 1;
    h.store
        .update(&signed_in, anonymous.revision(), forget_at(&signed_in), now)
        .await
        .context("sign in")?;
    let mut moved = alice[0].clone();
    moved.subject = Some("bob".into());
    moved.version += 1;
    h.store
        .update(&moved, alice[0].revision(), forget_at(&moved), now)
        .await
        .context("change subject")?;
    h.store.delete(&alice[1].id).await.context("delete")?;
    let expected: BTreeSet<SessionId> = [alice[2].id, signed_in.id].into_iter().collect();
    ensure_eq!(
        listed(&h, "alice", now).await?,
        expected,
        "alice's sessions"
    );
    let bob: BTreeSet<SessionId> = [moved.id].into_iter().collect();
    ensure_eq!(listed(&h, "bob", now).await?, bob, "bob's sessions");
    ensure!(
        listed(&h, "carol", now).await?.is_empty(),
        "nobody's sessions"
    );
    ensure!(listed(&h, "alic", now).await?.is_empty(), "no prefix match");
    Ok(())
}

async fn subjects_pages_cover_every_session_once(h: Harness) -> CaseResult {
    let mut expected = BTreeSet::new();
    for _ in 0..7 {
        let record = h.sample_record(Some("many"));
        h.store
            .create(&record, forget_at(&record))
            .await
            .context("create")?;
        expected.insert(record.id);
    }
    // `listed` asks for pages of two.
    ensure_eq!(
        listed(&h, "many", h.now()).await?,
        expected,
        "every session once"
    );
    let bad = h
        .store
        .list_subject("many", Some("not a cursor of any store"), 2, h.now())
        .await;
    ensure!(
        bad.is_err(),
        "a foreign cursor is refused, not taken as the start"
    );
    Ok(())
}

async fn subjects_delete_keeps_the_exception(h: Harness) -> CaseResult {
    let mut ids = Vec::new();
    for _ in 0..4 {
        let record = h.sample_record(Some("dave"));
        h.store
            .create(&record, forget_at(&record))
            .await
            .context("create")?;
        ids.push(record.id);
    }
    let other = h.sample_record(Some("erin"));
    h.store
        .create(&other, forget_at(&other))
        .await
        .context("create")?;
    let mut deleted = h
        .store
        .delete_subject("dave", Some(&ids[0]), h.now())
        .await
        .context("delete subject")?;
    deleted.sort();
    let mut expected = ids[1..].to_vec();
    expected.sort();
    ensure_eq!(deleted, expected, "the others are deleted and reported");
    let left: BTreeSet<SessionId> = [ids[0]].into_iter().collect();
    ensure_eq!(
        listed(&h, "dave", h.now()).await?,
        left,
        "the exception survives"
    );
    ensure_eq!(
        listed(&h, "erin", h.now()).await?.len(),
        1,
        "other subjects untouched"
    );
    let all = h
        .store
        .delete_subject("dave", None, h.now())
        .await
        .context("delete all")?;
    ensure_eq!(all, vec![ids[0]], "then the rest");
    ensure!(
        h.store
            .load(&ids[0], h.now())
            .await
            .context("load")?
            .is_none(),
        "deleted records do not load"
    );
    Ok(())
}

async fn epochs_are_shared_and_only_grow(h: Harness) -> CaseResult {
    let start = h.store.global_epoch().await.context("epoch")?;
    let bumped = h.store.bump_global_epoch().await.context("bump")?;
    ensure_eq!(bumped, start + 1, "bump returns the new epoch");
    ensure_eq!(
        h.store.global_epoch().await.context("epoch")?,
        bumped,
        "read back"
    );
    let raised = h
        .store
        .raise_global_epoch(start + 5)
        .await
        .context("raise")?;
    ensure_eq!(raised, start + 5, "raise returns the epoch reached");
    let kept = h.store.raise_global_epoch(1).await.context("raise lower")?;
    ensure_eq!(kept, start + 5, "raising to a lower epoch changes nothing");
    ensure_eq!(
        h.store.subject_epoch("frank").await.context("subject")?,
        0,
        "starts at 0"
    );
    ensure_eq!(
        h.store.bump_subject_epoch("frank").await.context("bump")?,
        1,
        "bumped"
    );
    ensure_eq!(
        h.store
            .raise_subject_epoch("frank", 4)
            .await
            .context("raise")?,
        4,
        "raised"
    );
    ensure_eq!(
        h.store
            .raise_subject_epoch("frank", 2)
            .await
            .context("raise")?,
        4,
        "kept"
    );
    ensure_eq!(
        h.store.subject_epoch("frank").await.context("subject")?,
        4,
        "read back"
    );
    ensure_eq!(
        h.store.subject_epoch("fran").await.context("subject")?,
        0,
        "per subject"
    );
    Ok(())
}

async fn maintenance_sweep_removes_forgotten_records(h: Harness) -> CaseResult {
    // Stores that forget by themselves do it on their own clock: their
    // records get deadlines a moment ahead in real time, and the case
    // waits for them.
    let start = if h.native_expiry {
        SystemClock.now()
    } else {
        h.now()
    };
    let soon = start.plus(Duration::from_millis(1500));
    let mut gone = Vec::new();
    for subject in [Some("sweep"), None] {
        let record = h.sample_record(subject);
        h.store.create(&record, soon).await.context("create")?;
        gone.push(record.id);
    }
    let kept = h.sample_record(Some("sweep"));
    h.store
        .create(&kept, forget_at(&kept))
        .await
        .context("create")?;
    let after = soon.plus(Duration::from_millis(100));
    if h.native_expiry {
        tokio::time::sleep(Duration::from_millis(1800)).await;
    } else {
        h.clock.set(after);
    }
    h.store.sweep_expired(after).await.context("sweep")?;
    // Gone for good: not even a reader from before the deadline sees them.
    let mut exported = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = h
            .store
            .export_page(cursor.as_deref(), 100, start)
            .await
            .context("export")?;
        exported.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for id in &gone {
        ensure!(
            !exported.contains(id),
            "a forgotten record survived the sweep"
        );
    }
    ensure!(exported.contains(&kept.id), "a live record was swept");
    let left: BTreeSet<SessionId> = [kept.id].into_iter().collect();
    ensure_eq!(
        listed(&h, "sweep", start).await?,
        left,
        "the index lists the live one only"
    );
    Ok(())
}

async fn maintenance_export_pages_through_every_live_record(h: Harness) -> CaseResult {
    let now = h.now();
    let mut expected: Vec<SessionRecord> = Vec::new();
    for n in 0..25 {
        let subject = (n % 3 == 0).then(|| format!("user-{n}"));
        let mut record = h.sample_record(subject.as_deref());
        record.data = data(&format!(r#"{{"n":{n}}}"#))?;
        h.store
            .create(&record, forget_at(&record))
            .await
            .context("create")?;
        expected.push(record);
    }
    let dead = h.sample_record(None);
    h.store
        .create(&dead, now.plus(Duration::from_secs(1)))
        .await
        .context("create")?;
    let deleted = expected.pop().ok_or("no records")?;
    h.store.delete(&deleted.id).await.context("delete")?;
    let later = now.plus(Duration::from_secs(2));
    let mut seen: Vec<SessionRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = h
            .store
            .export_page(cursor.as_deref(), 7, later)
            .await
            .context("export")?;
        ensure!(page.items.len() <= 7, "a page holds at most the limit");
        seen.extend(page.items);
        pages += 1;
        ensure!(pages < 1000, "the export never ends");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort_by_key(|r| r.id);
    seen.dedup_by_key(|r| r.id);
    expected.sort_by_key(|r| r.id);
    ensure_eq!(seen.len(), expected.len(), "every live record, once");
    for (got, want) in seen.iter().zip(&expected) {
        ensure_eq!(got, want, "an exported record equals the stored one");
    }
    ensure!(
        h.store.export_page(Some("zz"), 7, later).await.is_err(),
        "a foreign cursor is refused"
    );
    Ok(())
}

async fn attachments_are_compare_and_swapped_and_end_with_their_session(h: Harness) -> CaseResult {
    let kind = AttachmentKind::DeviceBinding;
    let now = h.now();
    let later = now.plus(Duration::from_secs(3600));
    let record = h.sample_record(Some("bound"));
    h.store
        .create(&record, forget_at(&record))
        .await
        .context("create")?;
    let id = record.id;
    ensure!(
        h.store
            .load_attachment(&id, kind, now)
            .await
            .context("load")?
            .is_none(),
        "no attachment before the first write"
    );
    let stale = h
        .store
        .store_attachment(&id, kind, b"x", Some(1), later, now)
        .await
        .context("store")?;
    ensure_eq!(
        stale,
        AttachmentWrite::Conflict { current: None },
        "expecting one that is not there"
    );
    let first = h
        .store
        .store_attachment(&id, kind, b"first", None, later, now)
        .await
        .context("store")?;
    ensure_eq!(
        first,
        AttachmentWrite::Written { generation: 1 },
        "the first write"
    );
    let again = h
        .store
        .store_attachment(&id, kind, b"again", None, later, now)
        .await
        .context("store")?;
    ensure_eq!(
        again,
        AttachmentWrite::Conflict { current: Some(1) },
        "create twice"
    );
    let second = h
        .store
        .store_attachment(&id, kind, &[0, 255, 7], Some(1), later, now)
        .await
        .context("store")?;
    ensure_eq!(
        second,
        AttachmentWrite::Written { generation: 2 },
        "compare-and-swap"
    );
    let lost = h
        .store
        .store_attachment(&id, kind, b"lost", Some(1), later, now)
        .await
        .context("store")?;
    ensure_eq!(
        lost,
        AttachmentWrite::Conflict { current: Some(2) },
        "a stale generation"
    );
    let loaded = h
        .store
        .load_attachment(&id, kind, now)
        .await
        .context("load")?
        .ok_or("the attachment is gone")?;
    ensure_eq!(loaded.generation, 2, "generation");
    ensure_eq!(loaded.value, vec![0, 255, 7], "bytes as written");
    // A write of the session's record leaves its attachment alone.
    let mut next = record.clone();
    next.version += 1;
    h.store
        .update(&next, record.revision(), forget_at(&next), now)
        .await
        .context("update")?;
    ensure!(
        h.store
            .load_attachment(&id, kind, now)
            .await
            .context("load")?
            .is_some(),
        "the attachment outlives a write of the record"
    );
    ensure!(
        h.store
            .load_attachment(&id, kind, later)
            .await
            .context("load")?
            .is_none(),
        "nothing is returned at the attachment's forget deadline"
    );
    // Deleting the session deletes its attachment; so do a subject's
    // revocation and the deletion of the attachment alone.
    h.store.delete(&id).await.context("delete")?;
    ensure!(
        h.store
            .load_attachment(&id, kind, now)
            .await
            .context("load")?
            .is_none(),
        "the attachment ended with its session"
    );
    let other = h.sample_record(Some("bound"));
    h.store
        .create(&other, forget_at(&other))
        .await
        .context("create")?;
    h.store
        .store_attachment(&other.id, kind, b"y", None, later, now)
        .await
        .context("store")?;
    h.store
        .delete_subject("bound", None, now)
        .await
        .context("delete subject")?;
    ensure!(
        h.store
            .load_attachment(&other.id, kind, now)
            .await
            .context("load")?
            .is_none(),
        "the attachment ended with its subject's sessions"
    );
    let third = h.sample_record(None);
    h.store
        .create(&third, forget_at(&third))
        .await
        .context("create")?;
    h.store
        .store_attachment(&third.id, kind, b"z", None, later, now)
        .await
        .context("store")?;
    ensure!(
        h.store
            .delete_attachment(&third.id, kind)
            .await
            .context("delete")?,
        "deleting an attachment says so"
    );
    ensure!(
        h.store
            .load_attachment(&third.id, kind, now)
            .await
            .context("load")?
            .is_none(),
        "gone after delete"
    );
    Ok(())
}

async fn journal_lists_newest_first_pages_and_forgets(h: Harness) -> CaseResult {
    let now = h.now();
    let soon = now.plus(Duration::from_secs(60));
    let later = now.plus(Duration::from_secs(3600));
    let entry = |offset_ms: u64, nonce: u8, text: &str| JournalEntry {
        at: now.minus(Duration::from_millis(offset_ms)),
        nonce: [nonce; 8],
        value: text.as_bytes().to_vec(),
    };
    let entries = [
        entry(30, 1, "oldest"),
        entry(20, 1, "middle"),
        entry(10, 2, "newest, second"),
        entry(10, 1, "newest, first"),
        entry(5, 3, "short-lived"),
    ];
    for (n, e) in entries.iter().enumerate() {
        let forget = if n == 4 { soon } else { later };
        h.store.append_journal(e, forget).await.context("append")?;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = h
            .store
            .journal_page(cursor.as_deref(), 2, now)
            .await
            .context("page")?;
        ensure!(page.items.len() <= 2, "a page holds at most the limit");
        seen.extend(
            page.items
                .iter()
                .map(|e| String::from_utf8_lossy(&e.value).into_owned()),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ensure_eq!(
        seen,
        vec![
            "short-lived",
            "newest, second",
            "newest, first",
            "middle",
            "oldest"
        ],
        "newest first, ties by nonce"
    );
    let after = h.store.journal_page(None, 10, soon).await.context("page")?;
    ensure_eq!(after.items.len(), 4, "a forgotten entry is not listed");
    ensure!(
        h.store.journal_page(Some("zz"), 2, now).await.is_err(),
        "a foreign cursor is refused"
    );
    Ok(())
}

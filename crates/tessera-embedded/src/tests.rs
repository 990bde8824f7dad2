//! The mirror's promise, checked from inside: after any mix of concurrent
//! writes, the mirror equals a fresh load of the database file; and a group
//! commit is all-or-nothing.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::store::{
    AttachmentKind, Attachments, Epochs, Journal, JournalEntry, Maintenance, Records, StoreError,
    SubjectIndex, WriteOutcome,
};
use tessera_core::testkit::Harness;
use tessera_core::{MemoryStore, Revision, SessionData, SessionRecord, Timestamp, codec};

use crate::EmbeddedStore;
use crate::mirror::Mirror;

/// A fresh record (random id and token) starting at `now`.
fn record(now: Timestamp, subject: Option<&str>) -> SessionRecord {
    let mut record = Harness::new(Arc::new(MemoryStore::new())).sample_record(subject);
    record.created_at = now;
    record.last_seen_at = now;
    record.token_issued_at = now;
    record.absolute_expires_at = now.plus(Duration::from_secs(3600));
    record
}

/// `record` with another revision (a new token after a rotation), through
/// the codec's fixed layout.
fn with_revision(record: &SessionRecord, revision: Revision) -> SessionRecord {
    let mut bytes = codec::encode(record, Timestamp(0));
    bytes[codec::REVISION].copy_from_slice(&revision.to_bytes());
    codec::decode(&bytes, None).expect("decode")
}

fn snapshot(store: &EmbeddedStore) -> Mirror {
    store.shared.mirror.read().expect("mirror").clone()
}

/// One client doing random operations on its own sessions and on shared subjects.
async fn random_client(store: EmbeddedStore, seed: u64, start: Timestamp) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let subjects = ["ann", "bob", "cid"];
    let mut mine: Vec<SessionRecord> = Vec::new();
    for step in 0..60u64 {
        let now = start.plus(Duration::from_millis(step * 500));
        let op = if mine.is_empty() { 0 } else { rng.u8(0..11) };
        let slot = rng.usize(0..mine.len().max(1));
        match op {
            0 | 1 => {
                let subject = subjects.get(rng.usize(0..4)).copied();
                let fresh = record(now, subject);
                let forget = now.plus(Duration::from_secs(rng.u64(1..20)));
                store.create(&fresh, forget).await.expect("create");
                mine.push(fresh);
            }
            // A data write (2) or a rotation (4), each a compare-and-swap.
            2 | 4 => {
                let current = mine[slot].clone();
                let next = if op == 2 {
                    let mut next = current.clone();
                    next.version += 1;
                    next.subject = subjects.get(rng.usize(0..4)).map(|s| (*s).to_owned());
                    next.data =
                        SessionData::from_json(&format!(r#"{{"step":{step}}}"#)).expect("data");
                    next
                } else {
                    let token = record(now, None).revision().token;
                    let version = current.version;
                    with_revision(&current, Revision { version, token })
                };
                let forget = now.plus(Duration::from_secs(rng.u64(1..20)));
                let outcome = store.update(&next, current.revision(), forget, now).await;
                if outcome.expect(if op == 2 { "update" } else { "rotate" })
                    == WriteOutcome::Written
                {
                    mine[slot] = next;
                }
            }
            3 => {
                let id = mine[slot].id;
                let forget = now.plus(Duration::from_secs(rng.u64(1..20)));
                store.touch(&id, now, forget, now).await.expect("touch");
            }
            5 => {
                let gone = mine.swap_remove(slot);
                store.delete(&gone.id).await.expect("delete");
            }
            6 => {
                let subject = subjects[rng.usize(0..3)];
                store
                    .delete_subject(subject, None, now)
                    .await
                    .expect("delete by subject");
            }
            7 => match rng.u8(0..4) {
                0 => drop(store.bump_global_epoch().await.expect("epoch")),
                1 => drop(store.raise_global_epoch(step).await.expect("epoch")),
                2 => drop(
                    store
                        .bump_subject_epoch(subjects[rng.usize(0..3)])
                        .await
                        .expect("subject epoch"),
                ),
                _ => drop(
                    store
                        .raise_subject_epoch(subjects[rng.usize(0..3)], step)
                        .await
                        .expect("subject epoch"),
                ),
            },
            8 => {
                let id = mine[slot].id;
                let kind = AttachmentKind::DeviceBinding;
                let current = store
                    .load_attachment(&id, kind, now)
                    .await
                    .expect("load attachment")
                    .map(|a| a.generation);
                let forget = now.plus(Duration::from_secs(rng.u64(1..20)));
                let value = step.to_be_bytes();
                store
                    .store_attachment(&id, kind, &value, current, forget, now)
                    .await
                    .expect("attach");
            }
            9 => {
                let entry = JournalEntry {
                    at: now,
                    nonce: rng.u64(..).to_be_bytes(),
                    value: format!("client {seed} step {step}").into_bytes(),
                };
                let forget = now.plus(Duration::from_secs(rng.u64(1..20)));
                store.append_journal(&entry, forget).await.expect("journal");
            }
            _ => {
                store.sweep_expired(now).await.expect("sweep");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_equals_the_database_after_concurrent_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let start = Timestamp(1_800_000_000_000);
    let clients: Vec<_> = (0..8)
        .map(|seed| tokio::spawn(random_client(store.clone(), seed, start)))
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    let before = snapshot(&store);
    assert_eq!(
        before.subjects,
        before.subjects_from_records(),
        "the subject index lists exactly the records of each subject"
    );
    assert!(!before.records.is_empty(), "the run stored something");
    store.close().expect("close");

    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(
        snapshot(&reopened),
        before,
        "mirror equals a fresh load of the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failing_after_it_wrote_fails_its_whole_group_and_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let now = Timestamp(1_800_000_000_000);
    let kept = record(now, Some("ann"));
    store
        .create(&kept, now.plus(Duration::from_secs(600)))
        .await
        .expect("create");
    let before = snapshot(&store);

    // Jobs queued together share a group: while the writer thread is held
    // up by a slow job, two more queue up. One fails after writing: the
    // group is not committed, and both are told so.
    let slow = store.clone();
    let blocker = tokio::spawn(async move {
        slow.write(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let partial = record(now, Some("ann"));
    let bystander = record(now, Some("bob"));
    let bytes = codec::encode(&partial, now.plus(Duration::from_secs(600)));
    let failing = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |batch| {
                    batch.put_record(&partial.id, bytes.into_boxed_slice())?;
                    Err::<(), _>(StoreError::invalid("failing on purpose after a write"))
                })
                .await
        })
    };
    let other = {
        let (store, bystander) = (store.clone(), bystander.clone());
        tokio::spawn(async move {
            store
                .create(&bystander, now.plus(Duration::from_secs(600)))
                .await
        })
    };
    blocker.await.expect("task").expect("the slow job");
    assert!(
        failing.await.expect("task").is_err(),
        "the failing job fails"
    );
    match other.await.expect("task") {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(message.contains("part way"), "{message}");
        }
        other => panic!("the job sharing the failed group must fail, got {other:?}"),
    }
    assert!(
        store
            .load(&bystander.id, now)
            .await
            .expect("load")
            .is_none()
    );
    let after = snapshot(&store);
    assert_eq!(after, before, "nothing of the failed group is mirrored");

    // A job failing before it writes spares its group.
    let refused = store
        .write(|_| Err::<(), _>(StoreError::invalid("refused before writing")))
        .await;
    assert!(refused.is_err());
    store.close().expect("close");
    let reopened = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(snapshot(&reopened), after, "the file agrees");
    assert_eq!(
        reopened
            .list_subject("ann", None, 10, now)
            .await
            .expect("list")
            .items,
        vec![kept]
    );
}

//! A write right after validation goes out without reading the session
//! again, yet never on the strength of a stale or forged record.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tessera_core::testkit::CountingStore;
use tessera_core::{
    DataChange, InvalidReason, IssuedSession, Login, ManualClock, MemoryStore, SessionError,
    SessionManager, Timestamp, ValidatedSession,
};

fn setup() -> (SessionManager, Arc<CountingStore>, ManualClock) {
    let store = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let manager = SessionManager::builder_shared(store.clone())
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(600))
        .build()
        .expect("valid manager");
    (manager, store, clock)
}

/// A signed-in session of `subject`, and its validation.
async fn signed_in(manager: &SessionManager, subject: &str) -> (IssuedSession, ValidatedSession) {
    let issued = manager
        .login(None, Login::new(subject))
        .await
        .expect("login");
    let validated = manager
        .validate(issued.token.expose(), None)
        .await
        .expect("valid");
    (issued, validated)
}

fn patch(value: serde_json::Value) -> DataChange {
    DataChange::MergePatch(value)
}

#[tokio::test]
async fn a_validated_session_is_written_without_a_second_read() {
    let (manager, store, _) = setup();
    let (issued, validated) = signed_in(&manager, "alice").await;
    let loads = store.loads();
    let updated = manager
        .update_validated(&validated, patch(json!({"n": 1})), None, None)
        .await
        .expect("update");
    assert_eq!(store.loads(), loads, "no read before the write");
    assert_eq!(updated.session.version, validated.session.version + 1);
    // The result carries on: the next write needs no read either.
    let again = manager
        .update_validated(
            &updated,
            patch(json!({"n": 2})),
            Some(updated.session.version),
            None,
        )
        .await
        .expect("second update");
    assert_eq!(store.loads(), loads);
    let stored = manager
        .validate(issued.token.expose(), None)
        .await
        .expect("valid");
    assert_eq!(stored.session.data.as_json(), r#"{"n":2}"#);
    assert_eq!(stored.session.version, again.session.version);
    // So does a freshly issued session.
    // An outdated handle (from before both writes) loses the
    // compare-and-swap, reads again and merges: nothing is overwritten.
    let merged = manager
        .update_validated(&issued.validated(), patch(json!({"m": 1})), None, None)
        .await
        .expect("merged");
    assert_eq!(merged.session.data.as_json(), r#"{"m":1,"n":2}"#);
}

#[tokio::test]
async fn a_write_in_between_is_never_overwritten() {
    let (manager, _, _) = setup();
    let (issued, stale) = signed_in(&manager, "alice").await;
    let token = issued.token.expose();
    manager
        .update(token, patch(json!({"a": 1})), None, None)
        .await
        .expect("other request's write");
    // With an expected version: a conflict, as `update` would answer.
    let conflict = manager
        .update_validated(
            &stale,
            patch(json!({"b": 1})),
            Some(stale.session.version),
            None,
        )
        .await;
    assert!(
        matches!(conflict, Err(SessionError::VersionConflict { .. })),
        "{conflict:?}"
    );
    // Without: the change is merged into the fresh record, losing nothing.
    manager
        .update_validated(&stale, patch(json!({"b": 2})), None, None)
        .await
        .expect("merged");
    let now = manager.validate(token, None).await.expect("valid");
    assert_eq!(now.session.data.as_json(), r#"{"a":1,"b":2}"#);
}

#[tokio::test]
async fn an_ended_session_is_not_revived() {
    let (manager, _, clock) = setup();
    // Revoked by another request after validation.
    let (_, validated) = signed_in(&manager, "alice").await;
    manager.revoke_subject("alice", None).await.expect("revoke");
    let refused = manager
        .update_validated(&validated, patch(json!({"x": 1})), None, None)
        .await;
    assert!(
        matches!(refused, Err(SessionError::Invalid { .. })),
        "{refused:?}"
    );
    // Expired while the request ran.
    let (_, validated) = signed_in(&manager, "bob").await;
    clock.advance(Duration::from_secs(601));
    let refused = manager
        .update_validated(&validated, patch(json!({"x": 1})), None, None)
        .await;
    assert!(
        matches!(
            refused,
            Err(SessionError::Invalid {
                reason: InvalidReason::ExpiredIdle
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_swapped_record_gains_nothing() {
    let (manager, store, _) = setup();
    let (_, mut forged) = signed_in(&manager, "alice").await;
    let mut record = tessera_core::Session::clone(&forged.session);
    record.subject = Some("admin".into());
    record.auth_level = 9;
    forged.session = Arc::new(record);
    let loads = store.loads();
    let updated = manager
        .update_validated(&forged, patch(json!({"x": 1})), None, None)
        .await
        .expect("update");
    assert!(store.loads() > loads, "a swapped record is read again");
    assert_eq!(updated.session.subject.as_deref(), Some("alice"));
    assert_eq!(updated.session.auth_level, 1);
}

#[tokio::test]
async fn a_session_taken_over_by_a_login_is_not_written_through_its_old_token() {
    // A planted anonymous token is validated by a slow request; the victim
    // signs in on it (the session moves to a new token, the old one dies);
    // the slow request's write must not land in the signed-in session.
    let (manager, _, _) = setup();
    let planted = manager
        .create(tessera_core::NewSession::default())
        .await
        .expect("create");
    let slow = manager
        .validate(planted.token.expose(), None)
        .await
        .expect("valid");
    let victim = manager
        .login(Some(planted.token.expose()), Login::new("victim"))
        .await
        .expect("login");
    let refused = manager
        .update_validated(&slow, patch(json!({"planted": true})), None, None)
        .await;
    assert!(
        matches!(refused, Err(SessionError::Invalid { .. })),
        "{refused:?}"
    );
    let now = manager
        .validate(victim.token.expose(), None)
        .await
        .expect("the victim's session lives");
    assert_eq!(now.session.data.get::<bool>("planted"), None);
}

#[tokio::test]
async fn a_record_that_only_looks_idle_in_hand_is_read_again_not_ended() {
    // A request holds its record while other requests keep the session
    // alive; when it finally writes, its copy looks idle-expired. The
    // session is read again and written, not deleted.
    let (manager, _, clock) = setup();
    let (issued, old) = signed_in(&manager, "alice").await;
    clock.advance(Duration::from_secs(500));
    manager
        .update(
            issued.token.expose(),
            patch(json!({"kept": "alive"})),
            None,
            None,
        )
        .await
        .expect("another request");
    clock.advance(Duration::from_secs(200));
    let written = manager
        .update_validated(&old, patch(json!({"late": 1})), None, None)
        .await
        .expect("written after a fresh read");
    assert_eq!(
        written.session.data.as_json(),
        r#"{"kept":"alive","late":1}"#
    );
    manager
        .validate(issued.token.expose(), None)
        .await
        .expect("still live");
}

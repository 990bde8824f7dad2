//! Writes after validation: a request that holds its session
//! ([`ActiveSession`], from validation or an earlier write) writes it with
//! `update` or `modify` without reading it again while the record in hand
//! is live, yet never on the strength of a record another request has
//! since taken over, ended, or moved past.
//!
//! The old version of these tests also swapped the record inside a
//! validated session (a forged subject and level) and checked that the
//! write read the session again. That cannot be written any more: an
//! `ActiveSession` has no public constructor and no public field, so the
//! record in hand is always one the manager vouched for. What is left to
//! prove, that a session vouched for by a manager of another store gains
//! nothing here, is `a_session_vouched_for_elsewhere_gains_nothing`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tessera_core::testkit::Harness;
use tessera_core::{
    ActiveSession, DataChange, InvalidReason, Login, MemoryStore, NewSession, SessionError,
    SessionId, SessionManager,
};

/// A harness over a memory store, and a manager with a 10-minute idle
/// timeout (so renewal after 5 minutes, touch after 1, grace 10 s).
fn setup() -> (Harness, SessionManager) {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let manager = h.manager_with(|b| b.idle_timeout(Duration::from_secs(600)));
    (h, manager)
}

fn token(session: &ActiveSession) -> String {
    session
        .issued()
        .expect("the operation issued a credential")
        .expose()
        .to_owned()
}

/// A signed-in session of `subject`: its token, and its validation.
async fn signed_in(manager: &SessionManager, subject: &str) -> (String, ActiveSession) {
    let login = manager
        .login(None, Login::new(subject))
        .await
        .expect("login");
    let token = token(&login);
    let validated = manager.validate(&token, None).await.expect("valid");
    (token, validated)
}

fn patch(value: serde_json::Value) -> DataChange {
    DataChange::MergePatch(value)
}

/// A write of `value` as a merge patch, without an expected version.
async fn write(
    manager: &SessionManager,
    session: &ActiveSession,
    value: serde_json::Value,
) -> Result<ActiveSession, SessionError> {
    manager.update(session, patch(value), None, None).await
}

/// The outcome is a refusal for `reason`.
#[track_caller]
fn assert_refused(outcome: Result<ActiveSession, SessionError>, reason: InvalidReason) {
    assert_eq!(outcome.expect_err("refused").invalid_reason(), Some(reason));
}

/// Whether the manager's store holds no session `id`.
async fn gone(manager: &SessionManager, id: &SessionId) -> bool {
    manager.get(id).await.expect("get").is_none()
}

/// A sign-in of `subject` on `session`.
async fn login_on(
    manager: &SessionManager,
    session: &ActiveSession,
    subject: &str,
) -> ActiveSession {
    manager
        .login(Some(session), Login::new(subject))
        .await
        .expect("login")
}

/// A new anonymous session.
async fn anonymous(manager: &SessionManager) -> ActiveSession {
    manager
        .create(NewSession::anonymous())
        .await
        .expect("create")
}

/// A planted anonymous session, validated by a slow request, then signed
/// in on by its victim (which moves it to a new token and kills the old
/// one at once): the slow request's validation, and the victim's login.
async fn taken_over(manager: &SessionManager) -> (ActiveSession, ActiveSession) {
    let planted = token(&anonymous(manager).await);
    let slow = manager.validate(&planted, None).await.expect("valid");
    let victim = manager.resolve(&planted, None).await.expect("resolve");
    let victim = login_on(manager, &victim, "victim").await;
    (slow, victim)
}

/// What another request does: present the token and change the data.
async fn elsewhere(manager: &SessionManager, token: &str, change: DataChange) -> ActiveSession {
    let current = manager.resolve(token, None).await.expect("resolve");
    manager
        .update(&current, change, None, None)
        .await
        .expect("another request's write")
}

#[tokio::test]
async fn a_validated_session_is_written_without_a_second_read() {
    let (h, manager) = setup();
    let (token, validated) = signed_in(&manager, "alice").await;
    let (reads, writes) = (h.calls().reads(), h.calls().writes());
    let updated = write(&manager, &validated, json!({"n": 1}))
        .await
        .expect("update");
    assert_eq!(h.calls().reads(), reads, "no read before the write");
    assert_eq!(h.calls().writes(), writes + 1, "one write");
    assert_eq!(updated.record().version, validated.record().version + 1);
    assert!(
        updated.issued().is_none(),
        "a data write issues no credential"
    );
    // The result carries on: the next writes need no read either.
    let again = manager
        .update(
            &updated,
            patch(json!({"n": 2})),
            Some(updated.record().version),
            None,
        )
        .await
        .expect("second update");
    let (modified, previous) = manager
        .modify(&again, Some(again.record().version), None, |data| {
            Ok(data.insert("m".into(), json!(1)))
        })
        .await
        .expect("modify");
    assert_eq!(
        previous, None,
        "modify hands back what the closure returned"
    );
    assert_eq!(h.calls().reads(), reads, "three writes, no read");
    assert_eq!(h.calls().writes(), writes + 3);
    let stored = manager.validate(&token, None).await.expect("valid");
    assert_eq!(stored.record().data.as_json(), r#"{"m":1,"n":2}"#);
    assert_eq!(stored.record().version, modified.record().version);
    // A handle from before all three writes loses the compare-and-swap,
    // reads once and merges: nothing is overwritten.
    let reads = h.calls().reads();
    let merged = write(&manager, &validated, json!({"o": 1}))
        .await
        .expect("merged");
    assert_eq!(h.calls().reads(), reads + 1, "one read after the lost race");
    assert_eq!(merged.record().data.as_json(), r#"{"m":1,"n":2,"o":1}"#);
    assert_eq!(merged.record().version, modified.record().version + 1);
}

#[tokio::test]
async fn a_freshly_issued_session_is_written_without_a_read() {
    let (h, manager) = setup();
    let reads = h.calls().reads();
    let created = anonymous(&manager).await;
    let written = write(&manager, &created, json!({"cart": [1]}))
        .await
        .expect("update");
    let login = login_on(&manager, &written, "alice").await;
    let written = write(&manager, &login, json!({"theme": "dark"}))
        .await
        .expect("update");
    assert_eq!(
        h.calls().reads(),
        reads,
        "create, login and writes: no read"
    );
    let seen = manager.validate(&token(&login), None).await.expect("valid");
    assert_eq!(
        seen.record().data.as_json(),
        r#"{"cart":[1],"theme":"dark"}"#
    );
    assert_eq!(seen.record().version, written.record().version);
}

#[tokio::test]
async fn a_write_in_between_is_never_overwritten() {
    let (_, manager) = setup();
    let (token, stale) = signed_in(&manager, "alice").await;
    let version = stale.record().version;
    elsewhere(&manager, &token, patch(json!({"a": 1}))).await;
    // With an expected version: a conflict naming both versions.
    let conflict = manager
        .update(&stale, patch(json!({"b": 1})), Some(version), None)
        .await;
    assert!(
        matches!(
            conflict,
            Err(SessionError::VersionConflict { expected, current_version })
                if expected == version && current_version == version + 1
        ),
        "{conflict:?}"
    );
    // Without: the change is merged into the fresh record, losing nothing;
    // the closure runs again on the fresh data.
    let mut runs = 0;
    manager
        .modify(&stale, None, None, |data| {
            runs += 1;
            data.insert("b".into(), json!(2));
            Ok(())
        })
        .await
        .expect("merged");
    assert_eq!(runs, 2, "once on the record in hand, once on the fresh one");
    let now = manager.validate(&token, None).await.expect("valid");
    assert_eq!(now.record().data.as_json(), r#"{"a":1,"b":2}"#);
}

#[tokio::test]
async fn a_login_elsewhere_in_between_makes_the_write_fail_as_revoked() {
    // A planted anonymous token is validated by a slow request; the victim
    // signs in on it (the session moves to a new token, the old one dies
    // at once); the slow request's write must not land in the signed-in
    // session.
    let (h, manager) = setup();
    let (slow, victim) = taken_over(&manager).await;
    let refused = write(&manager, &slow, json!({"planted": true})).await;
    assert_refused(refused, InvalidReason::Revoked);
    let now = manager
        .validate(&token(&victim), None)
        .await
        .expect("the victim's session lives");
    assert_eq!(now.record().data.get::<bool>("planted"), None);
    assert_eq!(now.record().version, victim.record().version, "untouched");
    assert!(
        h.events.of_kind("token_reuse").is_empty(),
        "a request from before the login is no theft"
    );
}

#[tokio::test]
async fn a_renewal_elsewhere_in_between_does_not_stop_the_write() {
    let (h, manager) = setup();
    let (old, slow) = signed_in(&manager, "alice").await;
    let version = slow.record().version;
    h.clock.advance(manager.config().renew_after);
    let renewed = manager.validate(&old, None).await.expect("renewal");
    let new = token(&renewed);
    assert_eq!(
        renewed.record().version,
        version,
        "renewal keeps the version"
    );
    // The slow request's compare-and-swap loses (the token changed), the
    // session is read once, the request's token is still honoured (its
    // successor has not been presented), and the write goes through, even
    // with an expected version: the version did not move.
    let reads = h.calls().reads();
    let written = manager
        .update(&slow, patch(json!({"x": 1})), Some(version), None)
        .await
        .expect("written after the renewal");
    assert_eq!(h.calls().reads(), reads + 1, "one read after the lost race");
    assert_eq!(written.record().version, version + 1);
    let seen = manager.validate(&new, None).await.expect("the successor");
    assert_eq!(seen.record().data.get::<u64>("x"), Some(1));
    assert_eq!(seen.record().version, version + 1);
}

#[tokio::test]
async fn a_record_that_only_looks_idle_in_hand_is_read_again_not_ended() {
    // A request holds its record while other requests keep the session
    // alive; when it finally writes, its copy looks idle-expired. The
    // session is read again and written, not deleted.
    let (h, manager) = setup();
    let (token, old) = signed_in(&manager, "alice").await;
    h.clock.advance(Duration::from_secs(500));
    elsewhere(&manager, &token, patch(json!({"kept": "alive"}))).await;
    h.clock.advance(Duration::from_secs(200));
    let reads = h.calls().reads();
    let written = write(&manager, &old, json!({"late": 1}))
        .await
        .expect("written after a fresh read");
    assert_eq!(h.calls().reads(), reads + 1, "read again, once");
    assert_eq!(
        written.record().data.as_json(),
        r#"{"kept":"alive","late":1}"#
    );
    assert!(h.events.of_kind("expired").is_empty(), "not ended");
    manager.validate(&token, None).await.expect("still live");
}

#[tokio::test]
async fn an_ended_session_is_not_revived() {
    let (h, manager) = setup();
    // Revoked by another request after validation.
    let (_, validated) = signed_in(&manager, "alice").await;
    manager.revoke_subject("alice", None).await.expect("revoke");
    let refused = write(&manager, &validated, json!({"x": 1})).await;
    assert_refused(refused, InvalidReason::Revoked);
    assert!(
        gone(&manager, &validated.record().id).await,
        "not written back"
    );
    // Expired while the request ran: ended, and deleted.
    let (_, validated) = signed_in(&manager, "bob").await;
    h.clock.advance(Duration::from_secs(601));
    let refused = write(&manager, &validated, json!({"x": 1})).await;
    assert_refused(refused, InvalidReason::ExpiredIdle);
    assert_eq!(h.events.of_kind("expired").len(), 1);
    // Revoked with everything else.
    let (_, validated) = signed_in(&manager, "carol").await;
    manager
        .revoke_everything()
        .await
        .expect("revoke everything");
    let refused = write(&manager, &validated, json!({"x": 1})).await;
    assert_refused(refused, InvalidReason::Revoked);
}

#[tokio::test]
async fn a_session_vouched_for_elsewhere_gains_nothing() {
    // A manager of another store vouched for an "admin" session; this
    // manager has no such session and writes nothing.
    let (h, manager) = setup();
    let elsewhere = SessionManager::builder(MemoryStore::new())
        .build()
        .expect("manager");
    let admin = elsewhere
        .login(None, Login::new("admin").level(9))
        .await
        .expect("login");
    let refused = write(&manager, &admin, json!({"x": 1})).await;
    assert_refused(refused, InvalidReason::Revoked);
    let refused = manager.rotate(&admin).await;
    assert_refused(refused, InvalidReason::Revoked);
    assert!(gone(&manager, &admin.record().id).await);
    assert!(
        manager
            .list_subject("admin")
            .await
            .expect("list")
            .is_empty(),
        "nothing was created here"
    );
    assert!(h.events.of_kind("created").is_empty());
}

/// The same write as above with an expected version. The write does not
/// land, but the request is told `VersionConflict` (with the victim's
/// current version) instead of `Revoked`: `modify` compares versions
/// before it checks that the session still belongs to the request. The
/// request's token is dead either way, so its retry is refused; the
/// answer should not depend on whether the caller passed a version.
#[tokio::test]
async fn a_login_elsewhere_in_between_fails_a_versioned_write_as_revoked() {
    let (_, manager) = setup();
    let (slow, _) = taken_over(&manager).await;
    let refused = manager
        .update(
            &slow,
            patch(json!({"planted": true})),
            Some(slow.record().version),
            None,
        )
        .await;
    assert_refused(refused, InvalidReason::Revoked);
}

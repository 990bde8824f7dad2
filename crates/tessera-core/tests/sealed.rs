//! Sealed sessions (`docs/sealed.md`) through the manager's one API:
//! `SessionManager::builder(store).sealed(keys)` keeps each session
//! encrypted in its credential, and the store holds only the revocation
//! epochs. The lifecycle rules are those of stored sessions, except where
//! a seal cannot be ended alone: there, the tests say so.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tessera_core::sealed::{KeyRing, SealingKey};
use tessera_core::store::{Intercepted, Maintenance, Operation};
use tessera_core::testkit::invalid_reason as reason;
use tessera_core::testkit::{Harness, Outage};
use tessera_core::{
    ActiveSession, AuthLevel, BindingPolicy, ClientInfo, DataChange, InvalidReason, Login,
    MemoryStore, NewSession, SessionData, SessionError, SessionManager,
};

fn ring(id: u32) -> KeyRing {
    KeyRing::new(SealingKey::new(
        id,
        [u8::try_from(id).expect("small id"); 32],
    ))
}

/// A harness over a memory store and a manager sealing with key 1.
fn setup() -> (Harness, SessionManager) {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let manager = h.manager_with(|b| b.sealed(ring(1)).allow_volatile_epochs());
    (h, manager)
}

/// The credential an operation issued.
fn seal(session: &ActiveSession) -> String {
    session
        .issued()
        .expect("the operation issued a seal")
        .expose()
        .to_owned()
}

fn patch(value: serde_json::Value) -> DataChange {
    DataChange::MergePatch(value)
}

#[tokio::test]
async fn nothing_is_stored_while_anonymous() {
    let (h, manager) = setup();
    assert!(manager.is_sealed());
    let created = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    assert!(created.is_sealed());
    let first = seal(&created);
    h.clock.advance(Duration::from_secs(30));
    let valid = manager.validate(&first, None).await.expect("valid");
    assert!(
        valid.issued().is_none(),
        "within touch_after nothing changes"
    );
    h.clock.advance(Duration::from_secs(31));
    let touched = manager.validate(&first, None).await.expect("valid");
    assert_eq!(touched.record().last_seen_at, h.now(), "touched");
    let second = seal(&touched);
    assert_ne!(second, first, "resealed");
    let updated = manager
        .update(&touched, patch(json!({"cart": [1]})), None, None)
        .await
        .expect("update");
    assert_eq!(updated.record().version, 2);
    let third = seal(&updated);
    let read = manager.validate(&third, None).await.expect("valid");
    assert_eq!(read.record().data.as_json(), r#"{"cart":[1]}"#);
    assert_eq!(h.calls().writes(), 0, "no store write");
    assert_eq!(h.calls().reads(), 0, "no record read");
    let page = h
        .store
        .export_page(None, 10, h.now())
        .await
        .expect("export");
    assert!(page.items.is_empty(), "no record at all");
}

#[tokio::test]
async fn deadlines_inside_the_seal_apply() {
    let (h, manager) = setup();
    let config = manager.config().clone();
    let idle = seal(
        &manager
            .create(NewSession::anonymous())
            .await
            .expect("create"),
    );
    h.clock
        .advance(config.idle_timeout - Duration::from_secs(1));
    manager
        .resolve(&idle, None)
        .await
        .expect("a second before the idle deadline");
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(
        reason(manager.validate(&idle, None).await),
        InvalidReason::ExpiredIdle
    );

    // Active all along: the absolute deadline still ends it, to the second.
    let (h, manager) = setup();
    let created = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    let deadline = created.record().absolute_expires_at;
    let mut current = seal(&created);
    while h.now().plus(Duration::from_secs(15 * 60)) < deadline {
        h.clock.advance(Duration::from_secs(15 * 60));
        let valid = manager.validate(&current, None).await.expect("active");
        if let Some(next) = valid.issued() {
            current = next.expose().to_owned();
        }
    }
    h.clock.set(deadline.minus(Duration::from_secs(1)));
    let last = manager
        .validate(&current, None)
        .await
        .expect("a second before");
    if let Some(next) = last.issued() {
        current = next.expose().to_owned();
    }
    h.clock.set(deadline);
    assert_eq!(
        reason(manager.validate(&current, None).await),
        InvalidReason::ExpiredAbsolute
    );

    // A shorter idle timeout of its own travels in the seal too.
    let short = manager
        .create(NewSession::anonymous().idle_timeout(Duration::from_secs(60)))
        .await
        .expect("create");
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        reason(manager.validate(&seal(&short), None).await),
        InvalidReason::ExpiredIdle
    );
}

#[tokio::test]
async fn renewal_reseals_after_renew_after() {
    let (h, manager) = setup();
    let created = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    let issued_at = created.record().token_issued_at;
    let old = seal(&created);
    h.clock
        .advance(manager.config().renew_after - Duration::from_secs(1));
    let touched = manager.validate(&old, None).await.expect("valid");
    assert_eq!(
        touched.record().token_issued_at,
        issued_at,
        "a touch, not a renewal"
    );
    assert!(h.events.of_kind("renewed").is_empty());
    h.clock.advance(Duration::from_secs(1));
    let renewed = manager.validate(&old, None).await.expect("valid");
    assert_eq!(renewed.record().token_issued_at, h.now());
    assert_eq!(renewed.record().id, created.record().id, "the same session");
    assert_eq!(h.events.of_kind("renewed").len(), 1);
    let new = seal(&renewed);
    manager.validate(&new, None).await.expect("the new seal");
    // A seal cannot be retired alone: the one the renewal replaced keeps
    // opening until its own deadlines (stored sessions give a replaced
    // token only the grace).
    manager
        .resolve(&old, None)
        .await
        .expect("the replaced seal still opens");
    let rotated = manager.rotate(&renewed).await.expect("rotate");
    assert_ne!(seal(&rotated), new);
    assert_eq!(h.events.of_kind("rotated").len(), 1);
}

#[tokio::test]
async fn subject_and_global_epochs_revoke() {
    let (h, manager) = setup();
    let stored = h.manager();
    let phone = seal(
        &manager
            .login(None, Login::new("alice"))
            .await
            .expect("login"),
    );
    let laptop = seal(
        &manager
            .login(None, Login::new("alice"))
            .await
            .expect("login"),
    );
    // A session of alice kept in the store, beside the sealed ones.
    let server_side = stored
        .login(None, Login::new("alice"))
        .await
        .expect("login");

    let current = manager.validate(&laptop, None).await.expect("valid");
    let kept = manager.revoke_others(&current).await.expect("others");
    let kept = seal(&kept);
    assert_eq!(
        reason(manager.validate(&phone, None).await),
        InvalidReason::Revoked
    );
    assert!(
        stored
            .get(&server_side.record().id)
            .await
            .expect("get")
            .is_none(),
        "the subject's stored sessions end too"
    );
    // The epoch moved for every seal of alice, the laptop's own old one
    // included; the laptop goes on with the seal it was given.
    assert_eq!(
        reason(manager.validate(&laptop, None).await),
        InvalidReason::Revoked
    );
    let current = manager.validate(&kept, None).await.expect("still valid");

    manager.logout(&current).await.expect("logout");
    assert_eq!(
        reason(manager.validate(&kept, None).await),
        InvalidReason::Revoked
    );

    // An administrator revokes a subject.
    let carol = seal(
        &manager
            .login(None, Login::new("carol"))
            .await
            .expect("login"),
    );
    manager.revoke_subject("carol", None).await.expect("revoke");
    assert_eq!(
        reason(manager.validate(&carol, None).await),
        InvalidReason::Revoked
    );

    // Everything, anonymous seals included.
    let bob = seal(&manager.login(None, Login::new("bob")).await.expect("login"));
    let anonymous = seal(
        &manager
            .create(NewSession::anonymous())
            .await
            .expect("create"),
    );
    manager
        .revoke_everything()
        .await
        .expect("revoke everything");
    for sealed in [bob, anonymous] {
        assert_eq!(
            reason(manager.validate(&sealed, None).await),
            InvalidReason::Revoked
        );
    }
    let fresh = seal(&manager.login(None, Login::new("bob")).await.expect("login"));
    manager
        .validate(&fresh, None)
        .await
        .expect("a seal made afterwards works");
}

#[tokio::test]
async fn login_and_updates_follow_the_stored_rules() {
    let (h, manager) = setup();
    let anonymous = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    let pre_login = seal(&anonymous);
    let with_cart = manager
        .update(&anonymous, patch(json!({"cart": [1]})), None, None)
        .await
        .expect("update");
    assert_eq!(with_cart.record().version, 2);
    let conflict = manager
        .update(&with_cart, patch(json!({"x": 1})), Some(1), None)
        .await;
    assert!(
        matches!(
            conflict,
            Err(SessionError::VersionConflict {
                expected: 1,
                current_version: 2
            })
        ),
        "{conflict:?}"
    );

    let home = ClientInfo::new("198.51.100.7".parse().ok(), Some("Firefox/140"));
    let alice = manager
        .login(Some(&with_cart), Login::new("alice").client(home.clone()))
        .await
        .expect("login");
    let record = alice.record();
    assert_eq!(record.id, anonymous.record().id, "the same session");
    assert_eq!(record.subject.as_deref(), Some("alice"));
    assert_eq!(record.auth_level, AuthLevel::PASSWORD);
    assert_eq!(record.authenticated_at, Some(h.now()));
    assert_eq!(
        record.data.get::<Vec<u8>>("cart"),
        Some(vec![1]),
        "anonymous data carries over"
    );
    assert_eq!(record.version, 3);
    assert_ne!(
        record.csrf_secret(),
        anonymous.record().csrf_secret(),
        "a new CSRF secret at login"
    );
    assert_eq!(h.events.of_kind("logged_in").len(), 1);
    // The seal from before the login cannot be ended (nothing is
    // stored), but it is still the anonymous session it was, with the
    // old CSRF secret: it gives no one alice's session.
    let before = manager.validate(&pre_login, None).await.expect("opens");
    assert_eq!(before.record().subject, None);

    // Bound to the client that logged in.
    let alice_seal = seal(&alice);
    let thief = ClientInfo::new("203.0.113.9".parse().ok(), Some("curl/8"));
    let rejecting = h.manager_with(|b| {
        b.sealed(ring(1))
            .allow_volatile_epochs()
            .binding(BindingPolicy::Reject)
    });
    assert_eq!(
        reason(rejecting.validate(&alice_seal, Some(&thief)).await),
        InvalidReason::BindingMismatch
    );
    rejecting
        .validate(&alice_seal, Some(&home))
        .await
        .expect("the owner is unharmed");

    let bob = manager
        .login(Some(&alice), Login::new("bob"))
        .await
        .expect("login");
    assert_eq!(bob.record().data.as_json(), "{}", "no data across subjects");
    let stepped = manager.step_up(&bob, 2, None).await.expect("step-up");
    assert_eq!(stepped.record().auth_level, AuthLevel::MULTI_FACTOR);
    assert_ne!(seal(&stepped), seal(&bob), "step-up reseals");
    manager
        .require_auth(stepped.record(), 2, Duration::from_secs(300))
        .expect("fresh level 2");
    let refused = manager.step_up(&anonymous, 2, None).await;
    assert!(
        matches!(refused, Err(SessionError::NotAuthenticated)),
        "{refused:?}"
    );

    let too_big = json!({"blob": "x".repeat(manager.config().max_data_bytes)});
    let refused = manager.update(&stepped, patch(too_big), None, None).await;
    assert!(
        matches!(refused, Err(SessionError::DataTooLarge { .. })),
        "{refused:?}"
    );
    let refused = manager.login(Some(&stepped), Login::new("")).await;
    assert!(
        matches!(refused, Err(SessionError::EmptySubject)),
        "{refused:?}"
    );
    let data = SessionData::from_value(&json!({"given": true})).expect("data");
    let with_data = manager
        .login(None, Login::new("dave").data(data))
        .await
        .expect("login with data");
    assert_eq!(with_data.record().data.as_json(), r#"{"given":true}"#);
}

#[tokio::test]
async fn logout_and_the_sessions_of_a_sealed_session() {
    let (_, manager) = setup();
    // Anonymous: nothing to revoke, the seal ends with its cookie.
    let anonymous = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    manager.logout(&anonymous).await.expect("logout");
    manager
        .validate(&seal(&anonymous), None)
        .await
        .expect("an anonymous seal outlives a logout");
    let refused = manager.revoke_others(&anonymous).await;
    assert!(
        matches!(refused, Err(SessionError::NotAuthenticated)),
        "{refused:?}"
    );

    let alice = manager
        .login(None, Login::new("alice"))
        .await
        .expect("login");
    let text = seal(&alice);
    let listed = manager.sessions_of(&alice).await.expect("sessions");
    assert_eq!(listed.len(), 1, "only the session itself");
    assert_eq!(listed[0].id, alice.record().id);
    // By id, a sealed session can end only itself: nothing is stored
    // under its id.
    let other = manager
        .login(None, Login::new("alice"))
        .await
        .expect("login");
    assert!(
        !manager
            .revoke_own(&alice, &other.record().id)
            .await
            .expect("revoke own")
    );
    assert!(!manager.revoke(&alice.record().id).await.expect("revoke"));
    manager.validate(&text, None).await.expect("still valid");

    manager
        .logout_presented("garbage")
        .await
        .expect("idempotent");
    manager.logout_presented(&text).await.expect("logout");
    assert_eq!(
        reason(manager.validate(&text, None).await),
        InvalidReason::Revoked
    );
    assert_eq!(
        reason(manager.validate(&seal(&other), None).await),
        InvalidReason::Revoked,
        "a logout signs the subject out of every seal"
    );
    manager
        .logout_presented(&text)
        .await
        .expect("logout again is fine");
    let third = manager
        .login(None, Login::new("alice"))
        .await
        .expect("login");
    assert!(
        manager
            .revoke_own(&third, &third.record().id)
            .await
            .expect("revoke own")
    );
    assert_eq!(
        reason(manager.validate(&seal(&third), None).await),
        InvalidReason::Revoked
    );
}

#[tokio::test]
async fn a_seal_opens_only_where_it_was_issued() {
    let (h, manager) = setup();
    let text = seal(
        &manager
            .create(NewSession::anonymous())
            .await
            .expect("create"),
    );
    let ip: IpAddr = "192.0.2.66".parse().expect("ip");
    let client = ClientInfo::new(Some(ip), None);

    // Another cookie name: the context is bound into the seal.
    let elsewhere = manager
        .with_sealing(ring(1), b"another-cookie")
        .expect("sealing over a store allowed to be volatile");
    assert_eq!(
        reason(elsewhere.validate(&text, Some(&client)).await),
        InvalidReason::Malformed
    );
    // Tampered with.
    let mut tampered = text.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(
        reason(manager.validate(&tampered, Some(&client)).await),
        InvalidReason::Malformed
    );
    // Sealed with a key this ring does not hold.
    let stranger = h.manager_with(|b| b.sealed(ring(2)).allow_volatile_epochs());
    assert_eq!(
        reason(stranger.validate(&text, Some(&client)).await),
        InvalidReason::Unknown
    );
    assert_eq!(
        reason(stranger.validate("tss_not_a_seal", Some(&client)).await),
        InvalidReason::Malformed
    );
    let guessing = h.manager_with(|b| {
        b.sealed(ring(1))
            .allow_volatile_epochs()
            .guessing(3, Duration::from_secs(60))
    });
    for _ in 0..3 {
        let _ = guessing.validate(&tampered, Some(&client)).await;
    }
    assert!(guessing.is_guessing(ip), "refused seals count as guessing");

    // Key rotation: the new key first, the old one kept.
    let rotated = h.manager_with(|b| {
        b.sealed(
            ring(2)
                .with_previous(SealingKey::new(1, [1; 32]))
                .expect("ring"),
        )
        .allow_volatile_epochs()
    });
    let opened = rotated
        .validate(&text, None)
        .await
        .expect("the old key opens");
    h.clock.advance(rotated.config().renew_after);
    let renewed = rotated.validate(&text, None).await.expect("renewal");
    assert_eq!(renewed.record().id, opened.record().id);
    stranger
        .validate(&seal(&renewed), None)
        .await
        .expect("resealed with the new key");
}

#[tokio::test]
async fn a_signed_in_seal_fails_closed_without_its_subject_epoch() {
    let store = Arc::new(Intercepted::new(
        MemoryStore::new(),
        Outage::failing(Operation::SubjectEpoch),
    ));
    let working = Harness::new(Arc::new(MemoryStore::new()));
    let sealer = working.manager_with(|b| b.sealed(ring(1)).allow_volatile_epochs());
    let alice = seal(
        &sealer
            .login(None, Login::new("alice"))
            .await
            .expect("login"),
    );
    let anonymous = seal(
        &sealer
            .create(NewSession::anonymous())
            .await
            .expect("create"),
    );
    let down = Harness::new(store).manager_with(|b| b.sealed(ring(1)).allow_volatile_epochs());
    let refused = down.validate(&alice, None).await;
    assert!(
        matches!(refused, Err(SessionError::Store(_))),
        "no signed-in session while its epoch cannot be read: {refused:?}"
    );
    down.validate(&anonymous, None)
        .await
        .expect("an anonymous seal needs no subject epoch");
}

/// A request validated its sealed session, then ran past the session's
/// idle deadline before writing. A stored session is read again and
/// found ended (`tests/update_validated.rs`); a sealed one has nothing to
/// read again, and the write must not bring it back to life. Today the
/// write reseals it with `last_seen_at` set to now: `modify`, `rotate`,
/// a login and `revoke_others` reseal the record in hand without asking
/// whether it has ended.
#[tokio::test]
async fn a_write_does_not_revive_an_idle_expired_seal() {
    let (h, manager) = setup();
    let created = manager
        .create(NewSession::anonymous())
        .await
        .expect("create");
    let held = manager
        .validate(&seal(&created), None)
        .await
        .expect("valid");
    h.clock.advance(manager.config().idle_timeout);
    let late = manager
        .update(&held, patch(json!({"late": true})), None, None)
        .await;
    assert_eq!(reason(late), InvalidReason::ExpiredIdle);
    let rotated = manager.rotate(&held).await;
    assert_eq!(reason(rotated), InvalidReason::ExpiredIdle);
}

/// A write names the client making it; with the `reject` binding policy
/// a stored session refuses a write from a client that does not match
/// the session's binding. The same write to a sealed session goes
/// through: `modify` reseals a sealed record before the binding check.
#[tokio::test]
async fn a_write_checks_the_client_binding_as_for_stored_sessions() {
    let h = Harness::new(Arc::new(MemoryStore::new()));
    let home = ClientInfo::new("198.51.100.7".parse().ok(), Some("Firefox/140"));
    let thief = ClientInfo::new("203.0.113.9".parse().ok(), Some("curl/8"));
    for manager in [
        h.manager_with(|b| b.binding(BindingPolicy::Reject)),
        h.manager_with(|b| {
            b.sealed(ring(1))
                .allow_volatile_epochs()
                .binding(BindingPolicy::Reject)
        }),
    ] {
        let session = manager
            .login(None, Login::new("alice").client(home.clone()))
            .await
            .expect("login");
        let refused = manager
            .update(&session, patch(json!({"x": 1})), None, Some(&thief))
            .await;
        assert_eq!(
            reason(refused),
            InvalidReason::BindingMismatch,
            "sealed: {}",
            manager.is_sealed()
        );
    }
}

/// A memory store loses its epochs with the process: sealing over it is
/// refused unless the application opts in by name, whichever way the
/// sealing manager is made.
#[tokio::test]
async fn sealing_over_volatile_epochs_needs_an_opt_in() {
    let refused = SessionManager::builder(MemoryStore::new())
        .sealed(ring(1))
        .build();
    assert!(
        matches!(refused, Err(tessera_core::ConfigError::VolatileEpochs)),
        "{refused:?}"
    );
    let h = Harness::new(Arc::new(MemoryStore::new()));
    assert!(matches!(
        h.manager().with_sealing(ring(1), b"cookie"),
        Err(tessera_core::ConfigError::VolatileEpochs)
    ));
    let allowed = h.manager_with(|b| b.allow_volatile_epochs());
    assert!(allowed.with_sealing(ring(1), b"cookie").is_ok());
}

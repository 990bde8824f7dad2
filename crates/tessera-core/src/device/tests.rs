//! The device-binding rules, with ES256 and RS256 devices made here.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::testkit::device::TestDevice;
use crate::{
    CollectingEventSink, DataChange, Login, ManualClock, MemoryStore, SessionManager, Timestamp,
};

struct Harness {
    manager: SessionManager,
    clock: ManualClock,
    events: CollectingEventSink,
    policy: DeviceBindingPolicy,
}

fn harness() -> Harness {
    let clock = ManualClock::new(Timestamp(1_700_000_000_000));
    let events = CollectingEventSink::new();
    let manager = SessionManager::builder(MemoryStore::new())
        .clock(clock.clone())
        .events(events.clone())
        .build()
        .expect("manager");
    Harness {
        manager,
        clock,
        events,
        policy: DeviceBindingPolicy::default(),
    }
}

impl Harness {
    async fn signed_in(&self) -> ActiveSession {
        self.manager
            .login(None, Login::new("alice"))
            .await
            .expect("login")
    }

    async fn offer(&self, session: &ActiveSession) -> DeviceChallenge {
        self.manager
            .offer_device_binding(session, &self.policy)
            .await
            .expect("offer")
            .expect("a challenge")
    }

    /// A session bound to `device`, with its first bound cookie.
    async fn bound(&self, device: &TestDevice) -> (ActiveSession, BoundCookie) {
        let session = self.signed_in().await;
        let offer = self.offer(&session).await;
        let cookie = self
            .manager
            .register_device(
                &session,
                &device.registration_proof(&offer.challenge),
                &self.policy,
            )
            .await
            .expect("registration");
        (session, cookie)
    }

    async fn challenge(&self, id: &SessionId) -> String {
        match self
            .manager
            .refresh_device(id, None, &self.policy)
            .await
            .expect("challenge")
        {
            DeviceRefresh::Challenge { challenge, refused } => {
                assert_eq!(refused, None);
                challenge.challenge
            }
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    async fn refresh(&self, id: &SessionId, proof: &str) -> Result<DeviceRefresh, SessionError> {
        self.manager
            .refresh_device(id, Some(proof), &self.policy)
            .await
    }
}

fn refused(result: Result<DeviceRefresh, SessionError>) -> DeviceBindingError {
    match result {
        Ok(DeviceRefresh::Challenge {
            refused: Some(error),
            ..
        }) => error,
        Err(SessionError::DeviceBinding(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn registration_and_refresh_with(device: TestDevice) {
    let h = harness();
    let (session, first) = h.bound(&device).await;
    let id = session.record().id;
    assert_eq!(
        h.manager
            .check_device(&session, Some(first.expose()))
            .await
            .expect("bound cookie accepted"),
        DeviceStatus::Bound
    );
    assert!(h.manager.is_device_bound(&id).await.expect("bound"));
    let challenge = h.challenge(&id).await;
    let DeviceRefresh::Refreshed(second) = h
        .refresh(&id, &device.refresh_proof(&challenge))
        .await
        .expect("refresh")
    else {
        panic!("a valid proof refreshes");
    };
    assert_ne!(first.expose(), second.expose(), "the value changes");
    assert_eq!(
        h.manager
            .check_device(&session, Some(second.expose()))
            .await
            .expect("new cookie"),
        DeviceStatus::Bound
    );
    assert_eq!(h.events.of_kind("dbsc_registered").len(), 1);
    assert_eq!(h.events.of_kind("dbsc_refreshed").len(), 1);
}

#[tokio::test]
async fn dbsc_es256_registration_and_refresh() {
    registration_and_refresh_with(TestDevice::es256()).await;
}

#[tokio::test]
async fn dbsc_rs256_registration_and_refresh() {
    registration_and_refresh_with(TestDevice::rs256()).await;
}

#[tokio::test]
async fn dbsc_refresh_proof_carrying_the_bound_jwk_is_accepted() {
    let h = harness();
    let device = TestDevice::es256();
    let (session, _) = h.bound(&device).await;
    let id = session.record().id;
    let challenge = h.challenge(&id).await;
    let proof = device.sign(
        &json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": device.jwk()}),
        &json!({"jti": challenge}),
    );
    assert!(matches!(
        h.refresh(&id, &proof).await,
        Ok(DeviceRefresh::Refreshed(_))
    ));
}

#[tokio::test]
async fn dbsc_alg_none_is_refused() {
    let h = harness();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    let device = TestDevice::es256();
    let header = URL_SAFE_NO_PAD
        .encode(json!({"typ": "dbsc+jwt", "alg": "none", "jwk": device.jwk()}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(json!({"jti": offer.challenge}).to_string());
    for proof in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let err = h
            .manager
            .register_device(&session, &proof, &h.policy)
            .await
            .expect_err("alg none");
        assert!(
            matches!(
                err,
                SessionError::DeviceBinding(DeviceBindingError::Proof(
                    ProofError::AlgorithmNotAllowed(_) | ProofError::Malformed(_)
                ))
            ),
            "{err:?}"
        );
    }
    // An HS256 proof (a MAC keyed with anything) is refused too.
    let hs = device.sign(
        &json!({"typ": "dbsc+jwt", "alg": "HS256", "jwk": device.jwk()}),
        &json!({"jti": offer.challenge}),
    );
    assert!(matches!(
        h.manager.register_device(&session, &hs, &h.policy).await,
        Err(SessionError::DeviceBinding(DeviceBindingError::Proof(
            ProofError::AlgorithmNotAllowed(_)
        )))
    ));
    assert!(
        !h.manager
            .is_device_bound(&session.record().id)
            .await
            .expect("read")
    );
}

#[tokio::test]
async fn dbsc_bad_signature_is_refused() {
    let h = harness();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    let (device, other) = (TestDevice::es256(), TestDevice::es256());
    // The JWK of one key, signed by another.
    let forged = other.sign(
        &json!({"typ": "dbsc+jwt", "alg": "ES256", "jwk": device.jwk()}),
        &json!({"jti": offer.challenge}),
    );
    assert!(matches!(
        h.manager
            .register_device(&session, &forged, &h.policy)
            .await,
        Err(SessionError::DeviceBinding(DeviceBindingError::Proof(
            ProofError::BadSignature
        )))
    ));
    // A flipped signature byte.
    let mut proof = device.registration_proof(&offer.challenge);
    let last = proof.pop().expect("a character");
    proof.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        h.manager
            .register_device(&session, &proof, &h.policy)
            .await
            .is_err()
    );
    // The challenge survived both: the real device still registers.
    h.manager
        .register_device(
            &session,
            &device.registration_proof(&offer.challenge),
            &h.policy,
        )
        .await
        .expect("the real device");
}

#[tokio::test]
async fn dbsc_refresh_signed_by_another_key_is_refused() {
    let h = harness();
    let (device, thief) = (TestDevice::es256(), TestDevice::es256());
    let (session, _) = h.bound(&device).await;
    let id = session.record().id;
    let challenge = h.challenge(&id).await;
    assert_eq!(
        refused(h.refresh(&id, &thief.refresh_proof(&challenge)).await),
        DeviceBindingError::Proof(ProofError::BadSignature)
    );
    assert_eq!(
        refused(h.refresh(&id, &thief.registration_proof(&challenge)).await),
        DeviceBindingError::Proof(ProofError::WrongKey)
    );
    let rsa = TestDevice::rs256();
    assert_eq!(
        refused(h.refresh(&id, &rsa.refresh_proof(&challenge)).await),
        DeviceBindingError::Proof(ProofError::WrongKey)
    );
    assert!(!h.events.of_kind("dbsc_refresh_failed").is_empty());
}

#[tokio::test]
async fn dbsc_wrong_challenge_is_refused() {
    let h = harness();
    let device = TestDevice::es256();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    let err = h
        .manager
        .register_device(&session, &device.registration_proof("made-up"), &h.policy)
        .await
        .expect_err("unknown challenge");
    assert!(matches!(
        err,
        SessionError::DeviceBinding(DeviceBindingError::UnknownChallenge)
    ));
    // A challenge of another session does not bind this one.
    let other = h
        .manager
        .login(None, Login::new("bob"))
        .await
        .expect("login");
    let err = h
        .manager
        .register_device(
            &other,
            &device.registration_proof(&offer.challenge),
            &h.policy,
        )
        .await
        .expect_err("another session's challenge");
    assert!(matches!(
        err,
        SessionError::DeviceBinding(DeviceBindingError::NotOffered)
    ));
    let _ = h.offer(&other).await;
    assert!(matches!(
        h.manager
            .register_device(
                &other,
                &device.registration_proof(&offer.challenge),
                &h.policy
            )
            .await,
        Err(SessionError::DeviceBinding(
            DeviceBindingError::UnknownChallenge
        ))
    ));
    // At refresh: a challenge of another session gets a new challenge.
    let (bound, _) = h.bound(&device).await;
    let (theirs, _) = h.bound(&TestDevice::es256()).await;
    let their_challenge = h.challenge(&theirs.record().id).await;
    assert_eq!(
        refused(
            h.refresh(&bound.record().id, &device.refresh_proof(&their_challenge))
                .await
        ),
        DeviceBindingError::UnknownChallenge
    );
}

#[tokio::test]
async fn dbsc_reused_challenge_is_refused() {
    let h = harness();
    let device = TestDevice::es256();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    let proof = device.registration_proof(&offer.challenge);
    h.manager
        .register_device(&session, &proof, &h.policy)
        .await
        .expect("first use");
    assert!(
        h.manager
            .register_device(&session, &proof, &h.policy)
            .await
            .is_err(),
        "a registration proof works once"
    );
    let id = session.record().id;
    let challenge = h.challenge(&id).await;
    let proof = device.refresh_proof(&challenge);
    assert!(matches!(
        h.refresh(&id, &proof).await,
        Ok(DeviceRefresh::Refreshed(_))
    ));
    assert_eq!(
        refused(h.refresh(&id, &proof).await),
        DeviceBindingError::UnknownChallenge,
        "a replayed refresh proof gets a new challenge, not a cookie"
    );
}

#[tokio::test]
async fn dbsc_expired_challenge_is_refused() {
    let h = harness();
    let device = TestDevice::es256();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    h.clock
        .advance(h.policy.challenge_lifetime() + Duration::from_millis(1));
    let result = h
        .manager
        .register_device(
            &session,
            &device.registration_proof(&offer.challenge),
            &h.policy,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(SessionError::DeviceBinding(
                DeviceBindingError::ExpiredChallenge { .. }
            ))
        ),
        "{result:?}"
    );

    let (bound, _) = h.bound(&device).await;
    let id = bound.record().id;
    let challenge = h.challenge(&id).await;
    h.clock
        .advance(h.policy.challenge_lifetime() + Duration::from_millis(1));
    // The session lives on (its idle timeout is longer), the challenge does not.
    assert!(matches!(
        refused(h.refresh(&id, &device.refresh_proof(&challenge)).await),
        DeviceBindingError::ExpiredChallenge { .. }
    ));
}

#[tokio::test]
async fn dbsc_bound_session_needs_its_current_bound_cookie() {
    let h = harness();
    let device = TestDevice::es256();
    let (session, first) = h.bound(&device).await;
    let id = session.record().id;
    let device_bound = |result: Result<DeviceStatus, SessionError>| {
        matches!(
            result,
            Err(SessionError::Invalid {
                reason: InvalidReason::DeviceBound
            })
        )
    };
    assert!(device_bound(h.manager.check_device(&session, None).await));
    assert!(device_bound(
        h.manager.check_device(&session, Some("guess")).await
    ));
    let challenge = h.challenge(&id).await;
    let Ok(DeviceRefresh::Refreshed(second)) =
        h.refresh(&id, &device.refresh_proof(&challenge)).await
    else {
        panic!("refresh");
    };
    assert!(
        device_bound(h.manager.check_device(&session, Some(first.expose())).await),
        "a bound cookie from before the last refresh is refused"
    );
    assert!(
        h.manager
            .check_device(&session, Some(second.expose()))
            .await
            .is_ok()
    );
    h.clock.advance(h.policy.cookie_lifetime());
    assert!(
        device_bound(
            h.manager
                .check_device(&session, Some(second.expose()))
                .await
        ),
        "an expired bound cookie is refused"
    );
    // An unbound session is not asked for anything.
    let unbound = h.signed_in().await;
    assert_eq!(
        h.manager
            .check_device(&unbound, None)
            .await
            .expect("unbound"),
        DeviceStatus::Unbound
    );
}

#[tokio::test]
async fn dbsc_login_logout_and_revocation_end_the_binding() {
    let h = harness();
    let device = TestDevice::es256();
    let (session, cookie) = h.bound(&device).await;
    let id = session.record().id;
    // A login on the bound session ends the binding.
    let relogged = h
        .manager
        .login(Some(&session), Login::new("alice"))
        .await
        .expect("login");
    assert_eq!(relogged.record().id, id);
    assert!(!h.manager.is_device_bound(&id).await.expect("read"));
    assert_eq!(
        h.manager
            .check_device(&relogged, Some(cookie.expose()))
            .await
            .expect("unbound"),
        DeviceStatus::Unbound
    );
    // Logout: the refresh endpoint says the session ended.
    let (session, _) = h.bound(&device).await;
    let challenge = h.challenge(&session.record().id).await;
    h.manager.logout(&session).await.expect("logout");
    assert_eq!(
        refused(
            h.refresh(&session.record().id, &device.refresh_proof(&challenge))
                .await
        ),
        DeviceBindingError::SessionEnded
    );
    // Revocation by id.
    let (session, _) = h.bound(&device).await;
    h.manager
        .revoke(&session.record().id)
        .await
        .expect("revoke");
    assert!(matches!(
        h.manager
            .refresh_device(&session.record().id, None, &h.policy)
            .await,
        Err(SessionError::DeviceBinding(
            DeviceBindingError::SessionEnded
        ))
    ));
    // An unknown session id.
    assert!(matches!(
        h.manager
            .refresh_device(&SessionId([7; 16]), None, &h.policy)
            .await,
        Err(SessionError::DeviceBinding(
            DeviceBindingError::SessionEnded
        ))
    ));
    // A session never bound.
    let unbound = h.signed_in().await;
    assert!(matches!(
        h.manager
            .refresh_device(&unbound.record().id, None, &h.policy)
            .await,
        Err(SessionError::DeviceBinding(DeviceBindingError::NotBound))
    ));
}

#[tokio::test]
async fn dbsc_registration_racing_a_data_write_keeps_both() {
    let h = harness();
    let device = TestDevice::es256();
    let session = h.signed_in().await;
    let offer = h.offer(&session).await;
    let proof = device.registration_proof(&offer.challenge);
    let patch = DataChange::MergePatch(json!({"theme": "dark"}));
    let (registered, updated) = tokio::join!(
        h.manager.register_device(&session, &proof, &h.policy),
        h.manager.update(&session, patch, None, None),
    );
    let cookie = registered.expect("registration");
    let updated = updated.expect("data write");
    assert_eq!(updated.record().data.to_map()["theme"], "dark");
    assert!(
        h.manager
            .is_device_bound(&session.record().id)
            .await
            .expect("read")
    );
    assert_eq!(
        h.manager
            .check_device(&updated, Some(cookie.expose()))
            .await
            .expect("bound"),
        DeviceStatus::Bound
    );
}

#[test]
fn dbsc_policy_refuses_a_challenge_shorter_than_the_cookie() {
    assert!(
        DeviceBindingPolicy::with_challenge_lifetime(
            Duration::from_secs(600),
            Duration::from_secs(600)
        )
        .is_err()
    );
    assert!(DeviceBindingPolicy::new(Duration::ZERO).is_err());
    let policy = DeviceBindingPolicy::new(Duration::from_secs(60)).expect("policy");
    assert!(policy.challenge_lifetime() > policy.cookie_lifetime());
}

#[test]
fn dbsc_weak_rsa_keys_and_odd_jwks_are_refused() {
    assert!(matches!(
        DeviceKey::from_jwk(DeviceAlgorithm::Es256, &json!({"kty": "RSA"})),
        Err(ProofError::BadKey(_))
    ));
    assert!(matches!(
        DeviceKey::from_jwk(
            DeviceAlgorithm::Es256,
            &json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"})
        ),
        Err(ProofError::BadKey(_))
    ));
    let small = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128]), "e": "AQAB"});
    assert!(matches!(
        DeviceKey::from_jwk(DeviceAlgorithm::Rs256, &small),
        Err(ProofError::BadKey(_))
    ));
    assert!(matches!(
        verify_proof("a.b", None),
        Err(ProofError::Malformed(_))
    ));
    assert!(matches!(
        verify_proof(&"a".repeat(MAX_PROOF_BYTES + 1), None),
        Err(ProofError::Malformed(_))
    ));
}

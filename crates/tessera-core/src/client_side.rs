//! The lifecycle rules applied to client-side sessions: records that travel
//! sealed in a cookie (see [`sealed`](crate::sealed)) instead of living in
//! the store.
//!
//! The policy is the manager's own — the same deadlines, renewal, touch
//! granularity, binding and global epoch — applied to a record the caller
//! opened from a cookie. The one thing a client-side session cannot have is
//! a record to delete, so it is revoked through the subject's epoch, kept in
//! the store: logging out, "sign out everywhere" and
//! [`SessionManager::revoke_subject`] move it on, and every seal of that
//! subject made before dies at its next request. Anonymous client-side
//! sessions carry no privilege and end when their cookie is cleared or
//! their deadlines pass.

use serde_json::Value;

use crate::error::{InvalidReason, SessionError};
use crate::events::{RevokeCause, SessionEvent};
use crate::manager::{DataChange, Login, NewSession, SessionManager, apply_login, ended};
use crate::record::{ClientInfo, SessionData};
use crate::sealed::ClientSideSession;

/// The outcome of validating a client-side session.
#[derive(Debug, Clone)]
pub struct ValidatedClientSide {
    /// The session, with `last_seen_at` and `token_issued_at` moved on when
    /// validation touched or renewed it.
    pub record: ClientSideSession,
    /// Whether the record changed and must be sealed into a new cookie
    /// (renewal after `renew_after`, touch after `touch_after`).
    pub reseal: bool,
}

impl SessionManager {
    /// A new client-side session; nothing is written to the store.
    pub async fn create_client_side(
        &self,
        request: NewSession,
    ) -> Result<ClientSideSession, SessionError> {
        let now = self.now();
        let session = self.new_record(request, now).await?;
        let subject_epoch = match &session.subject {
            Some(subject) => self.store().subject_epoch(subject).await?,
            None => 0,
        };
        self.emit(SessionEvent::Created {
            session_id: session.id,
            subject: session.subject.clone(),
        });
        Ok(ClientSideSession {
            session,
            subject_epoch,
        })
    }

    /// Applies every validity rule to a record opened from a cookie: the
    /// global epoch, the subject's epoch, the absolute and idle deadlines
    /// and client binding; then renews (after `renew_after`) or touches
    /// (after `touch_after`) it, which the caller seals into a new cookie.
    pub async fn validate_client_side(
        &self,
        record: ClientSideSession,
        client: Option<&ClientInfo>,
    ) -> Result<ValidatedClientSide, SessionError> {
        let now = self.now();
        let global_epoch = self.current_epoch(now).await?;
        if let Some((reason, _)) = ended(&record.session, now, global_epoch) {
            return Err(SessionError::Invalid { reason });
        }
        if let Some(subject) = &record.session.subject
            && self.store().subject_epoch(subject).await? > record.subject_epoch
        {
            return Err(SessionError::Invalid {
                reason: InvalidReason::Revoked,
            });
        }
        self.check_binding(&record.session, client)?;
        let config = self.config();
        let mut record = record;
        let session = &mut record.session;
        if now.since(session.token_issued_at) >= config.renew_after {
            session.token_issued_at = now;
            session.last_seen_at = now;
            self.emit(SessionEvent::Renewed {
                session_id: session.id,
            });
            return Ok(ValidatedClientSide {
                record,
                reseal: true,
            });
        }
        let reseal = now.since(session.last_seen_at) >= config.touch_after;
        if reseal {
            session.last_seen_at = now;
        }
        Ok(ValidatedClientSide { record, reseal })
    }

    /// Changes a client-side session's data under the same limits as
    /// [`update`](Self::update). With `expected_version`, a version check;
    /// the caller seals the result.
    pub fn update_client_side(
        &self,
        record: &ClientSideSession,
        change: DataChange,
        expected_version: Option<u64>,
    ) -> Result<ClientSideSession, SessionError> {
        let current = &record.session;
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(SessionError::VersionConflict {
                expected,
                current_version: current.version,
            });
        }
        let data = match change {
            DataChange::Replace(data) => data,
            DataChange::MergePatch(patch) => merged(&current.data, &patch)?,
        };
        self.check_data(&data)?;
        let mut next = record.clone();
        next.session.data = data;
        next.session.version = current.version + 1;
        next.session.last_seen_at = self.now();
        Ok(next)
    }

    /// Signs a subject into a client-side session (or a new one when
    /// `current` is `None`), with the same rules as [`login`](Self::login):
    /// another subject's data never carries over, the client is bound anew,
    /// and the caller must replace the cookie. The subject's current epoch is
    /// sealed in, so revoking the subject later ends this session.
    pub async fn login_client_side(
        &self,
        current: Option<&ClientSideSession>,
        login: Login,
    ) -> Result<ClientSideSession, SessionError> {
        self.check_subject(&login.subject)?;
        if let Some(data) = &login.data {
            self.check_data(data)?;
        }
        let now = self.now();
        let subject_epoch = self.store().subject_epoch(&login.subject).await?;
        let (subject, auth_level) = (login.subject.clone(), login.auth_level);
        let session = match current {
            Some(current) => {
                let mut session = apply_login(current.session.clone(), login, now);
                session.token_issued_at = now;
                session.last_seen_at = now;
                session
            }
            None => {
                let request = NewSession {
                    subject: Some(login.subject),
                    auth_level: Some(login.auth_level),
                    data: login.data,
                    client: login.client,
                    ..NewSession::default()
                };
                self.new_record(request, now).await?
            }
        };
        self.emit(SessionEvent::LoggedIn {
            session_id: session.id,
            subject,
            auth_level,
        });
        Ok(ClientSideSession {
            session,
            subject_epoch,
        })
    }

    /// Renews a client-side session on request; the caller seals it into a
    /// new cookie. (The previous cookie stays readable until its deadlines
    /// pass: a client-side session cannot retire one seal alone.)
    pub fn rotate_client_side(&self, record: &ClientSideSession) -> ClientSideSession {
        let now = self.now();
        let mut next = record.clone();
        next.session.token_issued_at = now;
        next.session.last_seen_at = now;
        self.emit(SessionEvent::Rotated {
            session_id: next.session.id,
        });
        next
    }

    /// Ends a client-side session. A signed-in one is revoked through its
    /// subject's epoch, so a copy of the cookie is refused too — which signs
    /// the subject out of every client-side session it holds; an anonymous
    /// one ends with its cookie.
    pub async fn logout_client_side(&self, record: &ClientSideSession) -> Result<(), SessionError> {
        if let Some(subject) = &record.session.subject {
            self.store().bump_subject_epoch(subject).await?;
            self.emit(SessionEvent::Revoked {
                session_id: record.session.id,
                subject: Some(subject.clone()),
                cause: RevokeCause::Logout,
            });
        }
        Ok(())
    }

    /// "Sign out everywhere else" for a client-side session: ends every
    /// other session of its subject (client-side ones through the epoch,
    /// stored ones by deletion) and returns this one re-sealed under the new
    /// epoch, which the caller must set as the new cookie.
    pub async fn revoke_others_client_side(
        &self,
        record: &ClientSideSession,
    ) -> Result<ClientSideSession, SessionError> {
        let Some(subject) = record.session.subject.clone() else {
            return Err(SessionError::NotAuthenticated);
        };
        self.revoke_subject(&subject, None).await?;
        let mut next = record.clone();
        next.subject_epoch = self.store().subject_epoch(&subject).await?;
        next.session.last_seen_at = self.now();
        Ok(next)
    }

    /// Counts a credential that failed before any lookup (a sealed cookie
    /// that does not open, say) towards the client's guessing score.
    pub fn report_invalid_credential(&self, client: Option<&ClientInfo>) {
        self.count_invalid(client.and_then(|c| c.ip), self.now());
    }
}

fn merged(data: &SessionData, patch: &Value) -> Result<SessionData, SessionError> {
    let mut value = data.to_value();
    json_patch::merge(&mut value, patch);
    Ok(SessionData::from_value(&value)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{CollectingEventSink, ManualClock, MemoryStore, Timestamp};

    fn manager() -> (SessionManager, ManualClock, MemoryStore) {
        let clock = ManualClock::new(Timestamp(1_000_000));
        let store = MemoryStore::new();
        let manager = SessionManager::builder(store.clone())
            .clock(clock.clone())
            .events(CollectingEventSink::new())
            .build()
            .expect("valid config");
        (manager, clock, store)
    }

    #[tokio::test]
    async fn client_side_sessions_never_touch_the_store_while_anonymous() {
        let (manager, clock, store) = manager();
        let record = manager
            .create_client_side(NewSession::default())
            .await
            .expect("create");
        assert!(store.is_empty());
        clock.advance(Duration::from_secs(30));
        let valid = manager
            .validate_client_side(record.clone(), None)
            .await
            .expect("valid");
        assert!(!valid.reseal, "within touch_after nothing changes");
        clock.advance(Duration::from_secs(61));
        let touched = manager
            .validate_client_side(record, None)
            .await
            .expect("valid");
        assert!(touched.reseal);
        assert_eq!(touched.record.session.last_seen_at, manager.now());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn deadlines_inside_the_seal_apply() {
        let (manager, clock, _) = manager();
        let record = manager
            .create_client_side(NewSession::default())
            .await
            .expect("create");
        clock.advance(Duration::from_secs(30 * 60));
        let err = manager
            .validate_client_side(record.clone(), None)
            .await
            .expect_err("idle");
        assert_eq!(err.invalid_reason(), Some(InvalidReason::ExpiredIdle));

        // Active all along: the absolute deadline still ends it.
        let (manager, clock, _) = self::manager();
        let mut record = manager
            .create_client_side(NewSession::default())
            .await
            .expect("create");
        for _ in 0..48 {
            clock.advance(Duration::from_secs(15 * 60));
            match manager.validate_client_side(record.clone(), None).await {
                Ok(valid) => record = valid.record,
                Err(err) => {
                    assert_eq!(err.invalid_reason(), Some(InvalidReason::ExpiredAbsolute));
                    return;
                }
            }
        }
        panic!("the absolute timeout never ended the session");
    }

    #[tokio::test]
    async fn renewal_reseals_after_renew_after() {
        let (manager, clock, _) = manager();
        let record = manager
            .create_client_side(NewSession::default())
            .await
            .expect("create");
        clock.advance(Duration::from_secs(15 * 60));
        let renewed = manager
            .validate_client_side(record, None)
            .await
            .expect("valid");
        assert!(renewed.reseal);
        assert_eq!(renewed.record.session.token_issued_at, manager.now());
    }

    #[tokio::test]
    async fn subject_and_global_epochs_revoke_instantly() {
        let (manager, _, _) = manager();
        let phone = manager
            .login_client_side(None, Login::new("alice"))
            .await
            .expect("login");
        let laptop = manager
            .login_client_side(None, Login::new("alice"))
            .await
            .expect("login");
        let laptop = manager
            .revoke_others_client_side(&laptop)
            .await
            .expect("others");
        let err = manager
            .validate_client_side(phone, None)
            .await
            .expect_err("revoked");
        assert_eq!(err.invalid_reason(), Some(InvalidReason::Revoked));
        let laptop = manager
            .validate_client_side(laptop, None)
            .await
            .expect("still valid")
            .record;

        manager.logout_client_side(&laptop).await.expect("logout");
        assert!(manager.validate_client_side(laptop, None).await.is_err());

        let bob = manager
            .login_client_side(None, Login::new("bob"))
            .await
            .expect("login");
        manager.revoke_everything().await.expect("global");
        let err = manager
            .validate_client_side(bob, None)
            .await
            .expect_err("global revocation");
        assert_eq!(err.invalid_reason(), Some(InvalidReason::Revoked));
    }

    #[tokio::test]
    async fn login_and_updates_follow_the_server_side_rules() {
        let (manager, _, _) = manager();
        let anonymous = manager
            .create_client_side(NewSession::default())
            .await
            .expect("create");
        let with_cart = manager
            .update_client_side(
                &anonymous,
                DataChange::MergePatch(serde_json::json!({"cart": [1]})),
                None,
            )
            .expect("update");
        assert_eq!(with_cart.session.version, 2);
        let conflict = manager
            .update_client_side(
                &with_cart,
                DataChange::MergePatch(serde_json::json!({"x": 1})),
                Some(1),
            )
            .expect_err("stale version");
        assert!(matches!(conflict, SessionError::VersionConflict { .. }));
        let alice = manager
            .login_client_side(Some(&with_cart), Login::new("alice"))
            .await
            .expect("login");
        assert_eq!(alice.session.data.get::<Vec<u8>>("cart"), Some(vec![1]));
        let bob = manager
            .login_client_side(Some(&alice), Login::new("bob"))
            .await
            .expect("login");
        assert_eq!(bob.session.data.as_json(), "{}", "no data across subjects");
        let too_big = serde_json::json!({"blob": "x".repeat(70 * 1024)});
        assert!(matches!(
            manager.update_client_side(&bob, DataChange::MergePatch(too_big), None),
            Err(SessionError::DataTooLarge { .. })
        ));
    }
}

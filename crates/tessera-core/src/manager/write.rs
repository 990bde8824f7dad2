//! Changing a session: its data (compare-and-swap, retried on the fresh
//! record), and its credential (rotation).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::credential::Held;
use super::{ActiveSession, Credential, MAX_WRITE_ATTEMPTS, SessionManager, ended, forget_at};
use crate::clock::Timestamp;
use crate::error::SessionError;
use crate::events::SessionEvent;
use crate::record::{
    ClientInfo, CsrfSecret, DataError, PreviousToken, SessionData, SessionRecord, json_type_name,
};
use crate::store::WriteOutcome;
use crate::token::{SessionToken, random};

/// How [`SessionManager::update`] changes the data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DataChange {
    /// Replace the whole object.
    Replace(SessionData),
    /// Apply an RFC 7396 JSON merge patch.
    MergePatch(Value),
}

impl DataChange {
    /// Applies the change to a data object; a patch that would make it
    /// something other than an object is refused and changes nothing.
    pub fn apply(&self, data: &mut Map<String, Value>) -> Result<(), DataError> {
        match self {
            DataChange::Replace(replacement) => *data = replacement.to_map(),
            DataChange::MergePatch(patch) => {
                if !patch.is_object() {
                    return Err(DataError::NotAnObject {
                        found: json_type_name(patch),
                    });
                }
                let mut value = Value::Object(std::mem::take(data));
                json_patch::merge(&mut value, patch);
                if let Value::Object(map) = value {
                    *data = map;
                }
            }
        }
        Ok(())
    }
}

/// Why a token is replaced, which decides what its predecessor may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Renewal or an explicit rotate: the predecessor keeps working until
    /// its successor is presented, then for the grace.
    Renewal,
    /// Login or step-up: the predecessor is dead at once.
    Login,
}

impl SessionManager {
    /// Changes the data of the session. With `expected_version`, a
    /// compare-and-swap: a session that changed since is refused with
    /// [`SessionError::VersionConflict`]. Without it, concurrent writers
    /// are retried on the fresh record (merge patches then all apply).
    pub async fn update(
        &self,
        current: &ActiveSession,
        change: DataChange,
        expected_version: Option<u64>,
        client: Option<&ClientInfo>,
    ) -> Result<ActiveSession, SessionError> {
        if let DataChange::Replace(data) = &change {
            self.check_data(data)?;
        }
        self.modify(current, expected_version, client, |data| {
            Ok(change.apply(data)?)
        })
        .await
        .map(|(session, ())| session)
    }

    /// Read-modify-write of the data: `f` changes the object and may
    /// return a value; when another request wrote the session in between,
    /// `f` runs again on the fresh data, so no update is lost. The one
    /// retry loop of every data write.
    pub async fn modify<R>(
        &self,
        current: &ActiveSession,
        expected_version: Option<u64>,
        client: Option<&ClientInfo>,
        mut f: impl FnMut(&mut Map<String, Value>) -> Result<R, SessionError>,
    ) -> Result<(ActiveSession, R), SessionError> {
        let now = self.now();
        let held = match &current.held {
            Held::Seal { subject_epoch } => {
                let subject_epoch = *subject_epoch;
                self.check_sealed_live(&current.record, now).await?;
                self.check_binding(&current.record, client)?;
                let (next, result) =
                    self.changed(&current.record, expected_version, now, &mut f)?;
                return Ok((self.seal_into(next, subject_epoch)?, result));
            }
            Held::Token(held) => held.clone(),
        };
        // The record in hand, while it still looks live; otherwise it is
        // read again (it may have been used, or ended, elsewhere).
        let mut record = if ended(&current.record, now, self.current_epoch(now).await?).is_none() {
            current.record.clone()
        } else {
            Arc::new(self.reload(&current.record.id, &held, now).await?)
        };
        self.check_binding(&record, client)?;
        let mut last_conflict = None;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (next, result) = self.changed(&record, expected_version, now, &mut f)?;
            match self
                .store()
                .update(&next, record.revision(), forget_at(&next), now)
                .await?
            {
                WriteOutcome::Written => {
                    return Ok((ActiveSession::new(next, None, Held::Token(held)), result));
                }
                // Read again first: a session another request took over
                // (a login) is refused as such before versions are
                // compared; `changed` then refuses a stale expected version.
                WriteOutcome::Conflict { current: stored } => {
                    last_conflict = Some(stored.version);
                }
                WriteOutcome::NotFound => {}
            }
            record = Arc::new(self.reload(&record.id, &held, now).await?);
        }
        Err(SessionError::WriteContention {
            attempts: MAX_WRITE_ATTEMPTS,
            last_version: last_conflict.unwrap_or(record.version),
        })
    }

    /// The record after a data change, checked against the limits.
    fn changed<R>(
        &self,
        record: &SessionRecord,
        expected_version: Option<u64>,
        now: Timestamp,
        f: &mut impl FnMut(&mut Map<String, Value>) -> Result<R, SessionError>,
    ) -> Result<(SessionRecord, R), SessionError> {
        if let Some(expected) = expected_version
            && expected != record.version
        {
            return Err(SessionError::VersionConflict {
                expected,
                current_version: record.version,
            });
        }
        let mut data = record.data.to_map();
        let result = f(&mut data)?;
        let data = SessionData::from_map(&data)?;
        self.check_data(&data)?;
        let mut next = record.clone();
        next.data = data;
        next.version = record.version + 1;
        next.last_seen_at = now.max(record.last_seen_at);
        Ok((next, result))
    }

    /// Issues a new credential for the same session. A replaced token
    /// keeps working until its successor is presented (each use gets the
    /// successor again, for at most `renewal_delivery_window`), then for
    /// `rotation_grace`; presented after that, it counts as stolen.
    pub async fn rotate(&self, current: &ActiveSession) -> Result<ActiveSession, SessionError> {
        let now = self.now();
        let session = match &current.held {
            Held::Seal { subject_epoch } => {
                self.check_sealed_live(&current.record, now).await?;
                let mut next = SessionRecord::clone(&current.record);
                next.token_issued_at = now;
                next.last_seen_at = now;
                self.seal_into(next, *subject_epoch)?
            }
            Held::Token(held) => {
                let mut record = current.record.clone();
                let mut rotated = None;
                for _ in 0..MAX_WRITE_ATTEMPTS {
                    if let Some(session) = self
                        .rotate_from(&record, held, Rotation::Renewal, now, |r| r)
                        .await?
                    {
                        rotated = Some(session);
                        break;
                    }
                    record = Arc::new(self.reload(&record.id, held, now).await?);
                }
                rotated.ok_or(SessionError::WriteContention {
                    attempts: MAX_WRITE_ATTEMPTS,
                    last_version: record.version,
                })?
            }
        };
        self.emit(SessionEvent::Rotated {
            session_id: session.record.id,
        });
        Ok(session)
    }

    /// Moves a session to a new token, changing it with `change` on the
    /// way (a login). The record's current token becomes its previous one;
    /// when the request holds that token, the successor is sealed for it
    /// (renewal), so that the request's client can be given it again.
    /// `None` when a concurrent writer got there first.
    pub(crate) async fn rotate_from(
        &self,
        record: &SessionRecord,
        held: &SessionToken,
        kind: Rotation,
        now: Timestamp,
        change: impl FnOnce(SessionRecord) -> SessionRecord,
    ) -> Result<Option<ActiveSession>, SessionError> {
        // One call to the OS for the verifier and, at login, the new CSRF secret.
        let fresh: [u8; 48] = random()?;
        let mut verifier = [0u8; 32];
        verifier.copy_from_slice(&fresh[..32]);
        let token = SessionToken::new(record.id, verifier);
        let renewal = kind == Rotation::Renewal;
        let holds_current = record.token.ct_eq(&held.hash());
        let mut next = change(record.clone());
        next.token = token.hash();
        next.token_issued_at = now;
        next.last_seen_at = now;
        next.previous = Some(Box::new(PreviousToken {
            hash: record.token,
            rotated_at: now,
            grace_until: renewal.then(|| now.plus(self.config().rotation_grace)),
            successor: if renewal && holds_current {
                held.seal_successor(&token)
            } else {
                None
            },
        }));
        if !renewal {
            let mut csrf = [0u8; 16];
            csrf.copy_from_slice(&fresh[32..]);
            next.csrf_secret = CsrfSecret(csrf);
        }
        let outcome = self
            .store()
            .update(&next, record.revision(), forget_at(&next), now)
            .await?;
        Ok((outcome == WriteOutcome::Written)
            .then(|| ActiveSession::new(next, Some(Credential::token(&token)), Held::Token(token))))
    }

    /// A sealed session in hand may have reached a deadline, or a global
    /// revocation, since it was opened; a write must not revive it.
    pub(crate) async fn check_sealed_live(
        &self,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        match ended(record, now, self.current_epoch(now).await?) {
            Some((reason, _)) => Err(SessionError::Invalid { reason }),
            None => Ok(()),
        }
    }

    /// Refuses an operation on a session that is not signed in.
    pub(crate) fn signed_in(record: &SessionRecord) -> Result<&str, SessionError> {
        record
            .subject
            .as_deref()
            .ok_or(SessionError::NotAuthenticated)
    }
}

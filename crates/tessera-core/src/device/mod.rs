//! Device-bound sessions (DBSC, `docs/dbsc.md`): a session bound to a key
//! pair the browser keeps on the device. The session's long-lived
//! credential alone no longer authenticates; a short-lived bound cookie
//! must come with it, and only a proof signed by the device key renews
//! that cookie. This module holds the binding's stored state and the
//! manager's rules for it: challenges (single use, short-lived, bound to
//! one session), registration, refresh, and the check of every request.
//!
//! The state lives in the session's [`AttachmentKind::DeviceBinding`]
//! attachment, beside the record and never inside it: writes of the
//! session's data and of its binding cannot undo each other, and the
//! store deletes the binding with the session.

mod proof;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::proof::{
    DeviceAlgorithm, DeviceKey, MAX_PROOF_BYTES, MIN_RSA_BITS, ProofError, VerifiedProof,
    verify_proof,
};
use crate::clock::Timestamp;
use crate::error::{InvalidReason, SessionError};
use crate::events::SessionEvent;
use crate::manager::{ActiveSession, EXPIRED_RETENTION, MAX_WRITE_ATTEMPTS, SessionManager};
use crate::record::SessionRecord;
use crate::store::{AttachmentKind, AttachmentWrite};
use crate::token::{SessionId, random};

/// Default lifetime of the bound cookie: a stolen copy works at most this long.
pub const DEFAULT_BOUND_COOKIE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How much longer than the bound cookie a challenge lives by default: a
/// challenge handed out early is still good when the cookie runs out.
pub const DEFAULT_CHALLENGE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The timing of device-bound sessions: how long a bound cookie lives and
/// how long a challenge may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBindingPolicy {
    cookie_lifetime: Duration,
    challenge_lifetime: Duration,
}

impl Default for DeviceBindingPolicy {
    fn default() -> Self {
        Self {
            cookie_lifetime: DEFAULT_BOUND_COOKIE_LIFETIME,
            challenge_lifetime: DEFAULT_BOUND_COOKIE_LIFETIME + DEFAULT_CHALLENGE_MARGIN,
        }
    }
}

/// A device-binding policy that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceBindingPolicyError {
    /// The bound cookie's lifetime is under a second.
    #[error("the bound cookie's lifetime of {0:?} is under one second")]
    CookieLifetimeTooShort(Duration),
    /// A challenge would die before the cookie it renews.
    #[error(
        "a challenge lifetime of {challenge:?} must be longer than the bound cookie's {cookie:?}"
    )]
    ChallengeShorterThanCookie {
        /// The challenge lifetime asked for.
        challenge: Duration,
        /// The bound cookie's lifetime.
        cookie: Duration,
    },
}

impl DeviceBindingPolicy {
    /// A bound cookie living `cookie_lifetime`; challenges live five
    /// minutes longer.
    pub fn new(cookie_lifetime: Duration) -> Result<Self, DeviceBindingPolicyError> {
        Self::with_challenge_lifetime(cookie_lifetime, cookie_lifetime + DEFAULT_CHALLENGE_MARGIN)
    }

    /// Both lifetimes; a challenge must outlive the cookie.
    pub fn with_challenge_lifetime(
        cookie_lifetime: Duration,
        challenge_lifetime: Duration,
    ) -> Result<Self, DeviceBindingPolicyError> {
        if cookie_lifetime < Duration::from_secs(1) {
            return Err(DeviceBindingPolicyError::CookieLifetimeTooShort(
                cookie_lifetime,
            ));
        }
        if challenge_lifetime <= cookie_lifetime {
            return Err(DeviceBindingPolicyError::ChallengeShorterThanCookie {
                challenge: challenge_lifetime,
                cookie: cookie_lifetime,
            });
        }
        Ok(Self {
            cookie_lifetime,
            challenge_lifetime,
        })
    }

    /// How long a bound cookie lives.
    pub fn cookie_lifetime(&self) -> Duration {
        self.cookie_lifetime
    }

    /// How long a challenge may be answered.
    pub fn challenge_lifetime(&self) -> Duration {
        self.challenge_lifetime
    }
}

/// Why a registration or refresh was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceBindingError {
    /// The proof is malformed, of a refused algorithm, or does not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// No registration was offered to this session (or it was used).
    #[error("no registration is pending for this session")]
    NotOffered,
    /// The session is bound already.
    #[error("the session is bound to a device already")]
    AlreadyBound,
    /// The session is not bound to a device.
    #[error("the session is not bound to a device")]
    NotBound,
    /// The proof answers no current challenge of this session (used,
    /// replaced, or another session's).
    #[error("the proof answers no current challenge of this session")]
    UnknownChallenge,
    /// The proof answers a challenge that expired.
    #[error("the proof answers a challenge that expired at {expired_at}")]
    ExpiredChallenge {
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The session ended (logout, revocation, deadline) or never was.
    #[error("the session has ended")]
    SessionEnded,
    /// Sealed sessions have no store record to bind.
    #[error("sealed sessions cannot be bound to a device")]
    Sealed,
    /// The stored binding is not of a format this version reads.
    #[error("the stored device binding is unreadable: {0}")]
    Corrupt(String),
}

impl DeviceBindingError {
    /// A stable snake_case name (events, metrics labels).
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceBindingError::Proof(ProofError::AlgorithmNotAllowed(_)) => {
                "algorithm_not_allowed"
            }
            DeviceBindingError::Proof(ProofError::BadSignature) => "bad_signature",
            DeviceBindingError::Proof(ProofError::WrongKey) => "wrong_key",
            DeviceBindingError::Proof(_) => "malformed_proof",
            DeviceBindingError::NotOffered => "not_offered",
            DeviceBindingError::AlreadyBound => "already_bound",
            DeviceBindingError::NotBound => "not_bound",
            DeviceBindingError::UnknownChallenge => "unknown_challenge",
            DeviceBindingError::ExpiredChallenge { .. } => "expired_challenge",
            DeviceBindingError::SessionEnded => "session_ended",
            DeviceBindingError::Sealed => "sealed",
            DeviceBindingError::Corrupt(_) => "corrupt",
        }
    }

    /// Whether the browser should be sent a fresh challenge (HTTP 403)
    /// rather than told that the binding is over.
    pub fn wants_new_challenge(&self) -> bool {
        matches!(
            self,
            DeviceBindingError::UnknownChallenge | DeviceBindingError::ExpiredChallenge { .. }
        )
    }
}

/// A challenge for a browser to sign, with the session identifier it
/// belongs to (the session's public id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChallenge {
    /// The challenge (43 base64url characters).
    pub challenge: String,
    /// The DBSC session identifier (the session's public id).
    pub session_identifier: String,
}

/// A new bound cookie value. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct BoundCookie {
    value: String,
    /// When the server stops accepting it.
    pub expires_at: Timestamp,
    /// Its lifetime (the cookie's `Max-Age`).
    pub lifetime: Duration,
}

impl BoundCookie {
    /// The cookie's value, to send once in `Set-Cookie`.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for BoundCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundCookie")
            .field("value", &"…redacted")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a refresh request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRefresh {
    /// Sign this challenge first (HTTP 403 with `Secure-Session-Challenge`);
    /// `refused` says why a proof that came was not accepted.
    Challenge {
        /// The new challenge.
        challenge: DeviceChallenge,
        /// Why the proof presented (if any) was refused.
        refused: Option<DeviceBindingError>,
    },
    /// The proof verified: a new bound cookie.
    Refreshed(BoundCookie),
}

/// Where a session stands with device binding, after a request's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceStatus {
    /// Not bound; nothing is asked of the request.
    Unbound,
    /// A registration was offered and not completed yet.
    Offered,
    /// Bound, and the request carried the current bound cookie.
    Bound,
}

/// Version of the stored state's format.
const STATE_VERSION: u8 = 1;

/// At most this many challenges are live per session (the newest and the
/// one before it, for a browser that answers a challenge just replaced).
const MAX_LIVE_CHALLENGES: usize = 2;

/// The binding as stored in the attachment (JSON, versioned).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BindingState {
    v: u8,
    /// The device's key; `None` while a registration is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<DeviceKey>,
    /// Live challenges, newest first.
    #[serde(default)]
    challenges: Vec<StoredChallenge>,
    /// The current bound cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<StoredCookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bound_at: Option<Timestamp>,
    #[serde(default)]
    refreshes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredChallenge {
    value: String,
    expires_at: Timestamp,
}

/// The bound cookie as stored: its SHA-256 (hex) and deadline.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCookie {
    hash: String,
    expires_at: Timestamp,
}

impl BindingState {
    fn decode(bytes: &[u8]) -> Result<Self, DeviceBindingError> {
        let state: Self = serde_json::from_slice(bytes)
            .map_err(|err| DeviceBindingError::Corrupt(err.to_string()))?;
        if state.v != STATE_VERSION {
            return Err(DeviceBindingError::Corrupt(format!(
                "format {} is not {STATE_VERSION}",
                state.v
            )));
        }
        Ok(state)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Adds a challenge as the newest, dropping expired and surplus ones.
    fn push_challenge(&mut self, value: String, now: Timestamp, policy: &DeviceBindingPolicy) {
        self.challenges.retain(|c| c.expires_at > now);
        self.challenges.insert(
            0,
            StoredChallenge {
                value,
                expires_at: now.plus(policy.challenge_lifetime),
            },
        );
        self.challenges.truncate(MAX_LIVE_CHALLENGES);
    }

    /// Takes the challenge `answered` out of the live ones.
    fn take_challenge(&mut self, answered: &str, now: Timestamp) -> Result<(), DeviceBindingError> {
        let position = self
            .challenges
            .iter()
            .position(|c| bool::from(c.value.as_bytes().ct_eq(answered.as_bytes())))
            .ok_or(DeviceBindingError::UnknownChallenge)?;
        let challenge = self.challenges.remove(position);
        if challenge.expires_at <= now {
            return Err(DeviceBindingError::ExpiredChallenge {
                expired_at: challenge.expires_at,
            });
        }
        Ok(())
    }
}

fn new_secret() -> Result<String, SessionError> {
    Ok(URL_SAFE_NO_PAD.encode(random::<32>()?))
}

fn cookie_hash(value: &str) -> String {
    crate::token::hex(&Sha256::digest(value.as_bytes()))
}

/// How long the store keeps a binding: as long as the session could live.
fn binding_forget_at(record: &SessionRecord) -> Timestamp {
    record.absolute_expires_at.plus(EXPIRED_RETENTION)
}

impl SessionManager {
    async fn load_device_state(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(BindingState, u64)>, SessionError> {
        let Some(attachment) = self
            .store()
            .load_attachment(id, AttachmentKind::DeviceBinding, now)
            .await?
        else {
            return Ok(None);
        };
        let state = BindingState::decode(&attachment.value)?;
        Ok(Some((state, attachment.generation)))
    }

    async fn store_device_state(
        &self,
        record: &SessionRecord,
        state: &BindingState,
        expected: Option<u64>,
        now: Timestamp,
    ) -> Result<bool, SessionError> {
        let outcome = self
            .store()
            .store_attachment(
                &record.id,
                AttachmentKind::DeviceBinding,
                &state.encode(),
                expected,
                binding_forget_at(record),
                now,
            )
            .await?;
        Ok(matches!(outcome, AttachmentWrite::Written { .. }))
    }

    /// Offers device binding to a session (after a login): a registration
    /// challenge, stored single-use. `None` for a sealed session or one
    /// that is bound already.
    pub async fn offer_device_binding(
        &self,
        session: &ActiveSession,
        policy: &DeviceBindingPolicy,
    ) -> Result<Option<DeviceChallenge>, SessionError> {
        if session.is_sealed() {
            return Ok(None);
        }
        let record = session.record();
        let now = self.now();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (mut state, generation) = match self.load_device_state(&record.id, now).await? {
                Some((state, _)) if state.key.is_some() => return Ok(None),
                Some((state, generation)) => (state, Some(generation)),
                None => (
                    BindingState {
                        v: STATE_VERSION,
                        key: None,
                        challenges: Vec::new(),
                        cookie: None,
                        bound_at: None,
                        refreshes: 0,
                    },
                    None,
                ),
            };
            let challenge = new_secret()?;
            state.push_challenge(challenge.clone(), now, policy);
            if self
                .store_device_state(record, &state, generation, now)
                .await?
            {
                return Ok(Some(DeviceChallenge {
                    challenge,
                    session_identifier: record.id.to_string(),
                }));
            }
        }
        Ok(None)
    }

    /// Completes a registration: verifies `proof` (signed by the key in
    /// its `jwk`, answering a live registration challenge of this
    /// session, which is used up) and binds the session to that key.
    /// Returns the first bound cookie.
    pub async fn register_device(
        &self,
        session: &ActiveSession,
        proof: &str,
        policy: &DeviceBindingPolicy,
    ) -> Result<BoundCookie, SessionError> {
        if session.is_sealed() {
            return Err(DeviceBindingError::Sealed.into());
        }
        let record = session.record();
        let now = self.now();
        let failed = |error: DeviceBindingError| {
            self.emit(SessionEvent::DbscRefreshFailed {
                session_id: record.id,
                reason: error.as_str(),
            });
            SessionError::from(error)
        };
        let verified = verify_proof(proof, None).map_err(|e| failed(e.into()))?;
        let Some((mut state, generation)) = self.load_device_state(&record.id, now).await? else {
            return Err(failed(DeviceBindingError::NotOffered));
        };
        if state.key.is_some() {
            return Err(failed(DeviceBindingError::AlreadyBound));
        }
        state
            .take_challenge(&verified.challenge, now)
            .map_err(failed)?;
        let value = new_secret()?;
        let cookie = BoundCookie {
            expires_at: now.plus(policy.cookie_lifetime),
            lifetime: policy.cookie_lifetime,
            value,
        };
        let alg = verified.key.alg;
        state.key = Some(verified.key);
        state.challenges.clear();
        state.cookie = Some(StoredCookie {
            hash: cookie_hash(&cookie.value),
            expires_at: cookie.expires_at,
        });
        state.bound_at = Some(now);
        // The compare-and-swap makes the challenge single-use: of two
        // registrations answering it, one writes.
        if !self
            .store_device_state(record, &state, Some(generation), now)
            .await?
        {
            return Err(failed(DeviceBindingError::UnknownChallenge));
        }
        self.emit(SessionEvent::DbscRegistered {
            session_id: record.id,
            algorithm: alg.name(),
        });
        Ok(cookie)
    }

    /// A refresh of the bound cookie of session `id`. Without a proof, or
    /// with one answering no live challenge, a new challenge is handed
    /// out; a proof signed by the bound key answering a live challenge
    /// (used up) gets a new bound cookie, and the previous one stops
    /// working. Errors (an ended session, a session not bound, a proof by
    /// another key) mean the binding is over for the browser.
    pub async fn refresh_device(
        &self,
        id: &SessionId,
        proof: Option<&str>,
        policy: &DeviceBindingPolicy,
    ) -> Result<DeviceRefresh, SessionError> {
        let now = self.now();
        let failed = |error: DeviceBindingError| {
            self.emit(SessionEvent::DbscRefreshFailed {
                session_id: *id,
                reason: error.as_str(),
            });
            SessionError::from(error)
        };
        let Some(record) = self.get(id).await? else {
            return Err(failed(DeviceBindingError::SessionEnded));
        };
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some((mut state, generation)) = self.load_device_state(id, now).await? else {
                return Err(failed(DeviceBindingError::NotBound));
            };
            let Some(key) = state.key.clone() else {
                return Err(failed(DeviceBindingError::NotBound));
            };
            let refused = match proof {
                None => None,
                Some(proof) => {
                    let verified = verify_proof(proof, Some(&key)).map_err(|e| failed(e.into()))?;
                    match state.take_challenge(&verified.challenge, now) {
                        Ok(()) => {
                            let cookie = BoundCookie {
                                value: new_secret()?,
                                expires_at: now.plus(policy.cookie_lifetime),
                                lifetime: policy.cookie_lifetime,
                            };
                            state.cookie = Some(StoredCookie {
                                hash: cookie_hash(&cookie.value),
                                expires_at: cookie.expires_at,
                            });
                            state.refreshes += 1;
                            if self
                                .store_device_state(&record, &state, Some(generation), now)
                                .await?
                            {
                                self.emit(SessionEvent::DbscRefreshed { session_id: *id });
                                return Ok(DeviceRefresh::Refreshed(cookie));
                            }
                            continue;
                        }
                        Err(error) => {
                            self.emit(SessionEvent::DbscRefreshFailed {
                                session_id: *id,
                                reason: error.as_str(),
                            });
                            Some(error)
                        }
                    }
                }
            };
            let challenge = new_secret()?;
            // A refused challenge stays used up (taken out above).
            state.push_challenge(challenge.clone(), now, policy);
            if self
                .store_device_state(&record, &state, Some(generation), now)
                .await?
            {
                return Ok(DeviceRefresh::Challenge {
                    challenge: DeviceChallenge {
                        challenge,
                        session_identifier: id.to_string(),
                    },
                    refused,
                });
            }
        }
        Err(SessionError::WriteContention {
            attempts: MAX_WRITE_ATTEMPTS,
            last_version: record.version,
        })
    }

    /// The device-binding check of a request: an unbound session passes;
    /// a bound one passes only with its current, unexpired bound cookie
    /// (`bound_cookie`), otherwise it is not authenticated
    /// ([`InvalidReason::DeviceBound`]).
    pub async fn check_device(
        &self,
        session: &ActiveSession,
        bound_cookie: Option<&str>,
    ) -> Result<DeviceStatus, SessionError> {
        if session.is_sealed() {
            return Ok(DeviceStatus::Unbound);
        }
        let now = self.now();
        let Some((state, _)) = self.load_device_state(&session.record().id, now).await? else {
            return Ok(DeviceStatus::Unbound);
        };
        if state.key.is_none() {
            return Ok(DeviceStatus::Offered);
        }
        let current = match (&state.cookie, bound_cookie) {
            (Some(stored), Some(presented)) => {
                let hash = cookie_hash(presented);
                bool::from(stored.hash.as_bytes().ct_eq(hash.as_bytes())) && now < stored.expires_at
            }
            _ => false,
        };
        if current {
            Ok(DeviceStatus::Bound)
        } else {
            Err(SessionError::Invalid {
                reason: InvalidReason::DeviceBound,
            })
        }
    }

    /// Whether the session is bound to a device (for display).
    pub async fn is_device_bound(&self, id: &SessionId) -> Result<bool, SessionError> {
        let now = self.now();
        Ok(self
            .load_device_state(id, now)
            .await?
            .is_some_and(|(state, _)| state.key.is_some()))
    }

    /// Counts a request a browser sent without the bound cookie
    /// (`Secure-Session-Skipped`), as a `dbsc_skipped` event.
    pub fn report_device_skipped(&self, session_identifier: Option<&str>, reason: &str) {
        let reason = match reason {
            "unreachable" => "unreachable",
            "server_error" => "server_error",
            "quota_exceeded" => "quota_exceeded",
            _ => "other",
        };
        self.emit(SessionEvent::DbscSkipped {
            session_id: session_identifier.and_then(|s| SessionId::parse(s).ok()),
            reason,
        });
    }

    /// Ends the device binding of a session (a login moves the session to
    /// another user or level: the new sign-in binds anew).
    pub(crate) async fn end_device_binding(&self, id: &SessionId) -> Result<(), SessionError> {
        self.store()
            .delete_attachment(id, AttachmentKind::DeviceBinding)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

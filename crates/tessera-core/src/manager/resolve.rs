//! Creating sessions, and turning a presented credential into the session
//! it stands for: every check that ends a session, renewal and touch.

use super::credential::Held;
use super::write::Rotation;
use super::{
    ActiveSession, Credential, NewSession, Sealing, SessionManager, ended, forget_at,
    per_session_timeout,
};
use crate::clock::Timestamp;
use crate::error::{InvalidReason, SessionError};
use crate::events::{RevokeCause, SessionEvent};
use crate::record::{AuthLevel, ClientInfo, CsrfSecret, SessionRecord};
use crate::sealed::{OpenError, SealedSession};
use crate::store::{CreateOutcome, StoreError, WriteOutcome};
use crate::token::{SessionId, SessionToken, TokenHash, random};

/// How a record regards the token a request presented.
enum Standing {
    /// Its current token.
    Current,
    /// Its previous token, still honoured; with the successor to hand the
    /// client again while the successor has not been presented.
    Previous { successor: Option<SessionToken> },
    /// Its previous token, dead (superseded by login, or never followed).
    Dead,
    /// Its previous token after the grace, although the successor is in
    /// use: someone kept a copy.
    Theft,
    /// Not a token of this session.
    Stranger,
}

/// Fresh randomness for a new session: id, token verifier, CSRF secret,
/// from one call to the OS.
pub(crate) struct Fresh {
    pub(crate) id: SessionId,
    pub(crate) verifier: [u8; 32],
    pub(crate) csrf: CsrfSecret,
}

impl Fresh {
    pub(crate) fn draw() -> Result<Self, SessionError> {
        let bytes: [u8; 64] = random()?;
        let mut id = [0u8; 16];
        let mut verifier = [0u8; 32];
        let mut csrf = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        verifier.copy_from_slice(&bytes[16..48]);
        csrf.copy_from_slice(&bytes[48..]);
        Ok(Self {
            id: SessionId(id),
            verifier,
            csrf: CsrfSecret(csrf),
        })
    }
}

impl SessionManager {
    // ----- create -----------------------------------------------------------

    /// Creates a session and issues its first credential
    /// ([`ActiveSession::issued`]).
    ///
    /// An anonymous session (no subject) gets the anonymous idle timeout,
    /// and is refused with [`SessionError::TooManyAnonymous`] beyond the
    /// anonymous creation caps ([`SessionConfig::anonymous_per_ip_per_minute`](crate::SessionConfig::anonymous_per_ip_per_minute)).
    pub async fn create(&self, request: NewSession) -> Result<ActiveSession, SessionError> {
        let now = self.now();
        if request.subject.is_none() {
            let ip = request.client.as_ref().and_then(|client| client.ip);
            self.inner.anonymous_caps.admit(ip, now)?;
        }
        let made = self.new_record(request, now, Fresh::draw()?).await?;
        let subject = made.0.subject.clone();
        let session = self.store_new(made, now).await?;
        self.emit(SessionEvent::Created {
            session_id: session.record.id,
            subject: subject.clone(),
        });
        if let Some(subject) = subject {
            self.enforce_subject_cap(&subject, &session.record.id)
                .await?;
        }
        Ok(session)
    }

    /// A new session record from a request, checked against the policy.
    pub(crate) async fn new_record(
        &self,
        request: NewSession,
        now: Timestamp,
        fresh: Fresh,
    ) -> Result<(SessionRecord, [u8; 32]), SessionError> {
        let config = self.config();
        // A session's own idle timeout may be up to the configured one; an
        // anonymous session that asks for none gets the anonymous one.
        let idle = match request.idle_timeout {
            None if request.subject.is_none() => config.anonymous_idle_timeout,
            requested => per_session_timeout("idle_timeout", requested, config.idle_timeout)?,
        };
        let absolute = per_session_timeout(
            "absolute_timeout",
            request.absolute_timeout,
            config.absolute_timeout,
        )?;
        if let Some(subject) = &request.subject {
            self.check_subject(subject)?;
        }
        let data = request.data.unwrap_or_default();
        self.check_data(&data)?;
        // Read fresh: a session stamped with an epoch another node has
        // already moved past would be born revoked.
        let epoch = self.fresh_epoch(now).await?;
        let authenticated = request.subject.is_some();
        let record = SessionRecord {
            id: fresh.id,
            auth_level: if authenticated {
                request.auth_level.unwrap_or(AuthLevel::PASSWORD)
            } else {
                AuthLevel::ANONYMOUS
            },
            authenticated_at: authenticated.then_some(now),
            subject: request.subject,
            data,
            created_at: now,
            last_seen_at: now,
            token_issued_at: now,
            idle_timeout_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            absolute_expires_at: now.plus(absolute),
            version: 1,
            epoch,
            binding: request.client.as_ref().map(|c| Box::new(c.binding())),
            client: request.client.as_ref().map(|c| Box::new(c.for_display())),
            token: TokenHash([0; 32]),
            previous: None,
            csrf_secret: fresh.csrf,
        };
        Ok((record, fresh.verifier))
    }

    /// Writes a new record (or seals it) and issues its credential.
    pub(crate) async fn store_new(
        &self,
        (mut record, mut verifier): (SessionRecord, [u8; 32]),
        now: Timestamp,
    ) -> Result<ActiveSession, SessionError> {
        if self.sealing().is_some() {
            let subject_epoch = match &record.subject {
                Some(subject) => self.store().subject_epoch(subject).await?,
                None => 0,
            };
            return self.seal_into(record, subject_epoch);
        }
        // A collision of 128-bit ids does not happen; the loop only keeps
        // create-if-absent honest if it ever did.
        for _ in 0..4 {
            let token = SessionToken::new(record.id, verifier);
            record.token = token.hash();
            match self.store().create(&record, forget_at(&record)).await? {
                CreateOutcome::Created => {
                    return Ok(ActiveSession::new(
                        record,
                        Some(Credential::token(&token)),
                        Held::Token(token),
                    ));
                }
                CreateOutcome::AlreadyExists => {
                    let fresh = Fresh::draw()?;
                    record.id = fresh.id;
                    verifier = fresh.verifier;
                }
            }
        }
        let _ = now;
        Err(SessionError::Store(StoreError::Unavailable {
            message: "the store reported every new session id as already present".into(),
            source: None,
        }))
    }

    /// Seals a record into a new credential.
    pub(crate) fn seal_into(
        &self,
        record: SessionRecord,
        subject_epoch: u64,
    ) -> Result<ActiveSession, SessionError> {
        let Some(sealing) = self.sealing() else {
            return Err(SessionError::NotSealed);
        };
        let sealed = SealedSession {
            record,
            subject_epoch,
        };
        let text = sealing.keys.seal(&sealed, &sealing.context)?;
        Ok(ActiveSession::new(
            sealed.record,
            Some(Credential::sealed(text)),
            Held::Seal { subject_epoch },
        ))
    }

    // ----- validate ---------------------------------------------------------

    /// Validates a credential presented by a client: checks every deadline,
    /// the revocation epochs, reuse and binding, slides the idle deadline,
    /// and renews the credential when it is older than `renew_after`
    /// (then [`ActiveSession::issued`] holds the new one).
    pub async fn validate(
        &self,
        presented: &str,
        client: Option<&ClientInfo>,
    ) -> Result<ActiveSession, SessionError> {
        match self.sealing() {
            Some(sealing) => self.open_sealed(sealing, presented, client, true).await,
            None => self.open_stored(presented, client, true).await,
        }
    }

    /// Applies every check of [`validate`](Self::validate) without
    /// touching or renewing: for an API call that acts on the session
    /// (update, rotate, logout) and returns no credential of its own.
    pub async fn resolve(
        &self,
        presented: &str,
        client: Option<&ClientInfo>,
    ) -> Result<ActiveSession, SessionError> {
        match self.sealing() {
            Some(sealing) => self.open_sealed(sealing, presented, client, false).await,
            None => self.open_stored(presented, client, false).await,
        }
    }

    async fn open_stored(
        &self,
        presented: &str,
        client: Option<&ClientInfo>,
        refresh: bool,
    ) -> Result<ActiveSession, SessionError> {
        let now = self.now();
        let ip = client.and_then(|c| c.ip);
        let Ok(token) = SessionToken::parse(presented) else {
            self.count_invalid(ip, now);
            return Err(SessionError::invalid(InvalidReason::Malformed));
        };
        let hash = token.hash();
        let id = match token.session_id() {
            Some(id) => Some(id),
            None => self.store().find_legacy(&hash, now).await?,
        };
        let Some(record) = (match id {
            Some(id) => self.store().load(&id, now).await?,
            None => None,
        }) else {
            self.count_invalid(ip, now);
            return Err(SessionError::invalid(InvalidReason::Unknown));
        };
        let standing = self.recognise(&record, &token, &hash, now);
        let successor = match standing {
            Standing::Stranger => {
                self.count_invalid(ip, now);
                return Err(SessionError::invalid(InvalidReason::Unknown));
            }
            Standing::Dead => return Err(SessionError::invalid(InvalidReason::Revoked)),
            Standing::Theft => {
                self.end_for_reuse(&record, ip).await?;
                return Err(SessionError::invalid(InvalidReason::Reused));
            }
            Standing::Current => None,
            Standing::Previous { successor } => Some(successor),
        };
        self.check_live(&record, now).await?;
        self.check_binding(&record, client)?;
        if let Some(successor) = successor {
            // Reached through the token before the last rotation: no
            // renewal, and the successor once more when it is still owed.
            return Ok(match successor {
                Some(next) => {
                    ActiveSession::new(record, Some(Credential::token(&next)), Held::Token(next))
                }
                None => ActiveSession::new(record, None, Held::Token(token)),
            });
        }
        if !refresh {
            return Ok(ActiveSession::new(record, None, Held::Token(token)));
        }
        let config = self.config();
        // A token of the first format is replaced at its first use.
        let renew =
            token.session_id().is_none() || now.since(record.token_issued_at) >= config.renew_after;
        if renew {
            return match self
                .rotate_from(&record, &token, Rotation::Renewal, now, |r| r)
                .await?
            {
                Some(session) => {
                    self.emit(SessionEvent::Renewed {
                        session_id: record.id,
                    });
                    Ok(session)
                }
                // A concurrent request renewed first: the token is now the
                // previous one, and the successor is handed over again.
                None => Box::pin(self.open_stored(presented, client, false)).await,
            };
        }
        let held = Held::Token(token);
        let unconfirmed = record
            .previous
            .as_ref()
            .is_some_and(|p| p.successor.is_some());
        if unconfirmed {
            // The successor of the last renewal has arrived: from now on
            // its predecessor lives only for the grace.
            let mut next = record.clone();
            if let Some(previous) = next.previous.as_mut() {
                // In-flight requests of the old token get the grace; once
                // the delivery window has passed the old token was dead
                // already, and from now on it is a stolen copy.
                let window_end = previous.rotated_at.plus(config.renewal_delivery_window);
                previous.successor = None;
                previous.grace_until = Some(if now < window_end {
                    now.plus(config.rotation_grace)
                } else {
                    window_end
                });
            }
            next.last_seen_at = next.last_seen_at.max(now);
            let outcome = self
                .store()
                .update(&next, record.revision(), forget_at(&next), now)
                .await?;
            if outcome == WriteOutcome::Written {
                return Ok(ActiveSession::new(next, None, held));
            }
        } else if now.since(record.last_seen_at) >= config.touch_after {
            let mut touched = record.clone();
            touched.last_seen_at = now;
            let outcome = self
                .store()
                .touch(&record.id, now, forget_at(&touched), now)
                .await?;
            if outcome == WriteOutcome::Written {
                return Ok(ActiveSession::new(touched, None, held));
            }
        }
        Ok(ActiveSession::new(record, None, held))
    }

    fn recognise(
        &self,
        record: &SessionRecord,
        token: &SessionToken,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Standing {
        if record.token.ct_eq(hash) {
            return Standing::Current;
        }
        let Some(previous) = record.previous.as_deref() else {
            return Standing::Stranger;
        };
        if !previous.hash.ct_eq(hash) {
            return Standing::Stranger;
        }
        let Some(grace_until) = previous.grace_until else {
            // Superseded by login or step-up: dead at once, but harmless to
            // the new session (a request from before login was in flight).
            return Standing::Dead;
        };
        match &previous.successor {
            Some(sealed) => {
                let window = self.config().renewal_delivery_window;
                if now >= previous.rotated_at.plus(window) {
                    return Standing::Dead;
                }
                let successor = token.open_successor(record.id, sealed);
                let successor = successor.hash().ct_eq(&record.token).then_some(successor);
                Standing::Previous { successor }
            }
            None if now < grace_until => Standing::Previous { successor: None },
            None => Standing::Theft,
        }
    }

    /// Whether the session `held` still belongs to the request after the
    /// record changed under it (a lost compare-and-swap).
    pub(crate) fn still_held(
        &self,
        record: &SessionRecord,
        held: &SessionToken,
        now: Timestamp,
    ) -> bool {
        let held = held.hash();
        if record.token.ct_eq(&held) {
            return true;
        }
        let Some(previous) = record.previous.as_deref() else {
            return false;
        };
        if !previous.hash.ct_eq(&held) {
            return false;
        }
        match (previous.grace_until, &previous.successor) {
            (None, _) => false,
            (Some(_), Some(_)) => {
                now < previous
                    .rotated_at
                    .plus(self.config().renewal_delivery_window)
            }
            (Some(until), None) => now < until,
        }
    }

    /// A rotated-away token came back after its grace: the session ends.
    async fn end_for_reuse(
        &self,
        record: &SessionRecord,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), SessionError> {
        let was_live = self.store().delete(&record.id).await?;
        self.emit(SessionEvent::TokenReuse {
            session_id: record.id,
            subject: record.subject.clone(),
            ip,
        });
        if was_live {
            self.emit(SessionEvent::Revoked {
                session_id: record.id,
                subject: record.subject.clone(),
                cause: RevokeCause::TokenReuse,
            });
        }
        Ok(())
    }

    /// Deadlines and the global epoch. An ended session is deleted at once.
    pub(crate) async fn check_live(
        &self,
        record: &SessionRecord,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        let epoch = self.current_epoch(now).await?;
        let Some((reason, event)) = ended(record, now, epoch) else {
            return Ok(());
        };
        if self.store().delete(&record.id).await? {
            self.emit(event);
        }
        Err(SessionError::invalid(reason))
    }

    /// Reads a session again after a lost compare-and-swap and checks that
    /// it is still live and still the request's.
    pub(crate) async fn reload(
        &self,
        id: &SessionId,
        held: &SessionToken,
        now: Timestamp,
    ) -> Result<SessionRecord, SessionError> {
        let Some(record) = self.store().load(id, now).await? else {
            return Err(SessionError::invalid(InvalidReason::Revoked));
        };
        if !self.still_held(&record, held, now) {
            return Err(SessionError::invalid(InvalidReason::Revoked));
        }
        self.check_live(&record, now).await?;
        Ok(record)
    }

    async fn open_sealed(
        &self,
        sealing: &Sealing,
        presented: &str,
        client: Option<&ClientInfo>,
        refresh: bool,
    ) -> Result<ActiveSession, SessionError> {
        let now = self.now();
        let opened = match sealing.keys.open(presented, &sealing.context) {
            Ok(opened) => opened,
            Err(err) => {
                tracing::debug!(error = %err, "sealed session refused");
                self.count_invalid(client.and_then(|c| c.ip), now);
                let reason = match err {
                    OpenError::UnknownKey { .. } => InvalidReason::Unknown,
                    _ => InvalidReason::Malformed,
                };
                return Err(SessionError::invalid(reason));
            }
        };
        let SealedSession {
            mut record,
            subject_epoch,
        } = opened;
        let global_epoch = self.current_epoch(now).await?;
        if let Some((reason, _)) = ended(&record, now, global_epoch) {
            return Err(SessionError::invalid(reason));
        }
        if let Some(subject) = &record.subject
            && self.store().subject_epoch(subject).await? > subject_epoch
        {
            return Err(SessionError::invalid(InvalidReason::Revoked));
        }
        self.check_binding(&record, client)?;
        let held = Held::Seal { subject_epoch };
        if !refresh {
            return Ok(ActiveSession::new(record, None, held));
        }
        let config = self.config();
        if now.since(record.token_issued_at) >= config.renew_after {
            record.token_issued_at = now;
            record.last_seen_at = now;
            self.emit(SessionEvent::Renewed {
                session_id: record.id,
            });
            return self.seal_into(record, subject_epoch);
        }
        if now.since(record.last_seen_at) >= config.touch_after {
            record.last_seen_at = now;
            return self.seal_into(record, subject_epoch);
        }
        Ok(ActiveSession::new(record, None, held))
    }
}

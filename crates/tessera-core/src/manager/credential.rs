//! What the manager hands out: the credential a client must store, and the
//! session it vouched for during a request.

use std::fmt;
use std::sync::Arc;

use crate::record::SessionRecord;
use crate::token::SessionToken;

/// A credential to hand to the client (a cookie's value, a response
/// field): a session token, or a sealed session. `Debug` and `Display`
/// are redacted; [`expose`](Self::expose) where it must be sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// The credential's text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The credential's text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    pub(crate) fn token(token: &SessionToken) -> Self {
        Self(token.expose().to_owned())
    }

    pub(crate) fn sealed(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({self})")
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…redacted")
    }
}

/// A session the manager vouched for during a request: returned by
/// validation, creation, login and every write, and passed back to the
/// manager for the next operation of the same request, which then need
/// not read the session again.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub(crate) record: Arc<SessionRecord>,
    pub(crate) issued: Option<Credential>,
    pub(crate) held: Held,
}

/// What the request holds that makes the session its own.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    /// A token: the one presented or issued in this request.
    Token(SessionToken),
    /// The sealed record itself, sealed under this subject epoch.
    Seal {
        /// The subject's epoch the seal carries.
        subject_epoch: u64,
    },
}

impl ActiveSession {
    /// The session record.
    pub fn record(&self) -> &Arc<SessionRecord> {
        &self.record
    }

    /// The credential the client must store from now on, when this
    /// operation issued one (a renewal, a login, a rotation, a new seal).
    /// `None`: the client keeps the credential it has.
    pub fn issued(&self) -> Option<&Credential> {
        self.issued.as_ref()
    }

    /// Takes the issued credential out (the caller sends it once).
    pub fn take_issued(&mut self) -> Option<Credential> {
        self.issued.take()
    }

    /// Whether the session travels sealed in its credential.
    pub fn is_sealed(&self) -> bool {
        matches!(self.held, Held::Seal { .. })
    }

    pub(crate) fn new(record: SessionRecord, issued: Option<Credential>, held: Held) -> Self {
        Self {
            record: Arc::new(record),
            issued,
            held,
        }
    }
}

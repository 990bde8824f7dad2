//! Accepting, once, a session cookie that another session library issued,
//! so that users stay signed in while an app moves to Tessera.
//!
//! A [`LegacySessions`] reader (see the `tessera-import` crate for
//! tower-sessions' and actix-session's Redis stores) names the old cookie
//! and takes the old record out of the old store. A request that carries
//! the old cookie and no Tessera cookie gets, when its handler first
//! touches the session, a new Tessera session with the old data (signed in
//! when the reader names a subject); the response sets the Tessera cookie
//! and removes the old one.

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};
use tessera_core::store::StoreError;

/// What an old session handed over.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Imported {
    /// Its data, key by key.
    pub data: Map<String, Value>,
    /// The signed-in user, when the old data tells.
    pub subject: Option<String>,
}

impl Imported {
    /// Data and subject.
    pub fn new(data: Map<String, Value>, subject: Option<String>) -> Self {
        Self { data, subject }
    }
}

/// The future [`LegacySessions::take`] returns.
pub type ImportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Imported>, StoreError>> + Send + 'a>>;

/// A reader of another library's session records.
pub trait LegacySessions: Send + Sync + 'static {
    /// The name of the old session cookie.
    fn cookie_name(&self) -> &str;

    /// The `Path` of the old cookie (to remove it); default `/`.
    fn cookie_path(&self) -> &str {
        "/"
    }

    /// The old session the cookie value names, removed from the old store
    /// as it is read (a cookie is accepted once); `None` when there is
    /// none (or the value is not one this library issues: a reader never
    /// looks up a key a forged cookie names).
    fn take<'a>(&'a self, cookie_value: &'a str) -> ImportFuture<'a>;
}

/// The `Set-Cookie` value removing the old cookie.
pub(crate) fn removal(reader: &dyn LegacySessions) -> String {
    format!(
        "{}=; Path={}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        reader.cookie_name(),
        reader.cookie_path()
    )
}

//! The [`Session`] extractor: a request's session as axum handlers see it.

use axum::extract::FromRequestParts;
use http::request::Parts;
use tessera_web::SessionHandle;

use crate::error::Error;

/// The request's session. Extract it in any handler behind a
/// [`SessionLayer`](crate::SessionLayer); clones share the same state.
///
/// Every method is [`SessionHandle`]'s (shared with the actix-web
/// integration), answering with this crate's [`Error`]: lazy loading, no
/// write for requests that only read, compare-and-swap merging of
/// parallel requests (see [`SessionHandle`] for the merge rule).
#[derive(Clone, Debug)]
pub struct Session(SessionHandle<Error>);

impl Session {
    pub(crate) fn new(handle: SessionHandle<Error>) -> Self {
        Self(handle)
    }
}

impl std::ops::Deref for Session {
    type Target = SessionHandle<Error>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(Error(tessera_web::Error::MissingLayer))
    }
}

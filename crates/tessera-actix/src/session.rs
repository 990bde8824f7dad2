//! The [`Session`] extractor: a request's session as actix-web handlers see it.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use tessera_web::SessionHandle;

use crate::error::Error;

/// The request's session. Extract it in any handler behind a
/// [`SessionMiddleware`](crate::SessionMiddleware); clones share the same
/// state.
///
/// Every method is [`SessionHandle`]'s (shared with the axum
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

impl FromRequest for Session {
    type Error = Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<Session>()
                .cloned()
                .ok_or(Error(tessera_web::Error::MissingLayer)),
        )
    }
}

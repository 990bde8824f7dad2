//! The error handlers get from session operations, and the HTTP response
//! it becomes.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use tessera_core::SessionError;
use tessera_core::store::StoreError;
use tessera_web::cookies::CookieTooLarge;
use tessera_web::csrf::CsrfError;

/// What went wrong with a request's session, as an axum response: the
/// status and stable code of [`tessera_web::Error`], a plain-text message
/// that never carries a store's own error text, `Cache-Control: no-store`
/// and a `Tessera-Error` header with the code.
///
/// Return it from handlers: `?` turns a [`SessionError`] (from the
/// manager), a [`StoreError`] and the layer's own errors into it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(#[from] pub tessera_web::Error);

impl Error {
    /// The shared error inside.
    pub fn kind(&self) -> &tessera_web::Error {
        &self.0
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A stable snake_case code for the error (also sent as `Tessera-Error`).
    pub fn code(&self) -> &'static str {
        self.0.code()
    }
}

impl From<SessionError> for Error {
    fn from(error: SessionError) -> Self {
        Self(error.into())
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Self(error.into())
    }
}

impl From<CsrfError> for Error {
    fn from(error: CsrfError) -> Self {
        Self(error.into())
    }
}

impl From<CookieTooLarge> for Error {
    fn from(error: CookieTooLarge) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.0.log();
        let mut response = (self.status(), self.0.response_body()).into_response();
        let headers = response.headers_mut();
        for (name, value) in self.0.response_headers() {
            headers.insert(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        response
    }
}

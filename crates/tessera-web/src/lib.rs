//! Framework-neutral web sessions for Tessera: what the axum and actix-web
//! integrations share, so that each of them only translates its
//! framework's requests and responses.
//!
//! * [`cookies`]: how the credential travels in cookies (`__Host-` name,
//!   `Secure`, `HttpOnly`, `SameSite`, chunking of sealed sessions);
//! * [`client_ip`]: the client's address behind trusted reverse proxies;
//! * [`csrf`]: masked per-response tokens and the `Sec-Fetch-Site` /
//!   `Origin` check;
//! * [`WebConfig`] and its [`WebConfigBuilder`]: every setting of a
//!   session layer, checked at start;
//! * [`RequestSession`]: one request's session, loaded lazily, written
//!   through the [`SessionManager`](tessera_core::SessionManager), and
//!   turned into at most one cookie change when the response leaves
//!   ([`ResponseChanges`]);
//! * [`dbsc`]: device-bound sessions over HTTP (headers, bound cookie,
//!   registration and refresh endpoints);
//! * [`SessionHandle`]: the typed API on a request's session that each
//!   framework's `Session` extractor wraps;
//! * [`RequestFlow`]: the steps a framework middleware takes for a request
//!   (cookie, guessing check, CSRF, writing, response headers);
//! * [`import`]: accepting, once, another session library's cookie;
//! * [`Error`]: what a request's session operations can fail with, with
//!   the HTTP status and the stable code each answers with;
//! * `testkit` (feature `testkit`): the scenario suite every framework
//!   integration runs against a real server of its own.
#![forbid(unsafe_code)]

pub mod client_ip;
mod config;
pub mod cookies;
pub mod csrf;
pub mod dbsc;
mod error;
mod flow;
mod handle;
pub mod import;
mod request;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use client_ip::TrustedProxies;
pub use config::{
    CsrfExempt, DEFAULT_MAX_COOKIES, DEFAULT_MAX_FORM_BYTES, ExemptCheck, FromWebConfig,
    LayerConfigError, WebConfig, WebConfigBuilder,
};
pub use cookies::SameSite;
pub use error::Error;
pub use flow::{CsrfStep, Finished, HeaderChange, RequestFlow};
pub use handle::SessionHandle;
pub use request::{RequestSession, ResponseChanges};

/// A request's headers as a framework integration hands them over.
/// Header names are given in lowercase.
pub trait Headers {
    /// The first value of header `name`, when it is visible ASCII text.
    fn get(&self, name: &str) -> Option<&str>;

    /// Every value of header `name`, as bytes.
    fn all(&self, name: &str) -> Vec<&[u8]>;
}

impl Headers for http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }

    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.get_all(name).iter().map(|v| v.as_bytes()).collect()
    }
}

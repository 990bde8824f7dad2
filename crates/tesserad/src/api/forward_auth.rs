//! Forward-auth (`GET /v1/auth`) for reverse proxies such as nginx's
//! `auth_request`: the browser's session cookie in, `200` with the subject
//! or `401` out — and a renewed token back as `Set-Cookie`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera::ClientInfo;
use tessera_web::TrustedProxies;
use tessera_web::cookies::{CookieController, Presented};

use super::SharedState;
use super::error::{ApiError, ErrorBody, ErrorCode};

/// The header that carries the signed-in subject to the upstream.
pub const SUBJECT_HEADER: HeaderName = HeaderName::from_static("tessera-subject");
/// The header that carries the public session id to the upstream.
pub const SESSION_ID_HEADER: HeaderName = HeaderName::from_static("tessera-session-id");

/// Checks the session cookie of the original request. `200` with
/// `Tessera-Subject` and `Tessera-Session-Id` when it belongs to a signed-in
/// session (plus `Set-Cookie` with the new token when validation renewed
/// it, and with `--dbsc` the registration offer after a sign-in: pass them
/// on to the browser); `401` otherwise, including when the store is down
/// (fail closed) and, with `--dbsc`, for a device-bound session without
/// its current bound cookie.
#[utoipa::path(
    get,
    path = "/v1/auth",
    tag = "forward-auth",
    params(
        ("Cookie" = Option<String>, Header, description = "The browser's cookies; the session cookie is `__Host-tessera` unless `--cookie-name` says otherwise"),
        ("User-Agent" = Option<String>, Header, description = "The browser's User-Agent (for client binding)"),
        ("X-Forwarded-For" = Option<String>, Header, description = "Believed only from a trusted proxy (--trusted-proxies): the right-most address no trusted proxy added is the browser's (for client binding and guessing detection)"),
        ("X-Real-IP" = Option<String>, Header, description = "Believed only from a trusted proxy, when there is no X-Forwarded-For: the browser's IP as the proxy saw it"),
        ("Secure-Session-Skipped" = Option<String>, Header, description = "With `--dbsc`: sent by a browser that could not refresh its bound cookie; each entry is counted (`tessera_dbsc_skipped_total`)")
    ),
    responses(
        (status = 200, description = "A signed-in session",
            headers(
                ("Tessera-Subject" = String, description = "The subject; every byte but letters, digits and -._~@+:!$&'*,;=/() is percent-encoded (spaces too)"),
                ("Tessera-Session-Id" = String, description = "The public session id"),
                ("Set-Cookie" = String, description = "Only when the token was renewed: the new session cookie for the browser"),
                ("Secure-Session-Registration" = String, description = "With `--dbsc`, once per sign-in: the offer to bind the session to the browser's device (DBSC); pass it on to the browser")
            )
        ),
        (status = 401, description = "No cookie, an invalid session, an anonymous session, a device-bound session without its current bound cookie (`device_bound`, with `--dbsc`), or the store is unavailable", body = ErrorBody)
    )
)]
pub(super) async fn forward_auth(State(state): State<SharedState>, request: Request) -> Response {
    let headers = request.headers();
    super::dbsc::report_skipped(&state, headers);
    // Read as the session layer reads it: a missing, duplicated or
    // unreadable cookie gives no session.
    let token = match state.cookies.read(headers) {
        Presented::Credential { value, .. } => value,
        Presented::Nothing => {
            return refuse(ApiError::new(
                ErrorCode::InvalidSession,
                format!("no `{}` cookie", state.cookie_name),
            ));
        }
        Presented::Unreadable { problem, .. } => {
            return refuse(ApiError::new(
                ErrorCode::InvalidSession,
                format!(
                    "the `{}` cookie cannot be read: {problem}",
                    state.cookie_name
                ),
            ));
        }
    };
    let client = client_of(&state, &request);
    let valid = match state.manager.validate(&token, Some(&client)).await {
        Ok(valid) => valid,
        Err(error) => return refuse(ApiError::from(error)),
    };
    let session = valid.record();
    let Some(subject) = session.subject.as_deref() else {
        return refuse(ApiError::new(
            ErrorCode::InvalidSession,
            "the session is not signed in",
        ));
    };
    // With --dbsc: a bound session needs its current bound cookie.
    let offer = match super::dbsc::check(&state, &valid, headers).await {
        Ok(super::dbsc::Checked::Pass) => None,
        Ok(super::dbsc::Checked::Offer(offer)) => Some(offer),
        Err(error) => return refuse(ApiError::from(error)),
    };
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&encode_subject(subject)) {
        out.insert(SUBJECT_HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&session.id.to_string()) {
        out.insert(SESSION_ID_HEADER, value);
    }
    if let Some(renewed) = valid.issued() {
        // The same cookie the session layer writes.
        super::dbsc::set_session_cookie(&state, out, renewed.expose());
    }
    if let Some(offer) = offer {
        // Browsers with DBSC bind the session; others ignore the header.
        out.insert(super::dbsc::REGISTRATION_HEADER, offer);
        out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The browser behind a request: its address (as the trusted proxies
/// forward it) and User-Agent.
pub(super) fn client_of(state: &SharedState, request: &Request) -> ClientInfo {
    let headers = request.headers();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    ClientInfo::new(
        forwarded_ip(&state.trusted_proxies, headers, peer),
        headers
            .get(header::USER_AGENT)
            .and_then(|ua| ua.to_str().ok()),
    )
}

/// Every refusal is a 401 (nginx turns anything but 2xx, 401 and 403 into a
/// 500); the body still says why, and the outcome is counted as it was.
fn refuse(error: ApiError) -> Response {
    let code = error.code();
    let mut response = error.into_response();
    if code == ErrorCode::StoreUnavailable {
        tracing::warn!("forward-auth refused because the store is unavailable");
    }
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

/// The browser's IP: the connection's peer, unless it is a trusted proxy;
/// then the right-most `X-Forwarded-For` address no trusted proxy added,
/// else `X-Real-IP`.
fn forwarded_ip(
    trusted: &TrustedProxies,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let header = if headers.contains_key("x-forwarded-for") {
        "x-forwarded-for"
    } else {
        "x-real-ip"
    };
    trusted.client_ip(peer, headers, header)
}

/// Bytes of a subject sent as they are in `Tessera-Subject`: letters,
/// digits and `-._~@+:!$&'*,;=/()`. Everything else (spaces, which nginx
/// trims, quotes, `%`, control and non-ASCII bytes) is percent-encoded, so
/// the upstream can decode exactly the subject that signed in.
fn is_safe_subject_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~@+:!$&'*,;=/()".contains(&byte)
}

/// The subject as a header value: the safe bytes as they are, every other
/// byte percent-encoded.
fn encode_subject(subject: &str) -> String {
    let mut encoded = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if is_safe_subject_byte(byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_safe_header_values() {
        assert_eq!(encode_subject("alice@example.com"), "alice@example.com");
        assert_eq!(encode_subject("zoë"), "zo%C3%AB");
        assert_eq!(encode_subject("a%b\nc"), "a%25b%0Ac");
        // nginx trims whitespace from header values: "admin " must not
        // reach the upstream as "admin".
        assert_eq!(encode_subject("admin "), "admin%20");
        assert_eq!(encode_subject(" a\tb\"c\\"), "%20a%09b%22c%5C");
        assert_eq!(encode_subject("o'neil+x@ex.org"), "o'neil+x@ex.org");
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::default();
        let loopback = "127.0.0.1".parse().ok();
        let stranger = "203.0.113.9".parse().ok();
        let mut headers = HeaderMap::new();
        headers.insert("x-real-ip", HeaderValue::from_static("198.51.100.2"));
        assert_eq!(
            forwarded_ip(&trusted, &headers, loopback),
            "198.51.100.2".parse().ok()
        );
        assert_eq!(forwarded_ip(&trusted, &headers, stranger), stranger);
        // X-Forwarded-For wins, right-most untrusted entry first.
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 192.0.2.7, 127.0.0.2"),
        );
        assert_eq!(
            forwarded_ip(&trusted, &headers, loopback),
            "192.0.2.7".parse().ok()
        );
        assert_eq!(forwarded_ip(&trusted, &headers, stranger), stranger);
    }
}

//! Who may call the `/v1` API: the API key check, the scope each route
//! needs, and the throttle on failed key checks per client IP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::error::{ApiError, ErrorCode};
use crate::keys::Scope;
use crate::metrics::Operation;

/// The scope an operation needs.
pub(crate) fn scope_of(operation: Operation) -> Scope {
    match operation {
        Operation::Validate | Operation::ForwardAuth => Scope::Validate,
        Operation::Create
        | Operation::Update
        | Operation::Login
        | Operation::Rotate
        | Operation::Logout
        | Operation::Revoke
        | Operation::RevokeSubject => Scope::Sessions,
        Operation::Get | Operation::ListSubject | Operation::RevokeAll | Operation::Stats => {
            Scope::Admin
        }
    }
}

/// The `Authorization: Bearer <key>` of a request, if any.
pub(crate) fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, key) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
}

/// The client address a request came from (the TCP peer; API clients talk
/// to tesserad directly), if the server recorded it.
pub(crate) fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Refuses `/v1` calls without a valid `Authorization: Bearer <key>`
/// (`401 unauthorized`), with a key that lacks the route's scope (`403
/// forbidden`), or from a client IP over its failure budget (`429
/// rate_limited`, whatever the key).
pub(super) async fn require_api_key(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let client = peer_ip(&request);
    let now = Instant::now();
    if let Some(retry_after) = client.and_then(|ip| state.auth_throttle.blocked(ip, now)) {
        return rate_limited(retry_after);
    }
    let identity = bearer_key(request.headers()).and_then(|key| state.keys.identify(key));
    let Some(identity) = identity else {
        if let Some(ip) = client {
            state.auth_throttle.record_failure(ip, now);
        }
        tracing::info!(client = ?client, "refused an API call without a valid key");
        return ApiError::unauthorized().into_response();
    };
    let needed = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| super::operation_of(request.method(), path.as_str()))
        .map(scope_of)
        // A keyed route this table does not know needs the widest scope.
        .unwrap_or(Scope::Admin);
    if !identity.scopes.contains(needed) {
        tracing::info!(key_id = %identity.id, scope = %needed, "refused an API call outside the key's scopes");
        return ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this API key (id {}) has the scopes `{}`; this endpoint needs `{needed}`",
                identity.id, identity.scopes
            ),
        )
        .into_response();
    }
    let mut request = request;
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// `429 rate_limited` with `Retry-After`.
pub(crate) fn rate_limited(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs().max(1);
    let mut response = ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "too many failed API key checks from this address; try again in {seconds} s with a valid key"
        ),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// How many client addresses the throttle tracks before it forgets the
/// oldest windows (bounded memory under a spray of addresses).
const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Counts failed API key checks per client (an IPv4 address or an IPv6
/// /64) in fixed windows; a client over its budget is refused until its
/// window ends, even with a valid key, so that guessing cannot go on at the
/// rate a valid key would be told apart.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl AuthThrottle {
    /// Allows `max_failures` failed checks per client per `window`.
    pub fn new(max_failures: NonZeroU32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.get(),
            window,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// IPv6 clients usually hold a whole /64: count them by it.
    fn client_key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(bits.into())
                }
            },
        }
    }

    /// How long `ip` must still wait, if it is over its budget.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().ok()?;
        let window = clients.get(&Self::client_key(ip))?;
        let ends = window.started + self.window;
        (window.failures >= self.max_failures && now < ends).then(|| ends - now)
    }

    /// Counts one failed check from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        if clients.len() >= MAX_TRACKED_CLIENTS {
            let window = self.window;
            clients.retain(|_, w| now < w.started + window);
        }
        if clients.len() >= MAX_TRACKED_CLIENTS {
            // Still full of live windows: forget an arbitrary one.
            if let Some(key) = clients.keys().next().copied() {
                clients.remove(&key);
            }
        }
        let window = clients.entry(Self::client_key(ip)).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + self.window {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_over_its_budget_waits_for_the_window_and_others_do_not() {
        let throttle = AuthThrottle::new(NonZeroU32::new(3).expect("3"), Duration::from_secs(60));
        let start = Instant::now();
        let guesser: IpAddr = "192.0.2.1".parse().expect("ip");
        let neighbour: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(throttle.blocked(guesser, start), None);
            throttle.record_failure(guesser, start);
        }
        let wait = throttle.blocked(guesser, start + Duration::from_secs(10));
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(throttle.blocked(neighbour, start), None);
        assert_eq!(
            throttle.blocked(guesser, start + Duration::from_secs(60)),
            None
        );
        throttle.record_failure(guesser, start + Duration::from_secs(61));
        assert_eq!(
            throttle.blocked(guesser, start + Duration::from_secs(61)),
            None,
            "a new window starts from zero"
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let throttle = AuthThrottle::new(NonZeroU32::new(2).expect("2"), Duration::from_secs(60));
        let now = Instant::now();
        throttle.record_failure("2001:db8:1:2::1".parse().expect("ip"), now);
        throttle.record_failure("2001:db8:1:2:ffff::9".parse().expect("ip"), now);
        assert!(
            throttle
                .blocked("2001:db8:1:2::77".parse().expect("ip"), now)
                .is_some()
        );
        assert!(
            throttle
                .blocked("2001:db8:1:3::1".parse().expect("ip"), now)
                .is_none()
        );
    }
}

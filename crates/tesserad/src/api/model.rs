//! The JSON bodies of the API (`docs/http-api.md`): requests refuse
//! unknown fields; the session shape is the contract's.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera::{ClientInfo, SessionData, SessionRecord, Timestamp};
use utoipa::{IntoParams, ToSchema};

/// The client a request is made for: `{ip?, user_agent?}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    /// The client's IP address.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    #[serde(default)]
    pub user_agent: Option<String>,
}

impl From<ClientBody> for ClientInfo {
    fn from(body: ClientBody) -> Self {
        ClientInfo::new(body.ip, body.user_agent.as_deref())
    }
}

/// The client as a session shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientView {
    /// The client's IP address, if known.
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` (cut to 512 bytes), if known.
    pub user_agent: Option<String>,
}

/// A session as the API shows it; times are RFC 3339 in UTC.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// The public session id (22 base64url characters), stable across rotation.
    pub id: String,
    /// The signed-in user; `null` while anonymous.
    pub subject: Option<String>,
    /// 0 anonymous, 1 password, 2 multi-factor, …
    pub auth_level: u8,
    /// When the subject last authenticated.
    #[schema(format = DateTime)]
    pub authenticated_at: Option<String>,
    /// The application's data (a JSON object).
    #[schema(value_type = Object)]
    pub data: SessionData,
    /// When the session was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the session was last used (written at most every `touch_after`).
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    /// When the session ends unless used again.
    #[schema(format = DateTime)]
    pub idle_expires_at: String,
    /// When the session ends, however active.
    #[schema(format = DateTime)]
    pub absolute_expires_at: String,
    /// Incremented by every data or authentication change (compare-and-swap).
    pub version: u64,
    /// The client that created (or last signed in to) the session.
    pub client: Option<ClientView>,
}

impl From<&SessionRecord> for SessionView {
    fn from(session: &SessionRecord) -> Self {
        SessionView {
            id: session.id.to_string(),
            subject: session.subject.clone(),
            auth_level: session.auth_level.get(),
            authenticated_at: session.authenticated_at.map(rfc3339),
            data: session.data.clone(),
            created_at: rfc3339(session.created_at),
            last_seen_at: rfc3339(session.last_seen_at),
            idle_expires_at: rfc3339(session.idle_expires_at()),
            absolute_expires_at: rfc3339(session.absolute_expires_at),
            version: session.version,
            client: session.client.as_ref().map(|client| ClientView {
                ip: client.ip,
                user_agent: client.user_agent.clone(),
            }),
        }
    }
}

/// The same text as [`Timestamp::to_rfc3339`] (`2026-11-26T12:00:00.000Z`),
/// written directly: five of these per session view are on the hot path of
/// every validation. Years outside 0000–9999 fall back to the general one.
pub fn rfc3339(at: Timestamp) -> String {
    let millis = at.as_millis();
    let days = millis.div_euclid(86_400_000);
    let of_day = millis.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return at.to_rfc3339();
    }
    let (hour, minute) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (second, milli) = (of_day / 1000 % 60, of_day % 1000);
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: i64, width: usize| {
        let mut value = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, hour, 2);
    put(14, minute, 2);
    put(17, second, 2);
    put(20, milli, 3);
    for (index, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[index] = byte;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Create the session already signed in as this subject (at most 256 bytes).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub subject: Option<String>,
    /// Initial data (a JSON object, at most 64 KiB as compact JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// The creating client.
    #[serde(default)]
    pub client: Option<ClientBody>,
    /// A shorter idle timeout for this session, in seconds.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub idle_timeout_s: Option<u64>,
    /// A shorter absolute timeout for this session, in seconds.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub absolute_timeout_s: Option<u64>,
}

/// `POST /v1/sessions/validate`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The token the client presented.
    pub token: String,
    /// The presenting client (for binding and guessing detection).
    #[serde(default)]
    pub client: Option<ClientBody>,
}

/// `POST /v1/sessions/update`: give `data` (replace) or `patch` (RFC 7396 merge).
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// The session's token.
    pub token: String,
    /// The new data, replacing the old.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// An RFC 7396 merge patch applied to the data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub patch: Option<Map<String, Value>>,
    /// Write only if the session is still at this version (compare-and-swap).
    #[serde(default)]
    pub version: Option<u64>,
}

/// `POST /v1/sessions/login`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The current (anonymous or signed-in) session's token, if any.
    #[serde(default)]
    pub token: Option<String>,
    /// The authenticated user (at most 256 bytes).
    #[schema(min_length = 1, max_length = 256)]
    pub subject: String,
    /// How strongly they authenticated (default 1).
    #[serde(default)]
    pub auth_level: Option<u8>,
    /// Replaces the data when given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// The client logging in; the session is bound to it from now on.
    #[serde(default)]
    pub client: Option<ClientBody>,
}

/// `POST /v1/sessions/rotate` and `POST /v1/sessions/logout`.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The session's token.
    pub token: String,
}

/// A session with a newly issued token.
#[derive(Clone, Serialize, ToSchema)]
pub struct IssuedResponse {
    /// The new token: hand it to the client (e.g. in a cookie), never log it.
    pub token: String,
    /// The session.
    pub session: SessionView,
}

/// The outcome of a validation.
#[derive(Clone, Serialize, ToSchema)]
pub struct ValidateResponse {
    /// The session.
    pub session: SessionView,
    /// Present when validation renewed the token: the client must switch to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `Debug` that shows whether a token is there, never the token.
fn token_shown(token: Option<&str>) -> &'static str {
    match token {
        Some(_) => "Some(<redacted>)",
        None => "None",
    }
}

impl std::fmt::Debug for ValidateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateRequest")
            .field("token", &format_args!("<redacted>"))
            .field("client", &self.client)
            .finish()
    }
}

impl std::fmt::Debug for UpdateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateRequest")
            .field("token", &format_args!("<redacted>"))
            .field("data", &self.data)
            .field("patch", &self.patch)
            .field("version", &self.version)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field(
                "token",
                &format_args!("{}", token_shown(self.token.as_deref())),
            )
            .field("subject", &self.subject)
            .field("auth_level", &self.auth_level)
            .field("data", &self.data)
            .field("client", &self.client)
            .finish()
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("token", &format_args!("<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for IssuedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedResponse")
            .field("token", &format_args!("<redacted>"))
            .field("session", &self.session)
            .finish()
    }
}

impl std::fmt::Debug for ValidateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateResponse")
            .field("session", &self.session)
            .field(
                "token",
                &format_args!("{}", token_shown(self.token.as_deref())),
            )
            .finish()
    }
}

/// One session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session.
    pub session: SessionView,
}

/// Sessions of a subject, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionsResponse {
    /// The sessions of this page, oldest first.
    pub sessions: Vec<SessionView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The default number of sessions in one page of a subject's listing.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page of a subject's listing.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// `GET /v1/subjects/{subject}/sessions`: which page.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSubjectQuery {
    /// The `next_cursor` of the previous page (none: the first page).
    pub cursor: Option<String>,
    /// At most this many sessions (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// How many sessions ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedResponse {
    /// The number of sessions revoked.
    pub revoked: u64,
}

/// The outcome of revoking everything.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokeAllResponse {
    /// The new global revocation epoch; every session from before it has ended.
    pub epoch: u64,
}

/// `DELETE /v1/subjects/{subject}/sessions` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeSubjectQuery {
    /// Keep this session (e.g. "sign out my other devices").
    pub except: Option<String>,
}

/// A liveness or readiness answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `ready`.
    pub status: String,
}

/// How often one operation ended one way.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationCount {
    /// The operation (`create`, `validate`, …).
    pub operation: String,
    /// `ok` or an error code.
    pub outcome: String,
    /// How many times since the server started.
    pub count: u64,
}

/// How often one kind of event happened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventCount {
    /// The event kind (`created`, `token_reuse`, …).
    pub kind: String,
    /// How many times since the server started.
    pub count: u64,
}

/// `GET /v1/stats`: what the server has done since it started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    /// The server's version.
    pub version: String,
    /// The store URL (without secrets).
    pub store: String,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// Records the store holds (sessions, possibly
    /// expired ones not yet swept), when the store can tell.
    pub store_records: Option<u64>,
    /// Operations by outcome (only those that happened).
    pub operations: Vec<OperationCount>,
    /// Events by kind (only those that happened).
    pub events: Vec<EventCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_requests_and_responses_redacts_tokens() {
        let token = "tss_1_the-token-itself";
        let body = |json: &str| json.replace("TOKEN", token);
        let shown = [
            format!(
                "{:?}",
                serde_json::from_str::<ValidateRequest>(&body(r#"{"token":"TOKEN"}"#))
                    .expect("validate")
            ),
            format!(
                "{:?}",
                serde_json::from_str::<UpdateRequest>(&body(r#"{"token":"TOKEN","patch":{}}"#))
                    .expect("update")
            ),
            format!(
                "{:?}",
                serde_json::from_str::<LoginRequest>(&body(r#"{"token":"TOKEN","subject":"a"}"#))
                    .expect("login")
            ),
            format!(
                "{:?}",
                serde_json::from_str::<TokenRequest>(&body(r#"{"token":"TOKEN"}"#)).expect("token")
            ),
        ];
        for text in shown {
            assert!(!text.contains(token), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn fast_rfc3339_matches_the_engine() {
        let mut samples = vec![
            0,
            1,
            -1,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-02-28
            253_402_300_799_999,
            -62_167_219_200_000,
            1_800_000_000_123,
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(x.rem_euclid(253_402_300_800_000));
        }
        for millis in samples {
            let at = Timestamp(millis);
            assert_eq!(rfc3339(at), at.to_rfc3339(), "{millis}");
        }
        assert_eq!(
            rfc3339(Timestamp(1_800_000_000_123)),
            "2027-01-15T08:00:00.123Z"
        );
    }
}

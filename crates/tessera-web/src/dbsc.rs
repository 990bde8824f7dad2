//! Device-bound sessions over HTTP (DBSC, `docs/dbsc.md`): the headers of
//! the protocol (structured fields, read with `sfv`), the bound cookie, the
//! session instructions, and the registration and refresh endpoints as
//! framework-neutral answers. Every rule is the manager's
//! ([`SessionManager::register_device`], [`SessionManager::refresh_device`],
//! [`SessionManager::check_device`]); this module only translates.

use serde_json::{Value, json};
use sfv::{
    BareItem, ItemSerializer, KeyRef, ListEntry, ListSerializer, Parser, StringRef, TokenRef,
};
use tessera_core::device::{
    BoundCookie, DeviceAlgorithm, DeviceBindingError, DeviceBindingPolicy, DeviceChallenge,
    DeviceRefresh,
};
use tessera_core::{ActiveSession, SessionError, SessionId, SessionManager};

use crate::Headers;
use crate::cookies::SameSite;
use crate::request::RequestSession;

/// Default path of the registration endpoint.
pub const DEFAULT_REGISTER_PATH: &str = "/tessera/dbsc/register";
/// Default path of the refresh endpoint.
pub const DEFAULT_REFRESH_PATH: &str = "/tessera/dbsc/refresh";
/// Default name of the bound cookie.
pub const DEFAULT_BOUND_COOKIE_NAME: &str = "__Host-tessera-bound";

/// The header carrying the registration offer.
pub const REGISTRATION_HEADER: &str = "secure-session-registration";
/// The header carrying a challenge.
pub const CHALLENGE_HEADER: &str = "secure-session-challenge";
/// The request header carrying a proof.
pub const RESPONSE_HEADER: &str = "secure-session-response";
/// The request header naming the session being refreshed.
pub const SESSION_ID_HEADER: &str = "sec-secure-session-id";
/// The request header of a request sent without the bound cookie.
pub const SKIPPED_HEADER: &str = "secure-session-skipped";

/// Device-bound sessions in a layer: the policy, the bound cookie, the
/// endpoints' paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbscSettings {
    pub(crate) policy: DeviceBindingPolicy,
    pub(crate) cookie_name: String,
    pub(crate) register_path: String,
    pub(crate) refresh_path: String,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
}

impl Default for DbscSettings {
    fn default() -> Self {
        Self::new(DeviceBindingPolicy::default())
    }
}

impl DbscSettings {
    /// The default cookie name and paths with `policy`.
    pub fn new(policy: DeviceBindingPolicy) -> Self {
        Self {
            policy,
            cookie_name: DEFAULT_BOUND_COOKIE_NAME.to_owned(),
            register_path: DEFAULT_REGISTER_PATH.to_owned(),
            refresh_path: DEFAULT_REFRESH_PATH.to_owned(),
            secure: true,
            same_site: SameSite::Lax,
        }
    }

    /// The bound cookie's name (default `__Host-tessera-bound`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The endpoints' paths (default `/tessera/dbsc/register` and
    /// `/tessera/dbsc/refresh`).
    pub fn paths(mut self, register: impl Into<String>, refresh: impl Into<String>) -> Self {
        self.register_path = register.into();
        self.refresh_path = refresh.into();
        self
    }

    /// The policy (cookie and challenge lifetimes).
    pub fn policy(&self) -> &DeviceBindingPolicy {
        &self.policy
    }

    /// The bound cookie's name.
    pub fn bound_cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The registration endpoint's path.
    pub fn register_path(&self) -> &str {
        &self.register_path
    }

    /// The refresh endpoint's path.
    pub fn refresh_path(&self) -> &str {
        &self.refresh_path
    }

    /// The bound cookie's value in a request's `Cookie` headers (the
    /// first, when a request carries several).
    pub fn bound_cookie(&self, headers: &dyn Headers) -> Option<String> {
        crate::cookies::cookie_value(headers, &self.cookie_name)
    }

    /// The cookie's attributes as the session instructions state them
    /// (`Max-Age` aside, which does not take part in matching).
    pub fn cookie_attributes(&self) -> String {
        let mut attributes = String::from("Path=/");
        if self.secure {
            attributes.push_str("; Secure");
        }
        attributes.push_str("; HttpOnly; SameSite=");
        attributes.push_str(match self.same_site {
            SameSite::Strict => "Strict",
            _ => "Lax",
        });
        attributes
    }

    /// The `Set-Cookie` value of a new bound cookie.
    pub fn set_bound_cookie(&self, cookie: &BoundCookie) -> String {
        format!(
            "{}={}; {}; Max-Age={}",
            self.cookie_name,
            cookie.expose(),
            self.cookie_attributes(),
            cookie.lifetime.as_secs()
        )
    }

    /// The `Secure-Session-Registration` value offering `challenge`.
    pub fn registration_header(&self, challenge: &DeviceChallenge) -> Option<String> {
        let mut list = ListSerializer::new();
        {
            let mut algorithms = list.inner_list();
            for alg in DeviceAlgorithm::ALL {
                let _ = algorithms.bare_item(TokenRef::from_str(alg.name()).ok()?);
            }
            let _ = algorithms
                .finish()
                .parameter(
                    KeyRef::from_str("path").ok()?,
                    StringRef::from_str(&self.register_path).ok()?,
                )
                .parameter(
                    KeyRef::from_str("challenge").ok()?,
                    StringRef::from_str(&challenge.challenge).ok()?,
                );
        }
        list.finish()
    }

    /// The session instructions answering a registration or refresh.
    pub fn instructions(&self, session_identifier: &str) -> Value {
        json!({
            "session_identifier": session_identifier,
            "refresh_url": self.refresh_path,
            "scope": {
                // The bound cookie is a __Host- cookie: origin-scoped.
                "include_site": false,
                "scope_specification": [],
            },
            "credentials": [{
                "type": "cookie",
                "name": self.cookie_name,
                "attributes": self.cookie_attributes(),
            }],
        })
    }
}

/// The `Secure-Session-Challenge` value for `challenge`.
pub fn challenge_header(challenge: &DeviceChallenge) -> Option<String> {
    Some(
        ItemSerializer::new()
            .bare_item(StringRef::from_str(&challenge.challenge).ok()?)
            .parameter(
                KeyRef::from_str("id").ok()?,
                StringRef::from_str(&challenge.session_identifier).ok()?,
            )
            .finish(),
    )
}

/// A header value that browsers send either as a structured-field string
/// or bare: the string's content, or the trimmed text.
pub fn string_value(value: &str) -> Option<String> {
    if let Ok(item) = Parser::new(value).parse::<sfv::Item>()
        && let BareItem::String(text) = &item.bare_item
    {
        return Some(text.as_str().to_owned());
    }
    let bare = value.trim();
    (!bare.is_empty() && !bare.contains('"')).then(|| bare.to_owned())
}

/// The entries of a `Secure-Session-Skipped` header: each reason with the
/// session identifier it names.
pub fn skipped(value: &str) -> Vec<(String, Option<String>)> {
    let Ok(list) = Parser::new(value).parse::<sfv::List>() else {
        return vec![("other".to_owned(), None)];
    };
    list.iter()
        .filter_map(|entry| match entry {
            ListEntry::Item(item) => Some(item),
            ListEntry::InnerList(_) => None,
        })
        .map(|item| {
            let reason = match &item.bare_item {
                BareItem::Token(token) => token.as_str().to_owned(),
                _ => "other".to_owned(),
            };
            let id = item.params.iter().find_map(|(key, value)| match value {
                BareItem::String(text) if key.as_str() == "session_identifier" => {
                    Some(text.as_str().to_owned())
                }
                _ => None,
            });
            (reason, id)
        })
        .collect()
}

/// Counts the `Secure-Session-Skipped` entries of a request.
pub fn report_skipped(manager: &SessionManager, headers: &dyn Headers) {
    let Some(value) = headers.get(SKIPPED_HEADER) else {
        return;
    };
    for (reason, id) in skipped(value) {
        manager.report_device_skipped(id.as_deref(), &reason);
    }
}

/// An endpoint's answer, for the framework to send as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbscAnswer {
    /// The status code.
    pub status: u16,
    /// Headers (lowercase names), in order.
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body, when there is one.
    pub body: Option<Value>,
}

impl DbscAnswer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("cache-control", "no-store".to_owned())],
            body: Some(body),
        }
    }

    /// The answer to a registration that comes without a session.
    pub fn without_session() -> Self {
        Self::json(401, json!({"continue": false, "error": "no_session"}))
    }

    /// The answer to a refusal: the binding is over for the browser (any
    /// 4xx but 403), or the store failed (503: the browser goes on
    /// without the cookie and tries again later).
    pub fn refused(error: &SessionError) -> Self {
        match error {
            SessionError::DeviceBinding(error) => Self::json(
                if matches!(error, DeviceBindingError::Proof(_)) {
                    400
                } else {
                    401
                },
                json!({"continue": false, "error": error.as_str()}),
            ),
            SessionError::Invalid { reason } => Self::json(
                401,
                json!({"continue": false, "error": "invalid_session", "reason": reason.as_str()}),
            ),
            other => {
                tracing::warn!(error = %other, "device-bound session endpoint failed");
                Self::json(503, json!({"error": "unavailable"}))
            }
        }
    }

    /// The answer as an `http` response whose body is the JSON text (empty
    /// when there is none); a header value that is not a valid header
    /// value is left out.
    pub fn into_http(self) -> http::Response<String> {
        let body = self.body.as_ref().map(Value::to_string);
        let has_body = body.is_some();
        let mut response = http::Response::new(body.unwrap_or_default());
        *response.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        if has_body {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in self.headers {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.append(http::HeaderName::from_static(name), value);
            }
        }
        response
    }

    fn bound(settings: &DbscSettings, cookie: &BoundCookie, identifier: &str) -> Self {
        let mut answer = Self::json(200, settings.instructions(identifier));
        answer
            .headers
            .push(("set-cookie", settings.set_bound_cookie(cookie)));
        answer
    }
}

/// The registration endpoint: binds the request's session to the key of
/// the proof in `Secure-Session-Response`; answers the session
/// instructions and the first bound cookie.
pub async fn register(
    settings: &DbscSettings,
    session: &mut RequestSession,
    headers: &(dyn Headers + Sync),
) -> DbscAnswer {
    let current = match session.active().await {
        Ok(Some(current)) => current,
        Ok(None) => return DbscAnswer::without_session(),
        Err(crate::Error::Session(error)) => return DbscAnswer::refused(&error),
        Err(other) => {
            tracing::warn!(error = %other, "device-bound registration failed");
            return DbscAnswer::json(503, json!({"error": "unavailable"}));
        }
    };
    register_session(settings, session.config().manager(), &current, headers).await
}

/// The registration endpoint for a session the caller has validated
/// itself (a session server reading the cookie on its own): binds
/// `session` to the key of the proof in `Secure-Session-Response`.
pub async fn register_session(
    settings: &DbscSettings,
    manager: &SessionManager,
    session: &ActiveSession,
    headers: &(dyn Headers + Sync),
) -> DbscAnswer {
    let Some(proof) = headers.get(RESPONSE_HEADER).and_then(string_value) else {
        return DbscAnswer::json(400, json!({"continue": false, "error": "missing_proof"}));
    };
    match manager
        .register_device(session, &proof, &settings.policy)
        .await
    {
        Ok(cookie) => DbscAnswer::bound(settings, &cookie, &session.record().id.to_string()),
        Err(error) => DbscAnswer::refused(&error),
    }
}

/// The refresh endpoint: the session named by `Sec-Secure-Session-Id`
/// gets a challenge (403 with `Secure-Session-Challenge`) or, for a proof
/// signed by its device answering a live challenge, a new bound cookie.
pub async fn refresh(
    settings: &DbscSettings,
    manager: &SessionManager,
    headers: &(dyn Headers + Sync),
) -> DbscAnswer {
    let id = headers
        .get(SESSION_ID_HEADER)
        .and_then(string_value)
        .and_then(|text| SessionId::parse(&text).ok());
    let Some(id) = id else {
        return DbscAnswer::json(
            400,
            json!({"continue": false, "error": "missing_session_id"}),
        );
    };
    let proof = headers.get(RESPONSE_HEADER).and_then(string_value);
    match manager
        .refresh_device(&id, proof.as_deref(), &settings.policy)
        .await
    {
        Ok(DeviceRefresh::Refreshed(cookie)) => {
            DbscAnswer::bound(settings, &cookie, &id.to_string())
        }
        Ok(DeviceRefresh::Challenge { challenge, .. }) => {
            let mut answer = DbscAnswer::json(403, json!({"error": "challenge_required"}));
            if let Some(value) = challenge_header(&challenge) {
                answer.headers.push((CHALLENGE_HEADER, value));
            }
            answer
        }
        Err(error) => DbscAnswer::refused(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbsc_headers_are_structured_fields() {
        let settings = DbscSettings::default();
        let challenge = DeviceChallenge {
            challenge: "abc_-1".to_owned(),
            session_identifier: "id".to_owned(),
        };
        assert_eq!(
            settings.registration_header(&challenge).as_deref(),
            Some(r#"(ES256 RS256);path="/tessera/dbsc/register";challenge="abc_-1""#)
        );
        assert_eq!(
            challenge_header(&challenge).as_deref(),
            Some(r#""abc_-1";id="id""#)
        );
        assert_eq!(string_value(r#""quoted""#).as_deref(), Some("quoted"));
        assert_eq!(
            string_value("bare.jwt.text").as_deref(),
            Some("bare.jwt.text")
        );
        assert_eq!(string_value(" "), None);
        assert_eq!(
            skipped(r#"unreachable;session_identifier="123", quota_exceeded"#),
            vec![
                ("unreachable".to_owned(), Some("123".to_owned())),
                ("quota_exceeded".to_owned(), None)
            ]
        );
    }
}

//! The standard routes every [`AppUnderTest`](super::AppUnderTest) serves,
//! and what their handlers do: an integration wires each route to the
//! function here through its own `Session` extractor (which dereferences
//! to a [`SessionHandle`]) and answers with the returned text as the body
//! (status 200), or with its error type's response.
//!
//! | method | path | handler |
//! |---|---|---|
//! | GET, POST | `/untouched` | `"static"` (GET) / `"posted"` (POST), no session extractor |
//! | GET, POST | `/private` | [`private`] |
//! | GET | `/whoami` | [`whoami`] |
//! | GET | `/rejected` | [`rejected`] |
//! | GET | `/get/{key}` | [`get`] |
//! | POST | `/set/{key}/{value}` | [`set`] |
//! | POST | `/remove/{key}` | [`remove`] |
//! | POST | `/incr` | [`incr`] |
//! | GET | `/csrf` | [`csrf`] |
//! | POST | `/login/{user}` | [`login`] |
//! | POST | `/signin/{user}` | [`signin`] |
//! | POST | `/late-login` | [`late_login`] |
//! | POST | `/logout` | [`logout`] |
//! | POST | `/flush` | [`flush`] |
//! | POST | `/cycle-id` | [`cycle_id`] |
//! | POST | `/note` | [`note`], with the form field `text` |
//! | POST | `/big/{bytes}` | [`big`] |
//! | POST | `/revoke-others` | [`revoke_others`] |

use std::time::Duration;

use crate::{Error, SessionHandle};

/// A page for signed-in users only: `"private"`.
pub async fn private<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.require_auth(1, Duration::from_secs(3600)).await?;
    Ok("private".into())
}

/// The signed-in subject, or `"anonymous"`.
pub async fn whoami<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    Ok(s.subject().await?.unwrap_or_else(|| "anonymous".into()))
}

/// Why the cookie gave no session (`expired_idle`, …), or `"none"`.
pub async fn rejected<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    Ok(s.rejected()
        .await?
        .map_or("none".to_owned(), |r| r.as_str().to_owned()))
}

/// The value under `key` as JSON text (`null` when absent).
pub async fn get<E: From<Error>>(s: &SessionHandle<E>, key: &str) -> Result<String, E> {
    Ok(json(&s.get_value(key).await?))
}

/// Stores the string `value` under `key`: `"ok"`.
pub async fn set<E: From<Error>>(
    s: &SessionHandle<E>,
    key: &str,
    value: &str,
) -> Result<String, E> {
    s.insert(key, value).await?;
    Ok("ok".into())
}

/// Removes `key`: its former value as JSON text.
pub async fn remove<E: From<Error>>(s: &SessionHandle<E>, key: &str) -> Result<String, E> {
    Ok(json(&s.remove_value(key).await?))
}

/// Adds one to the counter `n` with compare-and-swap: the new count.
pub async fn incr<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    let n: u64 = s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).await?;
    Ok(n.to_string())
}

/// A CSRF token of the session (creating it).
pub async fn csrf<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.csrf_token().await
}

/// Signs `user` in at level 1: `"welcome"`.
pub async fn login<E: From<Error>>(s: &SessionHandle<E>, user: &str) -> Result<String, E> {
    s.login(user, 1).await?;
    Ok("welcome".into())
}

/// Signs `user` in and sets three values in the same request: `"<visits>
/// <csrf token>"`. The user `huge` stores a value over the data limit,
/// `wide` one within it but over what sealed cookies can carry.
pub async fn signin<E: From<Error>>(s: &SessionHandle<E>, user: &str) -> Result<String, E> {
    s.login(user, 1).await?;
    s.insert("user", user).await?;
    let visits: u64 = s
        .update("visits", |v: Option<u64>| v.unwrap_or(0) + 1)
        .await?;
    let payload = match user {
        "huge" => 1 << 20,
        "wide" => 20_000,
        _ => 1,
    };
    s.insert("payload", "x".repeat(payload)).await?;
    let csrf = s.csrf_token().await?;
    Ok(format!("{visits} {csrf}"))
}

/// Answers `"later"` at once and signs `late` in from a task that outlives
/// the request (a task keeping the session).
pub fn late_login<E>(s: &SessionHandle<E>) -> String
where
    E: From<Error> + Send + 'static,
{
    let s = s.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.login("late", 1).await
    });
    "later".into()
}

/// Ends the session: `"bye"`.
pub async fn logout<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.logout().await?;
    Ok("bye".into())
}

/// tower-sessions' `flush`: `"flushed"`.
pub async fn flush<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.flush().await?;
    Ok("flushed".into())
}

/// tower-sessions' `cycle_id`: `"cycled"`.
pub async fn cycle_id<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.cycle_id().await?;
    Ok("cycled".into())
}

/// Stores the form field `text` under `note`: `"noted"`.
pub async fn note<E: From<Error>>(s: &SessionHandle<E>, text: &str) -> Result<String, E> {
    s.insert("note", text).await?;
    Ok("noted".into())
}

/// Stores `bytes` bytes under `big`: `"stored"`.
pub async fn big<E: From<Error>>(s: &SessionHandle<E>, bytes: usize) -> Result<String, E> {
    s.insert("big", "x".repeat(bytes)).await?;
    Ok("stored".into())
}

/// Ends every other session of the subject: `"done"`.
pub async fn revoke_others<E: From<Error>>(s: &SessionHandle<E>) -> Result<String, E> {
    s.revoke_others().await?;
    Ok("done".into())
}

fn json(value: &Option<serde_json::Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "null".to_owned(), serde_json::Value::to_string)
}

//! The demo's handlers, written once over the session handle both
//! framework integrations share ([`SessionHandle`]). Each framework module
//! (`with_axum.rs`, `with_actix.rs`) extracts the session and the request's
//! parts, calls one of these and turns the [`Reply`] into its own response.

use maud::Markup;
use serde::Deserialize;
use tessera::SessionId;
use tessera_web::{Error, SessionHandle};

use crate::{pages, users};

/// What a handler answers, whatever the framework.
#[derive(Debug)]
pub enum Reply {
    /// 200 with this page.
    Page(Markup),
    /// 401 with this page (a failed sign-in).
    Unauthorized(Markup),
    /// 303 See Other to this path.
    SeeOther(&'static str),
    /// 404 with this plain-text message.
    NotFound(&'static str),
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `GET /`.
pub async fn home<E: From<Error>>(session: &SessionHandle<E>, mode: &str) -> Result<Reply, E> {
    let user = session.subject().await?;
    let (counter, token) = match &user {
        Some(_) => (
            session.get::<u64>("counter").await?.unwrap_or(0),
            Some(session.csrf_token().await?),
        ),
        None => (0, None),
    };
    Ok(Reply::Page(pages::home(&pages::Home {
        user: user.as_deref(),
        counter,
        csrf_token: token.as_deref(),
        mode,
    })))
}

/// `GET /login`.
pub async fn login_page<E: From<Error>>(session: &SessionHandle<E>) -> Result<Reply, E> {
    Ok(Reply::Page(pages::login(
        &session.csrf_token().await?,
        None,
    )))
}

/// `POST /login`: the password is checked on a blocking thread (argon2id).
pub async fn login<E: From<Error>>(
    session: &SessionHandle<E>,
    credentials: Credentials,
) -> Result<Reply, E> {
    let Credentials { username, password } = credentials;
    let user = tokio::task::spawn_blocking(move || users::authenticate(&username, &password))
        .await
        .ok()
        .flatten();
    match user {
        Some(user) => {
            session.login(user, 1).await?;
            Ok(Reply::SeeOther("/"))
        }
        None => Ok(Reply::Unauthorized(pages::login(
            &session.csrf_token().await?,
            Some("Wrong user name or password."),
        ))),
    }
}

/// `POST /logout`.
pub async fn logout<E: From<Error>>(session: &SessionHandle<E>) -> Result<Reply, E> {
    session.logout().await?;
    Ok(Reply::SeeOther("/"))
}

/// `POST /counter`: adds one (compare-and-swap).
pub async fn counter<E: From<Error>>(session: &SessionHandle<E>) -> Result<Reply, E> {
    if session.subject().await?.is_none() {
        return Ok(Reply::SeeOther("/login"));
    }
    session
        .update("counter", |n: Option<u64>| n.unwrap_or(0).saturating_add(1))
        .await?;
    Ok(Reply::SeeOther("/"))
}

/// `GET /sessions`.
pub async fn sessions<E: From<Error>>(session: &SessionHandle<E>, mode: &str) -> Result<Reply, E> {
    let Some(current) = session.record().await?.filter(|s| s.subject.is_some()) else {
        return Ok(Reply::SeeOther("/login"));
    };
    let list = session.sessions().await?;
    let mut bound = Vec::with_capacity(list.len());
    for listed in &list {
        let is_bound = session
            .manager()
            .is_device_bound(&listed.id)
            .await
            .map_err(|err| E::from(Error::from(err)))?;
        bound.push(is_bound);
    }
    let token = session.csrf_token().await?;
    Ok(Reply::Page(pages::sessions(
        &list,
        &bound,
        &current.id.to_string(),
        &token,
        mode,
    )))
}

/// `POST /sessions/{id}/revoke`.
pub async fn revoke<E: From<Error>>(session: &SessionHandle<E>, id: &str) -> Result<Reply, E> {
    let Some(current) = session.id().await? else {
        return Ok(Reply::SeeOther("/login"));
    };
    let Ok(id) = SessionId::parse(id) else {
        return Ok(Reply::NotFound("no such session\n"));
    };
    session.revoke(&id).await?;
    let next = if id == current { "/" } else { "/sessions" };
    Ok(Reply::SeeOther(next))
}

/// `POST /sessions/revoke-others`.
pub async fn revoke_others<E: From<Error>>(session: &SessionHandle<E>) -> Result<Reply, E> {
    if session.subject().await?.is_none() {
        return Ok(Reply::SeeOther("/login"));
    }
    session.revoke_others().await?;
    Ok(Reply::SeeOther("/sessions"))
}

//! Cases of device-bound sessions (DBSC, `docs/dbsc.md`) over the store:
//! the binding lives in its own keyspace (the `DeviceBinding` attachment),
//! so a racing write of the session's data cannot drop it, and every way a
//! session ends (login, logout, revocation) ends its binding.

use serde_json::json;

use super::device::TestDevice;
use super::{Case, CaseResult, Context, Harness, case_list, ensure, ensure_eq};
use crate::device::{BoundCookie, DeviceBindingError, DeviceBindingPolicy, DeviceRefresh};
use crate::error::{InvalidReason, SessionError};
use crate::manager::{ActiveSession, DataChange, Login, SessionManager};

pub(super) fn cases() -> Vec<Case> {
    case_list![
        device_binding_survives_racing_data_writes,
        login_logout_and_revocation_end_the_device_binding,
    ]
}

/// A signed-in session bound to `device`, with its first bound cookie.
async fn bound(
    m: &SessionManager,
    subject: &str,
    device: &TestDevice,
) -> Result<(ActiveSession, BoundCookie), String> {
    let policy = DeviceBindingPolicy::default();
    let session = m.login(None, Login::new(subject)).await.context("login")?;
    let offer = m
        .offer_device_binding(&session, &policy)
        .await
        .context("offer")?
        .ok_or("a signed-in session is offered binding")?;
    let cookie = m
        .register_device(
            &session,
            &device.registration_proof(&offer.challenge),
            &policy,
        )
        .await
        .context("registration")?;
    Ok((session, cookie))
}

/// Whether `cookie` passes the bound-cookie check of `session`.
async fn accepted(m: &SessionManager, session: &ActiveSession, cookie: &str) -> CaseResult {
    m.check_device(session, Some(cookie))
        .await
        .map(|_| ())
        .map_err(|e| format!("the bound cookie is refused: {e}"))
}

fn is_session_ended(result: Result<DeviceRefresh, SessionError>) -> bool {
    matches!(
        result,
        Err(SessionError::DeviceBinding(
            DeviceBindingError::SessionEnded
        ))
    )
}

async fn device_binding_survives_racing_data_writes(h: Harness) -> CaseResult {
    let m = h.manager();
    let policy = DeviceBindingPolicy::default();
    let device = TestDevice::es256();
    let session = m.login(None, Login::new("ann")).await.context("login")?;
    let offer = m
        .offer_device_binding(&session, &policy)
        .await
        .context("offer")?
        .ok_or("a signed-in session is offered binding")?;
    let proof = device.registration_proof(&offer.challenge);
    // The navigation after login writes the session's data while the
    // browser registers.
    let patch = DataChange::MergePatch(json!({"theme": "dark"}));
    let (registered, updated) = tokio::join!(
        m.register_device(&session, &proof, &policy),
        m.update(&session, patch, None, None),
    );
    let cookie = registered.context("registration racing a data write")?;
    let updated = updated.context("data write racing the registration")?;
    let data = updated.record().data.to_map();
    ensure_eq!(data.get("theme"), Some(&json!("dark")), "the data write");
    let id = session.record().id;
    ensure!(
        m.is_device_bound(&id).await.context("read")?,
        "the registration survives the data write"
    );
    accepted(&m, &updated, cookie.expose()).await?;

    // Later writes of the record leave the binding alone too.
    let patch = DataChange::MergePatch(json!({"visits": 2}));
    let updated = m
        .update(&updated, patch, None, None)
        .await
        .context("a later data write")?;
    accepted(&m, &updated, cookie.expose()).await?;

    // A refresh racing a data write: the new cookie holds, the old one ends.
    let challenge = match m.refresh_device(&id, None, &policy).await {
        Ok(DeviceRefresh::Challenge { challenge, .. }) => challenge.challenge,
        other => return Err(format!("expected a challenge, got {other:?}")),
    };
    let proof = device.refresh_proof(&challenge);
    let patch = DataChange::MergePatch(json!({"visits": 3}));
    let (refreshed, updated) = tokio::join!(
        m.refresh_device(&id, Some(&proof), &policy),
        m.update(&updated, patch, None, None),
    );
    let Ok(DeviceRefresh::Refreshed(second)) = refreshed else {
        return Err(format!("expected a new bound cookie, got {refreshed:?}"));
    };
    let updated = updated.context("data write racing the refresh")?;
    ensure!(
        second.expose() != cookie.expose(),
        "a refresh hands out a new value"
    );
    accepted(&m, &updated, second.expose()).await?;
    let stale = m.check_device(&updated, Some(cookie.expose())).await;
    ensure!(
        matches!(
            stale,
            Err(SessionError::Invalid {
                reason: InvalidReason::DeviceBound
            })
        ),
        "the bound cookie from before the refresh is refused, got {stale:?}"
    );
    Ok(())
}

async fn login_logout_and_revocation_end_the_device_binding(h: Harness) -> CaseResult {
    let m = h.manager();
    let device = TestDevice::es256();
    let policy = DeviceBindingPolicy::default();

    // A login on the bound session ends the binding.
    let (session, _) = bound(&m, "ann", &device).await?;
    let id = session.record().id;
    let relogged = m
        .login(Some(&session), Login::new("ann"))
        .await
        .context("login on the bound session")?;
    ensure!(
        !m.is_device_bound(&relogged.record().id)
            .await
            .context("read")?,
        "a login ends the binding"
    );
    ensure!(
        !m.is_device_bound(&id).await.context("read")?,
        "a login ends the binding of the session it replaces"
    );

    // Logout.
    let (session, _) = bound(&m, "bob", &device).await?;
    m.logout(&session).await.context("logout")?;
    ensure!(
        !m.is_device_bound(&session.record().id)
            .await
            .context("read")?,
        "logout ends the binding"
    );
    ensure!(
        is_session_ended(m.refresh_device(&session.record().id, None, &policy).await),
        "no refresh after logout"
    );

    // Revocation by id, and of every session of a subject.
    let (session, _) = bound(&m, "cid", &device).await?;
    m.revoke(&session.record().id).await.context("revoke")?;
    ensure!(
        !m.is_device_bound(&session.record().id)
            .await
            .context("read")?,
        "revocation ends the binding"
    );
    ensure!(
        is_session_ended(m.refresh_device(&session.record().id, None, &policy).await),
        "no refresh after revocation"
    );
    let (session, _) = bound(&m, "dee", &device).await?;
    m.revoke_subject("dee", None)
        .await
        .context("revoke the subject")?;
    ensure!(
        is_session_ended(m.refresh_device(&session.record().id, None, &policy).await),
        "no refresh after the subject's sessions are revoked"
    );
    Ok(())
}

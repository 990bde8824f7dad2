//! Cases that drive a [`SessionManager`] over the store: every lifecycle rule
//! (`docs/concepts.md`) at its boundaries.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Case, CaseResult, Context, Harness, case_list, ensure, ensure_eq};
use crate::config::BindingPolicy;
use crate::error::{InvalidReason, SessionError};
use crate::manager::{ActiveSession, DataChange, Login, NewSession, SessionManager};
use crate::record::{AuthLevel, ClientInfo, SessionData, SessionRecord};
use crate::store::Records;

pub(super) fn cases() -> Vec<Case> {
    case_list![
        idle_timeout_boundary,
        absolute_timeout_boundary_survives_activity,
        touch_is_amortised,
        renewal_rotates_and_old_token_has_grace,
        reuse_after_grace_revokes_the_session,
        a_lost_renewal_is_delivered_again_without_a_theft_alarm,
        explicit_rotate_has_grace,
        login_replaces_token_without_grace,
        login_of_another_subject_drops_old_data,
        step_up_rotates_and_require_auth_checks_freshness,
        concurrent_writers_lose_no_update,
        merge_patch_and_typed_version_conflict,
        subject_index_consistent_through_lifecycle,
        revoke_subject_except_current,
        global_revocation_ends_every_session,
        per_subject_cap_evicts_oldest,
        data_at_limit_accepted_over_limit_refused,
        unicode_subjects_work_everywhere,
        oversized_and_invalid_input_is_refused,
        malformed_tokens_never_reach_the_store,
        binding_policy_log_and_reject,
        guessing_is_detected_per_ip,
        logout_is_idempotent_and_covers_grace_tokens,
        revoke_by_public_id,
        per_session_timeouts_are_capped,
    ]
}

fn reason(result: Result<impl std::fmt::Debug, SessionError>) -> Result<InvalidReason, String> {
    match result {
        Err(SessionError::Invalid { reason }) => Ok(reason),
        other => Err(format!("expected an invalid-session error, got {other:?}")),
    }
}

async fn token_of(manager: &SessionManager, request: NewSession) -> Result<String, String> {
    let issued = manager.create(request).await.context("create")?;
    Ok(tok(&issued))
}

/// A well-formed token of a session that does not exist.
fn unknown_token() -> Result<crate::token::SessionToken, String> {
    let id = crate::token::SessionId::generate().context("id")?;
    let verifier = crate::token::random::<32>().context("verifier")?;
    Ok(crate::token::SessionToken::new(id, verifier))
}

/// The credential an operation issued, as text.
fn tok(session: &ActiveSession) -> String {
    session
        .issued()
        .map(|c| c.expose().to_owned())
        .unwrap_or_default()
}

/// A data change through a presented token, as an API call makes it.
async fn update(
    m: &SessionManager,
    token: &str,
    change: DataChange,
    version: Option<u64>,
    client: Option<&ClientInfo>,
) -> Result<Arc<SessionRecord>, SessionError> {
    let current = m.resolve(token, client).await?;
    Ok(m.update(&current, change, version, client)
        .await?
        .record()
        .clone())
}

/// A rotation through a presented token.
async fn rotate(m: &SessionManager, token: &str) -> Result<ActiveSession, SessionError> {
    let current = m.resolve(token, None).await?;
    m.rotate(&current).await
}

/// A login through a presented token, if it is still valid.
async fn login(
    m: &SessionManager,
    token: Option<&str>,
    login: Login,
) -> Result<ActiveSession, SessionError> {
    let current = match token {
        Some(token) => match m.resolve(token, login.client.as_ref()).await {
            Ok(current) => Some(current),
            Err(SessionError::Invalid { .. }) => None,
            Err(other) => return Err(other),
        },
        None => None,
    };
    m.login(current.as_ref(), login).await
}

/// A step-up through a presented token.
async fn step_up(
    m: &SessionManager,
    token: &str,
    level: u8,
    client: Option<&ClientInfo>,
) -> Result<ActiveSession, SessionError> {
    let current = m.resolve(token, client).await?;
    m.step_up(&current, level, client).await
}

async fn idle_timeout_boundary(h: Harness) -> CaseResult {
    let m = h.manager();
    let idle = m.config().idle_timeout;
    let a = token_of(&m, NewSession::default()).await?;
    let b = token_of(&m, NewSession::default()).await?;
    h.clock.advance(idle - Duration::from_secs(1));
    m.validate(&a, None)
        .await
        .context("one second before the idle deadline")?;
    h.clock.advance(Duration::from_secs(2));
    ensure_eq!(
        reason(m.validate(&b, None).await)?,
        InvalidReason::ExpiredIdle,
        "one second after the idle deadline"
    );
    ensure!(!h.events.of_kind("expired").is_empty(), "an expired event");
    // The touched session lives on: its deadline slid.
    m.validate(&a, None)
        .await
        .context("touched session after the original deadline")?;
    Ok(())
}

async fn absolute_timeout_boundary_survives_activity(h: Harness) -> CaseResult {
    let m = h.manager();
    let absolute = m.config().absolute_timeout;
    let mut token = token_of(&m, NewSession::default()).await?;
    let step = Duration::from_secs(20 * 60);
    let mut elapsed = Duration::ZERO;
    while elapsed + step < absolute {
        h.clock.advance(step);
        elapsed += step;
        let valid = m.validate(&token, None).await.context("active session")?;
        if let Some(renewed) = valid.issued() {
            token = renewed.expose().to_owned();
        }
    }
    h.clock.advance(absolute - elapsed - Duration::from_secs(1));
    let valid = m
        .validate(&token, None)
        .await
        .context("one second before absolute")?;
    if let Some(renewed) = valid.issued() {
        token = renewed.expose().to_owned();
    }
    h.clock.advance(Duration::from_secs(2));
    ensure_eq!(
        reason(m.validate(&token, None).await)?,
        InvalidReason::ExpiredAbsolute,
        "one second after the absolute deadline, however active"
    );
    Ok(())
}

async fn touch_is_amortised(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m.create(NewSession::default()).await.context("create")?;
    let token = &tok(&issued);
    let writes = h.calls().writes();
    h.clock.advance(Duration::from_secs(30));
    let first = m.validate(token, None).await.context("validate")?;
    ensure_eq!(h.calls().writes(), writes, "no write within touch_after");
    ensure_eq!(
        first.record().last_seen_at,
        issued.record().last_seen_at,
        "not touched"
    );
    h.clock.advance(Duration::from_secs(31));
    let second = m.validate(token, None).await.context("validate")?;
    ensure_eq!(
        h.calls().writes(),
        writes + 1,
        "one write after touch_after"
    );
    ensure_eq!(second.record().last_seen_at, h.now(), "touched now");
    let stored = h
        .store
        .load(&issued.record().id, h.now())
        .await
        .context("load")?
        .ok_or("session gone")?;
    ensure_eq!(stored.last_seen_at, h.now(), "touch stored");
    ensure_eq!(
        stored.version,
        issued.record().version,
        "touch does not bump the version"
    );
    Ok(())
}

async fn renewal_rotates_and_old_token_has_grace(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m.create(NewSession::default()).await.context("create")?;
    let old = tok(&issued);
    h.clock
        .advance(m.config().renew_after - Duration::from_secs(1));
    let not_yet = m.validate(&old, None).await.context("before renewal")?;
    ensure!(not_yet.issued().is_none(), "renewed too early");
    h.clock.advance(Duration::from_secs(1));
    let renewed = m.validate(&old, None).await.context("renewal")?;
    let new = tok(&renewed);
    ensure!(!new.is_empty(), "validation at renew_after must renew");
    ensure!(new != old, "a new token");
    ensure_eq!(renewed.record().id, issued.record().id, "same public id");
    ensure!(!h.events.of_kind("renewed").is_empty(), "a renewed event");
    // The successor has not been presented yet: the old token still
    // works, and its responses carry the successor again.
    let again = m
        .validate(&old, None)
        .await
        .context("old before the successor")?;
    ensure_eq!(tok(&again), new, "the successor, delivered again");
    m.validate(&new, None).await.context("new token")?;
    h.clock
        .advance(m.config().rotation_grace - Duration::from_secs(1));
    let in_grace = m
        .validate(&old, None)
        .await
        .context("old token within grace")?;
    ensure_eq!(
        in_grace.record().id,
        issued.record().id,
        "grace resolves to the successor"
    );
    ensure!(
        in_grace.issued().is_none(),
        "an old token is never renewed, and the successor has arrived"
    );
    Ok(())
}

async fn reuse_after_grace_revokes_the_session(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m.create(NewSession::default()).await.context("create")?;
    let old = tok(&issued);
    h.clock.advance(m.config().renew_after);
    let new = tok(&m.validate(&old, None).await.context("renewal")?);
    ensure!(!new.is_empty(), "expected renewal");
    m.validate(&new, None)
        .await
        .context("the successor arrives")?;
    h.clock
        .advance(m.config().rotation_grace + Duration::from_secs(1));
    ensure_eq!(
        reason(m.validate(&old, None).await)?,
        InvalidReason::Reused,
        "stolen old token"
    );
    ensure!(
        !h.events.of_kind("token_reuse").is_empty(),
        "a token_reuse event"
    );
    ensure!(
        reason(m.validate(&new, None).await).is_ok(),
        "the whole session is revoked, the new token too"
    );
    ensure!(
        m.get(&issued.record().id).await.context("get")?.is_none(),
        "session gone"
    );
    Ok(())
}

async fn a_lost_renewal_is_delivered_again_without_a_theft_alarm(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m.create(NewSession::default()).await.context("create")?;
    let old = tok(&issued);
    h.clock.advance(m.config().renew_after);
    // The renewal's response never reaches the client (a long request, a
    // dropped connection, a proxy that drops Set-Cookie).
    let lost = tok(&m.validate(&old, None).await.context("renewal")?);
    let window = m.config().renewal_delivery_window;
    h.clock.advance(m.config().rotation_grace * 3);
    let late = m
        .validate(&old, None)
        .await
        .context("old after the grace")?;
    ensure_eq!(tok(&late), lost, "the same successor, delivered again");
    ensure!(h.events.of_kind("token_reuse").is_empty(), "no theft alarm");
    // Never followed: the old token dies with the window, quietly.
    h.clock.advance(window);
    ensure_eq!(
        reason(m.validate(&old, None).await)?,
        InvalidReason::Revoked,
        "an old token past the delivery window"
    );
    ensure!(
        h.events.of_kind("token_reuse").is_empty(),
        "still no theft alarm: the successor was never presented"
    );
    Ok(())
}

async fn explicit_rotate_has_grace(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m.create(NewSession::default()).await.context("create")?;
    let old = tok(&issued);
    let rotated = rotate(&m, &old).await.context("rotate")?;
    ensure_eq!(rotated.record().id, issued.record().id, "same id");
    m.validate(&old, None).await.context("old within grace")?;
    m.validate(&tok(&rotated), None).await.context("new")?;
    ensure!(!h.events.of_kind("rotated").is_empty(), "a rotated event");
    h.clock.advance(m.config().rotation_grace);
    ensure_eq!(
        reason(m.validate(&old, None).await)?,
        InvalidReason::Reused,
        "after grace"
    );
    Ok(())
}

async fn login_replaces_token_without_grace(h: Harness) -> CaseResult {
    let m = h.manager();
    let data = SessionData::from_value(&json!({"cart": [1, 2]})).context("data")?;
    let anonymous = m
        .create(NewSession {
            data: Some(data.clone()),
            ..NewSession::default()
        })
        .await
        .context("create")?;
    let pre_login = tok(&anonymous);
    let issued = login(&m, Some(&pre_login), Login::new("alice"))
        .await
        .context("login")?;
    ensure!(tok(&issued) != pre_login, "login issues a new token");
    ensure_eq!(issued.record().id, anonymous.record().id, "same session");
    ensure_eq!(issued.record().subject.as_deref(), Some("alice"), "subject");
    ensure_eq!(issued.record().auth_level, AuthLevel::PASSWORD, "level");
    ensure_eq!(
        issued.record().authenticated_at,
        Some(h.now()),
        "authenticated_at"
    );
    ensure_eq!(issued.record().data, data, "anonymous data carries over");
    ensure_eq!(
        reason(m.validate(&pre_login, None).await)?,
        InvalidReason::Revoked,
        "the pre-login token is dead at once"
    );
    let after = m
        .validate(&tok(&issued), None)
        .await
        .context("new token survives")?;
    ensure_eq!(
        after.record().subject.as_deref(),
        Some("alice"),
        "still signed in"
    );
    ensure!(
        !h.events.of_kind("logged_in").is_empty(),
        "a logged_in event"
    );
    // No token, or a dead one: a fresh session.
    let fresh = login(&m, Some(&pre_login), Login::new("alice"))
        .await
        .context("login")?;
    ensure!(
        fresh.record().id != anonymous.record().id,
        "a dead token starts a new session"
    );
    let none = login(&m, None, Login::new("alice"))
        .await
        .context("login")?;
    ensure_eq!(
        none.record().subject.as_deref(),
        Some("alice"),
        "login without a token"
    );
    Ok(())
}

async fn login_of_another_subject_drops_old_data(h: Harness) -> CaseResult {
    let m = h.manager();
    let first = login(&m, None, Login::new("alice"))
        .await
        .context("alice")?;
    update(
        &m,
        &tok(&first),
        DataChange::Replace(
            SessionData::from_value(&json!({"secret": "alice's"})).context("data")?,
        ),
        None,
        None,
    )
    .await
    .context("update")?;
    let second = login(&m, Some(&tok(&first)), Login::new("bob"))
        .await
        .context("bob")?;
    ensure_eq!(second.record().subject.as_deref(), Some("bob"), "bob");
    ensure_eq!(
        second.record().data,
        SessionData::empty(),
        "alice's data never reaches bob"
    );
    Ok(())
}

async fn step_up_rotates_and_require_auth_checks_freshness(h: Harness) -> CaseResult {
    let m = h.manager();
    let anonymous = m.create(NewSession::default()).await.context("create")?;
    let refused = step_up(&m, &tok(&anonymous), 2, None).await;
    ensure!(
        matches!(refused, Err(SessionError::NotAuthenticated)),
        "step-up needs a signed-in session, got {refused:?}"
    );
    let login = login(&m, None, Login::new("alice"))
        .await
        .context("login")?;
    let sensitive = Duration::from_secs(300);
    ensure!(
        m.require_auth(login.record(), 2, sensitive).is_err(),
        "level 1 is not level 2"
    );
    m.require_auth(login.record(), 1, sensitive)
        .context("level 1 fresh")?;
    let stepped = step_up(&m, &tok(&login), 2, None)
        .await
        .context("step-up")?;
    ensure!(tok(&stepped) != tok(&login), "step-up rotates");
    ensure_eq!(
        reason(m.validate(&tok(&login), None).await)?,
        InvalidReason::Revoked,
        "the pre-step-up token is dead"
    );
    m.require_auth(stepped.record(), 2, sensitive)
        .context("level 2 fresh")?;
    h.clock.advance(sensitive + Duration::from_secs(1));
    let current = m.validate(&tok(&stepped), None).await.context("validate")?;
    ensure!(
        matches!(
            m.require_auth(current.record(), 2, sensitive),
            Err(SessionError::ReauthenticationRequired { .. })
        ),
        "authentication older than max_age must be refused"
    );
    Ok(())
}

async fn concurrent_writers_lose_no_update(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m
        .create(NewSession {
            data: Some(SessionData::from_value(&json!({"counter": 0})).context("data")?),
            ..NewSession::default()
        })
        .await
        .context("create")?;
    let token: Arc<str> = tok(&issued).into();
    let mut writers = Vec::new();
    for _ in 0..64 {
        let (m, token) = (m.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            let mut conflicts = 0u32;
            while done < 100 {
                let current = m
                    .validate(&token, None)
                    .await
                    .context("read")?
                    .record()
                    .clone();
                let counter: u64 = current.data.get("counter").unwrap_or(0);
                let next =
                    SessionData::from_value(&json!({"counter": counter + 1})).context("data")?;
                match update(
                    &m,
                    &token,
                    DataChange::Replace(next),
                    Some(current.version),
                    None,
                )
                .await
                {
                    Ok(_) => {
                        done += 1;
                        conflicts = 0;
                    }
                    Err(SessionError::VersionConflict { .. }) => {
                        // Jittered exponential backoff, as a real client would
                        // do: 64 writers retrying at once on a networked store
                        // would otherwise spend most round trips on conflicts.
                        conflicts = conflicts.saturating_add(1);
                        tokio::time::sleep(backoff(conflicts)).await;
                    }
                    Err(other) => return Err(format!("update: {other}")),
                }
            }
            Ok::<(), String>(())
        }));
    }
    for writer in writers {
        writer
            .await
            .map_err(|e| format!("writer panicked: {e}"))??;
    }
    let last = m
        .validate(&token, None)
        .await
        .context("final read")?
        .record()
        .clone();
    ensure_eq!(
        last.data.get::<u64>("counter"),
        Some(6400),
        "64 × 100 increments"
    );
    ensure_eq!(last.version, 6401, "one version per successful write");
    Ok(())
}

/// A random pause of up to 0.1 ms × 2^conflicts, at most 6.4 ms.
fn backoff(conflicts: u32) -> Duration {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let ceiling_micros = 100u32 << conflicts.min(6);
    Duration::from_micros(u64::from(u32::from_le_bytes(random) % ceiling_micros))
}

async fn merge_patch_and_typed_version_conflict(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = m
        .create(NewSession {
            data: Some(SessionData::from_value(&json!({"a": 1, "b": {"c": 2}})).context("data")?),
            ..NewSession::default()
        })
        .await
        .context("create")?;
    let token = &tok(&issued);
    let patched = update(
        &m,
        token,
        DataChange::MergePatch(json!({"a": null, "b": {"d": 3}})),
        Some(1),
        None,
    )
    .await
    .context("patch")?;
    ensure_eq!(
        patched.data.to_value(),
        json!({"b": {"c": 2, "d": 3}}),
        "RFC 7396 merge"
    );
    ensure_eq!(patched.version, 2, "version bumped");
    match update(
        &m,
        token,
        DataChange::MergePatch(json!({"x": 1})),
        Some(1),
        None,
    )
    .await
    {
        Err(SessionError::VersionConflict {
            expected: 1,
            current_version: 2,
        }) => {}
        other => return Err(format!("expected a version conflict at 2, got {other:?}")),
    }
    let not_object = update(&m, token, DataChange::MergePatch(json!([1])), None, None).await;
    ensure!(
        matches!(not_object, Err(SessionError::Data(_))),
        "a patch making an array: {not_object:?}"
    );
    let after = m.validate(token, None).await.context("validate")?;
    ensure_eq!(after.record().version, 2, "failed updates change nothing");
    Ok(())
}

async fn subject_index_consistent_through_lifecycle(h: Harness) -> CaseResult {
    let m = h.manager();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            login(&m, None, Login::new("alice"))
                .await
                .context("login")?,
        );
    }
    let short = m
        .create(NewSession {
            subject: Some("alice".into()),
            idle_timeout: Some(Duration::from_secs(60)),
            ..NewSession::default()
        })
        .await
        .context("short")?;
    ensure_eq!(
        m.list_subject("alice").await.context("list")?.len(),
        4,
        "four sessions"
    );
    let rotated = rotate(&m, &tok(&tokens[0])).await.context("rotate")?;
    m.logout_presented(&tok(&tokens[1]))
        .await
        .context("logout")?;
    h.clock.advance(Duration::from_secs(61));
    let listed = m.list_subject("alice").await.context("list")?;
    let mut ids: Vec<_> = listed.iter().map(|s| s.id).collect();
    ids.sort();
    let mut expected = vec![rotated.record().id, tokens[2].record().id];
    expected.sort();
    ensure_eq!(ids, expected, "rotation kept, logout and expiry dropped");
    ensure!(
        listed.iter().all(|s| s.id != short.record().id),
        "expired session listed"
    );
    Ok(())
}

async fn revoke_subject_except_current(h: Harness) -> CaseResult {
    let m = h.manager();
    let current = login(&m, None, Login::new("frank"))
        .await
        .context("login")?;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(
            login(&m, None, Login::new("frank"))
                .await
                .context("login")?,
        );
    }
    let bystander = login(&m, None, Login::new("grace"))
        .await
        .context("login")?;
    let revoked = m
        .revoke_subject("frank", Some(&current.record().id))
        .await
        .context("revoke")?;
    ensure_eq!(revoked, 3, "three revoked");
    m.validate(&tok(&current), None)
        .await
        .context("current survives")?;
    for other in &others {
        ensure_eq!(
            reason(m.validate(&tok(other), None).await)?,
            InvalidReason::Unknown,
            "revoked session"
        );
    }
    m.validate(&tok(&bystander), None)
        .await
        .context("other subject")?;
    ensure_eq!(
        m.revoke_subject("frank", None).await.context("all")?,
        1,
        "then the last"
    );
    Ok(())
}

async fn global_revocation_ends_every_session(h: Harness) -> CaseResult {
    let m = h.manager();
    let other_node = h.manager();
    let a = login(&m, None, Login::new("alice"))
        .await
        .context("login")?;
    let b = token_of(&m, NewSession::default()).await?;
    other_node
        .validate(&b, None)
        .await
        .context("other node sees b")?;
    m.revoke_everything().await.context("revoke everything")?;
    ensure_eq!(
        reason(m.validate(&tok(&a), None).await)?,
        InvalidReason::Revoked,
        "a"
    );
    h.clock.advance(m.config().epoch_refresh);
    ensure_eq!(
        reason(other_node.validate(&b, None).await)?,
        InvalidReason::Revoked,
        "another manager on the store, after epoch_refresh"
    );
    ensure!(
        m.list_subject("alice").await.context("list")?.is_empty(),
        "nothing listed"
    );
    let fresh = token_of(&m, NewSession::default()).await?;
    m.validate(&fresh, None)
        .await
        .context("a session created afterwards works")?;
    Ok(())
}

async fn per_subject_cap_evicts_oldest(h: Harness) -> CaseResult {
    let cap = NonZeroUsize::new(2).ok_or("cap")?;
    let m = h.manager_with(|b| b.max_sessions_per_subject(cap));
    let first = login(&m, None, Login::new("heidi"))
        .await
        .context("first")?;
    h.clock.advance(Duration::from_secs(1));
    let second = login(&m, None, Login::new("heidi"))
        .await
        .context("second")?;
    h.clock.advance(Duration::from_secs(1));
    let third = login(&m, None, Login::new("heidi"))
        .await
        .context("third")?;
    ensure!(
        reason(m.validate(&tok(&first), None).await).is_ok(),
        "oldest evicted"
    );
    m.validate(&tok(&second), None)
        .await
        .context("second kept")?;
    m.validate(&tok(&third), None)
        .await
        .context("newest kept")?;
    ensure_eq!(
        m.list_subject("heidi").await.context("list")?.len(),
        2,
        "at the cap"
    );
    Ok(())
}

async fn data_at_limit_accepted_over_limit_refused(h: Harness) -> CaseResult {
    let m = h.manager();
    let limit = m.config().max_data_bytes;
    // {"blob":"xxx…"} is 11 bytes of framing plus the string.
    let exact =
        SessionData::from_value(&json!({"blob": "x".repeat(limit - 11)})).context("data")?;
    ensure_eq!(
        exact.len_bytes(),
        limit,
        "test data is exactly at the limit"
    );
    let issued = m
        .create(NewSession {
            data: Some(exact.clone()),
            ..NewSession::default()
        })
        .await
        .context("create at the limit")?;
    let read = m.validate(&tok(&issued), None).await.context("read back")?;
    ensure_eq!(read.record().data, exact, "64 KiB round trip");
    let over = SessionData::from_value(&json!({"blob": "x".repeat(limit - 10)})).context("data")?;
    let refused = update(
        &m,
        &tok(&issued),
        DataChange::Replace(over.clone()),
        None,
        None,
    )
    .await;
    ensure!(
        matches!(refused, Err(SessionError::DataTooLarge { size, limit: l }) if size == limit + 1 && l == limit),
        "one byte over: {refused:?}"
    );
    let after = m.validate(&tok(&issued), None).await.context("after")?;
    ensure_eq!(
        after.record().version,
        issued.record().version,
        "refused update changed nothing"
    );
    let create_over = m
        .create(NewSession {
            data: Some(over),
            ..NewSession::default()
        })
        .await;
    ensure!(
        matches!(create_over, Err(SessionError::DataTooLarge { .. })),
        "create over the limit"
    );
    Ok(())
}

async fn unicode_subjects_work_everywhere(h: Harness) -> CaseResult {
    let m = h.manager();
    let subject = "Zoë 🚀 用户 \u{202e}";
    let issued = login(&m, None, Login::new(subject))
        .await
        .context("login")?;
    let listed = m.list_subject(subject).await.context("list")?;
    ensure_eq!(listed.len(), 1, "listed");
    ensure_eq!(listed[0].subject.as_deref(), Some(subject), "exact subject");
    ensure!(
        m.list_subject("Zoe 🚀 用户 \u{202e}")
            .await
            .context("list")?
            .is_empty(),
        "no folding"
    );
    ensure_eq!(
        m.revoke_subject(subject, None).await.context("revoke")?,
        1,
        "revoked"
    );
    ensure!(
        reason(m.validate(&tok(&issued), None).await).is_ok(),
        "gone"
    );
    let longest = "é".repeat(128);
    login(&m, None, Login::new(longest.clone()))
        .await
        .context("256-byte subject")?;
    Ok(())
}

async fn oversized_and_invalid_input_is_refused(h: Harness) -> CaseResult {
    let m = h.manager();
    let writes = h.calls().writes();
    let long = "a".repeat(257);
    let too_long = login(&m, None, Login::new(long.clone())).await;
    ensure!(
        matches!(
            too_long,
            Err(SessionError::SubjectTooLong {
                len: 257,
                limit: 256
            })
        ),
        "257-byte subject: {too_long:?}"
    );
    let empty = login(&m, None, Login::new("")).await;
    ensure!(
        matches!(empty, Err(SessionError::EmptySubject)),
        "empty subject: {empty:?}"
    );
    let created = m
        .create(NewSession {
            subject: Some(long),
            ..NewSession::default()
        })
        .await;
    ensure!(
        matches!(created, Err(SessionError::SubjectTooLong { .. })),
        "create: {created:?}"
    );
    ensure!(
        SessionData::from_value(&json!("text")).is_err(),
        "non-object data"
    );
    ensure!(
        m.list_subject(&"b".repeat(300)).await.is_err(),
        "listing a huge subject"
    );
    ensure_eq!(h.calls().writes(), writes, "refused input wrote nothing");
    Ok(())
}

async fn malformed_tokens_never_reach_the_store(h: Harness) -> CaseResult {
    let m = h.manager();
    let real = token_of(&m, NewSession::default()).await?;
    let loads = h.calls().reads();
    let mut flipped = real.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let garbage = [
        String::new(),
        "tss_".into(),
        "x".repeat(53),
        "x".repeat(74),
        real.replace("tss_", "TSS_"),
        String::from_utf8_lossy(&flipped).into_owned(),
        format!("{real}a"),
        "\u{0}".repeat(53),
        "\u{0}".repeat(74),
        "tss_".to_owned() + &"é".repeat(24) + "a",
    ];
    for text in &garbage {
        ensure_eq!(
            reason(m.validate(text, None).await)?,
            InvalidReason::Malformed,
            "{text:?}"
        );
        ensure!(
            update(&m, text, DataChange::MergePatch(json!({})), None, None)
                .await
                .is_err(),
            "update"
        );
        ensure!(rotate(&m, text).await.is_err(), "rotate");
        m.logout_presented(text)
            .await
            .context("logout of garbage is fine")?;
    }
    ensure_eq!(
        h.calls().reads(),
        loads,
        "malformed tokens cost no store access"
    );
    let unknown = unknown_token()?;
    ensure_eq!(
        reason(m.validate(unknown.expose(), None).await)?,
        InvalidReason::Unknown,
        "well-formed but unknown"
    );
    Ok(())
}

async fn binding_policy_log_and_reject(h: Harness) -> CaseResult {
    let home = ClientInfo::new("198.51.100.7".parse().ok(), Some("Firefox/140"));
    let thief = ClientInfo::new("203.0.113.9".parse().ok(), Some("curl/8"));
    let logging = h.manager();
    let rejecting = h.manager_with(|b| b.binding(BindingPolicy::Reject));
    let off = h.manager_with(|b| b.binding(BindingPolicy::Off));
    let token = token_of(
        &logging,
        NewSession {
            client: Some(home.clone()),
            ..NewSession::default()
        },
    )
    .await?;
    logging
        .validate(&token, Some(&home))
        .await
        .context("same client")?;
    ensure!(
        h.events.of_kind("binding_mismatch").is_empty(),
        "no event for the same client"
    );
    logging
        .validate(&token, Some(&thief))
        .await
        .context("log policy lets it through")?;
    ensure_eq!(
        h.events.of_kind("binding_mismatch").len(),
        1,
        "log policy emits"
    );
    ensure_eq!(
        reason(rejecting.validate(&token, Some(&thief)).await)?,
        InvalidReason::BindingMismatch,
        "reject policy refuses"
    );
    rejecting
        .validate(&token, Some(&home))
        .await
        .context("the owner is unharmed")?;
    off.validate(&token, Some(&thief))
        .await
        .context("off policy")?;
    ensure_eq!(
        h.events.of_kind("binding_mismatch").len(),
        2,
        "off emits nothing"
    );
    Ok(())
}

async fn guessing_is_detected_per_ip(h: Harness) -> CaseResult {
    let m = h.manager_with(|b| b.guessing(5, Duration::from_secs(60)));
    let guesser = ClientInfo::new("192.0.2.66".parse().ok(), None);
    let honest = ClientInfo::new("192.0.2.1".parse().ok(), None);
    let ip = guesser.ip.ok_or("ip")?;
    for _ in 0..4 {
        let token = unknown_token()?;
        let _ = m.validate(token.expose(), Some(&guesser)).await;
    }
    ensure!(!m.is_guessing(ip), "below the threshold");
    let _ = m.validate("garbage", Some(&guesser)).await;
    ensure!(m.is_guessing(ip), "at the threshold");
    ensure_eq!(h.events.of_kind("token_guessing").len(), 1, "reported once");
    let _ = m.validate("garbage", Some(&honest)).await;
    ensure!(!m.is_guessing(honest.ip.ok_or("ip")?), "per IP");
    h.clock.advance(Duration::from_secs(61));
    ensure!(!m.is_guessing(ip), "the window passes");
    Ok(())
}

async fn logout_is_idempotent_and_covers_grace_tokens(h: Harness) -> CaseResult {
    let m = h.manager();
    let token = token_of(&m, NewSession::default()).await?;
    m.logout_presented(&token).await.context("logout")?;
    m.logout_presented(&token).await.context("logout again")?;
    ensure!(reason(m.validate(&token, None).await).is_ok(), "logged out");
    ensure!(!h.events.of_kind("revoked").is_empty(), "a revoked event");
    let old = token_of(&m, NewSession::default()).await?;
    let new = rotate(&m, &old).await.context("rotate")?;
    m.logout_presented(&old)
        .await
        .context("logout with the in-grace old token")?;
    ensure!(
        reason(m.validate(&tok(&new), None).await).is_ok(),
        "logout through an in-grace token ends the session"
    );
    Ok(())
}

async fn revoke_by_public_id(h: Harness) -> CaseResult {
    let m = h.manager();
    let issued = login(&m, None, Login::new("ivan")).await.context("login")?;
    let found = m.get(&issued.record().id).await.context("get")?;
    ensure!(found.is_some(), "get by id");
    ensure!(
        m.revoke(&issued.record().id).await.context("revoke")?,
        "revoked"
    );
    ensure!(
        !m.revoke(&issued.record().id).await.context("again")?,
        "second revoke is false"
    );
    ensure!(
        reason(m.validate(&tok(&issued), None).await).is_ok(),
        "token dead"
    );
    ensure!(
        m.get(&issued.record().id).await.context("get")?.is_none(),
        "gone"
    );
    Ok(())
}

async fn per_session_timeouts_are_capped(h: Harness) -> CaseResult {
    let m = h.manager();
    let shorter = m
        .create(NewSession {
            idle_timeout: Some(Duration::from_secs(60)),
            absolute_timeout: Some(Duration::from_secs(3600)),
            ..NewSession::default()
        })
        .await
        .context("shorter timeouts")?;
    ensure_eq!(
        shorter.record().absolute_expires_at,
        h.now().plus(Duration::from_secs(3600)),
        "per-session absolute"
    );
    let longer = m
        .create(NewSession {
            idle_timeout: Some(m.config().idle_timeout + Duration::from_secs(1)),
            ..NewSession::default()
        })
        .await;
    ensure!(
        matches!(
            longer,
            Err(SessionError::TimeoutNotAllowed {
                setting: "idle_timeout",
                ..
            })
        ),
        "longer than configured: {longer:?}"
    );
    h.clock.advance(Duration::from_secs(61));
    ensure_eq!(
        reason(m.validate(&tok(&shorter), None).await)?,
        InvalidReason::ExpiredIdle,
        "per-session idle timeout applies"
    );
    Ok(())
}

//! Property test: random sequences of manager operations on the memory
//! store behave exactly like a small reference model of the lifecycle
//! rules (`docs/concepts.md`): deadlines, touch, renewal, the previous
//! token (delivered the successor again until the successor is presented
//! or the delivery window ends, then the grace, then reuse), login,
//! rotation, logout and revocation.
//!
//! The shrunk failures proptest found in the past are kept as explicit
//! cases at the end of this file: their seeds in
//! `lifecycle_model.proptest-regressions` stopped naming them when the
//! operations changed.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tessera_core::{
    ActiveSession, DataChange, InvalidReason, Login, ManualClock, MemoryStore, NewSession,
    SessionData, SessionError, SessionManager, SessionRecord, Timestamp,
};

const IDLE: i64 = 100;
const ABSOLUTE: i64 = 250;
const RENEW: i64 = 50;
const GRACE: i64 = 5;
const WINDOW: i64 = 20;
const TOUCH: i64 = 10;
/// `tessera_core::EXPIRED_RETENTION`, in seconds.
const RETENTION: i64 = 300;
const SUBJECTS: [&str; 2] = ["ann", "bob"];
const START_MILLIS: i64 = 1_700_000_000_000;

/// Which token an operation presents, among all tokens issued so far.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The n-th issued (modulo how many there are).
    Nth(usize),
    /// The n-th most recent: the rules of a token and its successor show
    /// only when both are presented, in some order, close in time.
    Recent(usize),
}

impl Pick {
    fn among(self, issued: usize) -> Option<usize> {
        match (self, issued) {
            (_, 0) => None,
            (Pick::Nth(n), _) => Some(n % issued),
            (Pick::Recent(n), _) => Some(issued - 1 - n % issued),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create,
    /// Validate a token (touch, renewal, confirmation of a successor).
    Validate(Pick),
    /// Resolve a token (every check, no touch or renewal).
    Resolve(Pick),
    /// Set the counter through a token; `true`: on the session validation
    /// returned (a handler after the middleware), `false`: resolved.
    Update(Pick, u64, bool),
    Login(Pick, usize),
    Rotate(Pick),
    Logout(Pick),
    RevokeSubject(usize),
    RevokeAll,
    Advance(i64),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        3 => (0usize..4).prop_map(Pick::Recent),
        1 => any::<usize>().prop_map(Pick::Nth),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Create),
        6 => pick().prop_map(Op::Validate),
        1 => pick().prop_map(Op::Resolve),
        2 => (pick(), 0u64..1000, any::<bool>()).prop_map(|(t, v, b)| Op::Update(t, v, b)),
        2 => (pick(), 0usize..2).prop_map(|(t, s)| Op::Login(t, s)),
        2 => pick().prop_map(Op::Rotate),
        1 => pick().prop_map(Op::Logout),
        1 => (0usize..2).prop_map(Op::RevokeSubject),
        1 => Just(Op::RevokeAll),
        2 => (1i64..80).prop_map(Op::Advance),
        3 => (1i64..=GRACE + 1).prop_map(Op::Advance),
        // Steps that land exactly on or next to each policy boundary.
        4 => proptest::sample::select(vec![
            1, GRACE - 1, GRACE, TOUCH - 1, TOUCH, WINDOW - 1, WINDOW, RENEW - 1, RENEW,
            IDLE - 1, IDLE, RETENTION, ABSOLUTE - IDLE, ABSOLUTE - 1,
        ])
        .prop_map(Op::Advance),
    ]
}

/// A session's token before its last rotation.
#[derive(Debug, Clone, Copy)]
struct Previous {
    token: usize,
    rotated_at: i64,
    /// `None`: superseded by a login, dead at once.
    grace_until: Option<i64>,
    /// The successor has not been presented yet: the previous token is
    /// handed it again (within the delivery window).
    owed: bool,
}

#[derive(Debug, Clone)]
struct ModelSession {
    deleted: bool,
    subject: Option<usize>,
    counter: u64,
    version: u64,
    created: i64,
    last_seen: i64,
    token_issued: i64,
    epoch: u64,
    current: usize,
    previous: Option<Previous>,
}

impl ModelSession {
    fn expires_at(&self) -> i64 {
        (self.last_seen + IDLE).min(self.created + ABSOLUTE)
    }
    fn forgotten(&self, now: i64) -> bool {
        self.deleted || now >= self.expires_at() + RETENTION
    }
}

/// How a valid token reached its session.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Current,
    /// The previous token; with the successor owed to it, if any.
    Previous {
        successor: Option<usize>,
    },
}

/// What the model expects of a token-taking operation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Valid { session: usize, via: Via },
    Invalid(InvalidReason),
}

/// Why a token changes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rotation {
    /// Renewal or rotate, by a request holding this token.
    Renewal {
        held: usize,
    },
    Login,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    epoch: u64,
    sessions: Vec<ModelSession>,
    /// The session of each token ever issued.
    tokens: Vec<usize>,
}

impl Model {
    /// Resolves a token like the manager does, applying the side effects of
    /// a failed resolution (deletion of ended sessions, reuse revocation).
    fn resolve(&mut self, token: usize) -> Expect {
        let now = self.now;
        let session = self.tokens[token];
        let s = &mut self.sessions[session];
        if s.forgotten(now) {
            return Expect::Invalid(InvalidReason::Unknown);
        }
        let via = match s.previous {
            _ if s.current == token => Via::Current,
            Some(p) if p.token == token => match p.grace_until {
                None => return Expect::Invalid(InvalidReason::Revoked),
                Some(_) if p.owed && now >= p.rotated_at + WINDOW => {
                    return Expect::Invalid(InvalidReason::Revoked);
                }
                Some(_) if p.owed => Via::Previous {
                    successor: Some(s.current),
                },
                Some(until) if now < until => Via::Previous { successor: None },
                Some(_) => {
                    s.deleted = true;
                    return Expect::Invalid(InvalidReason::Reused);
                }
            },
            _ => return Expect::Invalid(InvalidReason::Unknown),
        };
        let reason = if s.epoch < self.epoch {
            Some(InvalidReason::Revoked)
        } else if now >= s.created + ABSOLUTE {
            Some(InvalidReason::ExpiredAbsolute)
        } else if now >= s.last_seen + IDLE {
            Some(InvalidReason::ExpiredIdle)
        } else {
            None
        };
        if let Some(reason) = reason {
            s.deleted = true;
            return Expect::Invalid(reason);
        }
        Expect::Valid { session, via }
    }

    /// The token a request holds after resolving `token` this way.
    fn held(&self, token: usize, session: usize, via: Via) -> usize {
        match via {
            Via::Previous { successor: Some(_) } => self.sessions[session].current,
            _ => token,
        }
    }

    /// What validation does to a session reached through its current
    /// token: renews it (a new token, returned), or confirms a successor
    /// presented for the first time, or touches it.
    fn refresh(&mut self, session: usize) -> Option<usize> {
        let now = self.now;
        let s = &mut self.sessions[session];
        if now - s.token_issued >= RENEW {
            let held = s.current;
            return Some(self.rotate(session, Rotation::Renewal { held }));
        }
        match &mut s.previous {
            // The successor arrives: the predecessor works for the grace
            // (requests in flight), unless the delivery window has passed,
            // when it was dead already and is a stolen copy from now on.
            Some(p) if p.owed => {
                p.owed = false;
                let window_end = p.rotated_at + WINDOW;
                p.grace_until = Some(if now < window_end {
                    now + GRACE
                } else {
                    window_end
                });
                s.last_seen = now;
            }
            _ if now - s.last_seen >= TOUCH => s.last_seen = now,
            _ => {}
        }
        None
    }

    /// Moves the session to a new token; its current one becomes the
    /// previous one. Returns the new token.
    fn rotate(&mut self, session: usize, kind: Rotation) -> usize {
        let now = self.now;
        let new = self.tokens.len();
        self.tokens.push(session);
        let s = &mut self.sessions[session];
        s.previous = Some(match kind {
            Rotation::Renewal { held } => Previous {
                token: s.current,
                rotated_at: now,
                grace_until: Some(now + GRACE),
                owed: held == s.current,
            },
            Rotation::Login => Previous {
                token: s.current,
                rotated_at: now,
                grace_until: None,
                owed: false,
            },
        });
        s.current = new;
        s.last_seen = now;
        s.token_issued = now;
        new
    }

    fn create(&mut self, subject: Option<usize>) -> usize {
        let token = self.tokens.len();
        self.tokens.push(self.sessions.len());
        self.sessions.push(ModelSession {
            deleted: false,
            subject,
            counter: 0,
            version: 1,
            created: self.now,
            last_seen: self.now,
            token_issued: self.now,
            epoch: self.epoch,
            current: token,
            previous: None,
        });
        token
    }
}

struct Real {
    manager: SessionManager,
    clock: ManualClock,
    tokens: Vec<String>,
}

impl Real {
    fn token(&self, index: usize) -> &str {
        &self.tokens[index]
    }

    /// Keeps the credential an operation issued; `false` if none.
    fn keep_issued(&mut self, session: &ActiveSession) -> bool {
        match session.issued() {
            Some(issued) => {
                self.tokens.push(issued.expose().to_owned());
                true
            }
            None => false,
        }
    }
}

fn reason_of<T>(result: &Result<T, SessionError>) -> Option<InvalidReason> {
    match result {
        Ok(_) => None,
        Err(err) => Some(
            err.invalid_reason()
                .unwrap_or_else(|| panic!("only invalid-session errors, got {err}")),
        ),
    }
}

fn expected_reason(expect: Expect) -> Option<InvalidReason> {
    match expect {
        Expect::Invalid(reason) => Some(reason),
        Expect::Valid { .. } => None,
    }
}

/// The record the manager returned agrees with the model's session.
fn check_record(
    model: &Model,
    session: usize,
    record: &SessionRecord,
) -> Result<(), TestCaseError> {
    let s = &model.sessions[session];
    let seconds = |at: Timestamp| (at.as_millis() - START_MILLIS) / 1000;
    prop_assert_eq!(
        record.data.get::<u64>("counter").unwrap_or(0),
        s.counter,
        "counter"
    );
    prop_assert_eq!(
        record.subject.clone(),
        s.subject.map(|i| SUBJECTS[i].to_owned()),
        "subject"
    );
    prop_assert_eq!(record.version, s.version, "version");
    prop_assert_eq!(seconds(record.created_at), s.created, "created_at");
    prop_assert_eq!(seconds(record.last_seen_at), s.last_seen, "last_seen_at");
    prop_assert_eq!(
        seconds(record.token_issued_at),
        s.token_issued,
        "token_issued_at"
    );
    Ok(())
}

/// The credential handed back with a session reached `via` this way
/// (before any renewal): the successor again, or nothing.
fn check_redelivery(real: &Real, via: Via, session: &ActiveSession) -> Result<(), TestCaseError> {
    let issued = session.issued().map(|c| c.expose().to_owned());
    let owed = match via {
        Via::Previous {
            successor: Some(successor),
        } => Some(real.token(successor).to_owned()),
        _ => None,
    };
    prop_assert_eq!(issued, owed, "the successor, delivered again, or nothing");
    Ok(())
}

/// Validates `t`, in the model and for real; the session on success.
async fn validate(
    model: &mut Model,
    real: &mut Real,
    t: usize,
) -> Result<Option<ActiveSession>, TestCaseError> {
    let result = real.manager.validate(real.token(t), None).await;
    let expect = model.resolve(t);
    prop_assert_eq!(
        expected_reason(expect),
        reason_of(&result),
        "validate outcome"
    );
    let (Expect::Valid { session, via }, Ok(validated)) = (expect, result) else {
        return Ok(None);
    };
    if via == Via::Current {
        let renewed = model.refresh(session);
        prop_assert_eq!(renewed.is_some(), real.keep_issued(&validated), "renewal");
    } else {
        check_redelivery(real, via, &validated)?;
    }
    check_record(model, session, validated.record())?;
    Ok(Some(validated))
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(Timestamp(START_MILLIS));
    let secs = |s: i64| Duration::from_secs(s.unsigned_abs());
    let manager = SessionManager::builder(MemoryStore::new())
        .clock(clock.clone())
        .idle_timeout(secs(IDLE))
        .absolute_timeout(secs(ABSOLUTE))
        .renew_after(secs(RENEW))
        .rotation_grace(secs(GRACE))
        .renewal_delivery_window(secs(WINDOW))
        .touch_after(secs(TOUCH))
        .build()
        .expect("config");
    let mut real = Real {
        manager,
        clock,
        tokens: Vec::new(),
    };
    let mut model = Model::default();
    for op in ops {
        let issued = model.tokens.len();
        match op {
            Op::Create => {
                let created = real
                    .manager
                    .create(NewSession::anonymous())
                    .await
                    .expect("create");
                prop_assert!(real.keep_issued(&created), "a new session has a token");
                let token = model.create(None);
                check_record(&model, model.tokens[token], created.record())?;
            }
            Op::Advance(secs) => {
                real.clock.advance(Duration::from_secs(secs.unsigned_abs()));
                model.now += secs;
            }
            Op::RevokeAll => {
                real.manager.revoke_everything().await.expect("revoke all");
                model.epoch += 1;
            }
            Op::RevokeSubject(subject) => {
                real.manager
                    .revoke_subject(SUBJECTS[subject], None)
                    .await
                    .expect("revoke subject");
                for s in model
                    .sessions
                    .iter_mut()
                    .filter(|s| s.subject == Some(subject))
                {
                    s.deleted = true;
                }
            }
            Op::Validate(i) => {
                let Some(t) = i.among(issued) else { continue };
                validate(&mut model, &mut real, t).await?;
            }
            Op::Resolve(i) => {
                let Some(t) = i.among(issued) else { continue };
                let result = real.manager.resolve(real.token(t), None).await;
                let expect = model.resolve(t);
                prop_assert_eq!(
                    expected_reason(expect),
                    reason_of(&result),
                    "resolve outcome"
                );
                if let (Expect::Valid { session, via }, Ok(resolved)) = (expect, result) {
                    check_redelivery(&real, via, &resolved)?;
                    check_record(&model, session, resolved.record())?;
                }
            }
            Op::Update(i, value, after_validation) => {
                let Some(t) = i.among(issued) else { continue };
                let current = if after_validation {
                    validate(&mut model, &mut real, t).await?
                } else {
                    let result = real.manager.resolve(real.token(t), None).await;
                    let expect = model.resolve(t);
                    prop_assert_eq!(expected_reason(expect), reason_of(&result), "resolve");
                    result.ok()
                };
                let Some(current) = current else { continue };
                let data = SessionData::from_value(&json!({"counter": value})).expect("data");
                let updated = real
                    .manager
                    .update(&current, DataChange::Replace(data), None, None)
                    .await
                    .expect("a resolved session is written");
                prop_assert!(updated.issued().is_none(), "a data write issues nothing");
                let session = model.tokens[t];
                let s = &mut model.sessions[session];
                s.counter = value;
                s.version += 1;
                s.last_seen = model.now;
                check_record(&model, session, updated.record())?;
            }
            Op::Login(i, subject) => {
                let Some(t) = i.among(issued) else { continue };
                let resolved = real.manager.resolve(real.token(t), None).await;
                let expect = model.resolve(t);
                prop_assert_eq!(expected_reason(expect), reason_of(&resolved), "resolve");
                let login = real
                    .manager
                    .login(resolved.ok().as_ref(), Login::new(SUBJECTS[subject]))
                    .await
                    .expect("login");
                prop_assert!(real.keep_issued(&login), "login issues a token");
                let token = match expect {
                    Expect::Valid { session, .. } => {
                        let s = &mut model.sessions[session];
                        if s.subject.is_some() && s.subject != Some(subject) {
                            s.counter = 0;
                        }
                        s.subject = Some(subject);
                        s.version += 1;
                        model.rotate(session, Rotation::Login)
                    }
                    Expect::Invalid(_) => model.create(Some(subject)),
                };
                check_record(&model, model.tokens[token], login.record())?;
            }
            Op::Rotate(i) => {
                let Some(t) = i.among(issued) else { continue };
                let resolved = real.manager.resolve(real.token(t), None).await;
                let expect = model.resolve(t);
                prop_assert_eq!(expected_reason(expect), reason_of(&resolved), "resolve");
                let (Expect::Valid { session, via }, Ok(current)) = (expect, resolved) else {
                    continue;
                };
                let rotated = real.manager.rotate(&current).await.expect("rotate");
                prop_assert!(real.keep_issued(&rotated), "rotate issues a token");
                let held = model.held(t, session, via);
                model.rotate(session, Rotation::Renewal { held });
                check_record(&model, session, rotated.record())?;
            }
            Op::Logout(i) => {
                let Some(t) = i.among(issued) else { continue };
                real.manager
                    .logout_presented(real.token(t))
                    .await
                    .expect("logout");
                if let Expect::Valid { session, .. } = model.resolve(t) {
                    model.sessions[session].deleted = true;
                }
            }
        }
        // The subject index agrees with the model after every step.
        for (index, subject) in SUBJECTS.iter().enumerate() {
            let listed = real
                .manager
                .list_subject(subject)
                .await
                .expect("list")
                .len();
            let now = model.now;
            let expected = model
                .sessions
                .iter()
                .filter(|s| {
                    s.subject == Some(index)
                        && !s.forgotten(now)
                        && s.epoch >= model.epoch
                        && now < s.expires_at()
                })
                .count();
            prop_assert_eq!(listed, expected, "sessions listed for {}", subject);
        }
    }
    Ok(())
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(ops))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn manager_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..100)) {
        check(ops)?;
    }
}

// Failures proptest found before the operations changed, shrunk.

use Op::*;
use Pick::Nth;

#[test]
fn regression_a_forgotten_session_is_unknown() {
    check(vec![Create, Advance(301), Advance(99), Validate(Nth(0))]).expect("model");
}

#[test]
fn regression_login_through_a_token_in_its_grace() {
    check(vec![
        Create,
        Create,
        Create,
        Rotate(Nth(3751443108520484685)),
        Advance(5),
        Op::Login(Nth(0), 0),
        Create,
    ])
    .expect("model");
}

#[test]
fn regression_renewal_at_renew_after() {
    check(vec![Create, Advance(50), Validate(Nth(0))]).expect("model");
}

#[test]
fn regression_the_absolute_deadline_to_the_second() {
    check(vec![Create, Advance(249), Advance(1), Validate(Nth(0))]).expect("model");
}

#[test]
fn regression_the_renewed_away_token_after_the_grace() {
    check(vec![
        Create,
        Advance(50),
        Validate(Nth(0)),
        Advance(5),
        Validate(Nth(167510976858554048)),
    ])
    .expect("model");
}

// The rules of the previous token, step by step.

#[test]
fn a_renewed_away_token_is_handed_its_successor_until_the_successor_arrives() {
    check(vec![
        Create,
        Advance(RENEW),
        Validate(Nth(0)),
        Validate(Nth(0)),
        Resolve(Nth(0)),
        Advance(WINDOW - 1),
        Validate(Nth(0)),
        Validate(Nth(1)),
        Validate(Nth(0)),
        Advance(GRACE - 1),
        Validate(Nth(0)),
        Advance(1),
        Validate(Nth(0)),
        Validate(Nth(1)),
    ])
    .expect("model");
}

#[test]
fn a_successor_never_presented_leaves_its_predecessor_dead_after_the_window() {
    check(vec![
        Create,
        Advance(RENEW),
        Validate(Nth(0)),
        Advance(WINDOW),
        Validate(Nth(0)),
        Validate(Nth(1)),
    ])
    .expect("model");
}

#[test]
fn writes_and_rotations_through_a_previous_token() {
    check(vec![
        Create,
        Advance(RENEW),
        Validate(Nth(0)),
        Update(Nth(0), 7, true),
        Update(Nth(0), 8, false),
        Rotate(Nth(0)),
        Validate(Nth(1)),
        Validate(Nth(2)),
        Op::Login(Nth(2), 1),
        Validate(Nth(2)),
        Validate(Nth(3)),
    ])
    .expect("model");
}

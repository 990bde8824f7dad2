//! Property test: random sequences of manager operations on the memory store
//! behave exactly like a small reference model of DESIGN.md §1.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tessera_core::{
    Clock, DataChange, InvalidReason, Login, ManualClock, MemoryStore, NewSession, SessionData,
    SessionError, SessionManager, Timestamp,
};

const IDLE: i64 = 100;
const ABSOLUTE: i64 = 250;
const RENEW: i64 = 50;
const GRACE: i64 = 5;
const TOUCH: i64 = 10;
const RETENTION: i64 = 300;
const SUBJECTS: [&str; 2] = ["ann", "bob"];
const START_MILLIS: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Create,
    Validate(usize),
    Update(usize, u64),
    Login(usize, usize),
    Rotate(usize),
    Logout(usize),
    RevokeSubject(usize),
    RevokeAll,
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Create),
        6 => any::<usize>().prop_map(Op::Validate),
        2 => (any::<usize>(), 0u64..1000).prop_map(|(t, v)| Op::Update(t, v)),
        2 => (any::<usize>(), 0usize..2).prop_map(|(t, s)| Op::Login(t, s)),
        1 => any::<usize>().prop_map(Op::Rotate),
        1 => any::<usize>().prop_map(Op::Logout),
        1 => (0usize..2).prop_map(Op::RevokeSubject),
        1 => Just(Op::RevokeAll),
        2 => (1i64..80).prop_map(Op::Advance),
        // Steps that land exactly on or next to each policy boundary.
        4 => proptest::sample::select(vec![
            1, GRACE - 1, GRACE, TOUCH - 1, TOUCH, RENEW - 1, RENEW, IDLE - 1, IDLE,
            RETENTION, ABSOLUTE - IDLE, ABSOLUTE - 1,
        ])
        .prop_map(Op::Advance),
    ]
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
}

impl ModelSession {
    fn expires_at(&self) -> i64 {
        (self.last_seen + IDLE).min(self.created + ABSOLUTE)
    }
    fn forgotten(&self, now: i64) -> bool {
        self.deleted || now >= self.expires_at() + RETENTION
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TokenKind {
    Current,
    Grace { until: i64, forget_at: i64 },
    Dead { forget_at: i64 },
}

#[derive(Debug, Clone)]
struct ModelToken {
    session: usize,
    kind: TokenKind,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    epoch: u64,
    sessions: Vec<ModelSession>,
    tokens: Vec<ModelToken>,
}

/// What the model expects of a token-taking operation.
#[derive(Debug, PartialEq)]
enum Expect {
    Valid { session: usize, via_grace: bool },
    Invalid(InvalidReason),
}

impl Model {
    /// Resolves a token like the manager does, applying the side effects of
    /// a failed resolution (deletion of ended sessions, reuse revocation).
    fn resolve(&mut self, token: usize) -> Expect {
        let now = self.now;
        let ModelToken { session, kind } = self.tokens[token].clone();
        let via_grace = match kind {
            TokenKind::Current => {
                if self.sessions[session].forgotten(now) {
                    return Expect::Invalid(InvalidReason::Unknown);
                }
                false
            }
            TokenKind::Dead { forget_at } => {
                return Expect::Invalid(if now >= forget_at {
                    InvalidReason::Unknown
                } else {
                    InvalidReason::Revoked
                });
            }
            TokenKind::Grace { until, forget_at } => {
                if now >= forget_at {
                    return Expect::Invalid(InvalidReason::Unknown);
                }
                if now >= until {
                    self.sessions[session].deleted = true;
                    return Expect::Invalid(InvalidReason::Reused);
                }
                if self.sessions[session].forgotten(now) {
                    return Expect::Invalid(InvalidReason::Revoked);
                }
                true
            }
        };
        let s = &mut self.sessions[session];
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
        Expect::Valid { session, via_grace }
    }

    fn current_token(&self, session: usize) -> Option<usize> {
        self.tokens
            .iter()
            .position(|t| t.session == session && t.kind == TokenKind::Current)
    }

    /// Tombstones the session's current token and adds a new current one.
    fn rotate(&mut self, session: usize, grace: bool) -> usize {
        let now = self.now;
        let forget_at = self.sessions[session].created + ABSOLUTE;
        if let Some(current) = self.current_token(session) {
            self.tokens[current].kind = if grace {
                TokenKind::Grace {
                    until: now + GRACE,
                    forget_at,
                }
            } else {
                TokenKind::Dead { forget_at }
            };
        }
        let s = &mut self.sessions[session];
        s.last_seen = now;
        s.token_issued = now;
        self.tokens.push(ModelToken {
            session,
            kind: TokenKind::Current,
        });
        self.tokens.len() - 1
    }

    fn create(&mut self, subject: Option<usize>) -> usize {
        self.sessions.push(ModelSession {
            deleted: false,
            subject,
            counter: 0,
            version: 1,
            created: self.now,
            last_seen: self.now,
            token_issued: self.now,
            epoch: self.epoch,
        });
        self.tokens.push(ModelToken {
            session: self.sessions.len() - 1,
            kind: TokenKind::Current,
        });
        self.tokens.len() - 1
    }
}

struct Real {
    manager: SessionManager,
    clock: ManualClock,
    tokens: Vec<String>,
}

fn reason_of<T: std::fmt::Debug>(result: &Result<T, SessionError>) -> Option<InvalidReason> {
    result.as_ref().err().and_then(SessionError::invalid_reason)
}

fn check_valid(
    model: &Model,
    expect: &Expect,
    got: Result<(usize, u64, Option<String>, u64), InvalidReason>,
) -> Result<(), TestCaseError> {
    match (expect, got) {
        (Expect::Invalid(want), Err(reason)) => prop_assert_eq!(*want, reason),
        (Expect::Valid { session, .. }, Ok((_, counter, subject, version))) => {
            let s = &model.sessions[*session];
            prop_assert_eq!(s.counter, counter, "counter");
            prop_assert_eq!(
                s.subject.map(|i| SUBJECTS[i].to_owned()),
                subject,
                "subject"
            );
            prop_assert_eq!(s.version, version, "version");
        }
        (expect, got) => prop_assert!(false, "expected {:?}, got {:?}", expect, got),
    }
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(Timestamp(START_MILLIS));
    let manager = SessionManager::builder(MemoryStore::new())
        .clock(clock.clone())
        .idle_timeout(Duration::from_secs(IDLE as u64))
        .absolute_timeout(Duration::from_secs(ABSOLUTE as u64))
        .renew_after(Duration::from_secs(RENEW as u64))
        .rotation_grace(Duration::from_secs(GRACE as u64))
        .touch_after(Duration::from_secs(TOUCH as u64))
        .build()
        .expect("config");
    let mut real = Real {
        manager,
        clock,
        tokens: Vec::new(),
    };
    let mut model = Model::default();
    for op in ops {
        let pick =
            |i: usize, model: &Model| (!model.tokens.is_empty()).then(|| i % model.tokens.len());
        match op {
            Op::Create => {
                let issued = real
                    .manager
                    .create(NewSession::default())
                    .await
                    .expect("create");
                real.tokens.push(issued.token.expose().to_owned());
                model.create(None);
            }
            Op::Advance(secs) => {
                real.clock.advance(Duration::from_secs(secs as u64));
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
                let Some(t) = pick(i, &model) else { continue };
                let result = real.manager.validate(&real.tokens[t], None).await;
                let expect = model.resolve(t);
                let got = result
                    .as_ref()
                    .map(|v| {
                        let s = &v.session;
                        (
                            0,
                            s.data.get::<u64>("counter").unwrap_or(0),
                            s.subject.clone(),
                            s.version,
                        )
                    })
                    .map_err(|e| e.invalid_reason().expect("only invalid-session errors"));
                check_valid(&model, &expect, got)?;
                if let Expect::Valid { session, via_grace } = expect {
                    let now = model.now;
                    let s = &model.sessions[session];
                    let renew = !via_grace && now - s.token_issued >= RENEW;
                    let validated = result.expect("valid");
                    prop_assert_eq!(renew, validated.renewed_token.is_some(), "renewal");
                    if let Some(new_token) = validated.renewed_token {
                        real.tokens.push(new_token.expose().to_owned());
                        model.rotate(session, true);
                    } else if now - model.sessions[session].last_seen >= TOUCH {
                        model.sessions[session].last_seen = now;
                    }
                    let seconds = |at: Timestamp| (at.as_millis() - START_MILLIS) / 1000;
                    let s = &model.sessions[session];
                    prop_assert_eq!(
                        seconds(validated.session.last_seen_at),
                        s.last_seen,
                        "last_seen_at"
                    );
                    prop_assert_eq!(
                        seconds(validated.session.created_at),
                        s.created,
                        "created_at"
                    );
                    prop_assert_eq!(
                        seconds(validated.session.token_issued_at),
                        s.token_issued,
                        "token_issued_at"
                    );
                }
            }
            Op::Update(i, value) => {
                let Some(t) = pick(i, &model) else { continue };
                let data = SessionData::from_value(&json!({"counter": value})).expect("data");
                let result = real
                    .manager
                    .update(&real.tokens[t], DataChange::Replace(data), None, None)
                    .await;
                let expect = model.resolve(t);
                if let Expect::Valid { session, .. } = expect {
                    let s = &mut model.sessions[session];
                    s.counter = value;
                    s.version += 1;
                    s.last_seen = model.now;
                }
                let got = result
                    .as_ref()
                    .map(|s| {
                        (
                            0,
                            s.data.get::<u64>("counter").unwrap_or(0),
                            s.subject.clone(),
                            s.version,
                        )
                    })
                    .map_err(|e| e.invalid_reason().expect("only invalid-session errors"));
                check_valid(&model, &expect, got)?;
            }
            Op::Login(i, subject) => {
                let Some(t) = pick(i, &model) else { continue };
                let result = real
                    .manager
                    .login(Some(&real.tokens[t]), Login::new(SUBJECTS[subject]))
                    .await
                    .expect("login never fails on a bad token");
                real.tokens.push(result.token.expose().to_owned());
                match model.resolve(t) {
                    Expect::Valid { session, .. } => {
                        let s = &mut model.sessions[session];
                        if s.subject.is_some() && s.subject != Some(subject) {
                            s.counter = 0;
                        }
                        s.subject = Some(subject);
                        s.version += 1;
                        model.rotate(session, false);
                    }
                    Expect::Invalid(_) => {
                        model.create(Some(subject));
                    }
                }
                let s = &model.sessions[model.tokens[model.tokens.len() - 1].session];
                prop_assert_eq!(result.session.version, s.version, "login version");
                prop_assert_eq!(
                    result.session.data.get::<u64>("counter").unwrap_or(0),
                    s.counter
                );
            }
            Op::Rotate(i) => {
                let Some(t) = pick(i, &model) else { continue };
                let result = real.manager.rotate(&real.tokens[t]).await;
                let expect = model.resolve(t);
                prop_assert_eq!(
                    match &expect {
                        Expect::Invalid(r) => Some(*r),
                        Expect::Valid { .. } => None,
                    },
                    reason_of(&result),
                    "rotate outcome"
                );
                if let (Expect::Valid { session, .. }, Ok(issued)) = (expect, result) {
                    real.tokens.push(issued.token.expose().to_owned());
                    model.rotate(session, true);
                }
            }
            Op::Logout(i) => {
                let Some(t) = pick(i, &model) else { continue };
                real.manager.logout(&real.tokens[t]).await.expect("logout");
                let now = model.now;
                let ModelToken { session, kind } = model.tokens[t].clone();
                let s = &mut model.sessions[session];
                match kind {
                    TokenKind::Current if !s.forgotten(now) => s.deleted = true,
                    TokenKind::Grace { forget_at, .. } if now < forget_at && !s.forgotten(now) => {
                        s.deleted = true
                    }
                    _ => {}
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
        let _ = real.clock.now();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn manager_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..100)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}

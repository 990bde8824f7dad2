//! The store conformance suite: one entry point that any [`SessionStore`]
//! implementation runs from its own tests to prove the guarantees of the
//! storage contract (`docs/writing-a-store.md`), together with the
//! [`SessionManager`] rules that depend on them.
//!
//! ```
//! use tessera_core::MemoryStore;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! // Each case gets a fresh, empty store from the factory.
//! tessera_core::testkit::assert_conformance(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! The cases follow the contract's parts: `records_*` for [`Records`](crate::store::Records),
//! `subjects_*` for [`SubjectIndex`](crate::store::SubjectIndex), `epochs_*`
//! for [`Epochs`](crate::store::Epochs), `maintenance_*` for
//! [`Maintenance`](crate::store::Maintenance), then the lifecycle rules.
//! Every case runs with a [`ManualClock`] that starts at the current
//! wall-clock time, so stores with native expiry see real future
//! deadlines, while the suite moves time forward without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::builder::SessionManagerBuilder;
use crate::clock::{ManualClock, Timestamp};
use crate::error::{InvalidReason, SessionError};
use crate::events::CollectingEventSink;
use crate::manager::SessionManager;
use crate::record::{AuthLevel, CsrfSecret, SessionData, SessionRecord};
use crate::store::{Intercept, Intercepted, Operation, SessionStore, StoreError};
use crate::token::{SessionId, SessionToken, TokenHash};

pub mod device;
mod device_cases;
mod lifecycle_cases;
mod store_cases;

/// The result of one case: `Err` carries what went wrong.
pub type CaseResult = Result<(), String>;

type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// One named conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, as reported.
    pub name: &'static str,
    run: fn(Harness) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Fails the case with a message unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(crate) use ensure;

/// Fails the case unless both sides are equal, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: left {:?}, right {:?}", format!($($msg)+), left, right));
        }
    }};
}
pub(crate) use ensure_eq;

/// Turns any error into a case failure with context.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// A store wrapped to count its calls, so that cases can prove that
/// something was refused without a store access.
pub type CountingStore = Intercepted<Arc<dyn SessionStore>, CallCounter>;

/// Counts store calls by kind: the [`Intercept`] hook of [`CountingStore`].
#[derive(Debug, Default)]
pub struct CallCounter {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl CallCounter {
    /// Calls that read records (`load`, `list_subject`, `export_page`, `find_legacy`).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Calls that write records or epochs.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl Intercept for CallCounter {
    async fn before(&self, op: Operation) -> Result<(), StoreError> {
        match op {
            Operation::Load
            | Operation::ListSubject
            | Operation::ExportPage
            | Operation::FindLegacy => {
                self.reads.fetch_add(1, Ordering::SeqCst);
            }
            Operation::Create
            | Operation::Update
            | Operation::Touch
            | Operation::Delete
            | Operation::DeleteSubject
            | Operation::BumpGlobalEpoch
            | Operation::RaiseGlobalEpoch
            | Operation::BumpSubjectEpoch
            | Operation::RaiseSubjectEpoch => {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(())
    }
}

/// An [`Intercept`] hook for tests of a store in trouble: a yield to the
/// scheduler before every operation, as a networked store would make (so
/// that concurrent requests interleave between a read and the write that
/// depends on it on any machine), and the failure of one kind of
/// operation, with the message `"<operation> is down"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outage {
    /// Whether every operation first yields to the scheduler.
    pub yields: bool,
    /// The kind of operation that fails, if any.
    pub fails: Option<Operation>,
}

impl Outage {
    /// Every operation yields first; none fails.
    pub fn yielding() -> Self {
        Self {
            yields: true,
            fails: None,
        }
    }

    /// Operations of kind `op` fail; none yields.
    pub fn failing(op: Operation) -> Self {
        Self {
            yields: false,
            fails: Some(op),
        }
    }
}

impl Intercept for Outage {
    async fn before(&self, op: Operation) -> Result<(), StoreError> {
        if self.yields {
            tokio::task::yield_now().await;
        }
        if self.fails == Some(op) {
            return Err(StoreError::Unavailable {
                message: format!("{} is down", op.name()),
                source: None,
            });
        }
        Ok(())
    }
}

/// The reason an operation refused a session; panics, naming what came
/// instead, if it did not.
#[track_caller]
pub fn invalid_reason<T: std::fmt::Debug>(result: Result<T, SessionError>) -> InvalidReason {
    match result {
        Err(SessionError::Invalid { reason }) => reason,
        other => panic!("expected an invalid session, got {other:?}"),
    }
}

/// What a case gets: a fresh store, a manual clock and an event collector.
#[derive(Clone)]
pub struct Harness {
    /// The store under test, wrapped to count calls.
    pub store: Arc<CountingStore>,
    /// The clock every manager of this case uses.
    pub clock: ManualClock,
    /// Events of every manager of this case.
    pub events: CollectingEventSink,
    /// Whether the store forgets records by itself in real time.
    pub native_expiry: bool,
}

impl Harness {
    /// A harness over a store, with the clock at the current wall-clock time.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store: Arc::new(Intercepted::new(store, CallCounter::default())),
            clock: ManualClock::starting_now(),
            events: CollectingEventSink::new(),
            native_expiry: false,
        }
    }

    /// The call counts of the store.
    pub fn calls(&self) -> &CallCounter {
        self.store.hook()
    }

    /// A manager with the default policy.
    pub fn manager(&self) -> SessionManager {
        self.manager_with(|b| b)
    }

    /// A manager with settings changed by `configure`.
    pub fn manager_with(
        &self,
        configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
    ) -> SessionManager {
        let builder = SessionManager::builder_shared(self.store.clone())
            .clock(self.clock.clone())
            .events(self.events.clone())
            // The cases check the idle rules on anonymous sessions: they
            // idle out with the idle timeout here (capped to it), not the
            // shorter anonymous one, which the manager's own tests cover.
            .anonymous_idle_timeout(Duration::MAX)
            // Cases create many anonymous sessions at one instant.
            .anonymous_creation_caps(None, None);
        configure(builder)
            .build()
            .unwrap_or_else(|e| panic!("testkit manager configuration: {e}"))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        crate::clock::Clock::now(&self.clock)
    }

    /// A session record for direct store calls, with a fresh id and token.
    pub fn sample_record(&self, subject: Option<&str>) -> SessionRecord {
        let now = self.now();
        let id = SessionId::generate().unwrap_or(SessionId([7; 16]));
        SessionRecord {
            id,
            subject: subject.map(str::to_owned),
            auth_level: if subject.is_some() {
                AuthLevel::PASSWORD
            } else {
                AuthLevel::ANONYMOUS
            },
            authenticated_at: subject.map(|_| now),
            data: SessionData::empty(),
            created_at: now,
            last_seen_at: now,
            token_issued_at: now,
            idle_timeout_ms: 30 * 60 * 1000,
            absolute_expires_at: now.plus(Duration::from_secs(12 * 3600)),
            version: 1,
            epoch: 0,
            client: None,
            binding: None,
            token: fresh_token_hash(id),
            previous: None,
            csrf_secret: CsrfSecret([1; 16]),
        }
    }
}

/// The hash of a new token for session `id`.
pub(crate) fn fresh_token_hash(id: SessionId) -> TokenHash {
    let verifier = crate::token::random::<32>().unwrap_or([3; 32]);
    SessionToken::new(id, verifier).hash()
}

/// Settings of a conformance run.
#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// The store forgets records by itself (native TTL) on its own clock:
    /// the expiry cases then give records deadlines a moment ahead in real
    /// time and wait for them, instead of moving the manual clock.
    pub native_expiry: bool,
    /// How long one case may take before it counts as hung.
    pub case_timeout: Duration,
    /// Cases not to run, each with the reason; they are reported as
    /// skipped (never as passed).
    pub skip: Vec<(&'static str, String)>,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            native_expiry: false,
            case_timeout: Duration::from_secs(120),
            skip: Vec::new(),
        }
    }
}

/// What a conformance run found.
#[derive(Debug, Default)]
pub struct ConformanceReport {
    /// Names of the cases that passed.
    pub passed: Vec<&'static str>,
    /// Names of the cases that failed, with what went wrong.
    pub failed: Vec<(&'static str, String)>,
    /// Names of the cases not run, with why.
    pub skipped: Vec<(&'static str, String)>,
    /// How long each case took, in the order they ran.
    pub timings: Vec<(&'static str, Duration)>,
}

impl ConformanceReport {
    /// Whether every case that ran passed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }

    /// Whether the named case failed.
    pub fn failed_case(&self, name: &str) -> bool {
        self.failed.iter().any(|(case, _)| *case == name)
    }
}

impl std::fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED {name}: {why}")?;
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  skipped {name}: {why}")?;
        }
        let mut slowest = self.timings.clone();
        slowest.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        for (name, took) in slowest.iter().take(3) {
            writeln!(f, "  slowest: {name} took {took:.2?}")?;
        }
        Ok(())
    }
}

/// Every case of the suite: store cases, then the lifecycle rules, then
/// device-bound sessions.
pub fn cases() -> Vec<Case> {
    let mut all = store_cases::cases();
    all.extend(lifecycle_cases::cases());
    all.extend(device_cases::cases());
    all
}

/// Runs every case, each against a fresh store from `make_store`, and reports.
/// Needs a multi-threaded tokio runtime (the concurrency cases spawn tasks).
pub async fn run_conformance<S, F, Fut>(make_store: F) -> ConformanceReport
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    run_conformance_with(ConformanceOptions::default(), make_store).await
}

/// As [`run_conformance`], with options.
pub async fn run_conformance_with<S, F, Fut>(
    options: ConformanceOptions,
    make_store: F,
) -> ConformanceReport
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut report = ConformanceReport::default();
    for case in cases() {
        if let Some((_, why)) = options.skip.iter().find(|(name, _)| *name == case.name) {
            report.skipped.push((case.name, why.clone()));
            continue;
        }
        let started = std::time::Instant::now();
        let store: Arc<dyn SessionStore> = Arc::new(make_store().await);
        let mut harness = Harness::new(store);
        harness.native_expiry = options.native_expiry;
        let task = tokio::spawn((case.run)(harness));
        let outcome = match tokio::time::timeout(options.case_timeout, task).await {
            Err(_) => Err(format!("did not finish within {:?}", options.case_timeout)),
            Ok(Err(join)) => Err(format!("panicked: {join}")),
            Ok(Ok(result)) => result,
        };
        report.timings.push((case.name, started.elapsed()));
        match outcome {
            Ok(()) => report.passed.push(case.name),
            Err(why) => report.failed.push((case.name, why)),
        }
    }
    report
}

/// Runs the suite and panics with the report if any case failed.
pub async fn assert_conformance<S, F, Fut>(make_store: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    assert_conformance_with(ConformanceOptions::default(), make_store).await;
}

/// As [`assert_conformance`], with options.
pub async fn assert_conformance_with<S, F, Fut>(options: ConformanceOptions, make_store: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let report = run_conformance_with(options, make_store).await;
    assert!(
        report.is_success(),
        "store conformance suite failed:\n{report}"
    );
}

/// Declares a list of cases from async functions taking a [`Harness`].
macro_rules! case_list {
    ($($name:ident),* $(,)?) => {
        vec![$(
            crate::testkit::Case::__new(stringify!($name), |h| Box::pin($name(h))),
        )*]
    };
}
pub(crate) use case_list;

impl Case {
    #[doc(hidden)]
    pub fn __new(name: &'static str, run: fn(Harness) -> CaseFuture) -> Self {
        Self { name, run }
    }
}

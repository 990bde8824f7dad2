//! The store conformance suite: one entry point that any [`SessionStore`]
//! implementation runs from its own tests to prove the guarantees of
//! DESIGN.md §3, together with the [`SessionManager`] rules that depend on them.
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
//! Every case runs with a [`ManualClock`] that starts at the current wall-clock
//! time, so stores with native expiry see real future deadlines, while the
//! suite moves time forward without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::builder::SessionManagerBuilder;
use crate::clock::{ManualClock, Timestamp};
use crate::events::CollectingEventSink;
use crate::manager::SessionManager;
use crate::record::{Session, SessionData, StoredEntry, Tombstone};
use crate::store::{CreateOutcome, SessionStore, StoreError, WriteOutcome};
use crate::token::{SessionId, TokenHash};

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

/// What a case gets: a fresh store, a manual clock and an event collector.
#[derive(Clone)]
pub struct Harness {
    /// The store under test, wrapped to count calls.
    pub store: Arc<CountingStore>,
    /// The clock every manager of this case uses.
    pub clock: ManualClock,
    /// Events of every manager of this case.
    pub events: CollectingEventSink,
}

impl Harness {
    /// A harness over a store, with the clock at the current wall-clock time.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store: Arc::new(CountingStore::new(store)),
            clock: ManualClock::starting_now(),
            events: CollectingEventSink::new(),
        }
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
            .events(self.events.clone());
        configure(builder)
            .build()
            .unwrap_or_else(|e| panic!("testkit manager configuration: {e}"))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        crate::clock::Clock::now(&self.clock)
    }

    /// A session record for direct store calls.
    pub fn sample_session(&self, subject: Option<&str>) -> Session {
        let now = self.now();
        Session {
            id: SessionId::generate().unwrap_or(SessionId([7; 16])),
            subject: subject.map(str::to_owned),
            auth_level: u8::from(subject.is_some()),
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
        }
    }
}

/// Settings of a conformance run.
#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// The store removes expired records itself (native TTL), so the suite
    /// checks physical removal by waiting for it in real time instead of
    /// calling `sweep_expired`.
    pub native_expiry: bool,
    /// How long one case may take before it counts as hung.
    pub case_timeout: Duration,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            native_expiry: false,
            case_timeout: Duration::from_secs(120),
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
    /// How long each case took, in the order they ran.
    pub timings: Vec<(&'static str, Duration)>,
}

impl ConformanceReport {
    /// Whether every case passed.
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
            "{} passed, {} failed",
            self.passed.len(),
            self.failed.len()
        )?;
        for (name, why) in &self.failed {
            writeln!(f, "  FAILED {name}: {why}")?;
        }
        let mut slowest = self.timings.clone();
        slowest.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        for (name, took) in slowest.iter().take(3) {
            writeln!(f, "  slowest: {name} took {took:.2?}")?;
        }
        Ok(())
    }
}

/// Every case of the suite.
pub fn cases() -> Vec<Case> {
    let mut all = store_cases::cases();
    all.extend(lifecycle_cases::cases());
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
        if case.name == "store_sweep_removes_expired" && options.native_expiry {
            report.passed.push(case.name);
            continue;
        }
        let started = std::time::Instant::now();
        let store: Arc<dyn SessionStore> = Arc::new(make_store().await);
        let harness = Harness::new(store);
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

/// Wraps a store and counts calls, so cases can prove that something was
/// refused without a store access.
pub struct CountingStore {
    inner: Arc<dyn SessionStore>,
    loads: AtomicU64,
    writes: AtomicU64,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            loads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Calls that read records (`load`, `load_by_id`, `list_by_subject`).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// Calls that write records.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn read(&self) {
        self.loads.fetch_add(1, Ordering::SeqCst);
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl SessionStore for CountingStore {
    async fn create(
        &self,
        key: &TokenHash,
        session: &Session,
    ) -> Result<CreateOutcome, StoreError> {
        self.write();
        self.inner.create(key, session).await
    }
    async fn load(
        &self,
        key: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<StoredEntry>, StoreError> {
        self.read();
        self.inner.load(key, now).await
    }
    async fn load_by_id(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> Result<Option<(TokenHash, Arc<Session>)>, StoreError> {
        self.read();
        self.inner.load_by_id(id, now).await
    }
    async fn update(
        &self,
        key: &TokenHash,
        session: &Session,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.write();
        self.inner.update(key, session, expected_version, now).await
    }
    async fn touch(
        &self,
        key: &TokenHash,
        last_seen_at: Timestamp,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.write();
        self.inner.touch(key, last_seen_at, now).await
    }
    async fn rotate(
        &self,
        old_key: &TokenHash,
        new_key: &TokenHash,
        session: &Session,
        expected_version: u64,
        tombstone: &Tombstone,
        now: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.write();
        self.inner
            .rotate(old_key, new_key, session, expected_version, tombstone, now)
            .await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete(id).await
    }
    async fn list_by_subject(
        &self,
        subject: &str,
        now: Timestamp,
    ) -> Result<Vec<Arc<Session>>, StoreError> {
        self.read();
        self.inner.list_by_subject(subject, now).await
    }
    async fn delete_by_subject(
        &self,
        subject: &str,
        except: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.write();
        self.inner.delete_by_subject(subject, except, now).await
    }
    async fn global_epoch(&self) -> Result<u64, StoreError> {
        self.inner.global_epoch().await
    }
    async fn bump_global_epoch(&self) -> Result<u64, StoreError> {
        self.write();
        self.inner.bump_global_epoch().await
    }
    async fn subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.inner.subject_epoch(subject).await
    }
    async fn bump_subject_epoch(&self, subject: &str) -> Result<u64, StoreError> {
        self.write();
        self.inner.bump_subject_epoch(subject).await
    }
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.sweep_expired(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn export_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<crate::store::ExportPage, StoreError> {
        self.read();
        self.inner.export_page(cursor, limit, now).await
    }
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

//! Prometheus metrics (all prefixed `tessera_`): operations by outcome,
//! request and store latency, events by kind, device-bound sessions
//! (DBSC), and stored records.
//!
//! Every series is created up front, so recording is a lock-free atomic
//! add on the request path.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use tessera::SessionEvent;
use tessera::events::EventSink;
use tessera::open::RecordCounter;
use tessera::store::Operation as StoreOperation;

use crate::api::error::ErrorCode;
use crate::api::model::{EventCount, OperationCount};

/// An API operation, as metrics and stats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v1/sessions`.
    Create,
    /// `POST /v1/sessions/validate`.
    Validate,
    /// `POST /v1/sessions/update`.
    Update,
    /// `POST /v1/sessions/login`.
    Login,
    /// `POST /v1/sessions/rotate`.
    Rotate,
    /// `POST /v1/sessions/logout`.
    Logout,
    /// `GET /v1/sessions/{id}`.
    Get,
    /// `DELETE /v1/sessions/{id}`.
    Revoke,
    /// `GET /v1/subjects/{subject}/sessions`.
    ListSubject,
    /// `DELETE /v1/subjects/{subject}/sessions`.
    RevokeSubject,
    /// `POST /v1/admin/revoke-all`.
    RevokeAll,
    /// `GET /v1/auth`.
    ForwardAuth,
    /// `GET /v1/stats`.
    Stats,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 13] = [
        Operation::Create,
        Operation::Validate,
        Operation::Update,
        Operation::Login,
        Operation::Rotate,
        Operation::Logout,
        Operation::Get,
        Operation::Revoke,
        Operation::ListSubject,
        Operation::RevokeSubject,
        Operation::RevokeAll,
        Operation::ForwardAuth,
        Operation::Stats,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Validate => "validate",
            Operation::Update => "update",
            Operation::Login => "login",
            Operation::Rotate => "rotate",
            Operation::Logout => "logout",
            Operation::Get => "get",
            Operation::Revoke => "revoke",
            Operation::ListSubject => "list_subject",
            Operation::RevokeSubject => "revoke_subject",
            Operation::RevokeAll => "revoke_all",
            Operation::ForwardAuth => "forward_auth",
            Operation::Stats => "stats",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A device-bound-session endpoint, as metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbscEndpoint {
    /// `POST /v1/dbsc/register`.
    Register,
    /// `POST /v1/dbsc/refresh`.
    Refresh,
}

impl DbscEndpoint {
    /// Every endpoint.
    pub const ALL: [DbscEndpoint; 2] = [DbscEndpoint::Register, DbscEndpoint::Refresh];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DbscEndpoint::Register => "register",
            DbscEndpoint::Refresh => "refresh",
        }
    }
}

/// Reasons a DBSC refresh fails, as the engine names them
/// (`DeviceBindingError::as_str`): their series exist from the start.
const DBSC_FAILURE_REASONS: [&str; 12] = [
    "algorithm_not_allowed",
    "bad_signature",
    "wrong_key",
    "malformed_proof",
    "not_offered",
    "already_bound",
    "not_bound",
    "unknown_challenge",
    "expired_challenge",
    "session_ended",
    "sealed",
    "corrupt",
];

/// Reasons browsers give in `Secure-Session-Skipped`, as the engine
/// counts them.
const DBSC_SKIP_REASONS: [&str; 4] = ["unreachable", "server_error", "quota_exceeded", "other"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

/// The device-bound-session series.
struct DbscMetrics {
    registrations: Counter,
    refreshes: Counter,
    refresh_failures: Family<ReasonLabel, Counter>,
    skipped: Family<ReasonLabel, Counter>,
    request_seconds: Vec<Histogram>,
}

impl DbscMetrics {
    fn register(registry: &mut Registry) -> Self {
        let registrations = registered(
            registry,
            "dbsc_registrations",
            "Sessions bound to a device (DBSC registrations accepted)",
            Counter::default(),
        );
        let refreshes = registered(
            registry,
            "dbsc_refreshes",
            "Bound cookies renewed with a valid device proof",
            Counter::default(),
        );
        let refresh_failures = reason_counters(
            registry,
            "dbsc_refresh_failures",
            "DBSC registrations and refreshes refused, by reason",
            &DBSC_FAILURE_REASONS,
        );
        let skipped = reason_counters(
            registry,
            "dbsc_skipped",
            "Requests a browser sent without its bound cookie (`Secure-Session-Skipped` entries), by reason",
            &DBSC_SKIP_REASONS,
        );
        let family: HistogramFamily<EndpointLabel> = registered(
            registry,
            "dbsc_request_duration_seconds",
            "Time to answer a DBSC registration or refresh request",
            Family::new_with_constructor(latency_histogram),
        );
        let request_seconds = series_of(
            &family,
            DbscEndpoint::ALL.iter().map(|endpoint| EndpointLabel {
                endpoint: endpoint.as_str(),
            }),
        );
        Self {
            registrations,
            refreshes,
            refresh_failures,
            skipped,
            request_seconds,
        }
    }
}

/// How an operation ended: `ok` or an error code.
pub type Outcome = Option<ErrorCode>;

const OUTCOMES: usize = 1 + ErrorCode::ALL.len();

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        None => 0,
        Some(code) => 1 + ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0),
    }
}

fn outcome_name(index: usize) -> &'static str {
    match index {
        0 => "ok",
        i => ErrorCode::ALL.get(i - 1).map_or("unknown", |c| c.as_str()),
    }
}

/// Every event kind the engine emits, from the engine's own list.
const EVENT_KINDS: [&str; SessionEvent::KINDS.len()] = SessionEvent::KINDS;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// Why the server closed a connection (see `crate::connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClose {
    /// Refused: `--max-connections` were open.
    Refused,
    /// The request's headers took longer than `--header-read-timeout`.
    HeaderTimeout,
    /// Idle longer than `--keep-alive-timeout` after a response.
    IdleTimeout,
}

impl ConnectionClose {
    /// Every reason, in the order of their discriminants.
    pub const ALL: [ConnectionClose; 3] = [
        ConnectionClose::Refused,
        ConnectionClose::HeaderTimeout,
        ConnectionClose::IdleTimeout,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClose::Refused => "refused",
            ConnectionClose::HeaderTimeout => "header_timeout",
            ConnectionClose::IdleTimeout => "idle_timeout",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Registers `metric` as `name` with `help`, and gives it back.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The series of `family` for each of `labels`, created now.
fn series_of<L, M, C>(family: &Family<L, M, C>, labels: impl Iterator<Item = L>) -> Vec<M>
where
    L: Clone + Hash + Eq,
    M: Clone,
    C: MetricConstructor<M>,
{
    labels
        .map(|label| family.get_or_create(&label).clone())
        .collect()
}

/// A counter family by reason, registered, with the series of every one
/// of `reasons` there from the start.
fn reason_counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    reasons: &[&'static str],
) -> Family<ReasonLabel, Counter> {
    let family = registered(registry, name, help, Family::default());
    for &reason in reasons {
        let _ = family.get_or_create(&ReasonLabel { reason });
    }
    family
}

fn latency_histogram() -> Histogram {
    // 10 µs … ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

/// The server's metrics registry and pre-created series.
pub struct Metrics {
    registry: Registry,
    operations: Vec<Counter>,
    request_seconds: Vec<Histogram>,
    store_seconds: Vec<Histogram>,
    events: Vec<Counter>,
    other_events: Family<KindLabel, Counter>,
    sessions_active: Gauge,
    record_counter: Option<RecordCounter>,
    connections_open: Gauge,
    connections_closed: Vec<Counter>,
    dbsc: DbscMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates every series; `record_counter` feeds the active-sessions gauge.
    pub fn new(record_counter: Option<RecordCounter>) -> Self {
        let mut registry = Registry::with_prefix("tessera");

        let operations_family = registered(
            &mut registry,
            "operations",
            "API operations by outcome (`ok` or the error code)",
            Family::<OperationLabels, Counter>::default(),
        );
        let mut operations = Vec::with_capacity(Operation::ALL.len() * OUTCOMES);
        for operation in Operation::ALL {
            for outcome in 0..OUTCOMES {
                operations.push(
                    operations_family
                        .get_or_create(&OperationLabels {
                            operation: operation.as_str(),
                            outcome: outcome_name(outcome),
                        })
                        .clone(),
                );
            }
        }

        let request_family: HistogramFamily<OperationLabel> = registered(
            &mut registry,
            "request_duration_seconds",
            "Time to answer an API operation",
            Family::new_with_constructor(latency_histogram),
        );
        let request_seconds = series_of(
            &request_family,
            Operation::ALL.iter().map(|op| OperationLabel {
                operation: op.as_str(),
            }),
        );

        let store_family: HistogramFamily<OperationLabels> = registered(
            &mut registry,
            "store_operation_duration_seconds",
            "Latency of session store calls by method and outcome (`ok` or `error`)",
            Family::new_with_constructor(latency_histogram),
        );
        let mut store_seconds = Vec::with_capacity(StoreOperation::ALL.len() * 2);
        for op in StoreOperation::ALL {
            for outcome in ["ok", "error"] {
                store_seconds.push(
                    store_family
                        .get_or_create(&OperationLabels {
                            operation: op.name(),
                            outcome,
                        })
                        .clone(),
                );
            }
        }

        let other_events = registered(
            &mut registry,
            "events",
            "Session lifecycle and security events by kind",
            Family::<KindLabel, Counter>::default(),
        );
        let events = series_of(
            &other_events,
            EVENT_KINDS.iter().map(|kind| KindLabel {
                kind: (*kind).to_owned(),
            }),
        );

        let sessions_active = Gauge::default();
        if record_counter.is_some() {
            registry.register(
                "sessions_active",
                "Session records the store holds (best effort: includes expired records not yet swept)",
                sessions_active.clone(),
            );
        }

        let connections_open = registered(
            &mut registry,
            "connections_open",
            "HTTP connections open now",
            Gauge::default(),
        );
        let closed_reasons = ConnectionClose::ALL.map(ConnectionClose::as_str);
        let closed_family = reason_counters(
            &mut registry,
            "connections_closed",
            "Connections the server closed to protect itself: `refused` (--max-connections reached), `header_timeout` (--header-read-timeout), `idle_timeout` (--keep-alive-timeout)",
            &closed_reasons,
        );
        let connections_closed = series_of(
            &closed_family,
            closed_reasons.iter().map(|&reason| ReasonLabel { reason }),
        );
        let dbsc = DbscMetrics::register(&mut registry);

        Self {
            registry,
            dbsc,
            operations,
            request_seconds,
            store_seconds,
            events,
            other_events,
            sessions_active,
            record_counter,
            connections_open,
            connections_closed,
        }
    }

    /// Records one finished API operation.
    pub fn record_operation(&self, operation: Operation, outcome: Outcome, elapsed: Duration) {
        let index = operation.index() * OUTCOMES + outcome_index(outcome);
        if let Some(counter) = self.operations.get(index) {
            counter.inc();
        }
        if let Some(histogram) = self.request_seconds.get(operation.index()) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one store call.
    pub fn record_store(&self, op: StoreOperation, ok: bool, elapsed: Duration) {
        let position = StoreOperation::ALL
            .iter()
            .position(|o| *o == op)
            .unwrap_or(0);
        let index = position * 2 + usize::from(!ok);
        if let Some(histogram) = self.store_seconds.get(index) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one event.
    pub fn record_event(&self, kind: &'static str) {
        match EVENT_KINDS.iter().position(|k| *k == kind) {
            Some(index) => {
                if let Some(counter) = self.events.get(index) {
                    counter.inc();
                }
            }
            None => {
                self.other_events
                    .get_or_create(&KindLabel {
                        kind: kind.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Records one answered DBSC registration or refresh request.
    pub fn record_dbsc(&self, endpoint: DbscEndpoint, elapsed: Duration) {
        if let Some(histogram) = self.dbsc.request_seconds.get(endpoint as usize) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a device-bound-session event in the DBSC series.
    fn record_dbsc_event(&self, event: &SessionEvent) {
        match event {
            SessionEvent::DbscRegistered { .. } => {
                self.dbsc.registrations.inc();
            }
            SessionEvent::DbscRefreshed { .. } => {
                self.dbsc.refreshes.inc();
            }
            SessionEvent::DbscRefreshFailed { reason, .. } => {
                self.dbsc
                    .refresh_failures
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            SessionEvent::DbscSkipped { reason, .. } => {
                self.dbsc
                    .skipped
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            _ => {}
        }
    }

    /// How many records the store holds, when it can tell.
    pub fn store_records(&self) -> Option<u64> {
        self.record_counter.as_ref().map(|count| count())
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An accepted connection ended.
    pub fn connection_ended(&self) {
        self.connections_open.dec();
    }

    /// The server closed (or refused) a connection for `reason`.
    pub fn connection_closed(&self, reason: ConnectionClose) {
        self.connections_closed[reason as usize].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        if let Some(records) = self.store_records() {
            self.sessions_active
                .set(i64::try_from(records).unwrap_or(i64::MAX));
        }
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Operations that happened, by outcome.
    pub fn operation_counts(&self) -> Vec<OperationCount> {
        let mut counts = Vec::new();
        for operation in Operation::ALL {
            for outcome in 0..OUTCOMES {
                let index = operation.index() * OUTCOMES + outcome;
                let count = self.operations.get(index).map_or(0, Counter::get);
                if count > 0 {
                    counts.push(OperationCount {
                        operation: operation.as_str().to_owned(),
                        outcome: outcome_name(outcome).to_owned(),
                        count,
                    });
                }
            }
        }
        counts
    }

    /// Events that happened, by kind.
    pub fn event_counts(&self) -> Vec<EventCount> {
        EVENT_KINDS
            .iter()
            .zip(&self.events)
            .filter(|(_, counter)| counter.get() > 0)
            .map(|(kind, counter)| EventCount {
                kind: (*kind).to_owned(),
                count: counter.get(),
            })
            .collect()
    }
}

/// Counts every event by kind in [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsEventSink {
    metrics: Arc<Metrics>,
}

impl MetricsEventSink {
    /// A sink counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl EventSink for MetricsEventSink {
    fn emit(&self, event: &SessionEvent) {
        self.metrics.record_event(event.kind());
        self.metrics.record_dbsc_event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_prefixed() {
        let metrics = Metrics::new(Some(Arc::new(|| 3)));
        metrics.record_operation(
            Operation::Validate,
            Some(ErrorCode::InvalidSession),
            Duration::from_micros(40),
        );
        metrics.record_store(StoreOperation::Load, true, Duration::from_micros(5));
        metrics.record_event("created");
        metrics.record_event("something_new");
        let text = metrics.encode().expect("encode");
        assert!(text.contains(
            "tessera_operations_total{operation=\"validate\",outcome=\"invalid_session\"} 1"
        ));
        assert!(text.contains("tessera_request_duration_seconds_count{operation=\"validate\"} 1"));
        assert!(text.contains(
            "tessera_store_operation_duration_seconds_count{operation=\"load\",outcome=\"ok\"} 1"
        ));
        assert!(text.contains("tessera_events_total{kind=\"created\"} 1"));
        assert!(text.contains("tessera_events_total{kind=\"something_new\"} 1"));
        assert!(text.contains("tessera_sessions_active 3"));
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("tessera_"), "{line}");
        }
        let counts = metrics.operation_counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].outcome, "invalid_session");
        assert_eq!(metrics.event_counts().len(), 1);
    }
}

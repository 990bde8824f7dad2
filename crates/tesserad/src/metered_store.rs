//! Times every call into the store for the latency histograms: an
//! [`Intercept`] hook, so every store operation, present and future, is
//! timed without a forwarding method per operation.

use std::sync::Arc;
use std::time::Instant;

use tessera::store::{Call, Intercept, Intercepted, Operation, SessionStore, StoreError};

use crate::metrics::Metrics;

/// The store as tesserad uses it: every operation timed.
pub type MeteredStore = Intercepted<Arc<dyn SessionStore>, StoreTimer>;

/// Records the duration and outcome of each store call.
#[derive(Debug)]
pub struct StoreTimer {
    metrics: Arc<Metrics>,
}

impl StoreTimer {
    /// A timer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

/// Wraps `inner`, recording into `metrics`.
pub fn metered(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> MeteredStore {
    Intercepted::new(inner, StoreTimer::new(metrics))
}

impl Intercept for StoreTimer {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        op: Operation,
        call: Call<'a, T>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .record_store(op, result.is_ok(), started.elapsed());
        result
    }
}

//! The shared store conformance suite against a private standalone Redis
//! and a private three-primary Redis Cluster, each case under a fresh key
//! prefix.

mod common;

use std::time::Duration;

use common::{TempCluster, TempRedis, fresh_store};
use tessera_core::testkit::{ConformanceOptions, run_conformance_with};

fn options() -> ConformanceOptions {
    ConformanceOptions {
        native_expiry: true,
        // Only catches a hang: the 64-writer case is slow in a debug build
        // on a busy machine.
        case_timeout: Duration::from_secs(600),
        ..ConformanceOptions::default()
    }
}

/// Runs the suite on fresh stores at `url` (keys tagged `tag`), and
/// asserts that every case passed.
async fn assert_passes(url: &str, tag: &str) {
    let report = run_conformance_with(options(), || fresh_store(url, tag)).await;
    println!("{report}");
    assert!(report.is_success(), "conformance suite failed:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let server = TempRedis::start();
    assert_passes(&server.url(), "conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_passes_the_conformance_suite() {
    let cluster = TempCluster::start();
    assert_passes(&cluster.url(), "cconf").await;
}

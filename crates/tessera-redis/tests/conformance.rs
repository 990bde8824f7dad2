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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let server = TempRedis::start();
    let url = server.url();
    let report = run_conformance_with(options(), || fresh_store(&url, "conf")).await;
    println!("{report}");
    assert!(report.is_success(), "conformance suite failed:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_passes_the_conformance_suite() {
    let cluster = TempCluster::start();
    let url = cluster.url();
    let report = run_conformance_with(options(), || fresh_store(&url, "cconf")).await;
    println!("{report}");
    assert!(report.is_success(), "conformance suite failed:\n{report}");
}

//! The shared store conformance suite against the real PostgreSQL, each case
//! in a fresh schema.

mod common;

use std::time::Duration;

use common::Schemas;
use tessera_core::testkit::{ConformanceOptions, run_conformance_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let schemas = Schemas::new("conf");
    // The 64-writer case makes ~400 000 round trips; on a busy two-core
    // machine in a debug build that can take minutes. The limit only
    // catches a hang.
    let options = ConformanceOptions {
        case_timeout: Duration::from_secs(600),
        ..ConformanceOptions::default()
    };
    let report = run_conformance_with(options, || {
        let schemas = schemas.clone();
        async move { schemas.fresh_store_with(32).await }
    })
    .await;
    schemas.drop_all().await;
    println!("{report}");
    assert!(report.is_success(), "conformance suite failed:\n{report}");
}

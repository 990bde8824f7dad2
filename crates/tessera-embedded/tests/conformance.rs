//! The shared store conformance suite, each case on a fresh database.

use tessera_embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    // Each case gets its own data directory; they are removed when the
    // suite ends (the stores are dropped with their cases).
    let root = tempfile::tempdir().expect("temp dir");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    tessera_core::testkit::assert_conformance(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = root.path().join(format!("case-{n}"));
        async move { EmbeddedStore::open(dir).expect("open a fresh store") }
    })
    .await;
}

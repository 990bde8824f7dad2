//! The shared store conformance suite, each case on a fresh database.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tessera_embedded::EmbeddedStore;

/// Where the cases' databases go: memory-backed `/dev/shm` when the machine
/// has it. The suite checks semantics, and its concurrent compare-and-swap
/// case commits thousands of times one after another; on a real disk every
/// one of those waits for an fsync. The code path is the same (every commit
/// still asks for an fsync, which is free there); durability on a real disk
/// is what `tests/crash.rs` checks.
fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("tessera-embedded-conformance-");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    let root = scratch_root();
    let counter = AtomicUsize::new(0);
    tessera_core::testkit::assert_conformance(|| {
        let dir = root
            .path()
            .join(format!("case-{}", counter.fetch_add(1, Ordering::SeqCst)));
        async move { EmbeddedStore::open(dir).expect("open a fresh store") }
    })
    .await;
}

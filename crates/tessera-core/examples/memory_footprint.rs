//! Measures resident memory of the memory store holding N sessions with 100
//! bytes of data each: `cargo run --release -p tessera-core --example
//! memory_footprint -- 1000000`, or `-- 1000000 signed-in` for sessions
//! each of its own subject (the subject index then holds one entry per
//! session). One kind per process, so that freed memory is not reused.

use serde_json::json;
use tessera_core::{MemoryStore, NewSession, SessionData, SessionManager};

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let pad = 100 - r#"{"payload":"","user_id":1}"#.len();
    let data = SessionData::from_value(&json!({"user_id": 1, "payload": "x".repeat(pad)}))?;
    assert_eq!(data.len_bytes(), 100);
    let signed_in = std::env::args().nth(2).as_deref() == Some("signed-in");
    {
        let before = resident_bytes().unwrap_or(0);
        let manager = SessionManager::builder(MemoryStore::new())
            .anonymous_creation_caps(None, None)
            .build()?;
        for n in 0..sessions {
            let mut request = NewSession::anonymous().data(data.clone());
            if signed_in {
                request = request.subject(format!("user-{n}"));
            }
            manager.create(request).await?;
        }
        let after = resident_bytes().unwrap_or(0);
        let store_bytes = after.saturating_sub(before);
        println!(
            "{sessions} {} sessions with 100 bytes of data: {:.1} MiB resident ({:.0} bytes per session)",
            if signed_in { "signed-in" } else { "anonymous" },
            store_bytes as f64 / (1024.0 * 1024.0),
            store_bytes as f64 / sessions as f64,
        );
    }
    Ok(())
}

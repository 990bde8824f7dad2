//! Opening sealed client-side sessions (the cookie of sealed mode): never
//! panics on any text; a seal of the fuzzed data (as session data) opens to
//! the same record, and any change to the seal is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::sealed::{ClientSideSession, KeyRing, SealingKey};
use tessera_core::{Session, SessionData, SessionId, Timestamp};

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::new(SealingKey::new(1, [7; 32]));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ring.open(text, b"__Host-tessera");
    }
    let value = serde_json::json!({ "v": String::from_utf8_lossy(data) });
    let Ok(data) = SessionData::from_value(&value) else {
        return;
    };
    let record = ClientSideSession {
        session: Session {
            id: SessionId([1; 16]),
            subject: Some("fuzz".into()),
            auth_level: 1,
            authenticated_at: Some(Timestamp(1)),
            data,
            created_at: Timestamp(1),
            last_seen_at: Timestamp(2),
            token_issued_at: Timestamp(3),
            idle_timeout_ms: 1000,
            absolute_expires_at: Timestamp(10_000),
            version: 1,
            epoch: 0,
            client: None,
            binding: None,
        },
        subject_epoch: 0,
    };
    let sealed = ring.seal(&record, b"__Host-tessera").expect("seal");
    assert_eq!(ring.open(&sealed, b"__Host-tessera").expect("open"), record);
    let mut tampered = sealed.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(ring.open(&tampered, b"__Host-tessera").is_err());
});

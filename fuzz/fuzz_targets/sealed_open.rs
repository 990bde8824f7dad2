//! Opening sealed client-side sessions (the cookie of sealed mode): never
//! panics on any text; a session sealed with the fuzzed data opens to the
//! same record, and any change to the seal is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::sealed::{KeyRing, SealingKey};
use tessera::{Login, MemoryStore, NewSession, SessionData, SessionManager};

const CONTEXT: &[u8] = b"__Host-tessera";

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::new(SealingKey::new(1, [7; 32]));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ring.open(text, CONTEXT);
    }
    let value = serde_json::json!({ "v": String::from_utf8_lossy(data) });
    let Ok(data) = SessionData::from_value(&value) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let manager = SessionManager::builder(MemoryStore::new())
        .sealed(ring.clone())
        .allow_volatile_epochs()
        .build()
        .expect("manager");
    let session = runtime.block_on(async {
        let created = manager
            .create(NewSession::anonymous().data(data))
            .await
            .expect("create");
        manager
            .login(Some(&created), Login::new("fuzz"))
            .await
            .expect("login")
    });
    let sealed = session.issued().expect("a seal").expose().to_owned();
    let opened = ring.open(&sealed, CONTEXT).expect("open");
    assert_eq!(&opened.record, session.record().as_ref());
    let mut tampered = sealed.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(ring.open(&tampered, CONTEXT).is_err());
});

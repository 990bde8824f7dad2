//! Stored-record decoding (embedded, Redis and PostgreSQL stores): never
//! panics, and whatever decodes re-encodes to something that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::codec::{decode_entry, encode_entry};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = decode_entry(data) {
        let bytes = encode_entry(&entry).expect("a decoded record encodes");
        let again = decode_entry(&bytes).expect("an encoded record decodes");
        assert_eq!(entry, again);
    }
});

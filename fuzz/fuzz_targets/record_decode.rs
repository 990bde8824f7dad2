//! Stored-record decoding (every store keeps the codec's bytes): never
//! panics, and whatever decodes re-encodes to bytes that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::Timestamp;
use tessera::store::codec::{decode, encode, forget_at_of};
use tessera::token::TokenHash;

fuzz_target!(|data: &[u8]| {
    // Format 1 records need the key they were stored under.
    let _ = decode(data, Some(&TokenHash([3; 32])));
    if let Ok(record) = decode(data, None) {
        let forget = forget_at_of(data).unwrap_or(Timestamp(0));
        let bytes = encode(&record, forget);
        let again = decode(&bytes, None).expect("an encoded record decodes");
        assert_eq!(record, again);
        assert_eq!(forget_at_of(&bytes), Some(forget));
    }
});

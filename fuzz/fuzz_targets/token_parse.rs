//! Token and session-id parsing: never panics; whatever parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::SessionId;
use tessera::token::SessionToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = SessionToken::parse(text) {
        assert_eq!(token.expose(), text, "only the canonical text parses");
        assert!(token.matches(text));
        let _ = token.hash();
        // A current token names its session; a legacy one does not.
        assert_eq!(token.session_id().is_some(), text.len() == tessera::token::TOKEN_LEN);
    }
    if let Ok(id) = SessionId::parse(text) {
        assert_eq!(id.to_string(), text);
    }
});

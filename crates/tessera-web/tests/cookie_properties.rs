//! Cookie parsing on arbitrary input: never a panic, and whatever the
//! controllers write, they read back.

use http::header::{COOKIE, HeaderMap, HeaderValue};
use proptest::prelude::*;
use tessera_web::cookies::{
    ChunkedCookie, CookieAttributes, CookieController, Presented, SingleCookie,
};

fn headers(values: &[Vec<u8>]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(COOKIE, value);
        }
    }
    headers
}

/// The `Cookie` header a browser would send back for these `Set-Cookie` values.
fn sent_back(set: &[String]) -> HeaderMap {
    let pairs: Vec<String> = set
        .iter()
        .filter(|v| !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().expect("pair").to_owned())
        .collect();
    headers(&[pairs.join("; ").into_bytes()])
}

/// `len` characters of base64url, varied by `seed`.
fn credential_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % 64) as usize])
        })
        .collect()
}

fn cookie_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"__Host-tessera=".to_vec()),
        Just(b"__Host-tessera.1=".to_vec()),
        Just(b"; ".to_vec()),
        Just(b"=".to_vec()),
        Just(b"1.".to_vec()),
        "[A-Za-z0-9_.-]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(pieces, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn arbitrary_cookie_headers_never_panic(values in proptest::collection::vec(cookie_bytes(), 0..4)) {
        let headers = headers(&values);
        let single = SingleCookie::new(CookieAttributes::default()).read(&headers);
        let chunked = ChunkedCookie::new(CookieAttributes::default(), 4).read(&headers);
        for presented in [single, chunked] {
            if let Presented::Credential { value, .. } = presented {
                prop_assert!(!value.is_empty());
                prop_assert!(value.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }

    #[test]
    fn what_is_written_reads_back(len in 1usize..16_000, seed in any::<u64>(), stale in 0usize..5) {
        let credential = credential_text(len, seed);
        let chunked = ChunkedCookie::new(CookieAttributes::default(), 4);
        let set = chunked.set(&credential, stale).expect("fits in four cookies");
        prop_assert_eq!(
            chunked.read(&sent_back(&set)),
            Presented::Credential { value: credential.clone(), cookies: set.iter().filter(|v| !v.contains("Max-Age=0")).count() }
        );
        if credential.len() <= 4000 {
            let single = SingleCookie::new(CookieAttributes::default());
            let set = single.set(&credential, 0).expect("fits in one cookie");
            prop_assert_eq!(
                single.read(&sent_back(&set)),
                Presented::Credential { value: credential, cookies: 1 }
            );
        }
    }
}

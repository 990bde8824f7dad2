//! Reading the session credential from `Cookie` headers (the cookie
//! controllers of tessera-web, plain and chunked): never panics on any header
//! bytes; whatever reads as a credential is credential text within the
//! controller's capacity, and writing it back as `Set-Cookie` and reading
//! that again gives the same credential.
//!
//! Input: header values separated by `\n`; the first byte picks the chunked
//! controller's cookie limit (1–9).
#![no_main]

use http::header::{COOKIE, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tessera_web::cookies::{
    ChunkedCookie, CookieAttributes, CookieController, Presented, SingleCookie,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for value in rest.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(COOKIE, value);
        }
    }
    let single = SingleCookie::new(CookieAttributes::default());
    check(&single, &headers);
    let chunked = ChunkedCookie::new(CookieAttributes::default(), usize::from(first % 9) + 1);
    check(&chunked, &headers);
});

fn check(controller: &dyn CookieController, headers: &HeaderMap) {
    let presented = controller.read(headers);
    let Presented::Credential { value, cookies } = presented else {
        return;
    };
    assert!(cookies >= 1);
    assert!(
        value.len() <= controller.capacity(),
        "a credential of {} bytes read, capacity {}",
        value.len(),
        controller.capacity()
    );
    assert!(
        !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
        "not credential text: {value:?}"
    );
    // Written back as cookies, the credential reads the same.
    let set = controller
        .set(&value, cookies)
        .expect("a credential that was read can be written");
    let pairs: Vec<&str> = set
        .iter()
        .map(String::as_str)
        .filter(|text| !text.contains("Max-Age=0"))
        .map(|text| text.split(';').next().expect("pair"))
        .collect();
    let mut again = HeaderMap::new();
    again.append(
        COOKIE,
        HeaderValue::from_str(&pairs.join("; ")).expect("cookie header"),
    );
    match controller.read(&again) {
        Presented::Credential { value: read, .. } => assert_eq!(read, value),
        other => panic!("written credential reads as {other:?}"),
    }
}

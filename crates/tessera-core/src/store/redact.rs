//! Showing a store URL without its secrets: the one redaction every store
//! and the server use when they print or log where they connect.

/// `url` with the password of its user part and the value of every
/// `password=` parameter (query string or `key=value` connection string)
/// replaced by `***`. Works on text, so URLs no parser accepts (a cluster's
/// `host:port,host:port` list) are redacted too.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = url[authority_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |end| authority_start + end);
        let authority = &url[authority_start..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            out.replace_range(authority_start + colon + 1..authority_start + at, "***");
        }
    }
    let mut hidden = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(found) = find_password_key(rest) {
        let value_start = found + "password=".len();
        hidden.push_str(&rest[..value_start]);
        hidden.push_str("***");
        let value_len = rest[value_start..]
            .find(['&', ' ', '#'])
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    hidden.push_str(rest);
    hidden
}

/// Where a `password=` key starts (any case), at the start of the text or
/// of a parameter.
fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let at = from + found;
        let starts_key = at == 0 || matches!(lower.as_bytes()[at - 1], b'?' | b'&' | b' ' | b';');
        if starts_key {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_wherever_a_url_carries_them() {
        for (url, shown) in [
            (
                "redis://app:s3cret@host:6379/0",
                "redis://app:***@host:6379/0",
            ),
            ("redis://:s3cret@host:6379", "redis://:***@host:6379"),
            (
                "redis+cluster://app:s3cret@a:7000,b:7001?prefix=x:",
                "redis+cluster://app:***@a:7000,b:7001?prefix=x:",
            ),
            (
                "redis://host:6379?password=s3cret&db=1",
                "redis://host:6379?password=***&db=1",
            ),
            (
                "redis://host:6379?PASSWORD=s3cret",
                "redis://host:6379?PASSWORD=***",
            ),
            (
                "postgres://tessera:p%40ss@db/app?schema=s",
                "postgres://tessera:***@db/app?schema=s",
            ),
            (
                "host=db user=t password=s3cret dbname=app",
                "host=db user=t password=*** dbname=app",
            ),
            ("embedded:./tessera-data", "embedded:./tessera-data"),
            ("redis://app@host", "redis://app@host"),
            (
                "postgres://db/app?mypassword=x",
                "postgres://db/app?mypassword=x",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}

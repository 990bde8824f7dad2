//! A `User-Agent` told as browser and operating system, for people reading
//! the console: a small table of well-known markers, not a full parser.

/// The browser (with its major version) and the operating system.
pub fn describe(user_agent: &str) -> (String, &'static str) {
    (browser(user_agent), os(user_agent))
}

fn version_after(user_agent: &str, marker: &str) -> Option<String> {
    let start = user_agent.find(marker)? + marker.len();
    let major: String = user_agent[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!major.is_empty()).then_some(major)
}

fn browser(ua: &str) -> String {
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("HeadlessChrome/", "Chrome (headless)"),
        ("Chrome/", "Chrome"),
        ("Version/", "Safari"),
        ("curl/", "curl"),
        ("python-httpx/", "Python httpx"),
    ];
    for (marker, name) in BROWSERS {
        if ua.contains(marker) {
            return match version_after(ua, marker) {
                Some(major) => format!("{name} {major}"),
                None => name.to_owned(),
            };
        }
    }
    if ua.is_empty() {
        "none given".to_owned()
    } else {
        "other".to_owned()
    }
}

fn os(ua: &str) -> &'static str {
    const SYSTEMS: [(&str, &str); 8] = [
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
        ("BSD", "BSD"),
    ];
    SYSTEMS
        .iter()
        .find(|(marker, _)| ua.contains(marker))
        .map(|(_, name)| *name)
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_agents_read_as_browser_and_os() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
                "Edge 131",
                "Windows",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133",
                "Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18",
                "iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome 131",
                "Android",
            ),
            ("curl/8.5.0", "curl 8", "unknown"),
            ("", "none given", "unknown"),
        ];
        for (ua, browser, os) in cases {
            assert_eq!(describe(ua), (browser.to_owned(), os), "{ua}");
        }
    }
}

//! Caps on anonymous session creation: per client IP (IPv6 per /64) and
//! in total, in fixed one-minute windows, so that bots cannot fill the
//! store with sessions nobody signs in to.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use crate::clock::Timestamp;
use crate::error::SessionError;
use crate::events::counted_as;

/// The window the caps count in.
const WINDOW_MS: i64 = 60_000;

/// Most IPs tracked at once; past this the table starts over (bounded
/// memory under a spoofed-IP flood, which the total cap still limits).
const MAX_TRACKED_IPS: usize = 100_000;

#[derive(Debug, Default)]
struct Windows {
    /// The current window's number (time / one minute).
    current: i64,
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Counts anonymous creations against the caps.
#[derive(Debug)]
pub(crate) struct AnonymousCaps {
    per_ip: Option<NonZeroU32>,
    total: Option<NonZeroU32>,
    windows: Mutex<Windows>,
}

impl AnonymousCaps {
    pub(crate) fn new(per_ip: Option<NonZeroU32>, total: Option<NonZeroU32>) -> Self {
        Self {
            per_ip,
            total,
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Counts one anonymous creation by `ip` (when known) at `now`, or
    /// refuses it when a cap is reached (a refused creation does not count).
    pub(crate) fn admit(&self, ip: Option<IpAddr>, now: Timestamp) -> Result<(), SessionError> {
        if self.per_ip.is_none() && self.total.is_none() {
            return Ok(());
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = now.as_millis().div_euclid(WINDOW_MS);
        if windows.current != window {
            windows.current = window;
            windows.total = 0;
            windows.per_ip.clear();
        }
        if let Some(cap) = self.total
            && windows.total >= cap.get()
        {
            return Err(SessionError::TooManyAnonymous {
                scope: "all clients",
                per_minute: cap.get(),
            });
        }
        if let (Some(cap), Some(ip)) = (self.per_ip, ip) {
            let ip = counted_as(ip);
            if windows.per_ip.len() >= MAX_TRACKED_IPS && !windows.per_ip.contains_key(&ip) {
                windows.per_ip.clear();
            }
            let count = windows.per_ip.entry(ip).or_insert(0);
            if *count >= cap.get() {
                return Err(SessionError::TooManyAnonymous {
                    scope: "this client address",
                    per_minute: cap.get(),
                });
            }
            *count += 1;
        }
        windows.total = windows.total.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("ip"))
    }

    #[test]
    fn anonymous_creations_are_capped_per_address_and_in_total() {
        let caps = AnonymousCaps::new(NonZeroU32::new(3), NonZeroU32::new(5));
        let now = Timestamp(120_000);
        for _ in 0..3 {
            caps.admit(ip("192.0.2.1"), now).expect("under the cap");
        }
        let refused = caps.admit(ip("192.0.2.1"), now).expect_err("per-IP cap");
        assert!(
            refused.to_string().contains("this client address"),
            "{refused}"
        );
        // One /64 is one client.
        caps.admit(ip("2001:db8::1"), now).expect("another client");
        caps.admit(ip("2001:db8::2"), now)
            .expect("same /64, second");
        let refused = caps.admit(None, now).expect_err("total cap");
        assert!(refused.to_string().contains("all clients"), "{refused}");
        // The next minute starts afresh.
        caps.admit(ip("192.0.2.1"), Timestamp(180_000))
            .expect("a new window");
    }

    #[tokio::test]
    async fn anonymous_sessions_get_the_shorter_idle_timeout_until_sign_in() {
        use std::time::Duration;

        use crate::manager::{Login, NewSession, SessionManager};
        use crate::{ClientInfo, MemoryStore};

        let manager = SessionManager::builder(MemoryStore::new())
            .idle_timeout(Duration::from_secs(1800))
            .anonymous_idle_timeout(Duration::from_secs(300))
            .anonymous_creation_caps(NonZeroU32::new(2), None)
            .build()
            .expect("manager");
        let client = ClientInfo::new(ip("198.51.100.7"), Some("test"));
        let visitor = manager
            .create(NewSession::anonymous().client(client.clone()))
            .await
            .expect("anonymous session");
        assert_eq!(visitor.record().idle_timeout(), Duration::from_secs(300));
        let signed_in = manager
            .login(Some(&visitor), Login::new("alice"))
            .await
            .expect("sign-in");
        assert_eq!(
            signed_in.record().idle_timeout(),
            Duration::from_secs(1800),
            "a sign-in gives the full idle timeout"
        );
        // The per-IP cap counts anonymous creations only.
        manager
            .create(NewSession::anonymous().client(client.clone()))
            .await
            .expect("second anonymous session");
        let refused = manager
            .create(NewSession::anonymous().client(client.clone()))
            .await
            .expect_err("third from the same address");
        assert!(matches!(refused, SessionError::TooManyAnonymous { .. }));
        manager
            .login(None, Login::new("bob").client(client))
            .await
            .expect("sign-ins are not capped");
    }

    #[test]
    fn no_caps_admit_everything() {
        let caps = AnonymousCaps::new(None, None);
        for _ in 0..1000 {
            caps.admit(ip("192.0.2.1"), Timestamp(0)).expect("uncapped");
        }
    }
}

//! The client's address behind reverse proxies: forwarding headers are
//! believed only from proxies the deployment trusts, and the address taken
//! is the right-most one that no trusted proxy added.
//!
//! `X-Forwarded-For: a, b, c` from a peer `p` means "`p` was told by `c`,
//! which was told by `b`, ...". Every proxy appends what it saw, so only the
//! entries added by trusted proxies are reliable: walking from the peer
//! leftwards, the first address that is not a trusted proxy is the client.
//! Anything to its left was written by the client itself.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::Headers;

/// One network, `address/prefix-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A proxy list entry that is not `address` or `address/prefix-length`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an IP address or network (write networks as address/prefix-length, like 10.0.0.0/8 or fd00::/8)"
)]
pub struct InvalidNetwork(pub String);

/// The reverse proxies whose forwarding headers are believed. The default
/// is loopback only (`127.0.0.0/8`, `::1`): a proxy on the same machine.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::loopback()
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for network in &self.networks {
            list.entry(&format_args!("{network}"));
        }
        list.finish()
    }
}

impl TrustedProxies {
    /// Loopback only: `127.0.0.0/8` and `::1`.
    pub fn loopback() -> Self {
        Self {
            networks: vec![
                Network {
                    address: IpAddr::from([127, 0, 0, 0]),
                    prefix: 8,
                },
                Network {
                    address: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
                    prefix: 128,
                },
            ],
        }
    }

    /// No proxy is trusted: the connection's peer is always the client.
    pub fn none() -> Self {
        Self {
            networks: Vec::new(),
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the connection's `peer` unless it is a
    /// trusted proxy; then the right-most address of the forwarding header
    /// `header` (`X-Forwarded-For` style, every value of it in order) that
    /// is not a trusted proxy, or the left-most when all are. Without a
    /// usable header the peer. An entry that is not an address ends the
    /// walk there: what lies left of it cannot be told apart from junk.
    pub fn client_ip(
        &self,
        peer: Option<IpAddr>,
        headers: &dyn Headers,
        header: &str,
    ) -> Option<IpAddr> {
        let peer = peer.map(canonical);
        let Some(proxy) = peer.filter(|peer| self.contains(*peer)) else {
            return peer;
        };
        let values = headers.all(header);
        let mut entries = values
            .iter()
            .flat_map(|value| value.split(|b| *b == b','))
            .collect::<Vec<_>>();
        entries.reverse();
        let mut client = proxy;
        for entry in entries {
            let Some(ip) = std::str::from_utf8(entry)
                .ok()
                .and_then(|text| parse_entry(text.trim()))
            else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// An address as proxies write it: `a.b.c.d`, `a.b.c.d:port`, `::1`,
/// `[::1]:port`.
fn parse_entry(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
            .map(canonical);
    }
    text.parse::<std::net::SocketAddr>()
        .ok()
        .map(|addr| canonical(addr.ip()))
}

impl FromStr for TrustedProxies {
    type Err = InvalidNetwork;

    /// Networks separated by commas or spaces: `10.0.0.0/8, fd00::/8,
    /// 192.0.2.7`; an empty list trusts no proxy.
    fn from_str(list: &str) -> Result<Self, InvalidNetwork> {
        let mut networks = Vec::new();
        for item in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
        {
            let invalid = || InvalidNetwork(item.to_owned());
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (item, None),
            };
            let address = canonical(address.parse::<IpAddr>().map_err(|_| invalid())?);
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
                None => max,
            };
            if prefix > max {
                return Err(invalid());
            }
            networks.push(Network { address, prefix });
        }
        Ok(Self { networks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn headers(forwarded: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for value in forwarded {
            headers.append(
                "x-forwarded-for",
                http::HeaderValue::from_str(value).expect("value"),
            );
        }
        headers
    }

    #[test]
    fn the_right_most_untrusted_forwarded_address_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, ::1".parse().expect("list");
        let from = |peer: &str, forwarded: &[&str]| {
            trusted.client_ip(Some(ip(peer)), &headers(forwarded), "x-forwarded-for")
        };
        // A client-written entry on the left is ignored.
        assert_eq!(
            from("10.0.0.1", &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            Some(ip("198.51.100.7"))
        );
        // Several header lines are one list.
        assert_eq!(
            from("10.0.0.1", &["6.6.6.6", "198.51.100.7:4431"]),
            Some(ip("198.51.100.7"))
        );
        // An untrusted peer's header is not believed.
        assert_eq!(
            from("203.0.113.9", &["198.51.100.7"]),
            Some(ip("203.0.113.9"))
        );
        // No header, or junk right of the proxies: the last trusted hop.
        assert_eq!(from("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(from("10.0.0.1", &["nonsense"]), Some(ip("10.0.0.1")));
        // All trusted: the left-most.
        assert_eq!(
            from("10.0.0.1", &["10.1.1.1, 10.2.2.2"]),
            Some(ip("10.1.1.1"))
        );
        // IPv4 written as IPv6, and bracketed IPv6 with a port.
        assert_eq!(
            from("::ffff:10.0.0.1", &["[2001:db8::5]:443"]),
            Some(ip("2001:db8::5"))
        );
        // Without a peer nothing can be trusted.
        assert_eq!(
            trusted.client_ip(None, &headers(&["198.51.100.7"]), "x-forwarded-for"),
            None
        );
    }

    #[test]
    fn the_default_trusts_loopback_only() {
        let trusted = TrustedProxies::default();
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(trusted.contains(ip("127.9.9.9")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        assert!(!trusted.contains(ip("10.0.0.1")));
        assert!(!trusted.contains(ip("::2")));
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "fd00::/129", "localhost", "10.0.0.0/x"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
        assert_eq!(
            format!(
                "{:?}",
                "192.0.2.0/24 fd00::/8"
                    .parse::<TrustedProxies>()
                    .expect("list")
            ),
            "[192.0.2.0/24, fd00::/8]"
        );
    }
}

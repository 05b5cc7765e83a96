//! IP allow-lists: `allow_ips = ["192.30.252.0/22", "2606:50c0::/32"]` on a route admits only
//! requests from those networks; others get 403 before their body is read.
//!
//! The client's address is the TCP peer's, unless the peer is one of the server's
//! `trusted_proxies`: then `X-Forwarded-For` is read from the right, skipping trusted proxies,
//! and the first address that is not one is the client. A sender cannot forge its way in by
//! writing `X-Forwarded-For` itself, because only a trusted proxy's header is believed.

use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};

/// A network in CIDR notation (`10.0.0.0/8`), or one address (`203.0.113.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|ip| Cidr(IpNet::from(ip)))
            .map_err(|_| format!("{text:?} is not an IP address or a CIDR network"))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Whether `ip` is in one of `nets` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn contains(nets: &[Cidr], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|net| net.0.contains(&ip))
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the rightmost
/// `X-Forwarded-For` address that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[Cidr]) -> IpAddr {
    if !contains(trusted_proxies, peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Unreadable: stop at the last address that could be checked.
            return client;
        };
        client = ip;
        if !contains(trusted_proxies, ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(texts: &[&str]) -> Vec<Cidr> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_and_single_addresses_parse_and_match() {
        let allowed = nets(&["192.30.252.0/22", "203.0.113.7", "2606:50c0::/32"]);
        assert!(contains(&allowed, ip("192.30.253.1")));
        assert!(contains(&allowed, ip("203.0.113.7")));
        assert!(!contains(&allowed, ip("203.0.113.8")));
        assert!(contains(&allowed, ip("2606:50c0::1")));
        assert!(contains(&allowed, ip("::ffff:192.30.252.9")), "IPv4-mapped");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 203.0.113.7, 10.1.1.1"),
        );
        // From a trusted proxy: the rightmost untrusted hop is the client.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("203.0.113.7")
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            client_ip(ip("192.0.2.1"), &headers, &trusted),
            ip("192.0.2.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.1.1.1"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.1.1.1")
        );
    }
}

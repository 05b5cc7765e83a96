//! IP allow-lists: `allow_ips = ["192.30.252.0/22", "2606:50c0::/32"]` on a route admits only
//! requests from those networks; others get 403 before their body is read.
//!
//! The client's address is the TCP peer's, unless the peer is one of the server's
//! `trusted_proxies`: then `X-Forwarded-For` is read from the right, skipping trusted proxies,
//! and the first address that is not one is the client. A sender cannot forge its way in by
//! writing `X-Forwarded-For` itself, because only a trusted proxy's header is believed.
//!
//! Reading fails closed: an entry that is not an address (`unknown`, an obfuscated name,
//! junk, a header that is not text) makes the client unknown, and no allow-list admits an
//! unknown client. Entries may carry a port (`203.0.113.7:443`, `[2001:db8::1]:443`).

use std::net::{IpAddr, SocketAddr};
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

/// The client's address as the listener found it ([`client_ip`]); `None` inside when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// Where a request came from, as its listener saw it: what the listener calls its handler
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The connection's TCP peer.
    pub addr: SocketAddr,
    /// The client's address, when the listener found it for its per-client cap: the ingress
    /// then does not read `X-Forwarded-For` again. (Passed here rather than in the request's
    /// extensions, whose first entry costs every request three allocations.)
    pub client: Option<ClientAddr>,
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the rightmost
/// `X-Forwarded-For` address that is not a trusted proxy (the leftmost one when all are; `peer`
/// itself when the proxy sent no header). `None` when the client is unknown: an entry read
/// before finding it is not an address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[Cidr]) -> Option<IpAddr> {
    if !contains(trusted_proxies, peer) {
        return Some(peer);
    }
    let values = headers.get_all("x-forwarded-for");
    // A value that is not text makes the client unknown, wherever it stands.
    if values.iter().any(|value| value.to_str().is_err()) {
        return None;
    }
    // Right to left, header by header, without collecting the hops.
    let hops = values
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or_default().rsplit(','));
    let mut client = peer;
    for hop in hops {
        client = forwarded_address(hop)?;
        if !contains(trusted_proxies, client) {
            break;
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port`, `v4:port`,
/// `[v6]`); `None` for anything else.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// Whether `net` covers every address of its family (`0.0.0.0/0`, `::/0`): as a trusted proxy,
/// it would let any client write its own `X-Forwarded-For`.
pub fn covers_everything(net: &Cidr) -> bool {
    net.0.prefix_len() == 0
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
            Some(ip("203.0.113.7"))
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            client_ip(ip("192.0.2.1"), &headers, &trusted),
            Some(ip("192.0.2.1"))
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            Some(ip("10.0.0.2"))
        );
        // Only trusted hops: the leftmost.
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.3.3.3, 10.1.1.1"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            Some(ip("10.3.3.3"))
        );
        // Junk to the left of the client is never read.
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 203.0.113.7, 10.1.1.1"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn ports_are_read_and_anything_unreadable_makes_the_client_unknown() {
        let trusted = nets(&["127.0.0.1"]);
        let client = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", HeaderValue::from_static(value));
            }
            client_ip(ip("127.0.0.1"), &headers, &trusted)
        };
        assert_eq!(client(&["203.0.113.7:1234"]), Some(ip("203.0.113.7")));
        assert_eq!(client(&["[2001:db8::1]:443"]), Some(ip("2001:db8::1")));
        assert_eq!(client(&["[2001:db8::1]"]), Some(ip("2001:db8::1")));
        assert_eq!(client(&["2001:db8::1"]), Some(ip("2001:db8::1")));
        for unreadable in [
            &["unknown"][..],
            &["_hidden"],
            &[""],
            &["203.0.113.7,"],
            &["203.0.113.7", "junk"],
            &["203.0.113.7", "127.0.0.1, junk"],
            &["[203.0.113.7]:80"],
        ] {
            assert_eq!(client(unreadable), None, "{unreadable:?}");
        }
        // A header that is not text.
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff203.0.113.8").unwrap(),
        );
        assert_eq!(client_ip(ip("127.0.0.1"), &headers, &trusted), None);
    }

    #[test]
    fn only_a_zero_length_prefix_covers_everything() {
        for (net, everything) in [
            ("0.0.0.0/0", true),
            ("::/0", true),
            ("0.0.0.0/1", false),
            ("10.0.0.0/8", false),
        ] {
            assert_eq!(
                covers_everything(&net.parse().unwrap()),
                everything,
                "{net}"
            );
        }
    }
}

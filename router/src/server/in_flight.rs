//! The caps on requests being received and handled at once: listener-wide
//! (`max_requests_in_flight`) and per client (`max_requests_in_flight_per_client`), so that one
//! client cannot take every place. A request past either is answered 503 + `Retry-After` at
//! once, without its body being read, and counted in `webhook_rejected_requests_total` with
//! `reason="busy"` or `reason="client_busy"`.
//!
//! A client is the address [`client_ip`] finds (through `trusted_proxies`); an IPv6 client is
//! its /64, which one host usually holds whole, and every client whose address is unknown
//! shares one place.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, Response, StatusCode};
use metrics::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::allow_list::{Cidr, ClientAddr, client_ip};
use crate::reply::{self, ResponseBody};

/// `Retry-After` (seconds) sent with the busy 503.
const BUSY_RETRY_AFTER: u32 = 1;

/// The requests in flight on one listener, against its caps.
#[derive(Debug, Clone)]
pub(super) struct InFlightCaps {
    listener: Option<ListenerCap>,
    per_client: Option<ClientCap>,
    trusted_proxies: Arc<[Cidr]>,
}

/// A request's places under the caps, held until it is answered.
#[derive(Debug)]
pub(super) struct Permit {
    _listener: Option<OwnedSemaphorePermit>,
    _client: Option<ClientPermit>,
}

impl InFlightCaps {
    /// Caps of `max` requests on the listener (refusals counted in `busy`) and `per_client`
    /// from one client (counted in `client_busy`); `None` for no cap. Clients are found
    /// through `trusted_proxies`.
    pub(super) fn new(
        max: Option<usize>,
        busy: Counter,
        per_client: Option<usize>,
        client_busy: Counter,
        trusted_proxies: &[Cidr],
    ) -> Self {
        Self {
            listener: max.map(|max| ListenerCap {
                permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
                busy,
            }),
            per_client: per_client.map(|max| ClientCap {
                max: max.max(1),
                open: Arc::default(),
                client_busy,
            }),
            trusted_proxies: trusted_proxies.into(),
        }
    }

    /// Places for one more request with `headers` from `peer` (dropped when it is answered),
    /// or which cap refuses it (counted). The client found for the per-client cap is put in
    /// `client`, for the handler.
    pub(super) fn enter(
        &self,
        headers: &HeaderMap,
        client: &mut Option<ClientAddr>,
        peer: IpAddr,
    ) -> Result<Permit, Refusal> {
        let listener = match &self.listener {
            None => None,
            Some(cap) => match Arc::clone(&cap.permits).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    cap.busy.increment(1);
                    return Err(Refusal::Busy);
                }
            },
        };
        let client = match &self.per_client {
            None => None,
            Some(cap) => {
                let found = client_ip(peer, headers, &self.trusted_proxies);
                *client = Some(ClientAddr(found));
                match cap.enter(client_key(found)) {
                    Some(permit) => Some(permit),
                    None => {
                        cap.client_busy.increment(1);
                        return Err(Refusal::ClientBusy);
                    }
                }
            }
        };
        Ok(Permit {
            _listener: listener,
            _client: client,
        })
    }
}

/// The listener-wide cap.
#[derive(Debug, Clone)]
struct ListenerCap {
    permits: Arc<Semaphore>,
    busy: Counter,
}

/// What one client's requests are counted under: its IPv4 address, its IPv6 /64, or `None`
/// when unknown.
type ClientKey = Option<IpAddr>;

/// The key of `client` (IPv4-mapped IPv6 addresses count as IPv4).
fn client_key(client: Option<IpAddr>) -> ClientKey {
    Some(match client? {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    })
}

/// The per-client cap: requests in flight by client, holding only clients with one.
#[derive(Debug, Clone)]
struct ClientCap {
    max: usize,
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
    client_busy: Counter,
}

impl ClientCap {
    /// A place for one more request from `client`, or `None` when it has `max` in flight.
    fn enter(&self, client: ClientKey) -> Option<ClientPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientPermit {
            client,
            open: Arc::clone(&self.open),
        })
    }
}

/// One request's place under its client's cap, given back when dropped.
#[derive(Debug)]
struct ClientPermit {
    client: ClientKey,
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Which cap refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `max_requests_in_flight`.
    Busy,
    /// `max_requests_in_flight_per_client`.
    ClientBusy,
}

impl Refusal {
    /// The answer: 503 + `Retry-After` with a short reason.
    pub(super) fn answer(self) -> Response<ResponseBody> {
        let reason = match self {
            Self::Busy => "busy: too many requests in flight, retry later",
            Self::ClientBusy => "busy: too many requests in flight from this client, retry later",
        };
        reply::retry_after(
            reply::error(StatusCode::SERVICE_UNAVAILABLE, reason),
            BUSY_RETRY_AFTER,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn past_the_cap_requests_get_503_until_one_ends() {
        let metrics = Metrics::new();
        let listener = metrics.listener("ingress");
        let caps = InFlightCaps::new(Some(2), listener.busy, None, listener.client_busy, &[]);
        let headers = HeaderMap::new();
        let first = caps
            .enter(&headers, &mut None, ip("192.0.2.1"))
            .expect("room");
        let _second = caps
            .enter(&headers, &mut None, ip("192.0.2.2"))
            .expect("room");
        let refused = caps
            .enter(&headers, &mut None, ip("192.0.2.3"))
            .expect_err("full");
        assert_eq!(refused, Refusal::Busy);
        let refused = refused.answer();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        drop(first);
        assert!(caps.enter(&headers, &mut None, ip("192.0.2.3")).is_ok());
        assert!(
            metrics.render().contains(
                "webhook_rejected_requests_total{listener=\"ingress\",reason=\"busy\"} 1"
            )
        );
    }

    #[test]
    fn one_client_gets_its_share_and_others_still_get_in() {
        let metrics = Metrics::new();
        let listener = metrics.listener("ingress");
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        let caps = InFlightCaps::new(
            Some(10),
            listener.busy,
            Some(2),
            listener.client_busy,
            &trusted,
        );
        let none = HeaderMap::new();
        let held: Vec<Permit> = ["2001:db8::1", "2001:db8::ffff"]
            .iter()
            .map(|peer| caps.enter(&none, &mut None, ip(peer)).expect("room"))
            .collect();
        // The same /64, and the same address IPv4-mapped or not, are one client.
        assert!(caps.enter(&none, &mut None, ip("2001:db8::2")).is_err());
        assert!(caps.enter(&none, &mut None, ip("2001:db8:0:1::1")).is_ok());
        let _v4 = caps.enter(&none, &mut None, ip("192.0.2.1")).expect("room");
        let _mapped = caps
            .enter(&none, &mut None, ip("::ffff:192.0.2.1"))
            .expect("room");
        assert!(caps.enter(&none, &mut None, ip("192.0.2.1")).is_err());
        // Behind the trusted proxy, each forwarded client counts apart; unknown ones together.
        let forwarded = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_static(value));
            headers
        };
        let proxy = ip("127.0.0.1");
        let _a = caps
            .enter(&forwarded("198.51.100.1"), &mut None, proxy)
            .expect("room");
        let _b = caps
            .enter(&forwarded("198.51.100.2"), &mut None, proxy)
            .expect("room");
        let _unknown = caps
            .enter(&forwarded("junk"), &mut None, proxy)
            .expect("room");
        let _unknown_too = caps
            .enter(&forwarded("unknown"), &mut None, proxy)
            .expect("room");
        assert!(
            caps.enter(&forwarded("nonsense"), &mut None, proxy)
                .is_err()
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "webhook_rejected_requests_total{listener=\"ingress\",reason=\"client_busy\"} 3"
            ),
            "{text}"
        );
        // Places are given back, and a client with none is forgotten.
        drop(held);
        assert!(caps.enter(&none, &mut None, ip("2001:db8::2")).is_ok());
        let clients = caps
            .per_client
            .as_ref()
            .expect("capped")
            .open
            .lock()
            .unwrap()
            .len();
        assert_eq!(clients, 4, "192.0.2.1, two forwarded clients, the unknown");
    }
}

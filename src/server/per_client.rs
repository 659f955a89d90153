//! `[listen] max_connections_per_client`: how many connections one client may hold open.
//!
//! `max_connections` alone lets one client take every slot with slow connections (a
//! slow-body or slowloris attack from one address), and everyone else then waits at accept.
//! So each accepted connection also takes a slot of its client's own; a client at its limit has
//! the new connection closed at once, never queued, and the global slot it took is freed
//! straight away (DESIGN.md §14).
//!
//! A client is an IPv4 address, or an IPv6 /64 (one host usually has a whole /64 to pick
//! addresses from); an IPv4-mapped IPv6 address counts as its IPv4 address. The counts live in
//! one map behind one lock, taken once at accept and once at close: a hash lookup, far cheaper
//! than the accept itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Open connections per client.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its client's count; given back when dropped (the connection
/// closed).
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    /// At most `max` connections per client.
    pub fn new(max: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts are updated in single statements.
        crate::lock::lock(&self.open)
    }

    /// A slot for a connection from `peer`, or `None` if that client already holds `max`.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        let client = client_of(peer);
        let mut open = self.lock();
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            client,
        })
    }

    /// Connections `peer`'s client holds now.
    #[cfg(test)]
    fn count(&self, peer: IpAddr) -> usize {
        self.lock().get(&client_of(peer)).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                // Forget clients that left, so the map holds only clients with connections.
                open.remove(&self.client);
            }
        }
    }
}

/// The key `peer` is counted under: IPv4 as is, IPv6 by its /64.
fn client_of(peer: IpAddr) -> IpAddr {
    crate::config::client_group(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_at_its_limit_is_refused_and_others_are_not() {
        let limits = PerClient::new(2);
        let a = [
            limits.try_acquire(ip("10.0.0.1")).unwrap(),
            limits.try_acquire(ip("10.0.0.1")).unwrap(),
        ];
        assert!(limits.try_acquire(ip("10.0.0.1")).is_none());
        assert!(limits.try_acquire(ip("10.0.0.2")).is_some());
        drop(a);
        assert_eq!(limits.count(ip("10.0.0.1")), 0);
        assert!(
            limits.lock().get(&ip("10.0.0.1")).is_none(),
            "emptied entries are removed"
        );
        assert!(limits.try_acquire(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = PerClient::new(1);
        let _one = limits.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.try_acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(limits.try_acquire(ip("2001:db8:1:3::1")).is_some());
        let _v4 = limits.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(limits.try_acquire(ip("::ffff:192.0.2.7")).is_none());
    }
}

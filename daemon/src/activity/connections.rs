//! Which connections to the service ports count as activity: the difference
//! between one sock_diag dump and the previous one, keyed by socket cookie.
//!
//! I/O-free: the sampler feeds it [`DiagRecord`]s as they are decoded, so a
//! dump of 10,000 sockets is never collected into a list first. The rules,
//! and what they catch and miss, are documented on the parent module.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use super::sock_diag::{ByteCounters, DiagRecord, state};

/// Why a connection counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A cookie not seen in the previous sample: opened since then (possibly
    /// already closed and now in TIME_WAIT).
    New,
    /// Known, and data moved in either direction since the previous sample.
    MovedData,
}

/// A connection that counted as activity, and the configured port it is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub port: u16,
    pub reason: Reason,
}

/// The result of one complete dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The first connection that counted, if any.
    pub activity: Option<Counted>,
    /// ESTABLISHED connections whose local port is a configured one (the
    /// server side; a loopback client's own socket is the same connection).
    pub established: usize,
}

/// What was seen of one socket in the sample it was last seen in.
#[derive(Debug, Clone, Copy)]
struct Seen {
    state: u8,
    counters: Option<ByteCounters>,
    generation: u32,
}

/// Remembers the connections of the previous sample and judges each socket of
/// the current one against them.
#[derive(Debug)]
pub struct ConnectionTracker {
    ports: Vec<u16>,
    known: HashMap<u64, Seen, BuildHasherDefault<CookieHasher>>,
    /// Incremented per sample; entries carry the generation that last saw them.
    generation: u32,
    baseline_taken: bool,
    activity: Option<Counted>,
    established: usize,
}

impl ConnectionTracker {
    pub fn new(ports: &[u16]) -> Self {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        Self {
            ports,
            known: HashMap::default(),
            generation: 0,
            baseline_taken: false,
            activity: None,
            established: 0,
        }
    }

    /// Starts a sample. Activity seen by a sample that was abandoned half-way
    /// is kept and reported by this one: its counters were already recorded,
    /// so it would not show again.
    pub fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.established = 0;
    }

    /// Judges one socket from the dump, in any order.
    pub fn observe(&mut self, record: &DiagRecord) -> Option<Counted> {
        let (port, server_side) = self.match_port(record)?;
        if server_side && record.state == state::ESTABLISHED {
            self.established += 1;
        }
        let now = Seen {
            state: record.state,
            counters: record.counters,
            generation: self.generation,
        };
        let reason = match self.known.entry(record.cookie) {
            Entry::Vacant(slot) => {
                slot.insert(now);
                Reason::New
            }
            Entry::Occupied(mut slot) => {
                let before = std::mem::replace(slot.get_mut(), now);
                if !moved_data(&before, &now) {
                    return None;
                }
                Reason::MovedData
            }
        };
        // The first sample only learns what is there: see the module docs.
        if !self.baseline_taken {
            return None;
        }
        let counted = Counted { port, reason };
        self.activity.get_or_insert(counted);
        Some(counted)
    }

    /// Ends a sample whose dump completed: forgets sockets that are gone and
    /// reports what counted.
    pub fn finish(&mut self) -> Summary {
        let generation = self.generation;
        // A socket missed by one dump is kept one more sample: a connection
        // turning into its TIME_WAIT socket is re-inserted in its hash bucket,
        // and a dump resuming across that bucket can skip it once. Cookies
        // are never reused, so keeping a stale entry cannot hide a new one.
        self.known
            .retain(|_, seen| generation.wrapping_sub(seen.generation) <= 1);
        self.baseline_taken = true;
        Summary {
            activity: self.activity.take(),
            established: self.established,
        }
    }

    /// The configured port this socket is a connection to, and whether it is
    /// the server side, or `None` if it is not to a configured port.
    ///
    /// The client side counts only when the peer is on this host (loopback,
    /// or the same address at both ends): that is an SSH tunnel, a local
    /// proxy or a local client reaching the service, and when such a client
    /// closes first the TIME_WAIT is on its side. A connection from this host
    /// to port 8000 somewhere else is not use of this host's service.
    fn match_port(&self, record: &DiagRecord) -> Option<(u16, bool)> {
        if self.ports.binary_search(&record.local_port).is_ok() {
            return Some((record.local_port, true));
        }
        if self.ports.binary_search(&record.remote_port).is_ok()
            && (is_loopback(record.remote) || record.remote == record.local)
        {
            return Some((record.remote_port, false));
        }
        None
    }
}

fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether data moved between two sightings of one connection.
///
/// The byte counters also advance by one for a FIN (it takes a sequence
/// number), so the sample in which a connection starts closing allows for
/// that: closing an idle connection is not use of it. A socket without
/// counters (a TIME_WAIT minisock) cannot show data, so a known connection
/// that closed since the last sample does not count by itself.
fn moved_data(before: &Seen, now: &Seen) -> bool {
    let (Some(b), Some(n)) = (before.counters, now.counters) else {
        return false;
    };
    let fin_received = u64::from(peer_fin_received(now.state) && !peer_fin_received(before.state));
    let fin_acked = u64::from(own_fin_acked(now.state) && !own_fin_acked(before.state));
    n.received.saturating_sub(b.received) > fin_received
        || n.acked.saturating_sub(b.acked) > fin_acked
}

/// States reached only after the peer's FIN arrived.
fn peer_fin_received(tcp_state: u8) -> bool {
    matches!(
        tcp_state,
        state::CLOSE_WAIT | state::LAST_ACK | state::CLOSING | state::TIME_WAIT
    )
}

/// States reached only after our FIN was acknowledged.
fn own_fin_acked(tcp_state: u8) -> bool {
    matches!(tcp_state, state::FIN_WAIT2 | state::TIME_WAIT)
}

/// A hasher for socket cookies, shaped for how the kernel hands them out.
///
/// Cookies come from a counter, assigned when a socket is first dumped, so a
/// dump lists most sockets in nearly ascending cookie order. Keeping the
/// cookie's low bits as the hash's low bits (hashbrown picks the bucket from
/// those) makes the table walk in step with the dump, nearly sequentially,
/// instead of missing the cache on every lookup after the kernel has
/// streamed megabytes of socket state through it: with 10,000 connections
/// this took the diffing from about 0.7 ms to 0.2 ms of a sample. The top
/// 7 bits, which hashbrown uses as the in-group tag, come from a multiply so
/// tags differ. Cookies are not chosen by peers, so there is no flooding
/// concern; an unlucky spacing could only make lookups slower, not wrong.
#[derive(Debug, Default, Clone, Copy)]
pub struct CookieHasher(u64);

impl Hasher for CookieHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; this keeps any other use correct.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        const TAG_BITS: u64 = 0xfe00_0000_0000_0000;
        let mixed = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed & TAG_BITS) | (self.0 & !TAG_BITS)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const PORT: u16 = 8000;

    fn server(cookie: u64, tcp_state: u8, counters: Option<(u64, u64)>) -> DiagRecord {
        DiagRecord {
            state: tcp_state,
            local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            local_port: PORT,
            remote: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            remote_port: 50000,
            cookie,
            counters: counters.map(|(received, acked)| ByteCounters { received, acked }),
        }
    }

    fn loopback_client(cookie: u64, tcp_state: u8, counters: Option<(u64, u64)>) -> DiagRecord {
        DiagRecord {
            local: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: 50000,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            remote_port: PORT,
            ..server(cookie, tcp_state, counters)
        }
    }

    /// Runs one sample over `records` and returns its summary.
    fn sample(tracker: &mut ConnectionTracker, records: &[DiagRecord]) -> Summary {
        tracker.begin();
        for record in records {
            tracker.observe(record);
        }
        tracker.finish()
    }

    #[allow(clippy::unnecessary_wraps)] // compared against `Summary::activity`
    fn counted(reason: Reason) -> Option<Counted> {
        Some(Counted { port: PORT, reason })
    }

    #[test]
    fn first_sample_is_a_baseline_and_counts_nothing() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        let summary = sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((5, 5)))]);
        assert_eq!(summary.activity, None);
        assert_eq!(summary.established, 1);
    }

    #[test]
    fn new_connection_after_the_baseline_counts() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let summary = sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((0, 0)))]);
        assert_eq!(summary.activity, counted(Reason::New));
    }

    #[test]
    fn idle_connection_counts_never_after_it_is_known() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        let idle = server(1, state::ESTABLISHED, Some((120, 4000)));
        sample(&mut tracker, &[]);
        assert!(sample(&mut tracker, &[idle]).activity.is_some());
        for _ in 0..3 {
            let summary = sample(&mut tracker, &[idle]);
            assert_eq!(summary.activity, None);
            assert_eq!(summary.established, 1);
        }
    }

    #[test]
    fn bytes_in_either_direction_count() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((10, 10)))],
        );
        let received = sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((11, 10)))],
        );
        assert_eq!(received.activity, counted(Reason::MovedData));
        let acked = sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((11, 12)))],
        );
        assert_eq!(acked.activity, counted(Reason::MovedData));
    }

    #[test]
    fn peer_closing_an_idle_connection_does_not_count() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((10, 10)))],
        );
        // The peer's FIN advanced bytes_received by one.
        let summary = sample(
            &mut tracker,
            &[server(1, state::CLOSE_WAIT, Some((11, 10)))],
        );
        assert_eq!(summary.activity, None);
        assert_eq!(summary.established, 0);
        let summary = sample(&mut tracker, &[server(1, state::LAST_ACK, Some((11, 10)))]);
        assert_eq!(summary.activity, None);
    }

    #[test]
    fn peer_sending_data_and_closing_counts() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((10, 10)))],
        );
        let summary = sample(
            &mut tracker,
            &[server(1, state::CLOSE_WAIT, Some((12, 10)))],
        );
        assert_eq!(summary.activity, counted(Reason::MovedData));
    }

    #[test]
    fn closing_an_idle_connection_ourselves_does_not_count() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(
            &mut tracker,
            &[server(1, state::ESTABLISHED, Some((10, 10)))],
        );
        // Our FIN, acknowledged, advanced bytes_acked by one.
        let summary = sample(&mut tracker, &[server(1, state::FIN_WAIT2, Some((10, 11)))]);
        assert_eq!(summary.activity, None);
        let summary = sample(&mut tracker, &[server(1, state::TIME_WAIT, None)]);
        assert_eq!(summary.activity, None);
    }

    #[test]
    fn connection_opened_and_closed_between_samples_counts_from_its_time_wait() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let summary = sample(&mut tracker, &[server(7, state::TIME_WAIT, None)]);
        assert_eq!(summary.activity, counted(Reason::New));
    }

    #[test]
    fn loopback_client_side_counts_for_the_port_it_connects_to() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let summary = sample(&mut tracker, &[loopback_client(3, state::TIME_WAIT, None)]);
        assert_eq!(summary.activity, counted(Reason::New));
        // Its own socket is not another connection to the service.
        let summary = sample(
            &mut tracker,
            &[loopback_client(4, state::ESTABLISHED, Some((0, 1)))],
        );
        assert_eq!(summary.established, 0);
    }

    #[test]
    fn v4_mapped_and_ipv6_loopback_clients_count() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let mapped = "::ffff:127.0.0.1".parse().unwrap();
        let mut client = loopback_client(3, state::ESTABLISHED, Some((0, 1)));
        client.local = mapped;
        client.remote = mapped;
        assert!(sample(&mut tracker, &[client]).activity.is_some());
        client.cookie = 4;
        client.local = IpAddr::V6(Ipv6Addr::LOCALHOST);
        client.remote = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(sample(&mut tracker, &[client]).activity.is_some());
    }

    #[test]
    fn outgoing_connection_to_a_remote_service_port_does_not_count() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let mut outgoing = loopback_client(3, state::ESTABLISHED, Some((0, 1)));
        outgoing.local = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        outgoing.remote = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(sample(&mut tracker, &[outgoing]).activity, None);
        // To this host's own address it is local.
        outgoing.cookie = 4;
        outgoing.remote = outgoing.local;
        assert!(sample(&mut tracker, &[outgoing]).activity.is_some());
    }

    #[test]
    fn other_ports_are_ignored() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[]);
        let mut ssh = server(1, state::ESTABLISHED, Some((0, 0)));
        ssh.local_port = 22;
        let summary = sample(&mut tracker, &[ssh]);
        assert_eq!(summary.activity, None);
        assert_eq!(summary.established, 0);
    }

    #[test]
    fn activity_names_the_configured_port() {
        let mut tracker = ConnectionTracker::new(&[5678, PORT]);
        sample(&mut tracker, &[]);
        let mut n8n = server(1, state::ESTABLISHED, Some((0, 0)));
        n8n.local_port = 5678;
        let summary = sample(&mut tracker, &[n8n]);
        assert_eq!(
            summary.activity,
            Some(Counted {
                port: 5678,
                reason: Reason::New
            })
        );
    }

    #[test]
    fn socket_missed_by_one_dump_is_not_new_when_it_reappears() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((1, 1)))]);
        sample(&mut tracker, &[]);
        let summary = sample(&mut tracker, &[server(1, state::TIME_WAIT, None)]);
        assert_eq!(summary.activity, None);
    }

    #[test]
    fn socket_gone_for_two_samples_is_forgotten() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((1, 1)))]);
        sample(&mut tracker, &[]);
        sample(&mut tracker, &[]);
        assert!(tracker.known.is_empty());
    }

    #[test]
    fn activity_of_an_abandoned_sample_is_reported_by_the_next() {
        let mut tracker = ConnectionTracker::new(&[PORT]);
        sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((1, 1)))]);
        tracker.begin();
        tracker.observe(&server(1, state::ESTABLISHED, Some((2, 1))));
        // The dump failed here; finish() is not called.
        let summary = sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((2, 1)))]);
        assert_eq!(summary.activity, counted(Reason::MovedData));
        let summary = sample(&mut tracker, &[server(1, state::ESTABLISHED, Some((2, 1)))]);
        assert_eq!(summary.activity, None);
    }

    #[test]
    fn cookie_hasher_keeps_sequential_cookies_in_distinct_buckets_with_varied_tags() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<CookieHasher>::default();
        let hashes: Vec<u64> = (1..=4096u64).map(|c| build.hash_one(c)).collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        assert_eq!(buckets.len(), 4096);
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tags.len() > 100, "{} tags", tags.len());
    }
}

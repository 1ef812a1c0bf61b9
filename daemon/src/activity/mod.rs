//! The activity sampler: did anyone use this instance since the last look?
//! (DESIGN.md §2, layer 1.) Each [`ActivitySampler::sample`] answers with at
//! most one [`ActivitySource`] and the number of established connections to
//! the service ports; the daemon turns that into `last_activity`.
//!
//! # TCP connections to `ports`
//!
//! One `NETLINK_SOCK_DIAG` dump per address family (IPv4, IPv6) lists the TCP
//! sockets whose local or remote port is a configured one, with their
//! `tcp_info`; a kernel bytecode filter drops every other socket before the
//! kernel formats it, which is what keeps a sample cheap on a busy host.
//! Each socket is judged against the previous sample by its socket cookie
//! (unique per connection, and kept when the connection becomes a TIME_WAIT
//! socket). A connection counts when:
//!
//! - its cookie is new: it opened since the last sample. That includes one
//!   that opened *and closed* in between, seen through the state it is left
//!   in: TIME_WAIT (60 s) on the side that closed first, or CLOSE_WAIT,
//!   LAST_ACK, FIN_WAIT1/2, CLOSING while the close is under way;
//! - or data moved: `tcpi_bytes_received` or `tcpi_bytes_acked` changed. The
//!   one sequence number a FIN takes is allowed for in the sample where the
//!   connection starts closing, so closing an idle connection does not count.
//!
//! Both ends count when the client is on this host (its peer address is
//! loopback or this host's own address): an SSH tunnel's `sshd` connecting
//! to `127.0.0.1:8000`, a local reverse proxy, a notebook calling the local
//! server. A local client that closes first is left in TIME_WAIT on its own
//! side for 60 s, so a request over a tunnel is caught however short it was.
//!
//! **Baseline.** The sampler records every existing connection when it is
//! created ([`ActivitySampler::new`]) and none of them counts as new: after a
//! daemon restart an idle keep-alive connection must not reset the idle
//! clock. They count as soon as they move data. The first `sample()` already
//! reports what changed since `new()`.
//!
//! **Not activity:** an open idle connection (TCP keep-alive probes move no
//! data); a known connection closing; listening sockets; half-open
//! handshakes; connections from this host to the same port elsewhere.
//!
//! **Missed:**
//! - A remote client that closes first, on a connection that opened and
//!   closed entirely between two samples: its TIME_WAIT is on the client's
//!   host, and this side passes through CLOSE_WAIT and LAST_ACK in about one
//!   round trip. Each such connection is caught with a probability of about
//!   its lifetime over the sample interval (a 1 s request with 2 s sampling:
//!   one in two), so a client making such requests every few minutes is
//!   still seen within a few of them (ten in a 30 min idle timeout are all
//!   missed one time in a thousand). Through a tunnel, or when the server
//!   closes first (`Connection: close`), it is always seen. The optional
//!   request-counter signal (issue 3) closes this gap.
//! - A request on an already known, idle connection that then closed before
//!   the next sample looked: by then the socket is gone or a TIME_WAIT
//!   socket (which has no byte counters), so closing after a request looks
//!   like closing while idle. It takes an idle connection kept open across
//!   a sample, then a request and a close within one interval; servers
//!   close idle keep-alive connections after a few seconds, so this is rare.
//! - Services in another network namespace (a container with its own
//!   network and no userland proxy): sock_diag sees this namespace only.
//!   Run them with host networking, or keep the proxy.
//!
//! **Counted although it may not be a person:** any peer that completes a
//! handshake (a port scanner reaching an open port, a local health checker
//! polling `:8000`), and application-level keep-alives that move data
//! (HTTP/2 PING, WebSocket ping, server-sent-event heartbeats of an open
//! browser tab). Keep such clients off the activity ports; the lease and the
//! hard timeout bound the rest.
//!
//! # Interactive terminals
//!
//! See [`active_terminals`]: a pty whose atime (input) or mtime (output)
//! is within `window`, widened by the kernel's 8 s timestamp granularity:
//! a terminal counts for at least `window` and at most `window` + 8 s after
//! its last input or output (at most 10 s with the default 2 s interval).

mod connections;
mod diag_socket;
mod sock_diag;
mod terminals;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;

use self::connections::{ConnectionTracker, Summary};
use self::diag_socket::DiagSocket;
use self::sock_diag::{Family, RequestFilter};

pub use self::sock_diag::DecodeError;
pub use self::terminals::active_terminals;

/// What to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerConfig {
    /// Service ports whose TCP connections count (`activity.ports`).
    pub ports: Vec<u16>,
    /// Whether interactive terminals count (`activity.terminals`).
    pub terminals: bool,
    /// The sample interval: a terminal counts if touched within it (widened
    /// to the kernel's timestamp granularity, see the module docs).
    pub window: Duration,
}

impl Default for SamplerConfig {
    /// DESIGN.md §3.2's defaults: port 8000, terminals on, 2 s.
    fn default() -> Self {
        Self {
            ports: vec![8000],
            terminals: true,
            window: Duration::from_secs(2),
        }
    }
}

/// The result of one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivitySample {
    /// Something that counts as activity since the previous sample, if any.
    /// A connection is reported in preference to a terminal.
    pub activity: Option<ActivitySource>,
    /// ESTABLISHED connections to the configured ports (server side).
    pub active_connections: usize,
}

/// What the activity was. Displays (and serializes) as `connection:8000` or
/// `terminal:pts/3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActivitySource {
    /// A TCP connection to this configured port opened or moved data.
    Connection { port: u16 },
    /// This pty (`pts/N`) had input or output.
    Terminal { tty: String },
}

impl fmt::Display for ActivitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection { port } => write!(f, "connection:{port}"),
            Self::Terminal { tty } => write!(f, "terminal:{tty}"),
        }
    }
}

impl serde::Serialize for ActivitySource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("port 0 cannot be an activity port")]
    PortZero,
    #[error("cannot open a NETLINK_SOCK_DIAG socket (is AF_NETLINK allowed?)")]
    OpenSocket {
        #[source]
        source: Errno,
    },
    #[error("cannot send the {family} sock_diag dump request")]
    Send {
        family: &'static str,
        #[source]
        source: Errno,
    },
    #[error("cannot receive the {family} sock_diag reply")]
    Receive {
        family: &'static str,
        #[source]
        source: Errno,
    },
    #[error("the kernel refused the {family} sock_diag dump: {errno}")]
    Rejected { family: &'static str, errno: Errno },
    #[error("a {family} sock_diag datagram of {len} bytes did not fit the {buffer}-byte buffer")]
    Truncated {
        family: &'static str,
        len: usize,
        buffer: usize,
    },
    #[error("malformed {family} sock_diag reply")]
    Malformed {
        family: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("cannot read the terminals in `{}`", path.display())]
    ReadTerminals {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the kernel is asked to narrow each dump to the configured ports.
/// Every mode gives the same samples; the benchmark compares their cost.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortFilter {
    /// One dump per family with a bytecode program (the default).
    Bytecode,
    /// Two dumps per family and port, with `idiag_sport` / `idiag_dport` set.
    RequestFields,
    /// One unfiltered dump per family; ports are checked after decoding.
    Userspace,
}

/// Samples activity; keeps the previous sample's connections to diff against.
#[derive(Debug)]
pub struct ActivitySampler {
    config: SamplerConfig,
    ports: Vec<u16>,
    filter: PortFilter,
    socket: Option<DiagSocket>,
    tracker: ConnectionTracker,
    terminals: Vec<String>,
}

impl ActivitySampler {
    /// Opens the sock_diag socket and records the existing connections as
    /// the baseline (see the module docs). Fails if sock_diag is unusable,
    /// so a sandbox that blocks it is found at start, not at the first idle
    /// check.
    pub fn new(config: SamplerConfig) -> Result<Self, ActivityError> {
        Self::with_port_filter(config, PortFilter::Bytecode)
    }

    #[doc(hidden)]
    pub fn with_port_filter(
        config: SamplerConfig,
        filter: PortFilter,
    ) -> Result<Self, ActivityError> {
        let mut ports = config.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if ports.contains(&0) {
            return Err(ActivityError::PortZero);
        }
        let mut sampler = Self {
            tracker: ConnectionTracker::new(&ports),
            ports,
            config,
            filter,
            socket: None,
            terminals: Vec::new(),
        };
        if !sampler.ports.is_empty() {
            sampler.sample_connections()?;
        }
        Ok(sampler)
    }

    /// One sample, compared against the previous one. Blocking but fast:
    /// about 1 ms with 10,000 other TCP sockets on the host, most of it the
    /// kernel walking its connection table once per address family; about
    /// 3.5 ms when all 10,000 are connections to the sampled ports, most of
    /// it the kernel filling in their `tcp_info` (numbers from
    /// `benches/activity_sample.rs` on a 2-core VM). Call it from a
    /// blocking thread or directly.
    ///
    /// `now` is the reference for terminal timestamps. After an error the
    /// next sample compares against the last successful one, so nothing that
    /// happened in between is lost.
    pub fn sample(&mut self, now: SystemTime) -> Result<ActivitySample, ActivityError> {
        let mut sample = ActivitySample {
            activity: None,
            active_connections: 0,
        };
        if !self.ports.is_empty() {
            let summary = self.sample_connections()?;
            sample.activity = summary
                .activity
                .map(|counted| ActivitySource::Connection { port: counted.port });
            sample.active_connections = summary.established;
        }
        if self.config.terminals && sample.activity.is_none() {
            self.terminals.clear();
            terminals::scan(
                std::path::Path::new(terminals::PTS_DIR),
                now,
                self.config.window,
                &mut self.terminals,
            )?;
            sample.activity = self
                .terminals
                .first()
                .map(|tty| ActivitySource::Terminal { tty: tty.clone() });
        }
        Ok(sample)
    }

    fn sample_connections(&mut self) -> Result<Summary, ActivityError> {
        self.tracker.begin();
        match self.dump_all() {
            Ok(()) => Ok(self.tracker.finish()),
            Err(error) => {
                // The socket may hold the rest of a dump; start clean.
                self.socket = None;
                Err(error)
            }
        }
    }

    fn dump_all(&mut self) -> Result<(), ActivityError> {
        let Self {
            ports,
            filter,
            socket,
            tracker,
            ..
        } = self;
        let socket = match socket {
            Some(socket) => socket,
            None => socket.insert(DiagSocket::open()?),
        };
        for family in [Family::Inet, Family::Inet6] {
            let result = match *filter {
                PortFilter::Bytecode => socket.dump(family, RequestFilter::Ports, ports, |r| {
                    tracker.observe(r);
                }),
                PortFilter::Userspace => socket.dump(family, RequestFilter::None, ports, |r| {
                    tracker.observe(r);
                }),
                PortFilter::RequestFields => ports.iter().try_for_each(|&port| {
                    socket.dump(family, RequestFilter::LocalPort(port), ports, |r| {
                        tracker.observe(r);
                    })?;
                    // A socket with a configured port at both ends was in a
                    // local-port dump already.
                    socket.dump(family, RequestFilter::RemotePort(port), ports, |r| {
                        if ports.binary_search(&r.local_port).is_err() {
                            tracker.observe(r);
                        }
                    })
                }),
            };
            match result {
                // The port-equality ops need Linux 4.16; before that the
                // bytecode audit rejects the request before any record is
                // sent. Filter in userspace from now on (same result, more
                // work), and redo this family.
                Err(ActivityError::Rejected {
                    errno: Errno::EINVAL,
                    ..
                }) if *filter == PortFilter::Bytecode => {
                    log::warn!(
                        "the kernel rejected the sock_diag port filter; filtering activity ports in userspace"
                    );
                    *filter = PortFilter::Userspace;
                    socket.dump(family, RequestFilter::None, ports, |r| {
                        tracker.observe(r);
                    })?;
                }
                other => other?,
            }
        }
        Ok(())
    }
}

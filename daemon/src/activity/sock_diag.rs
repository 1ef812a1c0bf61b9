//! The `NETLINK_SOCK_DIAG` wire format for TCP, as bytes: encoding one
//! `SOCK_DIAG_BY_FAMILY` dump request (with an optional port filter) and
//! decoding the netlink messages of the reply into [`DiagRecord`]s.
//!
//! There is no I/O here, so every byte rule is unit-tested on constructed
//! buffers. Layouts follow `linux/netlink.h`, `linux/sock_diag.h`,
//! `linux/inet_diag.h` and `linux/tcp.h`; the offsets are spelled out below and
//! every read is bounds-checked, because a reply is data from outside the
//! process: a malformed one is a [`DecodeError`], never a panic.
//!
//! Byte order: netlink headers, `inet_diag_msg` counters, the socket cookie and
//! `tcp_info` are the kernel's native order; ports and addresses in
//! `inet_diag_sockid` are network order (big-endian).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_ERROR`: the payload starts with a negative errno (0 is an ACK).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a multipart dump.
pub const NLMSG_DONE: u16 = 3;
/// `SOCK_DIAG_BY_FAMILY`: both the request type and the type of each reply record.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;

const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;

const IPPROTO_TCP: u8 = 6;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_V2_LEN: usize = 56;
/// `sizeof(struct inet_diag_msg)`.
pub const DIAG_MSG_LEN: usize = 72;
/// `sizeof(struct nlattr)`.
const NLA_HDRLEN: usize = 4;
/// Attribute type bits that are flags, not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Request attribute `INET_DIAG_REQ_BYTECODE`.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Reply attribute `INET_DIAG_INFO`: a `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;

/// Bytecode op codes (`INET_DIAG_BC_*`).
const BC_JMP: u8 = 1;
const BC_S_EQ: u8 = 11;
const BC_D_EQ: u8 = 12;
/// `sizeof(struct inet_diag_bc_op)`: code u8, yes u8, no u16.
const BC_OP_LEN: usize = 4;
/// A port comparison is two ops: the comparison and one carrying the port.
const BC_PORT_COND_LEN: usize = 2 * BC_OP_LEN;

/// `offsetof(struct tcp_info, tcpi_bytes_acked)` (Linux 4.1+).
const TCPI_BYTES_ACKED: usize = 120;
/// `offsetof(struct tcp_info, tcpi_bytes_received)` (Linux 4.1+).
const TCPI_BYTES_RECEIVED: usize = 128;

/// An address family sock_diag is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    /// The `AF_*` number on the wire.
    pub const fn number(self) -> u8 {
        match self {
            Self::Inet => 2,
            Self::Inet6 => 10,
        }
    }

    /// The `AF_*` name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Inet => "AF_INET",
            Self::Inet6 => "AF_INET6",
        }
    }
}

/// TCP states as numbered by the kernel (`include/net/tcp_states.h`).
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const CLOSING: u8 = 11;
}

/// The states a dump asks for: a live connection and every state a closing
/// one passes through. LISTEN is left out (a listener is not a connection),
/// and so are the handshake states: a connection that completes its handshake
/// shows up as ESTABLISHED or later.
pub const WANTED_STATES: u32 = (1 << state::ESTABLISHED)
    | (1 << state::FIN_WAIT1)
    | (1 << state::FIN_WAIT2)
    | (1 << state::TIME_WAIT)
    | (1 << state::CLOSE_WAIT)
    | (1 << state::LAST_ACK)
    | (1 << state::CLOSING);

/// How the kernel is asked to narrow a dump to the configured ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFilter {
    /// No kernel-side filter: every socket in the wanted states comes back.
    None,
    /// A bytecode program: local port or remote port equal to one of these.
    Ports,
    /// The `idiag_sport` field of the request: only this local port.
    LocalPort(u16),
    /// The `idiag_dport` field of the request: only this remote port.
    RemotePort(u16),
}

/// Encodes one dump request for `family` into `out` (cleared first).
///
/// The request asks for `tcp_info` (`INET_DIAG_INFO`) on every full socket.
pub fn encode_request(
    out: &mut Vec<u8>,
    family: Family,
    seq: u32,
    filter: RequestFilter,
    ports: &[u16],
) {
    out.clear();
    let bytecode = match filter {
        RequestFilter::Ports => port_bytecode(ports),
        _ => Vec::new(),
    };
    let attr_len = if bytecode.is_empty() {
        0
    } else {
        align4(NLA_HDRLEN + bytecode.len())
    };
    let total = NLMSG_HDRLEN + REQ_V2_LEN + attr_len;

    // struct nlmsghdr
    out.extend_from_slice(&(total as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // pid 0: the kernel

    // struct inet_diag_req_v2
    out.push(family.number()); // sdiag_family
    out.push(IPPROTO_TCP); // sdiag_protocol
    out.push(1 << (INET_DIAG_INFO - 1)); // idiag_ext: ask for tcp_info
    out.push(0); // pad
    out.extend_from_slice(&WANTED_STATES.to_ne_bytes());
    // struct inet_diag_sockid: ports in network order, everything else zero
    // (zero means "any" for a dump).
    let (sport, dport) = match filter {
        RequestFilter::LocalPort(port) => (port, 0),
        RequestFilter::RemotePort(port) => (0, port),
        RequestFilter::None | RequestFilter::Ports => (0, 0),
    };
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // src
    out.extend_from_slice(&[0; 16]); // dst
    out.extend_from_slice(&0u32.to_ne_bytes()); // if
    out.extend_from_slice(&[0xff; 8]); // cookie: INET_DIAG_NOCOOKIE, "any"

    if !bytecode.is_empty() {
        out.extend_from_slice(&((NLA_HDRLEN + bytecode.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        out.extend_from_slice(&bytecode);
        out.resize(total, 0);
    }
    debug_assert_eq!(out.len(), total);
}

/// A bytecode program accepting a socket whose local or remote port is one of
/// `ports`.
///
/// The kernel runs it as: on "yes" advance by `yes` bytes, on "no" by `no`;
/// landing exactly on the end accepts, landing 4 bytes past it rejects. Its
/// auditor (`inet_diag_bc_audit`) follows the "yes" chain and requires every
/// "no" target to lie on it, so this uses the shape `ss` emits for `a or b`:
/// each condition falls through to a `JMP` on "yes" (which jumps to the end,
/// accepting) and skips over that `JMP` to the next condition on "no"; the
/// last condition's "yes" is the end and its "no" is the reject offset.
/// `S_EQ`/`D_EQ` need Linux 4.16.
pub fn port_bytecode(ports: &[u16]) -> Vec<u8> {
    let conditions: Vec<(u8, u16)> = ports
        .iter()
        .flat_map(|&port| [(BC_S_EQ, port), (BC_D_EQ, port)])
        .collect();
    if conditions.is_empty() {
        return Vec::new();
    }
    let total = conditions.len() * BC_PORT_COND_LEN + (conditions.len() - 1) * BC_OP_LEN;
    let mut code = Vec::with_capacity(total);
    for (i, &(op, port)) in conditions.iter().enumerate() {
        // Comparison: "yes" falls through to the JMP (or the end, accepting),
        // "no" skips the JMP (or lands 4 past the end, rejecting).
        push_op(
            &mut code,
            op,
            BC_PORT_COND_LEN as u8,
            (BC_PORT_COND_LEN + BC_OP_LEN) as u16,
        );
        push_op(&mut code, 0, 0, port); // the operand op carries the port in `no`
        if i + 1 < conditions.len() {
            // A JMP always takes "no": to the end, accepting. Its "yes" is
            // only read by the auditor, which walks on to the next condition.
            let to_end = (total - code.len()) as u16;
            push_op(&mut code, BC_JMP, BC_OP_LEN as u8, to_end);
        }
    }
    debug_assert_eq!(code.len(), total);
    code
}

fn push_op(code: &mut Vec<u8>, op: u8, yes: u8, no: u16) {
    code.push(op);
    code.push(yes);
    code.extend_from_slice(&no.to_ne_bytes());
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A reply that does not follow the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "netlink message at byte {offset} declares length {declared}, but {available} bytes remain"
    )]
    MessageLength {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("{what} is {len} bytes, shorter than the {need} bytes it must hold")]
    TooShort {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error(
        "attribute at byte {offset} of an inet_diag_msg declares length {declared}, but {available} bytes remain"
    )]
    AttributeLength {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("reply for family {requested} carries a socket of family {found}")]
    WrongFamily { requested: u8, found: u8 },
}

/// One netlink message: its header fields and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Iterates over the netlink messages in one received datagram.
pub struct Messages<'a> {
    buf: &'a [u8],
    offset: usize,
}

/// The messages in `buf`, as received from the socket.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { buf, offset: 0 }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let Some(header) = rest.get(..NLMSG_HDRLEN) else {
            return Some(Err(self.fail(rest.len(), rest.len())));
        };
        let declared = u32_ne(header, 0) as usize;
        if declared < NLMSG_HDRLEN || declared > rest.len() {
            return Some(Err(self.fail(declared, rest.len())));
        }
        let message = Message {
            kind: u16_ne(header, 4),
            flags: u16_ne(header, 6),
            seq: u32_ne(header, 8),
            payload: &rest[NLMSG_HDRLEN..declared],
        };
        // The next message starts at the aligned length; the last one may end
        // unpadded.
        self.offset += align4(declared).min(rest.len());
        Some(Ok(message))
    }
}

impl Messages<'_> {
    /// Reports a bad length and stops the iteration: nothing after a bad
    /// header can be trusted.
    fn fail(&mut self, declared: usize, available: usize) -> DecodeError {
        let offset = self.offset;
        self.offset = self.buf.len();
        DecodeError::MessageLength {
            offset,
            declared,
            available,
        }
    }
}

/// The errno in an `NLMSG_ERROR` or `NLMSG_DONE` payload (0 for success).
pub fn status_code(payload: &[u8], what: &'static str) -> Result<i32, DecodeError> {
    let bytes = payload.get(..4).ok_or(DecodeError::TooShort {
        what,
        len: payload.len(),
        need: 4,
    })?;
    Ok(i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// `tcpi_bytes_received` and `tcpi_bytes_acked`: the data that moved in each
/// direction. Both also count the FIN's one sequence number once it is
/// received or acked, and `bytes_acked` counts the SYN on the connecting side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCounters {
    pub received: u64,
    pub acked: u64,
}

/// One socket from a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagRecord {
    pub state: u8,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// The kernel's socket cookie: unique for the life of a connection and
    /// kept when it turns into a TIME_WAIT socket.
    pub cookie: u64,
    /// `None` for TIME_WAIT (and FIN_WAIT2 after close) sockets, which are
    /// minisocks without `tcp_info`.
    pub counters: Option<ByteCounters>,
}

/// Decodes the payload of one `SOCK_DIAG_BY_FAMILY` reply message.
pub fn decode_record(payload: &[u8], family: Family) -> Result<DiagRecord, DecodeError> {
    if payload.len() < DIAG_MSG_LEN {
        return Err(DecodeError::TooShort {
            what: "inet_diag_msg",
            len: payload.len(),
            need: DIAG_MSG_LEN,
        });
    }
    // struct inet_diag_msg: family u8 @0, state u8 @1, timer u8 @2,
    // retrans u8 @3, id @4..52, expires @52, rqueue @56, wqueue @60,
    // uid @64, inode @68.
    // struct inet_diag_sockid @4: sport be16 @4, dport be16 @6,
    // src [be32; 4] @8, dst [be32; 4] @24, if u32 @40, cookie [u32; 2] @44.
    if payload[0] != family.number() {
        return Err(DecodeError::WrongFamily {
            requested: family.number(),
            found: payload[0],
        });
    }
    let state = payload[1];
    let local_port = u16::from_be_bytes([payload[4], payload[5]]);
    let remote_port = u16::from_be_bytes([payload[6], payload[7]]);
    let local = address(family, &payload[8..24]);
    let remote = address(family, &payload[24..40]);
    // sock_diag_save_cookie stores the low 32 bits first.
    let cookie = u64::from(u32_ne(payload, 44)) | (u64::from(u32_ne(payload, 48)) << 32);
    let counters = find_attribute(&payload[DIAG_MSG_LEN..], INET_DIAG_INFO)?
        .map(tcp_info_counters)
        .transpose()?;
    Ok(DiagRecord {
        state,
        local,
        local_port,
        remote,
        remote_port,
        cookie,
        counters,
    })
}

fn address(family: Family, bytes: &[u8]) -> IpAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[..16]);
    match family {
        Family::Inet => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
        Family::Inet6 => IpAddr::V6(Ipv6Addr::from(octets)),
    }
}

/// The payload of the first attribute of type `wanted` in `attrs` (a run of
/// `struct nlattr` headers, each followed by its payload, 4-byte aligned).
fn find_attribute(attrs: &[u8], wanted: u16) -> Result<Option<&[u8]>, DecodeError> {
    let mut offset = 0;
    while offset < attrs.len() {
        let rest = &attrs[offset..];
        if rest.len() < NLA_HDRLEN {
            return Err(DecodeError::AttributeLength {
                offset,
                declared: rest.len(),
                available: rest.len(),
            });
        }
        let declared = usize::from(u16_ne(rest, 0));
        if declared < NLA_HDRLEN || declared > rest.len() {
            return Err(DecodeError::AttributeLength {
                offset,
                declared,
                available: rest.len(),
            });
        }
        if u16_ne(rest, 2) & NLA_TYPE_MASK == wanted {
            return Ok(Some(&rest[NLA_HDRLEN..declared]));
        }
        offset += align4(declared);
    }
    Ok(None)
}

fn tcp_info_counters(info: &[u8]) -> Result<ByteCounters, DecodeError> {
    // Older kernels send a shorter struct; without the byte counters this
    // sampler cannot tell an idle connection from a busy one.
    if info.len() < TCPI_BYTES_RECEIVED + 8 {
        return Err(DecodeError::TooShort {
            what: "tcp_info",
            len: info.len(),
            need: TCPI_BYTES_RECEIVED + 8,
        });
    }
    Ok(ByteCounters {
        acked: u64_ne(info, TCPI_BYTES_ACKED),
        received: u64_ne(info, TCPI_BYTES_RECEIVED),
    })
}

// Fixed-width native-endian reads. Callers have checked the length, so the
// `try_into` cannot fail; falling back to zero keeps this panic-free anyway.
fn u16_ne(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}

fn u32_ne(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_ne(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a reply message the way the kernel lays it out.
    struct ReplyBuilder {
        family: Family,
        state: u8,
        local: [u8; 16],
        local_port: u16,
        remote: [u8; 16],
        remote_port: u16,
        cookie: u64,
        tcp_info: Option<Vec<u8>>,
    }

    impl ReplyBuilder {
        fn v4() -> Self {
            let mut local = [0; 16];
            local[..4].copy_from_slice(&[127, 0, 0, 1]);
            let mut remote = [0; 16];
            remote[..4].copy_from_slice(&[10, 1, 2, 3]);
            Self {
                family: Family::Inet,
                state: state::ESTABLISHED,
                local,
                local_port: 8000,
                remote,
                remote_port: 51234,
                cookie: 0x0000_0001_0000_002a,
                tcp_info: Some(tcp_info(7, 11, 232)),
            }
        }

        fn payload(&self) -> Vec<u8> {
            let mut p = vec![self.family.number(), self.state, 0, 0];
            p.extend_from_slice(&self.local_port.to_be_bytes());
            p.extend_from_slice(&self.remote_port.to_be_bytes());
            p.extend_from_slice(&self.local);
            p.extend_from_slice(&self.remote);
            p.extend_from_slice(&0u32.to_ne_bytes());
            p.extend_from_slice(&(self.cookie as u32).to_ne_bytes());
            p.extend_from_slice(&((self.cookie >> 32) as u32).to_ne_bytes());
            p.extend_from_slice(&[0; 20]); // expires, rqueue, wqueue, uid, inode
            assert_eq!(p.len(), DIAG_MSG_LEN);
            // Attributes the kernel adds whatever is asked: a u8 shutdown
            // (type 8) first, padded, then the one we want.
            attr(&mut p, 8, &[0]);
            if let Some(info) = &self.tcp_info {
                attr(&mut p, INET_DIAG_INFO, info);
            }
            p
        }

        fn message(&self, seq: u32) -> Vec<u8> {
            nl_message(SOCK_DIAG_BY_FAMILY, seq, &self.payload())
        }
    }

    fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        out.extend_from_slice(&((NLA_HDRLEN + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align4(out.len()), 0);
    }

    fn nl_message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0x02u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    fn tcp_info(received: u64, acked: u64, len: usize) -> Vec<u8> {
        let mut info = vec![0u8; len];
        info[0] = state::ESTABLISHED;
        if len >= TCPI_BYTES_RECEIVED + 8 {
            info[TCPI_BYTES_ACKED..TCPI_BYTES_ACKED + 8].copy_from_slice(&acked.to_ne_bytes());
            info[TCPI_BYTES_RECEIVED..TCPI_BYTES_RECEIVED + 8]
                .copy_from_slice(&received.to_ne_bytes());
        }
        info
    }

    #[test]
    fn request_has_the_kernel_layout() {
        let mut out = Vec::new();
        encode_request(
            &mut out,
            Family::Inet6,
            7,
            RequestFilter::LocalPort(8000),
            &[],
        );
        assert_eq!(out.len(), 72);
        assert_eq!(u32_ne(&out, 0), 72);
        assert_eq!(u16_ne(&out, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16_ne(&out, 6), 0x301);
        assert_eq!(u32_ne(&out, 8), 7);
        assert_eq!(&out[16..20], &[10, 6, 2, 0]);
        assert_eq!(u32_ne(&out, 20), WANTED_STATES);
        assert_eq!(&out[24..28], &[0x1f, 0x40, 0, 0]); // sport 8000 big-endian
        assert_eq!(&out[64..72], &[0xff; 8]);
    }

    #[test]
    fn request_with_bytecode_carries_it_as_an_attribute() {
        let mut out = Vec::new();
        encode_request(
            &mut out,
            Family::Inet,
            1,
            RequestFilter::Ports,
            &[8000, 5678],
        );
        let code = port_bytecode(&[8000, 5678]);
        assert_eq!(out.len(), 72 + 4 + code.len());
        assert_eq!(u32_ne(&out, 0) as usize, out.len());
        assert_eq!(usize::from(u16_ne(&out, 72)), 4 + code.len());
        assert_eq!(u16_ne(&out, 74), INET_DIAG_REQ_BYTECODE);
        assert_eq!(&out[76..], &code[..]);
    }

    /// Runs bytecode the way `inet_diag_bc_run` does.
    fn run_bytecode(code: &[u8], sport: u16, dport: u16) -> bool {
        let mut len = code.len() as isize;
        let mut pc = 0usize;
        while len > 0 {
            let op = code[pc];
            let yes = isize::from(code[pc + 1]);
            let no = u16_ne(code, pc + 2) as isize;
            let taken = match op {
                BC_JMP => false,
                BC_S_EQ => sport == u16_ne(code, pc + 6),
                BC_D_EQ => dport == u16_ne(code, pc + 6),
                _ => panic!("unexpected op {op}"),
            };
            let step = if taken { yes } else { no };
            len -= step;
            if len >= 0 {
                pc += step as usize;
            }
        }
        len == 0
    }

    /// Checks the structural rules of `inet_diag_bc_audit` for these ops.
    fn audit_bytecode(code: &[u8]) {
        let reachable_on_yes_chain = |target_len: isize| {
            let (mut len, mut pc) = (code.len() as isize, 0usize);
            while len >= 0 {
                if target_len > len {
                    return false;
                }
                if target_len == len {
                    return true;
                }
                let yes = isize::from(code[pc + 1]);
                assert!(yes >= 4 && yes % 4 == 0);
                len -= yes;
                pc += yes as usize;
            }
            false
        };
        let (mut len, mut pc) = (code.len() as isize, 0usize);
        while len > 0 {
            let op = code[pc];
            let min_len = if op == BC_JMP { 4 } else { 8 };
            let yes = isize::from(code[pc + 1]);
            let no = u16_ne(code, pc + 2) as isize;
            assert!(
                no >= min_len && no <= len + 4 && no % 4 == 0,
                "bad no at {pc}"
            );
            if no < len {
                assert!(
                    reachable_on_yes_chain(len - no),
                    "no target off the yes chain at {pc}"
                );
            }
            assert!(
                yes >= min_len && yes <= len + 4 && yes % 4 == 0,
                "bad yes at {pc}"
            );
            pc += yes as usize;
            len -= yes;
        }
    }

    #[test]
    fn port_bytecode_accepts_either_end_on_a_listed_port() {
        let code = port_bytecode(&[8000, 5678]);
        audit_bytecode(&code);
        assert!(run_bytecode(&code, 8000, 40000));
        assert!(run_bytecode(&code, 40000, 8000));
        assert!(run_bytecode(&code, 5678, 1));
        assert!(run_bytecode(&code, 1, 5678));
        assert!(!run_bytecode(&code, 8001, 40000));
        assert!(!run_bytecode(&code, 22, 51000));
    }

    #[test]
    fn port_bytecode_for_one_port_is_two_conditions_and_a_jump() {
        let code = port_bytecode(&[8000]);
        assert_eq!(code.len(), 20);
        audit_bytecode(&code);
        assert!(run_bytecode(&code, 8000, 1));
        assert!(run_bytecode(&code, 1, 8000));
        assert!(!run_bytecode(&code, 1, 1));
        assert!(port_bytecode(&[]).is_empty());
    }

    #[test]
    fn established_ipv4_record_decodes_with_its_counters() {
        let msg = ReplyBuilder::v4().message(3);
        let parsed: Vec<_> = messages(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].kind, SOCK_DIAG_BY_FAMILY);
        assert_eq!(parsed[0].seq, 3);
        let record = decode_record(parsed[0].payload, Family::Inet).unwrap();
        assert_eq!(
            record,
            DiagRecord {
                state: state::ESTABLISHED,
                local: IpAddr::V4(Ipv4Addr::LOCALHOST),
                local_port: 8000,
                remote: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
                remote_port: 51234,
                cookie: 0x0000_0001_0000_002a,
                counters: Some(ByteCounters {
                    received: 7,
                    acked: 11
                }),
            }
        );
    }

    #[test]
    fn time_wait_record_has_no_counters() {
        let mut reply = ReplyBuilder::v4();
        reply.state = state::TIME_WAIT;
        reply.tcp_info = None;
        let record = decode_record(&reply.payload(), Family::Inet).unwrap();
        assert_eq!(record.state, state::TIME_WAIT);
        assert_eq!(record.counters, None);
    }

    #[test]
    fn ipv6_record_decodes_its_addresses() {
        let mut reply = ReplyBuilder::v4();
        reply.family = Family::Inet6;
        reply.local = Ipv6Addr::LOCALHOST.octets();
        reply.remote = "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        let record = decode_record(&reply.payload(), Family::Inet6).unwrap();
        assert_eq!(record.local, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(record.remote, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn newer_longer_tcp_info_still_decodes() {
        let mut reply = ReplyBuilder::v4();
        reply.tcp_info = Some(tcp_info(1, 2, 400));
        let record = decode_record(&reply.payload(), Family::Inet).unwrap();
        assert_eq!(
            record.counters,
            Some(ByteCounters {
                received: 1,
                acked: 2
            })
        );
    }

    #[test]
    fn tcp_info_without_byte_counters_is_an_error() {
        let mut reply = ReplyBuilder::v4();
        reply.tcp_info = Some(tcp_info(0, 0, 104));
        assert_eq!(
            decode_record(&reply.payload(), Family::Inet),
            Err(DecodeError::TooShort {
                what: "tcp_info",
                len: 104,
                need: 136
            })
        );
    }

    #[test]
    fn record_of_the_wrong_family_is_an_error() {
        let payload = ReplyBuilder::v4().payload();
        assert_eq!(
            decode_record(&payload, Family::Inet6),
            Err(DecodeError::WrongFamily {
                requested: 10,
                found: 2
            })
        );
    }

    #[test]
    fn every_truncation_of_a_record_is_an_error_not_a_panic() {
        let payload = ReplyBuilder::v4().payload();
        // Cutting inside the fixed part or inside an attribute header or
        // payload must fail; cutting between attributes (or in the padding
        // after the 5-byte shutdown attribute, which the kernel's own
        // `nla_ok` accepts too) is a valid record lacking the later ones.
        for len in 0..payload.len() {
            let result = decode_record(&payload[..len], Family::Inet);
            if len == DIAG_MSG_LEN || (DIAG_MSG_LEN + 5..=DIAG_MSG_LEN + 8).contains(&len) {
                assert_eq!(result.unwrap().counters, None, "cut at {len}");
            } else {
                assert!(result.is_err(), "cut at {len} decoded");
            }
        }
    }

    #[test]
    fn attribute_with_an_impossible_length_is_an_error() {
        let mut payload = ReplyBuilder::v4().payload();
        payload[DIAG_MSG_LEN..DIAG_MSG_LEN + 2].copy_from_slice(&2u16.to_ne_bytes());
        assert!(matches!(
            decode_record(&payload, Family::Inet),
            Err(DecodeError::AttributeLength { declared: 2, .. })
        ));
        payload[DIAG_MSG_LEN..DIAG_MSG_LEN + 2].copy_from_slice(&9000u16.to_ne_bytes());
        assert!(matches!(
            decode_record(&payload, Family::Inet),
            Err(DecodeError::AttributeLength { declared: 9000, .. })
        ));
    }

    #[test]
    fn several_messages_in_one_datagram_are_split_on_aligned_lengths() {
        let mut reply = ReplyBuilder::v4();
        let mut buf = reply.message(9);
        reply.cookie = 99;
        reply.state = state::TIME_WAIT;
        reply.tcp_info = None;
        buf.extend(reply.message(9));
        buf.extend(nl_message(NLMSG_DONE, 9, &0i32.to_ne_bytes()));
        let parsed: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            decode_record(parsed[1].payload, Family::Inet)
                .unwrap()
                .cookie,
            99
        );
        assert_eq!(parsed[2].kind, NLMSG_DONE);
        assert_eq!(status_code(parsed[2].payload, "NLMSG_DONE"), Ok(0));
    }

    #[test]
    fn message_header_longer_than_the_datagram_is_an_error_and_ends_iteration() {
        let mut buf = ReplyBuilder::v4().message(1);
        let full = buf.len();
        buf.truncate(50);
        let mut iter = messages(&buf);
        assert_eq!(
            iter.next(),
            Some(Err(DecodeError::MessageLength {
                offset: 0,
                declared: full,
                available: 50
            }))
        );
        assert_eq!(iter.next(), None);
        let mut iter = messages(&buf[..10]);
        assert!(matches!(iter.next(), Some(Err(_))));
        assert_eq!(iter.next(), None);
    }

    #[test]
    fn message_declaring_less_than_a_header_is_an_error() {
        let mut buf = ReplyBuilder::v4().message(1);
        buf[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(matches!(
            messages(&buf).next(),
            Some(Err(DecodeError::MessageLength { declared: 4, .. }))
        ));
    }

    #[test]
    fn error_message_yields_its_errno() {
        let msg = nl_message(NLMSG_ERROR, 1, &(-22i32).to_ne_bytes());
        let parsed = messages(&msg).next().unwrap().unwrap();
        assert_eq!(status_code(parsed.payload, "NLMSG_ERROR"), Ok(-22));
        assert!(status_code(&[1, 2], "NLMSG_ERROR").is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..600))| {
            for message in messages(&bytes).flatten() {
                let _ = decode_record(message.payload, Family::Inet);
                let _ = decode_record(message.payload, Family::Inet6);
            }
            let _ = decode_record(&bytes, Family::Inet);
        });
    }
}

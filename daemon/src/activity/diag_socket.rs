//! The `NETLINK_SOCK_DIAG` socket: sends one dump request and hands each
//! decoded socket of the reply to a callback, straight out of a reused
//! receive buffer.
//!
//! Opened with the `nix` crate's safe socket API. Any error leaves the socket
//! in an unknown state (a dump may be half read, and the kernel refuses a new
//! dump on a socket with one still running), so the caller drops it and opens
//! a fresh one for the next sample.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

use super::ActivityError;
use super::sock_diag::{
    self, DiagRecord, Family, NLMSG_DONE, NLMSG_ERROR, RequestFilter, SOCK_DIAG_BY_FAMILY,
};

/// The receive buffer. The kernel fills each dump datagram up to the size of
/// the largest `recv` it has seen, capped at 32 KiB; twice that is room to
/// spare, and a truncated datagram is still detected.
const RECV_BUFFER: usize = 64 * 1024;

/// How long one `recv` may block. A dump reply is produced inside `recv`, so
/// this only fires if the kernel stops answering; the daemon's watchdog must
/// not hang behind it.
const RECV_TIMEOUT_SECS: i64 = 1;

pub struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for DiagSocket {
    // Not derived: the 64 KiB buffer is noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiagSocket")
            .field("fd", &self.fd)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl DiagSocket {
    pub fn open() -> Result<Self, ActivityError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(|source| ActivityError::OpenSocket { source })?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::seconds(RECV_TIMEOUT_SECS),
        )
        .map_err(|source| ActivityError::OpenSocket { source })?;
        Ok(Self {
            fd,
            seq: 0,
            request: Vec::with_capacity(128),
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Dumps the TCP sockets of `family` that `filter` lets through and calls
    /// `each` on every one, in kernel order.
    pub fn dump(
        &mut self,
        family: Family,
        filter: RequestFilter,
        ports: &[u16],
        mut each: impl FnMut(&DiagRecord),
    ) -> Result<(), ActivityError> {
        let name = family.name();
        self.seq = self.seq.wrapping_add(1);
        sock_diag::encode_request(&mut self.request, family, self.seq, filter, ports);
        let kernel = NetlinkAddr::new(0, 0);
        retry_on_eintr(|| {
            sendto(
                self.fd.as_raw_fd(),
                &self.request,
                &kernel,
                MsgFlags::empty(),
            )
        })
        .map_err(|source| ActivityError::Send {
            family: name,
            source,
        })?;

        loop {
            // MSG_TRUNC makes recv return the datagram's real length, so a
            // datagram larger than the buffer is an error, not silent loss.
            let len =
                retry_on_eintr(|| recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC))
                    .map_err(|source| ActivityError::Receive {
                        family: name,
                        source,
                    })?;
            if len > self.buf.len() {
                return Err(ActivityError::Truncated {
                    family: name,
                    len,
                    buffer: self.buf.len(),
                });
            }
            if len == 0 {
                return Err(ActivityError::Malformed {
                    family: name,
                    source: sock_diag::DecodeError::TooShort {
                        what: "netlink datagram",
                        len: 0,
                        need: sock_diag::NLMSG_HDRLEN,
                    },
                });
            }
            for message in sock_diag::messages(&self.buf[..len]) {
                let message = message.map_err(|source| ActivityError::Malformed {
                    family: name,
                    source,
                })?;
                // A reply to an earlier request cannot be ours; skip it.
                if message.seq != self.seq {
                    continue;
                }
                let malformed = |source| ActivityError::Malformed {
                    family: name,
                    source,
                };
                match message.kind {
                    SOCK_DIAG_BY_FAMILY => {
                        each(
                            &sock_diag::decode_record(message.payload, family)
                                .map_err(malformed)?,
                        );
                    }
                    NLMSG_DONE => {
                        // Carries 0, or a negative errno if the dump failed
                        // part-way. Older kernels may send no payload.
                        let code = if message.payload.is_empty() {
                            0
                        } else {
                            sock_diag::status_code(message.payload, "NLMSG_DONE")
                                .map_err(malformed)?
                        };
                        return rejected(name, code);
                    }
                    NLMSG_ERROR => {
                        let code = sock_diag::status_code(message.payload, "NLMSG_ERROR")
                            .map_err(malformed)?;
                        // 0 is an acknowledgement, which a dump does not ask
                        // for; anything else ends the request.
                        if code != 0 {
                            return rejected(name, code);
                        }
                    }
                    // NLMSG_NOOP and anything newer: nothing to read.
                    _ => {}
                }
            }
        }
    }
}

fn rejected(family: &'static str, code: i32) -> Result<(), ActivityError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ActivityError::Rejected {
            family,
            errno: Errno::from_raw(code.saturating_neg()),
        })
    }
}

fn retry_on_eintr<T>(mut call: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

//! [`Nft`]: the blocking `NETLINK_NETFILTER` socket that sends drain batches and waits for
//! the kernel's verdict on them.

use std::fmt;
use std::io;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::ack::Pending;
use crate::message::{DecodeError, Request, encode_batch};
use crate::ruleset::{self, DrainRuleset, Family, RulesetError, TABLE};

/// How long to wait for the kernel's answer before giving up (it answers while handling
/// the send; this only keeps the caller from hanging on a wedged kernel).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: isize = 12;

/// Receive buffer size; every answer is one small datagram.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// Socket buffer sizes assumed before the first batch: below the kernel's default
/// (`net.core.wmem_default` / `rmem_default`, 208 KiB).
const DEFAULT_SOCKET_BUFFER: usize = 128 * 1024;

/// What one queued answer costs in the receive buffer (skb truesize of a small netlink
/// message, with margin).
const ANSWER_TRUESIZE: usize = 2048;

/// What [`Nft`] was doing when an error happened; the start of every error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Opening the socket.
    Open,
    /// Replacing the family's table with a ruleset.
    Install(Family),
    /// Deleting the family's table.
    Remove(Family),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Open => f.write_str("open nf_tables netlink socket"),
            Operation::Install(family) => write!(f, "install drain rules ({family} {TABLE})"),
            Operation::Remove(family) => write!(f, "remove drain rules ({family} {TABLE})"),
        }
    }
}

impl Operation {
    fn family(self) -> Option<Family> {
        match self {
            Operation::Open => None,
            Operation::Install(family) | Operation::Remove(family) => Some(family),
        }
    }
}

/// The likely cause of `errno`, as a parenthesised hint, or nothing.
fn hint(op: Operation, errno: Errno) -> String {
    let dup = op
        .family()
        .map_or("nft_dup_ipv4/nft_dup_ipv6", Family::dup_module);
    match errno {
        Errno::EPROTONOSUPPORT => " (is nfnetlink in the kernel?)".to_owned(),
        Errno::EOPNOTSUPP | Errno::EAFNOSUPPORT => {
            format!(" (is nf_tables / {dup} in the kernel?)")
        }
        Errno::ENOENT if matches!(op, Operation::Install(_)) => {
            format!(" (are nft_ct / {dup} in the kernel?)")
        }
        Errno::EPERM => " (needs CAP_NET_ADMIN in the network namespace)".to_owned(),
        _ => String::new(),
    }
}

fn describe_io(op: Operation, error: &io::Error) -> String {
    let errno = error.raw_os_error().map(Errno::from_raw);
    format!("{error}{}", errno.map_or(String::new(), |e| hint(op, e)))
}

/// The C library's text for `errno` ("Operation not supported"), without Rust's
/// " (os error N)" suffix.
fn strerror(errno: Errno) -> String {
    let text = io::Error::from_raw_os_error(errno as i32).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn describe_kernel(op: Operation, errno: Errno, message: &Option<String>) -> String {
    let mut text = strerror(errno);
    if let Some(m) = message {
        text.push_str(": ");
        text.push_str(m);
    }
    text.push_str(&hint(op, errno));
    text
}

/// An nf_tables operation that failed; the message reads like
/// `install drain rules (ip cairn_vipd): add mid-stream rule for …: Operation not supported
/// (is nf_tables / nft_dup_ipv4 in the kernel?)`.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The socket could not be created or configured.
    #[error("{op}: {}", describe_io(*op, source))]
    Socket {
        /// Always [`Operation::Open`].
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// The ruleset is not valid.
    #[error("{op}: {source}")]
    Ruleset {
        /// The operation.
        op: Operation,
        /// What is wrong with it.
        source: RulesetError,
    },
    /// Sending the batch failed.
    #[error("{op}: send: {}", describe_io(*op, source))]
    Send {
        /// The operation.
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// Receiving the answers failed.
    #[error("{op}: receive: {source}")]
    Receive {
        /// The operation.
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// The kernel did not answer every message within [`REPLY_TIMEOUT`].
    #[error("{op}: no answer from the kernel within {:?}", REPLY_TIMEOUT)]
    Timeout {
        /// The operation.
        op: Operation,
    },
    /// An answer could not be decoded.
    #[error("{op}: malformed answer: {source}")]
    Decode {
        /// The operation.
        op: Operation,
        /// What was wrong with it.
        source: DecodeError,
    },
    /// The kernel refused the batch; nothing was changed.
    #[error("{op}: {step}: {}", describe_kernel(*op, *errno, message))]
    Kernel {
        /// The operation.
        op: Operation,
        /// The batch message the kernel refused first (e.g. `create chain drain`).
        step: String,
        /// The kernel's reason.
        errno: Errno,
        /// The kernel's reason text from the extended ACK, when it gave one.
        message: Option<String>,
    },
}

impl NftError {
    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            NftError::Socket { op, .. }
            | NftError::Ruleset { op, .. }
            | NftError::Send { op, .. }
            | NftError::Receive { op, .. }
            | NftError::Timeout { op }
            | NftError::Decode { op, .. }
            | NftError::Kernel { op, .. } => *op,
        }
    }

    /// The errno the kernel answered with, if this is a refusal by the kernel.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NftError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// A blocking nf_tables netlink client for the drain table.
///
/// Calls take `&mut self` because each one owns the socket until its answers are in. No
/// threads, no async runtime; `EINTR` is retried and every receive is bounded by
/// [`REPLY_TIMEOUT`]. The socket belongs to the network namespace of the thread that
/// called [`Nft::open`].
#[derive(Debug)]
pub struct Nft {
    socket: Socket,
    port: Option<u32>,
    sequence_number: u32,
    buffer: Vec<u8>,
    send_buffer: usize,
    receive_buffer: usize,
}

impl Nft {
    /// Opens a `NETLINK_NETFILTER` socket in the calling thread's network namespace.
    pub fn open() -> Result<Nft, NftError> {
        let op = Operation::Open;
        let socket_error = |source: io::Error| NftError::Socket { op, source };
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(socket_error)?;
        let address = socket.bind_auto().map_err(socket_error)?;
        // Ask for the kernel's reason text and for errors that echo only our header.
        socket.set_ext_ack(true).map_err(socket_error)?;
        socket.set_cap_ack(true).map_err(socket_error)?;
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs().try_into().unwrap_or(i64::MAX), 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| socket_error(e.into()))?;
        // Start sequence numbers somewhere other sockets' numbers are unlikely to be.
        let port = address.port_number();
        Ok(Nft {
            socket,
            port: (port != 0).then_some(port),
            sequence_number: port.rotate_left(16),
            buffer: Vec::with_capacity(RECV_BUFFER_LEN),
            send_buffer: DEFAULT_SOCKET_BUFFER,
            receive_buffer: DEFAULT_SOCKET_BUFFER,
        })
    }

    /// Atomically replaces table `cairn_vipd` of the family with exactly this ruleset (the
    /// always-present conntrack rule plus the rules of each drain): one batch
    /// `[BATCH_BEGIN, NEWTABLE, DELTABLE, NEWTABLE, NEWCHAIN, NEWRULE…, BATCH_END]`.
    /// On error nothing changed.
    pub fn apply(&mut self, ruleset: &DrainRuleset) -> Result<(), NftError> {
        let op = Operation::Install(ruleset.family);
        let batch =
            ruleset::apply_batch(ruleset).map_err(|source| NftError::Ruleset { op, source })?;
        self.run(op, &batch)?;
        tracing::debug!(
            family = %ruleset.family,
            drains = ruleset.drains.len(),
            "installed drain rules"
        );
        Ok(())
    }

    /// Deletes the family's table (absent counts as done).
    pub fn remove(&mut self, family: Family) -> Result<(), NftError> {
        let op = Operation::Remove(family);
        self.run(op, &ruleset::remove_batch(family))?;
        tracing::debug!(family = %family, "removed drain rules");
        Ok(())
    }

    /// Sends one batch and reads answers until every ACK is in or one is an error.
    fn run(&mut self, op: Operation, batch: &[Request]) -> Result<(), NftError> {
        let first = self.sequence_number.wrapping_add(1);
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        self.sequence_number = self.sequence_number.wrapping_add(count);
        let bytes = encode_batch(batch, first);
        self.fit_buffers(op, &bytes, batch.len())?;
        self.send(op, &bytes)?;
        let mut pending = Pending::new(batch, first, self.port);
        loop {
            if let Some(failure) = pending.failure() {
                // The kernel queued every answer before `send` returned: take the rest
                // (the earliest failure wins), leaving nothing for the next batch.
                let failure = failure.clone();
                let failure = self.drain_queued(&mut pending).unwrap_or(failure);
                let step = batch
                    .get(pending.index_of(failure.seq))
                    .map_or_else(|| format!("seq {}", failure.seq), |r| r.label.clone());
                return Err(NftError::Kernel {
                    op,
                    step,
                    errno: Errno::from_raw(failure.errno),
                    message: failure.message,
                });
            }
            if pending.complete() {
                return Ok(());
            }
            self.receive(op, 0)?;
            pending
                .feed(&self.buffer)
                .map_err(|source| NftError::Decode { op, source })?;
        }
    }

    /// Reads whatever answers are already queued without waiting; returns the earliest
    /// failure among everything read.
    fn drain_queued(&mut self, pending: &mut Pending) -> Option<crate::message::Answer> {
        while !pending.complete() {
            if self.receive(Operation::Open, libc::MSG_DONTWAIT).is_err() {
                break;
            }
            if pending.feed(&self.buffer).is_err() {
                break;
            }
        }
        pending.failure().cloned()
    }

    /// Grows the socket's buffers when a batch would not fit: netlink refuses a datagram
    /// larger than the send buffer (`EMSGSIZE`) and drops answers that overflow the
    /// receive buffer (`ENOBUFS`). The defaults fit a few hundred rules.
    fn fit_buffers(
        &mut self,
        op: Operation,
        bytes: &[u8],
        messages: usize,
    ) -> Result<(), NftError> {
        let send_error = |e: nix::Error| NftError::Send {
            op,
            source: e.into(),
        };
        let want_send = bytes.len().saturating_mul(2);
        if want_send > self.send_buffer {
            setsockopt(&self.socket, sockopt::SndBufForce, &want_send).map_err(send_error)?;
            self.send_buffer = want_send;
        }
        let want_receive = messages.saturating_mul(ANSWER_TRUESIZE);
        if want_receive > self.receive_buffer {
            setsockopt(&self.socket, sockopt::RcvBufForce, &want_receive).map_err(send_error)?;
            self.receive_buffer = want_receive;
        }
        Ok(())
    }

    fn send(&self, op: Operation, bytes: &[u8]) -> Result<(), NftError> {
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.socket.send_to(bytes, &kernel, 0) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(NftError::Send {
                        op,
                        source: io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("sent {n} of {} bytes", bytes.len()),
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(NftError::Send { op, source }),
            }
        }
    }

    /// Receives one datagram into `self.buffer`.
    fn receive(&mut self, op: Operation, flags: libc::c_int) -> Result<(), NftError> {
        loop {
            self.buffer.clear();
            // MSG_TRUNC makes the kernel return the datagram's full length, so a datagram
            // larger than the buffer is detected instead of silently cut.
            match self.socket.recv(&mut self.buffer, flags | libc::MSG_TRUNC) {
                Ok(length) if length > self.buffer.len() => {
                    return Err(NftError::Receive {
                        op,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("answer of {length} bytes was truncated"),
                        ),
                    });
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NftError::Timeout { op });
                }
                Err(source) => return Err(NftError::Receive { op, source }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_names_operation_step_and_module() {
        let error = NftError::Kernel {
            op: Operation::Install(Family::V4),
            step: "add mid-stream rule for 192.0.2.100 to 192.0.2.12 via link #3".into(),
            errno: Errno::EOPNOTSUPP,
            message: None,
        };
        assert_eq!(
            error.to_string(),
            "install drain rules (ip cairn_vipd): add mid-stream rule for 192.0.2.100 to \
             192.0.2.12 via link #3: Operation not supported (is nf_tables / nft_dup_ipv4 in \
             the kernel?)"
        );
        assert_eq!(error.errno(), Some(Errno::EOPNOTSUPP));
        let error = NftError::Kernel {
            op: Operation::Remove(Family::V6),
            step: "delete table ip6 cairn_vipd".into(),
            errno: Errno::EBUSY,
            message: Some("table in use".into()),
        };
        assert_eq!(
            error.to_string(),
            "remove drain rules (ip6 cairn_vipd): delete table ip6 cairn_vipd: Device or \
             resource busy: table in use"
        );
    }

    #[test]
    fn socket_error_hints_at_nfnetlink() {
        let error = NftError::Socket {
            op: Operation::Open,
            source: io::Error::from_raw_os_error(libc::EPROTONOSUPPORT),
        };
        let text = error.to_string();
        assert!(
            text.starts_with("open nf_tables netlink socket: "),
            "{text}"
        );
        assert!(text.ends_with("(is nfnetlink in the kernel?)"), "{text}");
    }
}

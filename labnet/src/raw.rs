//! Sending hand-made IPv4 datagrams from a node (a raw socket with the IP header included),
//! for tests that feed a daemon malformed packets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, sendto, socket,
};

use crate::Lab;
use crate::netns;

/// Sending failed.
#[derive(Debug, thiserror::Error)]
#[error("raw send from {node}: {reason}")]
pub struct RawError {
    /// The sending node.
    pub node: String,
    /// What failed.
    pub reason: String,
}

/// Sends each of `datagrams` (complete IPv4 packets, header included) from `node` towards
/// `dst`. Adds `224.0.0.0/4 dev eth0` to the node first so multicast destinations route.
pub fn send_ipv4(
    lab: &Lab,
    node: &str,
    dst: Ipv4Addr,
    datagrams: &[Vec<u8>],
) -> Result<(), RawError> {
    let err = |reason: String| RawError {
        node: node.to_owned(),
        reason,
    };
    lab.ip(node, &["route", "replace", "224.0.0.0/4", "dev", "eth0"])
        .map_err(|e| err(e.to_string()))?;
    let ns = lab.netns(node);
    let datagrams = datagrams.to_vec();
    let handle = std::thread::spawn(move || -> Result<(), String> {
        netns::enter(&ns).map_err(|e| e.to_string())?;
        // IPPROTO_RAW implies IP_HDRINCL: the kernel sends our header as is (it only
        // fills in the header checksum and total length).
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Raw,
        )
        .map_err(|e| format!("raw socket: {e}"))?;
        let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        for d in &datagrams {
            sendto(fd.as_raw_fd(), d, &to, MsgFlags::empty())
                .map_err(|e| format!("sendto {dst}: {e}"))?;
        }
        Ok(())
    });
    handle
        .join()
        .map_err(|_| err("sender thread panicked".into()))?
        .map_err(err)
}

//! The sockets cairn-vipd sends and receives on: raw VRRP sockets (IP protocol 112) per
//! interface and family, the `AF_PACKET` socket for gratuitous ARP and the ICMPv6 socket for
//! unsolicited neighbour advertisements.
//!
//! socket2 and nix cover nearly everything; the one `unsafe` block is the `sendto` with a
//! `sockaddr_ll`, which neither wraps.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use cairn_vrrp::packet::{IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, TTL};

/// `IPTOS_PREC_INTERNETCONTROL`: the TOS byte routing protocols (and keepalived) use.
const TOS_INTERNET_CONTROL: u32 = 0xc0;
/// Ethertype of ARP.
const ETH_P_ARP: u16 = 0x0806;

/// One packet read from a [`VrrpSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPacket {
    /// A whole IPv4 datagram, header included.
    V4(Vec<u8>),
    /// An IPv6 VRRP payload with the facts from its ancillary data.
    V6 {
        /// The VRRP payload.
        payload: Vec<u8>,
        /// Sender.
        src: Ipv6Addr,
        /// Destination (from `IPV6_PKTINFO`; the group if absent).
        dst: Ipv6Addr,
        /// Hop limit (from `IPV6_HOPLIMIT`; 0 if absent, which the decoder rejects).
        hop_limit: u8,
    },
}

/// A raw VRRP socket bound to one interface and family, joined to the VRRP group there.
#[derive(Debug)]
pub struct VrrpSocket {
    socket: Socket,
    ifindex: u32,
    ipv6: bool,
}

fn index_nonzero(ifindex: u32) -> io::Result<std::num::NonZeroU32> {
    std::num::NonZeroU32::new(ifindex)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "interface index 0"))
}

impl VrrpSocket {
    /// Opens the socket for `ifname` (index `ifindex`): `SO_BINDTODEVICE`, group joined,
    /// TTL/hop limit 255 for multicast and unicast, multicast loop off, non-blocking.
    pub fn open(ifname: &str, ifindex: u32, ipv6: bool) -> io::Result<Self> {
        let protocol = Some(Protocol::from(i32::from(IPPROTO_VRRP)));
        let socket = if ipv6 {
            Socket::new(Domain::IPV6, Type::RAW, protocol)?
        } else {
            Socket::new(Domain::IPV4, Type::RAW, protocol)?
        };
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.set_nonblocking(true)?;
        if ipv6 {
            socket.join_multicast_v6(&MULTICAST_V6, ifindex)?;
            socket.set_multicast_if_v6(ifindex)?;
            socket.set_multicast_hops_v6(u32::from(TTL))?;
            socket.set_unicast_hops_v6(u32::from(TTL))?;
            socket.set_multicast_loop_v6(false)?;
            setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            socket.set_tclass_v6(TOS_INTERNET_CONTROL)?;
        } else {
            socket.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            socket.set_multicast_all_v4(false)?;
            socket.set_multicast_ttl_v4(u32::from(TTL))?;
            socket.set_ttl_v4(u32::from(TTL))?;
            socket.set_multicast_loop_v4(false)?;
            socket.set_tos_v4(TOS_INTERNET_CONTROL)?;
        }
        Ok(Self {
            socket,
            ifindex,
            ipv6,
        })
    }

    /// Sends a VRRP payload from `src` (one of the interface's addresses) to `dst`.
    pub fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
        let iov = [IoSlice::new(payload)];
        let fd = self.socket.as_raw_fd();
        let sent = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: i32::try_from(self.ifindex).unwrap_or(0),
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(src).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&addr),
                )?
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: src.octets(),
                    },
                    ipi6_ifindex: self.ifindex,
                };
                let scope = if is_link_scope(dst) { self.ifindex } else { 0 };
                let addr = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&addr),
                )?
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("source {src} and destination {dst} differ in family"),
                ));
            }
        };
        if sent == payload.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", payload.len()),
            ))
        }
    }

    /// Reads one packet; `None` when nothing is queued.
    pub fn recv(&self) -> io::Result<Option<RawPacket>> {
        let mut buf = vec![0u8; 2048];
        let fd = self.socket.as_raw_fd();
        if !self.ipv6 {
            let mut iov = [IoSliceMut::new(&mut buf)];
            return match recvmsg::<SockaddrIn>(fd, &mut iov, None, MsgFlags::MSG_DONTWAIT) {
                Ok(msg) => {
                    let n = msg.bytes;
                    buf.truncate(n);
                    Ok(Some(RawPacket::V4(buf)))
                }
                Err(nix::errno::Errno::EAGAIN) => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg =
            match recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
        let n = msg.bytes;
        let src = msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
        let mut dst = MULTICAST_V6;
        let mut hop_limit = 0u8;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    }
                    ControlMessageOwned::Ipv6HopLimit(h) => {
                        hop_limit = u8::try_from(h).unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
        buf.truncate(n);
        Ok(Some(RawPacket::V6 {
            payload: buf,
            src,
            dst,
            hop_limit,
        }))
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn is_link_scope(a: Ipv6Addr) -> bool {
    a.is_unicast_link_local() || (a.is_multicast() && a.segments()[0] & 0x000f == 2)
}

/// Sends gratuitous ARP frames (complete Ethernet frames) out of any interface.
#[derive(Debug)]
pub struct ArpSocket {
    socket: Socket,
}

impl ArpSocket {
    /// Opens an `AF_PACKET`/`SOCK_RAW` socket (send only: protocol 0 receives nothing).
    pub fn open() -> io::Result<Self> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        Ok(Self { socket })
    }

    /// Sends `frame` (Ethernet header included, destination broadcast) out of `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        let mut addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: ETH_P_ARP.to_be(),
            sll_ifindex: i32::try_from(ifindex).unwrap_or(0),
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr: [0; 8],
        };
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `frame` is a valid buffer of `frame.len()` bytes for the duration of the
        // call; `addr` is a fully initialised sockaddr_ll living on this stack frame and `len`
        // is its exact size; the fd is owned by `self.socket` and open.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                len,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if usize::try_from(sent).ok() != Some(frame.len()) {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }
}

/// Sends unsolicited neighbour advertisements to `ff02::1` with hop limit 255.
#[derive(Debug)]
pub struct NaSocket {
    socket: Socket,
}

/// All-nodes multicast group: where unsolicited NAs go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl NaSocket {
    /// Opens an ICMPv6 raw socket (the kernel fills in the checksum).
    pub fn open() -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.set_multicast_hops_v6(u32::from(TTL))?;
        socket.set_unicast_hops_v6(u32::from(TTL))?;
        socket.set_multicast_loop_v6(false)?;
        // Receive nothing: this socket only sends.
        socket.set_recv_buffer_size(0)?;
        Ok(Self { socket })
    }

    /// Sends an ICMPv6 message from `src` (an address of the interface) out of `ifindex`.
    pub fn send(&self, ifindex: u32, src: Ipv6Addr, message: &[u8]) -> io::Result<()> {
        index_nonzero(ifindex)?;
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: ifindex,
        };
        let addr = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
        let sent = sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(message)],
            &[ControlMessage::Ipv6PacketInfo(&info)],
            MsgFlags::empty(),
            Some(&addr),
        )?;
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", message.len()),
            ))
        }
    }
}

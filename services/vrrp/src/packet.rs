//! VRRPv3 advertisements on the wire (RFC 5798 section 5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// IPv4 multicast group adverts are sent to.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group adverts are sent to.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every advert is sent with and must arrive with.
pub const TTL: u8 = 255;
/// Largest advertisement interval the 12-bit field can carry, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 4095;

/// One advertisement: what a VRRPv3 packet says, independent of the IP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Sender's priority: 255 address owner, 1..=254 backup-capable, 0 resigning master.
    pub priority: u8,
    /// Max advertisement interval in centiseconds (12 bits, 1..=4095).
    pub interval_cs: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// A validated advertisement with the IP-layer facts the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Source address of the sender (the tie-break compares it).
    pub src: IpAddr,
    /// Destination (the multicast group, or our address for unicast peers).
    pub dst: IpAddr,
    /// The advertisement.
    pub advert: Advertisement,
}

/// Why a received packet was dropped; every variant maps to one [`crate::DropReason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than its headers or than its address count says.
    #[error("truncated packet: {0}")]
    Truncated(&'static str),
    /// The IPv4 header is malformed or is not VRRP.
    #[error("bad IPv4 header: {0}")]
    BadIpHeader(&'static str),
    /// TTL or hop limit is not 255 (the packet crossed a router).
    #[error("TTL/hop limit {0}, must be 255")]
    WrongTtl(u8),
    /// VRRP version other than 3.
    #[error("VRRP version {0}, only 3 is spoken")]
    WrongVersion(u8),
    /// Type other than 1 (ADVERTISEMENT).
    #[error("VRRP type {0}, only 1 (advertisement) exists")]
    WrongType(u8),
    /// The checksum does not match.
    #[error("checksum 0x{got:04x}, expected 0x{expected:04x}")]
    BadChecksum {
        /// In the packet.
        got: u16,
        /// Computed.
        expected: u16,
    },
    /// Field values the RFC forbids (VRID 0, interval 0, no addresses, trailing bytes...).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

impl Advertisement {
    /// The VRRP payload (header + addresses, checksum filled in) for a packet from `src` to
    /// `dst`; the kernel adds the IP header. Addresses must match the family of `src`/`dst`.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let _ = (src, dst);
        todo!()
    }
}

/// Validates a whole IPv4 datagram as an IPv4 raw socket delivers it (IP header included):
/// protocol, TTL 255, version, type, length, checksum with the pseudo-header.
pub fn decode_ipv4(datagram: &[u8]) -> Result<Received, PacketError> {
    let _ = datagram;
    todo!()
}

/// Validates an IPv6 VRRP payload (an IPv6 raw socket strips the IP header; the caller passes
/// source, destination and hop limit from the packet's ancillary data).
pub fn decode_ipv6(
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<Received, PacketError> {
    let _ = (payload, src, dst, hop_limit);
    todo!()
}

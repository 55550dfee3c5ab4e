//! VRRPv3 advertisements on the wire (RFC 5798 section 5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      IPvX Address(es)  (4 or 16 bytes each)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The checksum covers the whole VRRP message plus the IPv4 (RFC 768) or IPv6 (RFC 2460 8.1)
//! pseudo-header with protocol / next header 112 and the VRRP message length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::{Checksum, pseudo_header_v4, pseudo_header_v6};

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
/// First byte of every advertisement: version 3, type 1 (ADVERTISEMENT).
pub const VERSION_TYPE: u8 = 0x31;
/// Length of the fixed VRRP header before the address list.
pub const HEADER_LEN: usize = 8;
/// Most addresses one advertisement can carry (the count field is one byte).
pub const MAX_ADDRESSES: usize = 255;

/// Length of an IPv4 header without options.
const IPV4_MIN_HEADER: usize = 20;

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
    ///
    /// Out-of-range values are cut to what the fields hold rather than panicking: the interval
    /// keeps its low 12 bits and at most [`MAX_ADDRESSES`] addresses are written. Each address
    /// is written in its own family's length, so a family mix produces a packet
    /// [`decode_ipv4`] / [`decode_ipv6`] reject (the daemon's config validation prevents it).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let addresses = &self.addresses[..self.addresses.len().min(MAX_ADDRESSES)];
        let mut out = Vec::with_capacity(HEADER_LEN + addresses.len() * 16);
        let interval = self.interval_cs & MAX_INTERVAL_CS;
        let count = u8::try_from(addresses.len()).unwrap_or(u8::MAX);
        out.extend_from_slice(&[VERSION_TYPE, self.vrid, self.priority, count]);
        out.extend_from_slice(&interval.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for address in addresses {
            match address {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        let checksum = vrrp_checksum(&out, src, dst);
        out[6..8].copy_from_slice(&checksum.to_be_bytes());
        out
    }
}

/// The VRRPv3 checksum of `message` (its checksum field taken as zero, whatever it holds)
/// for a packet from `src` to `dst`, with the pseudo-header of the family of `src`.
///
/// A `src`/`dst` family mix uses the IPv4 pseudo-header with the IPv4-mapped or unspecified
/// form of the other address; such packets never validate on the receiving side.
pub fn vrrp_checksum(message: &[u8], src: IpAddr, dst: IpAddr) -> u16 {
    let len = message.len();
    let mut sum = Checksum::new();
    match (src, dst) {
        (IpAddr::V6(s), d) => {
            let d = match d {
                IpAddr::V6(d) => d,
                IpAddr::V4(d) => d.to_ipv6_mapped(),
            };
            sum.add(&pseudo_header_v6(s, d, len, IPPROTO_VRRP));
        }
        (IpAddr::V4(s), d) => {
            let d = match d {
                IpAddr::V4(d) => d,
                IpAddr::V6(d) => d.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            sum.add(&pseudo_header_v4(s, d, len, IPPROTO_VRRP));
        }
    }
    if let Some(head) = message.get(..6) {
        sum.add(head);
    } else {
        sum.add(message);
    }
    if let Some(tail) = message.get(8..) {
        sum.add(tail);
    }
    sum.finish()
}

/// Validates a whole IPv4 datagram as an IPv4 raw socket delivers it (IP header included):
/// protocol, TTL 255, version, type, length, checksum with the pseudo-header.
///
/// The IP header checksum is not checked again: the kernel drops datagrams whose header
/// checksum is wrong before any raw socket sees them.
pub fn decode_ipv4(datagram: &[u8]) -> Result<Received, PacketError> {
    let Some(header) = datagram.get(..IPV4_MIN_HEADER) else {
        return Err(PacketError::Truncated("shorter than an IPv4 header"));
    };
    if header[0] >> 4 != 4 {
        return Err(PacketError::BadIpHeader("IP version is not 4"));
    }
    let ihl = usize::from(header[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HEADER {
        return Err(PacketError::BadIpHeader("header length below 20 bytes"));
    }
    if ihl > datagram.len() {
        return Err(PacketError::Truncated(
            "shorter than its IPv4 header length",
        ));
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total < ihl {
        return Err(PacketError::BadIpHeader("total length below header length"));
    }
    if total > datagram.len() {
        return Err(PacketError::Truncated("shorter than the IPv4 total length"));
    }
    if total < datagram.len() {
        return Err(PacketError::BadIpHeader(
            "bytes beyond the IPv4 total length",
        ));
    }
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    if fragment & 0x3fff != 0 {
        return Err(PacketError::BadIpHeader("a fragment"));
    }
    if header[9] != IPPROTO_VRRP {
        return Err(PacketError::BadIpHeader("protocol is not 112 (VRRP)"));
    }
    if header[8] != TTL {
        return Err(PacketError::WrongTtl(header[8]));
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let payload = datagram.get(ihl..total).unwrap_or_default();
    decode_payload(payload, IpAddr::V4(src), IpAddr::V4(dst))
}

/// Validates an IPv6 VRRP payload (an IPv6 raw socket strips the IP header; the caller passes
/// source, destination and hop limit from the packet's ancillary data).
pub fn decode_ipv6(
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
) -> Result<Received, PacketError> {
    if hop_limit != TTL {
        return Err(PacketError::WrongTtl(hop_limit));
    }
    decode_payload(payload, IpAddr::V6(src), IpAddr::V6(dst))
}

/// Builds an IPv4 datagram (20-byte header, no options, header checksum filled in) around
/// a VRRP `payload`, as a raw socket would deliver it: for tests, fuzz seeds and tools.
///
/// Payloads longer than fit in the 16-bit total length are cut to fit.
pub fn ipv4_datagram(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let max_payload = usize::from(u16::MAX) - IPV4_MIN_HEADER;
    let payload = &payload[..payload.len().min(max_payload)];
    let total = u16::try_from(IPV4_MIN_HEADER + payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(usize::from(total));
    out.extend_from_slice(&[0x45, 0xc0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, ttl, IPPROTO_VRRP, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let mut sum = Checksum::new();
    sum.add(&out);
    out[10..12].copy_from_slice(&sum.finish().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Validates the VRRP message itself, once the IP layer gave us `src` and `dst`.
fn decode_payload(payload: &[u8], src: IpAddr, dst: IpAddr) -> Result<Received, PacketError> {
    let Some(header) = payload.get(..HEADER_LEN) else {
        return Err(PacketError::Truncated("shorter than the VRRP header"));
    };
    let version = header[0] >> 4;
    if version != 3 {
        return Err(PacketError::WrongVersion(version));
    }
    let kind = header[0] & 0x0f;
    if kind != 1 {
        return Err(PacketError::WrongType(kind));
    }
    let vrid = header[1];
    let priority = header[2];
    let count = usize::from(header[3]);
    let interval_cs = u16::from_be_bytes([header[4], header[5]]) & MAX_INTERVAL_CS;
    let got = u16::from_be_bytes([header[6], header[7]]);

    let address_len = match src {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    };
    let expected_len = HEADER_LEN + count * address_len;
    if payload.len() < expected_len {
        return Err(PacketError::Truncated(
            "shorter than its address count says",
        ));
    }
    if payload.len() > expected_len {
        return Err(PacketError::Invalid("bytes after the address list"));
    }
    let expected = vrrp_checksum(payload, src, dst);
    if got != expected {
        return Err(PacketError::BadChecksum { got, expected });
    }
    if vrid == 0 {
        return Err(PacketError::Invalid("VRID 0"));
    }
    if interval_cs == 0 {
        return Err(PacketError::Invalid("advertisement interval 0"));
    }
    if count == 0 {
        return Err(PacketError::Invalid("no addresses"));
    }
    let addresses = payload[HEADER_LEN..]
        .chunks_exact(address_len)
        .map(|chunk| match src {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3])),
            IpAddr::V6(_) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(chunk);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        })
        .collect();
    Ok(Received {
        src,
        dst,
        advert: Advertisement {
            vrid,
            priority,
            interval_cs,
            addresses,
        },
    })
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;

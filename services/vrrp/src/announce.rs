//! Frames a new master sends so neighbours update their caches at once.
//!
//! Gratuitous ARP (Ethernet + ARP, 60 bytes with padding):
//!
//! ```text
//! dst ff:ff:ff:ff:ff:ff | src <mac> | ethertype 0806
//! htype 1 | ptype 0800 | hlen 6 | plen 4 | oper 1 (request)
//! sha <mac> | spa <vip> | tha 00:00:00:00:00:00 | tpa <vip> | 18 zero bytes of padding
//! ```
//!
//! Unsolicited neighbour advertisement (ICMPv6 message, 32 bytes; the kernel adds the IPv6
//! header for `src` → `ff02::1`, hop limit 255):
//!
//! ```text
//! type 136 | code 0 | checksum
//! R S O flags (only O set) + 29 reserved bits
//! target address (16 bytes)
//! option type 2 (target link-layer address) | length 1 (8 bytes) | <mac>
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{Checksum, pseudo_header_v6};

/// Shortest Ethernet frame without the FCS; shorter frames are padded with zeros.
pub const MIN_FRAME_LEN: usize = 60;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv6 all-nodes multicast group, the destination of unsolicited NAs.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ICMPv6 type of a neighbour advertisement.
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// IP protocol / next header number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// Neighbour advertisement flag: the sender is a router.
pub const NA_FLAG_ROUTER: u8 = 0x80;
/// Neighbour advertisement flag: answer to a solicitation (never set when unsolicited).
pub const NA_FLAG_SOLICITED: u8 = 0x40;
/// Neighbour advertisement flag: replace the cached link-layer address.
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

/// The virtual router MAC `00:00:5e:00:01:<vrid>` (IPv4) of RFC 5798 section 7.3.
pub fn virtual_mac_v4(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// The virtual router MAC `00:00:5e:00:02:<vrid>` (IPv6).
pub fn virtual_mac_v6(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x02, vrid]
}

/// A complete Ethernet frame (destination broadcast, ethertype 0x0806) carrying a gratuitous
/// ARP request for `ip` from `mac`, for an `AF_PACKET` socket.
///
/// The target hardware address is all zeros, as RFC 5227 section 2.3 asks for ARP
/// announcements and as the Linux kernel's own gratuitous ARP sends it (keepalived 2.2.7 and
/// iputils `arping -U` put the broadcast address there; receivers ignore the field in a
/// request). The frame is padded to the 60-byte Ethernet minimum.
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MIN_FRAME_LEN);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6, plen 4, oper 1 (request).
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    frame.resize(MIN_FRAME_LEN, 0);
    frame
}

/// An ICMPv6 unsolicited neighbour advertisement for `target` (override flag set, target
/// link-layer address option `mac`), checksum computed for `src` → `ff02::1`; sent on an
/// ICMPv6 raw socket with hop limit 255.
///
/// The router flag is clear; see [`unsolicited_na_with_router`] for masters that route.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, src: Ipv6Addr) -> Vec<u8> {
    unsolicited_na_with_router(mac, target, src, false)
}

/// [`unsolicited_na`] with the router flag chosen by the caller.
///
/// RFC 4861 7.2.5: a host that sees the flag go from set to clear for a neighbour removes it
/// from its default router list, so a master whose VIP is a hosts' default gateway (IPv6
/// forwarding on) should set it, as keepalived does when forwarding is enabled.
pub fn unsolicited_na_with_router(
    mac: [u8; 6],
    target: Ipv6Addr,
    src: Ipv6Addr,
    router: bool,
) -> Vec<u8> {
    let flags = if router {
        NA_FLAG_OVERRIDE | NA_FLAG_ROUTER
    } else {
        NA_FLAG_OVERRIDE
    };
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0]);
    msg.extend_from_slice(&[flags, 0, 0, 0]);
    msg.extend_from_slice(&target.octets());
    // Option 2 (target link-layer address), length 1 (in units of 8 bytes).
    msg.extend_from_slice(&[2, 1]);
    msg.extend_from_slice(&mac);
    let mut sum = Checksum::new();
    sum.add(&pseudo_header_v6(src, ALL_NODES, msg.len(), IPPROTO_ICMPV6));
    sum.add(&msg);
    msg[2..4].copy_from_slice(&sum.finish().to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn virtual_macs() {
        assert_eq!(virtual_mac_v4(7), [0, 0, 0x5e, 0, 1, 7]);
        assert_eq!(virtual_mac_v6(255), [0, 0, 0x5e, 0, 2, 255]);
    }

    #[test]
    fn gratuitous_arp_bytes() {
        let frame = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, 10));
        let mut expected = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // src
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet/IPv4 request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // sha
            192, 0, 2, 10, // spa
            0, 0, 0, 0, 0, 0, // tha
            192, 0, 2, 10, // tpa
        ];
        expected.resize(60, 0);
        assert_eq!(frame, expected);
    }

    /// Sums the pseudo-header and the message including its checksum: a correct message sums
    /// to 0xffff, i.e. `finish()` gives 0.
    fn verifies(msg: &[u8], src: Ipv6Addr) -> bool {
        let mut sum = Checksum::new();
        sum.add(&pseudo_header_v6(src, ALL_NODES, msg.len(), IPPROTO_ICMPV6));
        sum.add(msg);
        sum.finish() == 0
    }

    #[test]
    fn unsolicited_na_layout_and_checksum() {
        let target: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let msg = unsolicited_na(MAC, target, src);
        assert_eq!(msg.len(), 32);
        assert_eq!(&msg[..2], &[136, 0]);
        assert_eq!(&msg[4..8], &[0x20, 0, 0, 0], "only the override flag");
        assert_eq!(&msg[8..24], &target.octets());
        assert_eq!(&msg[24..26], &[2, 1]);
        assert_eq!(&msg[26..32], &MAC);
        assert!(verifies(&msg, src));
        // The checksum depends on the source: another source does not verify.
        assert!(!verifies(&msg, "fe80::2".parse().unwrap()));
    }

    #[test]
    fn unsolicited_na_router_flag() {
        let target: Ipv6Addr = "fe80::5e:1".parse().unwrap();
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let msg = unsolicited_na_with_router(MAC, target, src, true);
        assert_eq!(msg[4], 0xa0);
        assert!(verifies(&msg, src));
        assert_ne!(msg, unsolicited_na(MAC, target, src));
    }

    /// The checksum equals a straight-line sum of the pseudo-header (fe80::1 → ff02::1,
    /// length 32, next header 58) and the message words written out by hand.
    #[test]
    fn unsolicited_na_known_checksum() {
        let msg = unsolicited_na(
            [0, 0, 0x5e, 0, 2, 1],
            "2001:db8::1".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        );
        let got = u16::from_be_bytes([msg[2], msg[3]]);
        assert_eq!(got, expected_na_checksum());
    }

    /// Independent straight-line computation of the same checksum (plain 32-bit sum of the
    /// words, folded) so a bug in [`Checksum`] does not hide itself.
    fn expected_na_checksum() -> u16 {
        let words: &[u32] = &[
            // src fe80::1
            0xfe80, 0, 0, 0, 0, 0, 0, 1, //
            // dst ff02::1
            0xff02, 0, 0, 0, 0, 0, 0, 1, //
            // length 32, next header 58
            0, 32, 0, 58, //
            // type/code, flags
            0x8800, 0x2000, 0, //
            // target 2001:db8::1
            0x2001, 0x0db8, 0, 0, 0, 0, 0, 1, //
            // option, mac
            0x0201, 0x0000, 0x5e00, 0x0201,
        ];
        let mut sum: u32 = words.iter().sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}

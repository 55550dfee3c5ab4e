//! Frames a new master sends so neighbours update their caches at once.

use std::net::{Ipv4Addr, Ipv6Addr};

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
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let _ = (mac, ip);
    todo!()
}

/// An ICMPv6 unsolicited neighbour advertisement for `target` (override flag set, target
/// link-layer address option `mac`), checksum computed for `src` → `ff02::1`; sent on an
/// ICMPv6 raw socket with hop limit 255.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr, src: Ipv6Addr) -> Vec<u8> {
    let _ = (mac, target, src);
    todo!()
}

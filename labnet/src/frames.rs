//! What the bridge capture understands of an Ethernet frame (no I/O): gratuitous ARP and
//! VRRP advertisements over IPv4.

use std::net::{IpAddr, Ipv4Addr};

/// A frame the capture keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// An ARP request or reply whose sender and target IP are equal (a gratuitous ARP).
    Garp {
        /// The announced address.
        ip: IpAddr,
        /// Sender hardware address.
        mac: [u8; 6],
    },
    /// A VRRP packet over IPv4 (any version; fields as sent, unchecked).
    Vrrp {
        /// IP source.
        src: IpAddr,
        /// IP TTL.
        ttl: u8,
        /// VRRP version nibble.
        version: u8,
        /// Virtual router id.
        vrid: u8,
        /// Priority (0 = the master resigns).
        priority: u8,
    },
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPPROTO_VRRP: u8 = 112;

/// Classifies one Ethernet frame; `None` for anything else.
pub fn classify(frame: &[u8]) -> Option<Seen> {
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let mut at = 14;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        at = 18;
    }
    let payload = frame.get(at..)?;
    match ethertype {
        ETHERTYPE_ARP => garp(payload),
        ETHERTYPE_IPV4 => vrrp_v4(payload),
        _ => None,
    }
}

fn garp(p: &[u8]) -> Option<Seen> {
    // htype 1, ptype IPv4, hlen 6, plen 4, op 1|2.
    if p.get(0..6)? != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let op = u16::from_be_bytes([*p.get(6)?, *p.get(7)?]);
    if op != 1 && op != 2 {
        return None;
    }
    let mac: [u8; 6] = p.get(8..14)?.try_into().ok()?;
    let spa: [u8; 4] = p.get(14..18)?.try_into().ok()?;
    let tpa: [u8; 4] = p.get(24..28)?.try_into().ok()?;
    (spa == tpa).then_some(Seen::Garp {
        ip: IpAddr::V4(Ipv4Addr::from(spa)),
        mac,
    })
}

fn vrrp_v4(p: &[u8]) -> Option<Seen> {
    let ihl = usize::from(*p.first()? & 0x0f) * 4;
    if *p.first()? >> 4 != 4 || ihl < 20 || *p.get(9)? != IPPROTO_VRRP {
        return None;
    }
    let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
    let v = p.get(ihl..)?;
    Some(Seen::Vrrp {
        src: IpAddr::V4(Ipv4Addr::from(src)),
        ttl: *p.get(8)?,
        version: *v.first()? >> 4,
        vrid: *v.get(1)?,
        priority: *v.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn arp(op: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&op.to_be_bytes());
        p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&spa);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&tpa);
        p
    }

    #[test]
    fn gratuitous_arp_requests_and_replies_are_recognised() {
        let vip = [192, 0, 2, 100];
        for op in [1, 2] {
            assert_eq!(
                classify(&eth(ETHERTYPE_ARP, &arp(op, vip, vip))),
                Some(Seen::Garp {
                    ip: "192.0.2.100".parse().unwrap(),
                    mac: [2, 0, 0, 0, 0, 1]
                })
            );
        }
        // An ordinary who-has is not gratuitous.
        assert_eq!(
            classify(&eth(ETHERTYPE_ARP, &arp(1, [192, 0, 2, 1], vip))),
            None
        );
    }

    #[test]
    fn vrrp_fields_are_read_from_an_ipv4_frame() {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0];
        ip.extend_from_slice(&[192, 0, 2, 11, 224, 0, 0, 18]);
        ip.extend_from_slice(&[0x31, 51, 0, 1, 0, 10, 0, 0]);
        assert_eq!(
            classify(&eth(ETHERTYPE_IPV4, &ip)),
            Some(Seen::Vrrp {
                src: "192.0.2.11".parse().unwrap(),
                ttl: 255,
                version: 3,
                vrid: 51,
                priority: 0
            })
        );
        ip[9] = 6;
        assert_eq!(classify(&eth(ETHERTYPE_IPV4, &ip)), None);
        assert_eq!(classify(&[0; 10]), None);
    }
}

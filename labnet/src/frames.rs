//! What the bridge capture understands of an Ethernet frame (no I/O): gratuitous ARP,
//! VRRP advertisements over IPv4 and IPv6, and IPv6 neighbour advertisements.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// A VRRP packet over IPv4 or IPv6 (any version; fields as sent, unchecked).
    Vrrp {
        /// IP source.
        src: IpAddr,
        /// IP destination: the group (`224.0.0.18`, `ff02::12`) or a unicast peer.
        dst: IpAddr,
        /// IPv4 TTL or IPv6 hop limit.
        ttl: u8,
        /// VRRP version nibble.
        version: u8,
        /// Virtual router id.
        vrid: u8,
        /// Priority (0 = the master resigns).
        priority: u8,
    },
    /// An ICMPv6 neighbour advertisement (solicited or not) directly after the IPv6 header.
    Na {
        /// IPv6 source.
        src: IpAddr,
        /// IPv6 destination (`ff02::1` for an unsolicited NA).
        dst: IpAddr,
        /// The advertised address.
        target: IpAddr,
        /// The target link-layer address option, if present.
        lladdr: Option<[u8; 6]>,
        /// Ethernet source address of the frame.
        eth_src: [u8; 6],
        /// Solicited flag (clear in an unsolicited NA).
        solicited: bool,
        /// Override flag.
        override_flag: bool,
        /// Router flag.
        router: bool,
    },
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
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
        ETHERTYPE_IPV6 => {
            let eth_src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
            ipv6(payload, eth_src)
        }
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
    let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
    let v = p.get(ihl..)?;
    Some(Seen::Vrrp {
        src: IpAddr::V4(Ipv4Addr::from(src)),
        dst: IpAddr::V4(Ipv4Addr::from(dst)),
        ttl: *p.get(8)?,
        version: *v.first()? >> 4,
        vrid: *v.get(1)?,
        priority: *v.get(2)?,
    })
}

/// VRRP or a neighbour advertisement directly after the fixed IPv6 header (what VRRP
/// daemons send: no extension headers).
fn ipv6(p: &[u8], eth_src: [u8; 6]) -> Option<Seen> {
    if *p.first()? >> 4 != 6 {
        return None;
    }
    let next = *p.get(6)?;
    let hop_limit = *p.get(7)?;
    let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    );
    let body = p.get(40..)?;
    match next {
        IPPROTO_VRRP => Some(Seen::Vrrp {
            src,
            dst,
            ttl: hop_limit,
            version: *body.first()? >> 4,
            vrid: *body.get(1)?,
            priority: *body.get(2)?,
        }),
        IPPROTO_ICMPV6 if *body.first()? == ND_NEIGHBOR_ADVERT => {
            let flags = *body.get(4)?;
            let target: [u8; 16] = body.get(8..24)?.try_into().ok()?;
            Some(Seen::Na {
                src,
                dst,
                target: IpAddr::V6(Ipv6Addr::from(target)),
                lladdr: target_lladdr(body.get(24..)?),
                eth_src,
                router: flags & 0x80 != 0,
                solicited: flags & 0x40 != 0,
                override_flag: flags & 0x20 != 0,
            })
        }
        _ => None,
    }
}

/// The target link-layer address option (type 2) among NDP options.
fn target_lladdr(mut opts: &[u8]) -> Option<[u8; 6]> {
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == 2 && len == 8 {
            return opts.get(2..8)?.try_into().ok();
        }
        opts = &opts[len..];
    }
    None
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
                dst: "224.0.0.18".parse().unwrap(),
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

    fn ipv6_frame(next: u8, src: &str, dst: &str, body: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        ip.extend_from_slice(&[next, 255]);
        ip.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(body);
        eth(ETHERTYPE_IPV6, &ip)
    }

    #[test]
    fn vrrp_fields_are_read_from_an_ipv6_frame() {
        let f = ipv6_frame(112, "fe80::1", "ff02::12", &[0x31, 52, 200, 1, 0, 50, 0, 0]);
        assert_eq!(
            classify(&f),
            Some(Seen::Vrrp {
                src: "fe80::1".parse().unwrap(),
                dst: "ff02::12".parse().unwrap(),
                ttl: 255,
                version: 3,
                vrid: 52,
                priority: 200
            })
        );
        assert_eq!(
            classify(&ipv6_frame(17, "fe80::1", "ff02::12", &[0; 8])),
            None
        );
    }

    #[test]
    fn neighbour_advertisements_are_read_with_flags_and_lladdr() {
        // The fixture bytes of an unsolicited NA: type 136, flags O, target, option 2.
        let mut na = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        na.extend_from_slice(&"2001:db8::100".parse::<Ipv6Addr>().unwrap().octets());
        na.extend_from_slice(&[2, 1, 0, 0, 0x5e, 0, 2, 51]);
        let f = ipv6_frame(58, "fe80::1", "ff02::1", &na);
        assert_eq!(
            classify(&f),
            Some(Seen::Na {
                src: "fe80::1".parse().unwrap(),
                dst: "ff02::1".parse().unwrap(),
                target: "2001:db8::100".parse().unwrap(),
                lladdr: Some([0, 0, 0x5e, 0, 2, 51]),
                eth_src: [2, 0, 0, 0, 0, 1],
                solicited: false,
                override_flag: true,
                router: false,
            })
        );
        // Solicited + router flags, no option.
        na[4] = 0xc0;
        na.truncate(24);
        match classify(&ipv6_frame(58, "fe80::1", "fe80::2", &na)) {
            Some(Seen::Na {
                solicited: true,
                router: true,
                override_flag: false,
                lladdr: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // A neighbour solicitation (135) is not kept; a bad option length ends the scan.
        na[0] = 135;
        assert_eq!(classify(&ipv6_frame(58, "fe80::1", "ff02::1", &na)), None);
        assert_eq!(target_lladdr(&[2, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}

//! Hand-made VRRP-over-IPv4 datagrams, good and deliberately broken, for tests that poke
//! a daemon from the wire (no I/O). Independent of the daemon's own codec on purpose.

use std::net::Ipv4Addr;

/// VRRP's IP protocol number.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 VRRP multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The fields of a VRRP advertisement and its IP header, each settable to a wrong value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAdvert {
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// IP TTL (RFC 5798: must be 255).
    pub ttl: u8,
    /// VRRP version nibble (3).
    pub version: u8,
    /// VRRP type nibble (1 = advertisement).
    pub kind: u8,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Max advert interval, centiseconds (12 bits).
    pub interval_cs: u16,
    /// Virtual addresses.
    pub addrs: Vec<Ipv4Addr>,
    /// Added to the correct checksum (0 keeps it right).
    pub checksum_delta: u16,
    /// Bytes of the VRRP part to keep (`None`: all).
    pub truncate_to: Option<usize>,
}

impl RawAdvert {
    /// A valid VRRPv3 advertisement from `src` to 224.0.0.18.
    pub fn valid(
        src: Ipv4Addr,
        vrid: u8,
        priority: u8,
        interval_cs: u16,
        addrs: &[Ipv4Addr],
    ) -> Self {
        RawAdvert {
            src,
            dst: GROUP_V4,
            ttl: 255,
            version: 3,
            kind: 1,
            vrid,
            priority,
            interval_cs,
            addrs: addrs.to_vec(),
            checksum_delta: 0,
            truncate_to: None,
        }
    }

    /// The VRRP part: header, addresses, checksum over the IPv4 pseudo-header (RFC 5798
    /// section 5.2.8), then the corruptions asked for.
    pub fn vrrp_bytes(&self) -> Vec<u8> {
        let mut v = vec![
            (self.version << 4) | (self.kind & 0x0f),
            self.vrid,
            self.priority,
            u8::try_from(self.addrs.len()).unwrap_or(u8::MAX),
        ];
        v.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            v.extend_from_slice(&a.octets());
        }
        let mut pseudo = Vec::with_capacity(12 + v.len());
        pseudo.extend_from_slice(&self.src.octets());
        pseudo.extend_from_slice(&self.dst.octets());
        pseudo.extend_from_slice(&[0, IPPROTO_VRRP]);
        pseudo.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_be_bytes());
        pseudo.extend_from_slice(&v);
        let sum = checksum(&pseudo).wrapping_add(self.checksum_delta);
        v[6..8].copy_from_slice(&sum.to_be_bytes());
        if let Some(n) = self.truncate_to {
            v.truncate(n);
        }
        v
    }

    /// The whole IPv4 datagram (20-byte header, checksum filled in) for a raw socket with
    /// the header included.
    pub fn datagram(&self) -> Vec<u8> {
        let vrrp = self.vrrp_bytes();
        let total = u16::try_from(20 + vrrp.len()).unwrap_or(u16::MAX);
        let mut ip = vec![0x45, 0xc0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 0, self.ttl, IPPROTO_VRRP, 0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&vrrp);
        ip
    }
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 100)
    }

    #[test]
    fn valid_advert_checksums_to_zero_with_its_pseudo_header() {
        let a = RawAdvert::valid(Ipv4Addr::new(192, 0, 2, 11), 51, 150, 10, &[vip()]);
        let v = a.vrrp_bytes();
        assert_eq!(&v[..6], &[0x31, 51, 150, 1, 0, 10]);
        assert_eq!(v.len(), 12);
        let mut pseudo = vec![192, 0, 2, 11, 224, 0, 0, 18, 0, 112, 0, 12];
        pseudo.extend_from_slice(&v);
        assert_eq!(checksum(&pseudo), 0);
        let d = a.datagram();
        assert_eq!(d.len(), 32);
        assert_eq!(checksum(&d[..20]), 0, "IP header checksum");
        assert_eq!((d[8], d[9]), (255, 112));
    }

    #[test]
    fn corruptions_change_only_what_they_say() {
        let good = RawAdvert::valid(Ipv4Addr::new(192, 0, 2, 11), 51, 150, 10, &[vip()]);
        let bad_sum = RawAdvert {
            checksum_delta: 1,
            ..good.clone()
        };
        assert_ne!(good.vrrp_bytes()[6..8], bad_sum.vrrp_bytes()[6..8]);
        assert_eq!(good.vrrp_bytes()[..6], bad_sum.vrrp_bytes()[..6]);
        let short = RawAdvert {
            truncate_to: Some(5),
            ..good.clone()
        };
        assert_eq!(short.datagram().len(), 25);
        let v2 = RawAdvert {
            version: 2,
            ..good.clone()
        };
        assert_eq!(v2.vrrp_bytes()[0], 0x21);
        let ttl = RawAdvert { ttl: 64, ..good };
        assert_eq!(ttl.datagram()[8], 64);
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2 (one's complement 0x220d).
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
    }
}

//! Structured round trip: an advertisement built from the input, encoded, must decode to
//! itself (interval cut to its 12 bits) whenever its fields are allowed, and must be rejected
//! otherwise.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cairn_vrrp::packet::{Advertisement, decode_ipv4, decode_ipv6, ipv4_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [family, vrid, priority, i0, i1, rest @ ..] = data else {
        return;
    };
    let interval_cs = u16::from_be_bytes([*i0, *i1]);
    let v6 = family & 1 == 1;
    let size = if v6 { 16 } else { 4 };
    let (head, body) = rest.split_at(rest.len().min(32));
    let addresses: Vec<IpAddr> = body
        .chunks_exact(size)
        .take(255)
        .map(|c| {
            if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            }
        })
        .collect();
    let advert = Advertisement {
        vrid: *vrid,
        priority: *priority,
        interval_cs,
        addresses,
    };
    let mut expected = advert.clone();
    expected.interval_cs &= 0x0fff;
    let valid = expected.vrid != 0 && expected.interval_cs != 0 && !expected.addresses.is_empty();
    let mut ends = [0u8; 32];
    ends[..head.len()].copy_from_slice(head);
    let decoded = if v6 {
        let mut s = [0u8; 16];
        s.copy_from_slice(&ends[..16]);
        let mut d = [0u8; 16];
        d.copy_from_slice(&ends[16..]);
        let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
        decode_ipv6(&advert.encode(IpAddr::V6(s), IpAddr::V6(d)), s, d, 255)
    } else {
        let s = Ipv4Addr::new(ends[0], ends[1], ends[2], ends[3]);
        let d = Ipv4Addr::new(ends[4], ends[5], ends[6], ends[7]);
        let payload = advert.encode(IpAddr::V4(s), IpAddr::V4(d));
        decode_ipv4(&ipv4_datagram(s, d, 255, &payload))
    };
    match decoded {
        Ok(received) => {
            assert!(valid, "accepted an out-of-range advert {advert:?}");
            assert_eq!(received.advert, expected);
        }
        Err(error) => assert!(!valid, "rejected {advert:?}: {error}"),
    }
});

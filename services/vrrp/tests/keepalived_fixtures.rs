//! Packets captured from keepalived 2.2.7 (Debian bookworm) in network namespaces
//! (`tests/fixtures/keepalived/capture.sh` with `keepalived.conf` next to it): our decoder
//! accepts its adverts, our encoder reproduces them byte for byte, and our announcement
//! frames match its gratuitous ARPs and unsolicited NAs.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cairn_vrrp::announce::{gratuitous_arp, unsolicited_na};
use cairn_vrrp::packet::{MULTICAST_V4, MULTICAST_V6, decode_ipv4, decode_ipv6};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keepalived/",
            $name
        ))
        .as_slice()
    };
}

/// The MAC of the capturing namespace's interface (set by capture.sh).
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn ipv4_adverts_decode_and_re_encode_identically() {
    for (bytes, priority) in [
        (fixture!("v4-advert-prio150.bin"), 150),
        (fixture!("v4-advert-prio0.bin"), 0),
    ] {
        let received = decode_ipv4(bytes).unwrap();
        assert_eq!(received.src, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(received.dst, IpAddr::V4(MULTICAST_V4));
        assert_eq!(received.advert.vrid, 51);
        assert_eq!(received.advert.priority, priority);
        assert_eq!(received.advert.interval_cs, 100);
        assert_eq!(
            received.advert.addresses,
            vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 101)),
            ]
        );
        // keepalived's checksum is RFC 5798's (pseudo-header included): ours is identical.
        assert_eq!(
            received.advert.encode(received.src, received.dst),
            &bytes[20..]
        );
    }
}

/// Splits a captured IPv6 packet into what an IPv6 raw socket hands the daemon.
fn ipv6_parts(packet: &[u8]) -> (&[u8], Ipv6Addr, Ipv6Addr, u8) {
    let src: [u8; 16] = packet[8..24].try_into().unwrap();
    let dst: [u8; 16] = packet[24..40].try_into().unwrap();
    (&packet[40..], src.into(), dst.into(), packet[7])
}

#[test]
fn ipv6_adverts_decode_and_re_encode_identically() {
    for (bytes, priority) in [
        (fixture!("v6-advert-prio200.bin"), 200),
        (fixture!("v6-advert-prio0.bin"), 0),
    ] {
        let (payload, src, dst, hop_limit) = ipv6_parts(bytes);
        assert_eq!(dst, MULTICAST_V6);
        let received = decode_ipv6(payload, src, dst, hop_limit).unwrap();
        assert_eq!(received.src, IpAddr::V6(v6("fe80::ff:fe00:1")));
        assert_eq!(received.advert.vrid, 52);
        assert_eq!(received.advert.priority, priority);
        assert_eq!(received.advert.interval_cs, 50);
        assert_eq!(
            received.advert.addresses,
            vec![
                IpAddr::V6(v6("fe80::5e:52")),
                IpAddr::V6(v6("2001:db8::52"))
            ]
        );
        assert_eq!(received.advert.encode(received.src, received.dst), payload);
    }
}

#[test]
fn ipv6_advert_with_a_wrong_source_fails_the_checksum() {
    let (payload, _, dst, hop_limit) = ipv6_parts(fixture!("v6-advert-prio200.bin"));
    assert!(decode_ipv6(payload, v6("fe80::1"), dst, hop_limit).is_err());
}

#[test]
fn gratuitous_arp_matches_keepalived_except_target_mac_and_padding() {
    for (bytes, last) in [
        (fixture!("garp-192.0.2.100.bin"), 100),
        (fixture!("garp-192.0.2.101.bin"), 101),
    ] {
        let ours = gratuitous_arp(MAC, Ipv4Addr::new(192, 0, 2, last));
        assert_eq!(bytes.len(), 42, "keepalived leaves padding to the NIC");
        assert_eq!(ours.len(), 60);
        // Ethernet header, ARP header, sender MAC and IP.
        assert_eq!(ours[..32], bytes[..32]);
        // Target MAC: keepalived says broadcast, we say zero (RFC 5227); both are ignored.
        assert_eq!(bytes[32..38], [0xff; 6]);
        assert_eq!(ours[32..38], [0; 6]);
        // Target IP.
        assert_eq!(ours[38..42], bytes[38..42]);
        assert!(ours[42..].iter().all(|&b| b == 0));
    }
}

#[test]
fn unsolicited_na_matches_keepalived_byte_for_byte() {
    for (frame, target) in [
        (
            fixture!("na-fe8000000000000000000000005e0052.bin"),
            "fe80::5e:52",
        ),
        (
            fixture!("na-20010db8000000000000000000000052.bin"),
            "2001:db8::52",
        ),
    ] {
        let ip = &frame[14..];
        let (icmp, src, dst, hop_limit) = ipv6_parts(ip);
        assert_eq!(dst, v6("ff02::1"));
        assert_eq!(hop_limit, 255);
        // keepalived sends from the VIP itself.
        assert_eq!(src, v6(target));
        assert_eq!(unsolicited_na(MAC, v6(target), src), icmp);
    }
}

use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn advert_v4() -> Advertisement {
    Advertisement {
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addresses: vec![IpAddr::V4(v4("192.0.2.10")), IpAddr::V4(v4("192.0.2.11"))],
    }
}

fn advert_v6() -> Advertisement {
    Advertisement {
        vrid: 7,
        priority: 200,
        interval_cs: 25,
        addresses: vec![IpAddr::V6(v6("fe80::5e:1")), IpAddr::V6(v6("2001:db8::10"))],
    }
}

const SRC4: &str = "192.0.2.1";

fn datagram_v4(advert: &Advertisement) -> Vec<u8> {
    let payload = advert.encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4));
    ipv4_datagram(v4(SRC4), MULTICAST_V4, TTL, &payload)
}

/// Recomputes the VRRP checksum of an IPv4 datagram after a test edited the payload.
fn fix_checksum_v4(datagram: &mut [u8]) {
    let src = IpAddr::V4(Ipv4Addr::new(
        datagram[12],
        datagram[13],
        datagram[14],
        datagram[15],
    ));
    let dst = IpAddr::V4(Ipv4Addr::new(
        datagram[16],
        datagram[17],
        datagram[18],
        datagram[19],
    ));
    let sum = vrrp_checksum(&datagram[20..], src, dst);
    datagram[26..28].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn encode_v4_exact_bytes() {
    let bytes = advert_v4().encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4));
    // Checksum from the words (summed outside Rust): pseudo-header c000 0201 e000 0012 0070
    // 0010, message 3133 6402 0064 c000 020a c000 020b; sum 0x3bc41 folds to 0xbc44, and
    // !0xbc44 = 0x43bb.
    assert_eq!(
        bytes,
        vec![
            0x31, 51, 100, 2, 0x00, 100, 0x43, 0xbb, 192, 0, 2, 10, 192, 0, 2, 11
        ]
    );
}

#[test]
fn encode_masks_interval_and_caps_count() {
    let mut advert = advert_v4();
    advert.interval_cs = 0xf123;
    advert.addresses = (0..300u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i)))
        .collect();
    let bytes = advert.encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4));
    assert_eq!(bytes[3], 255);
    assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), 0x0123);
    assert_eq!(bytes.len(), HEADER_LEN + 255 * 4);
}

#[test]
fn v4_round_trip() {
    let received = decode_ipv4(&datagram_v4(&advert_v4())).unwrap();
    assert_eq!(received.src, IpAddr::V4(v4(SRC4)));
    assert_eq!(received.dst, IpAddr::V4(MULTICAST_V4));
    assert_eq!(received.advert, advert_v4());
}

#[test]
fn v6_round_trip_and_checksum_binds_addresses() {
    let src = v6("fe80::1");
    let payload = advert_v6().encode(IpAddr::V6(src), IpAddr::V6(MULTICAST_V6));
    assert_eq!(payload.len(), HEADER_LEN + 32);
    let received = decode_ipv6(&payload, src, MULTICAST_V6, 255).unwrap();
    assert_eq!(received.advert, advert_v6());
    assert_eq!(received.src, IpAddr::V6(src));
    // Same bytes from another source: the pseudo-header differs, so the checksum fails.
    assert!(matches!(
        decode_ipv6(&payload, v6("fe80::2"), MULTICAST_V6, 255),
        Err(PacketError::BadChecksum { .. })
    ));
}

#[test]
fn v6_checksum_uses_32_bit_length_and_next_header_112() {
    let src = v6("fe80::1");
    let payload = advert_v6().encode(IpAddr::V6(src), IpAddr::V6(MULTICAST_V6));
    let mut sum = crate::checksum::Checksum::new();
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&MULTICAST_V6.octets());
    pseudo.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 112]);
    sum.add(&pseudo);
    sum.add(&payload);
    assert_eq!(
        sum.finish(),
        0,
        "pseudo-header plus message sums to all ones"
    );
}

#[test]
fn unicast_destination_is_part_of_the_checksum() {
    let dst = v4("192.0.2.2");
    let payload = advert_v4().encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(dst));
    let ok = ipv4_datagram(v4(SRC4), dst, TTL, &payload);
    assert_eq!(decode_ipv4(&ok).unwrap().dst, IpAddr::V4(dst));
    let wrong = ipv4_datagram(v4(SRC4), MULTICAST_V4, TTL, &payload);
    assert!(matches!(
        decode_ipv4(&wrong),
        Err(PacketError::BadChecksum { .. })
    ));
}

#[test]
fn wrong_ttl() {
    let payload = advert_v4().encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4));
    let datagram = ipv4_datagram(v4(SRC4), MULTICAST_V4, 254, &payload);
    assert_eq!(decode_ipv4(&datagram), Err(PacketError::WrongTtl(254)));
    let src = v6("fe80::1");
    let payload = advert_v6().encode(IpAddr::V6(src), IpAddr::V6(MULTICAST_V6));
    assert_eq!(
        decode_ipv6(&payload, src, MULTICAST_V6, 1),
        Err(PacketError::WrongTtl(1))
    );
}

#[test]
fn ip_header_errors() {
    let good = datagram_v4(&advert_v4());
    assert!(matches!(
        decode_ipv4(&good[..19]),
        Err(PacketError::Truncated(_))
    ));

    let mut bad = good.clone();
    bad[0] = 0x65;
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));

    let mut bad = good.clone();
    bad[0] = 0x44; // IHL 16 bytes
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));

    let mut bad = good.clone();
    bad[0] = 0x4f; // IHL 60 bytes, datagram is 36
    assert!(matches!(decode_ipv4(&bad), Err(PacketError::Truncated(_))));

    let mut bad = good.clone();
    bad[9] = 17;
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));

    let mut bad = good.clone();
    bad[6] = 0x20; // more fragments
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));

    // Total length larger than what arrived, smaller than the datagram, smaller than the header.
    let mut bad = good.clone();
    bad[3] += 1;
    assert!(matches!(decode_ipv4(&bad), Err(PacketError::Truncated(_))));
    let mut bad = good.clone();
    bad[3] -= 1;
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));
    let mut bad = good.clone();
    bad[2] = 0;
    bad[3] = 10;
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadIpHeader(_))
    ));
}

#[test]
fn ip_options_are_skipped() {
    let payload = advert_v4().encode(IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4));
    let plain = ipv4_datagram(v4(SRC4), MULTICAST_V4, TTL, &payload);
    // Insert a 4-byte option (router alert 94 04 00 00) and fix IHL and total length.
    let mut with_options = plain[..20].to_vec();
    with_options[0] = 0x46;
    let total = u16::try_from(plain.len() + 4).unwrap();
    with_options[2..4].copy_from_slice(&total.to_be_bytes());
    with_options.extend_from_slice(&[0x94, 0x04, 0, 0]);
    with_options.extend_from_slice(&payload);
    assert_eq!(decode_ipv4(&with_options).unwrap().advert, advert_v4());
}

#[test]
fn vrrp_header_errors() {
    let good = datagram_v4(&advert_v4());

    let mut bad = good.clone();
    bad[20] = 0x21;
    assert_eq!(decode_ipv4(&bad), Err(PacketError::WrongVersion(2)));

    let mut bad = good.clone();
    bad[20] = 0x32;
    assert_eq!(decode_ipv4(&bad), Err(PacketError::WrongType(2)));

    let mut bad = good.clone();
    bad[26] ^= 0x01;
    assert!(matches!(
        decode_ipv4(&bad),
        Err(PacketError::BadChecksum { .. })
    ));

    for (offset, value, reason) in [(21, 0, "VRID 0"), (24, 0xf0, "advertisement interval 0")] {
        let mut bad = good.clone();
        bad[offset] = value;
        if offset == 24 {
            bad[25] = 0;
        }
        fix_checksum_v4(&mut bad);
        assert_eq!(decode_ipv4(&bad), Err(PacketError::Invalid(reason)));
    }
}

#[test]
fn count_must_match_length_exactly() {
    let good = datagram_v4(&advert_v4());

    // Count says 3 but only 2 addresses follow.
    let mut short = good.clone();
    short[23] = 3;
    fix_checksum_v4(&mut short);
    assert!(matches!(
        decode_ipv4(&short),
        Err(PacketError::Truncated(_))
    ));

    // Count says 1 but 2 addresses follow.
    let mut long = good.clone();
    long[23] = 1;
    fix_checksum_v4(&mut long);
    assert!(matches!(decode_ipv4(&long), Err(PacketError::Invalid(_))));

    // Count 0 with no addresses.
    let mut empty = good[..28].to_vec();
    empty[3] = 28;
    empty[23] = 0;
    fix_checksum_v4(&mut empty);
    assert_eq!(
        decode_ipv4(&empty),
        Err(PacketError::Invalid("no addresses"))
    );

    // Every truncation of the VRRP part is an error, never a panic.
    for len in 20..good.len() {
        let mut cut = good[..len].to_vec();
        let total = u16::try_from(len).unwrap();
        cut[2..4].copy_from_slice(&total.to_be_bytes());
        assert!(decode_ipv4(&cut).is_err(), "length {len}");
    }
}

#[test]
fn reserved_bits_are_ignored_on_reception() {
    let mut datagram = datagram_v4(&advert_v4());
    datagram[24] |= 0xa0;
    fix_checksum_v4(&mut datagram);
    let received = decode_ipv4(&datagram).unwrap();
    assert_eq!(received.advert.interval_cs, 100);
}

#[test]
fn ipv6_count_uses_16_byte_addresses() {
    let src = v6("fe80::1");
    let payload = advert_v6().encode(IpAddr::V6(src), IpAddr::V6(MULTICAST_V6));
    // The same payload read as if it were IPv4 sized does not fit: 2 * 4 != 32.
    assert!(matches!(
        decode_payload(&payload, IpAddr::V4(v4(SRC4)), IpAddr::V4(MULTICAST_V4)),
        Err(PacketError::Invalid(_))
    ));
    assert!(matches!(
        decode_ipv6(&payload[..20], src, MULTICAST_V6, 255),
        Err(PacketError::Truncated(_))
    ));
}

#[test]
fn error_messages_name_the_problem() {
    assert_eq!(
        PacketError::BadChecksum {
            got: 0x1234,
            expected: 0xabcd
        }
        .to_string(),
        "checksum 0x1234, expected 0xabcd"
    );
    assert_eq!(
        PacketError::WrongTtl(64).to_string(),
        "TTL/hop limit 64, must be 255"
    );
}

/// A VRRPv3 advert as keepalived 2.2.7 builds it (vrrp_build_vrrp_v3: pseudo-header with
/// the multicast destination, checksum over header and addresses), written out from the
/// RFC field layout by hand: VRID 1, priority 150, one VIP 192.0.2.100, interval 100 cs,
/// from 192.0.2.5.
#[test]
fn decodes_keepalived_style_advert() {
    let mut payload = vec![0x31, 1, 150, 1, 0x00, 0x64, 0, 0, 192, 0, 2, 100];
    // Pseudo-header c000 0205 e000 0012 0070 000c; message 3101 9601 0064 0000 c000 0264.
    let words: [u32; 12] = [
        0xc000, 0x0205, 0xe000, 0x0012, 0x0070, 0x000c, 0x3101, 0x9601, 0x0064, 0x0000, 0xc000,
        0x0264,
    ];
    let mut sum: u32 = words.iter().sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(u16::try_from(sum).unwrap());
    payload[6..8].copy_from_slice(&checksum.to_be_bytes());
    let datagram = ipv4_datagram(v4("192.0.2.5"), MULTICAST_V4, TTL, &payload);
    let received = decode_ipv4(&datagram).unwrap();
    assert_eq!(received.advert.priority, 150);
    assert_eq!(
        received.advert.addresses,
        vec![IpAddr::V4(v4("192.0.2.100"))]
    );
    // And our encoder produces the identical bytes.
    assert_eq!(
        received
            .advert
            .encode(received.src, received.dst)
            .as_slice(),
        payload.as_slice()
    );
}

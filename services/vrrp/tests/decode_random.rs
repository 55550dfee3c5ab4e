//! The decoders against ~200k random and mutated-valid packets, deterministically (a fixed
//! xorshift seed), so every `cargo test` exercises the parser without nightly or cargo-fuzz.
//! Asserts: no panic, and every accepted packet re-encodes to the bytes it came from.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cairn_vrrp::packet::{
    self, Advertisement, HEADER_LEN, MULTICAST_V4, MULTICAST_V6, Received, decode_ipv4,
    decode_ipv6, ipv4_datagram, vrrp_checksum,
};

/// xorshift64* — enough randomness for mutation, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Checks one accepted packet: re-encoding gives the VRRP bytes back (reserved bits, which
/// the decoder ignores, cleared), and decoding that gives the same result.
fn check_round_trip(received: &Received, vrrp_bytes: &[u8]) {
    let encoded = received.advert.encode(received.src, received.dst);
    if vrrp_bytes[4] & 0xf0 == 0 {
        assert_eq!(encoded, vrrp_bytes, "re-encoding differs for {received:?}");
    } else {
        assert_eq!(encoded[..4], vrrp_bytes[..4]);
        assert_eq!(encoded[8..], vrrp_bytes[8..]);
    }
    let again = match (received.src, received.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => decode_ipv4(&ipv4_datagram(s, d, 255, &encoded)),
        (IpAddr::V6(s), IpAddr::V6(d)) => decode_ipv6(&encoded, s, d, 255),
        _ => panic!("mixed families in {received:?}"),
    };
    assert_eq!(again.as_ref(), Ok(received));
}

/// A valid advert of `family` with random fields.
fn random_advert(rng: &mut Rng, v6: bool) -> Advertisement {
    let count = 1 + rng.below(6);
    Advertisement {
        vrid: u8::try_from(1 + rng.below(255)).unwrap(),
        priority: rng.byte(),
        interval_cs: u16::try_from(1 + rng.below(4095)).unwrap(),
        addresses: (0..count)
            .map(|_| {
                if v6 {
                    IpAddr::V6(Ipv6Addr::from(u128::from(rng.next()) << 64 | 0x2001))
                } else {
                    IpAddr::V4(Ipv4Addr::from(u32::try_from(rng.next() >> 32).unwrap()))
                }
            })
            .collect(),
    }
}

/// Flips, overwrites, truncates or extends; sometimes recomputes the checksum so mutations
/// reach the checks behind it.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, vrrp_start: usize, src: IpAddr, dst: IpAddr) {
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            0 | 1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            2 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.byte();
            }
            3 => {
                let len = rng.below(bytes.len() + 1);
                bytes.truncate(len);
            }
            4 => {
                let extra = rng.below(20);
                bytes.extend(rng.bytes(extra));
            }
            _ => {
                // Set the count to something plausible.
                if let Some(b) = bytes.get_mut(vrrp_start + 3) {
                    *b = u8::try_from(rng.below(8)).unwrap();
                }
            }
        }
    }
    if rng.below(2) == 0 && bytes.len() >= vrrp_start + HEADER_LEN {
        let sum = vrrp_checksum(&bytes[vrrp_start..], src, dst);
        bytes[vrrp_start + 6..vrrp_start + 8].copy_from_slice(&sum.to_be_bytes());
    }
}

#[test]
fn ipv4_decoder_survives_random_and_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let mut accepted = 0u32;
    let mut rejected = 0u32;
    for round in 0..100_000 {
        let datagram = if round % 4 == 0 {
            let len = rng.below(80);
            rng.bytes(len)
        } else {
            let advert = random_advert(&mut rng, false);
            let payload = advert.encode(IpAddr::V4(src), IpAddr::V4(MULTICAST_V4));
            let mut datagram = ipv4_datagram(src, MULTICAST_V4, 255, &payload);
            if round % 4 != 1 {
                mutate(
                    &mut rng,
                    &mut datagram,
                    20,
                    IpAddr::V4(src),
                    IpAddr::V4(MULTICAST_V4),
                );
            }
            datagram
        };
        match decode_ipv4(&datagram) {
            Ok(received) => {
                accepted += 1;
                let ihl = usize::from(datagram[0] & 0x0f) * 4;
                check_round_trip(&received, &datagram[ihl..]);
            }
            Err(error) => {
                rejected += 1;
                // Every error maps to a drop reason and prints.
                let _ = cairn_vrrp::DropReason::from(&error);
                assert!(!error.to_string().is_empty());
            }
        }
    }
    eprintln!("ipv4: {accepted} accepted, {rejected} rejected");
    // The unmutated quarter alone is 25k valid packets; mutations add some more.
    assert!(accepted > 25_000, "only {accepted} accepted");
    assert!(rejected > 40_000, "only {rejected} rejected");
}

#[test]
fn ipv6_decoder_survives_random_and_mutated_input() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let mut accepted = 0u32;
    let mut rejected = 0u32;
    for round in 0..100_000 {
        let hop_limit = if round % 50 == 0 { rng.byte() } else { 255 };
        let payload = if round % 4 == 0 {
            let len = rng.below(120);
            rng.bytes(len)
        } else {
            let advert = random_advert(&mut rng, true);
            let mut payload = advert.encode(IpAddr::V6(src), IpAddr::V6(MULTICAST_V6));
            if round % 4 != 1 {
                mutate(
                    &mut rng,
                    &mut payload,
                    0,
                    IpAddr::V6(src),
                    IpAddr::V6(MULTICAST_V6),
                );
            }
            payload
        };
        match decode_ipv6(&payload, src, MULTICAST_V6, hop_limit) {
            Ok(received) => {
                accepted += 1;
                assert_eq!(hop_limit, 255);
                check_round_trip(&received, &payload);
            }
            Err(error) => {
                rejected += 1;
                assert_ne!(
                    cairn_vrrp::DropReason::from(&error),
                    cairn_vrrp::DropReason::BadIpHeader,
                    "IPv6 has no IP header to reject: {error}"
                );
            }
        }
    }
    eprintln!("ipv6: {accepted} accepted, {rejected} rejected");
    assert!(accepted > 24_000, "only {accepted} accepted");
    assert!(rejected > 40_000, "only {rejected} rejected");
}

#[test]
fn constants_agree_with_the_rfc() {
    assert_eq!(packet::IPPROTO_VRRP, 112);
    assert_eq!(MULTICAST_V4, Ipv4Addr::new(224, 0, 0, 18));
    assert_eq!(MULTICAST_V6, "ff02::12".parse::<Ipv6Addr>().unwrap());
    assert_eq!(packet::VERSION_TYPE, 0x31);
}

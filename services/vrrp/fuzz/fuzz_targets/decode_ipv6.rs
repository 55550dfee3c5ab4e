//! Input = hop limit (1 byte) + source (16) + destination (16) + VRRP payload: never panics,
//! and whatever is accepted re-encodes to the payload (reserved bits aside).
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 33 {
        return;
    }
    let hop_limit = data[0];
    let mut src = [0u8; 16];
    src.copy_from_slice(&data[1..17]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&data[17..33]);
    let payload = &data[33..];
    if let Ok(received) = cairn_vrrp::packet::decode_ipv6(
        payload,
        Ipv6Addr::from(src),
        Ipv6Addr::from(dst),
        hop_limit,
    ) {
        assert_eq!(hop_limit, 255);
        let encoded = received.advert.encode(received.src, received.dst);
        if payload[4] & 0xf0 == 0 {
            assert_eq!(encoded, payload);
        } else {
            assert_eq!(encoded[8..], payload[8..]);
        }
    }
});

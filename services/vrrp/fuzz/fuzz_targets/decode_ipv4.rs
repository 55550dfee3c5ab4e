//! Any bytes as an IPv4 datagram from a raw socket: never panics, and whatever is accepted
//! re-encodes to the VRRP bytes it came from (reserved bits, ignored on reception, aside).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(received) = cairn_vrrp::packet::decode_ipv4(data) {
        let ihl = usize::from(data[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([data[2], data[3]]));
        let vrrp = &data[ihl..total];
        let encoded = received.advert.encode(received.src, received.dst);
        if vrrp[4] & 0xf0 == 0 {
            assert_eq!(encoded, vrrp);
        } else {
            assert_eq!(encoded[8..], vrrp[8..]);
        }
    }
});

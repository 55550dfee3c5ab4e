//! The Internet checksum (RFC 1071) and the IPv4 / IPv6 pseudo-headers it is taken over.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A running one's complement sum of 16-bit big-endian words.
///
/// Pieces may have odd lengths: a trailing odd byte is carried over to the next piece, so the
/// result is the same as summing the concatenation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    sum: u64,
    odd: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `data` as if appended to everything added before.
    pub fn add(&mut self, data: &[u8]) {
        let mut rest = data;
        if let Some(high) = self.odd.take() {
            match rest.split_first() {
                Some((low, tail)) => {
                    self.sum += u64::from(u16::from_be_bytes([high, *low]));
                    rest = tail;
                }
                None => {
                    self.odd = Some(high);
                    return;
                }
            }
        }
        let mut words = rest.chunks_exact(2);
        for word in &mut words {
            self.sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            self.odd = Some(*last);
        }
        // Fold early so the sum can never overflow, however much is added.
        if self.sum > u64::from(u32::MAX) {
            self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        }
    }

    /// The checksum: the one's complement of the folded one's complement sum (an odd final
    /// byte is padded with zero).
    pub fn finish(self) -> u16 {
        let mut sum = self.sum;
        if let Some(high) = self.odd {
            sum += u64::from(u16::from_be_bytes([high, 0]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // The loop leaves at most 0xffff, so the conversion cannot fail.
        !u16::try_from(sum).unwrap_or(u16::MAX)
    }
}

/// The RFC 768 pseudo-header: source, destination, zero, protocol, upper-layer length.
///
/// Lengths above 65535 are cut to 65535 (no IPv4 packet is that long).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, len: usize, protocol: u8) -> [u8; 12] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    let s = src.octets();
    let d = dst.octets();
    [
        s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], 0, protocol, len[0], len[1],
    ]
}

/// The RFC 2460 section 8.1 pseudo-header: source, destination, 32-bit upper-layer length,
/// three zero bytes, next header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, len: usize, next_header: u8) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..16].copy_from_slice(&src.octets());
    out[16..32].copy_from_slice(&dst.octets());
    out[32..36].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    out[39] = next_header;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let mut sum = Checksum::new();
        sum.add(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(sum.finish(), !0xddf2);
    }

    #[test]
    fn odd_pieces_sum_like_their_concatenation() {
        let data: Vec<u8> = (0u8..=200).map(|i| i.wrapping_mul(37)).collect();
        let mut whole = Checksum::new();
        whole.add(&data);
        for split in [0, 1, 3, 7, 100, 200] {
            let mut parts = Checksum::new();
            parts.add(&data[..split]);
            parts.add(&[]);
            parts.add(&data[split..]);
            assert_eq!(parts.finish(), whole.finish(), "split at {split}");
        }
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // The classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut sum = Checksum::new();
        sum.add(&header);
        assert_eq!(sum.finish(), 0xb861);
    }

    #[test]
    fn huge_input_does_not_overflow() {
        let data = vec![0xffu8; 1 << 20];
        let mut sum = Checksum::new();
        for _ in 0..64 {
            sum.add(&data);
        }
        assert_eq!(sum.finish(), 0);
    }
}

//! GUIDs as GPT stores them, and GUIDs derived from a seed so images stay reproducible.
//!
//! A [`Guid`] keeps its 16 bytes in the canonical (big-endian, as printed) order;
//! [`Guid::to_bytes_le`] produces the RFC 4122 "mixed-endian" layout used on disk by GPT
//! and UEFI, where the first three fields are little-endian.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A 128-bit GUID/UUID, stored in canonical (printed) byte order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid([u8; 16]);

/// Why a GUID string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuidError {
    /// The text is not `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits.
    #[error("`{text}` is not a GUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    Malformed {
        /// The rejected text.
        text: String,
    },
}

impl Guid {
    /// The all-zero GUID, which GPT uses to mark an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// Builds a GUID from its printed fields, e.g. `c12a7328-f81f-11d2-ba4b-00a0c93ec93b` is
    /// `from_fields(0xc12a7328, 0xf81f, 0x11d2, [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b])`;
    /// `const` so well-known type GUIDs can be constants.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_be_bytes();
        let b = d2.to_be_bytes();
        let c = d3.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Builds a GUID from 16 bytes in canonical (printed) order.
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    /// The 16 bytes in canonical (printed) order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The on-disk GPT/UEFI encoding: first three fields little-endian, the rest as is.
    pub fn to_bytes_le(&self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    /// Decodes the on-disk GPT/UEFI encoding produced by [`Guid::to_bytes_le`].
    pub fn from_bytes_le(b: [u8; 16]) -> Guid {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }

    /// Derives a stable GUID from a domain label and input parts: the first 16 bytes of
    /// SHA-256 over the length-prefixed label and parts, marked as an RFC 9562 version 8
    /// (custom, name-based) UUID with the RFC 4122 variant. Same inputs, same GUID; the
    /// length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
    pub fn derive(domain: &str, parts: &[&[u8]]) -> Guid {
        let mut hasher = Sha256::new();
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Guid")
            .field(&format_args!("{self}"))
            .finish()
    }
}

impl FromStr for Guid {
    type Err = GuidError;

    fn from_str(text: &str) -> Result<Guid, GuidError> {
        let malformed = || GuidError::Malformed {
            text: text.to_owned(),
        };
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(malformed());
        }
        let hex: String = groups.concat();
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(malformed)?;
            if !pair.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed())?;
        }
        Ok(Guid(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_and_parses_canonical_form() {
        let esp = Guid::from_fields(
            0xc12a7328,
            0xf81f,
            0x11d2,
            [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
        );
        assert_eq!(esp.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse(), Ok(esp));
        assert_eq!(
            format!("{esp:?}"),
            "Guid(c12a7328-f81f-11d2-ba4b-00a0c93ec93b)"
        );
    }

    #[test]
    fn on_disk_encoding_is_mixed_endian() {
        let esp: Guid = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse().unwrap();
        // As it appears in a hex dump of a GPT entry.
        let expected = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(esp.to_bytes_le(), expected);
        assert_eq!(Guid::from_bytes_le(expected), esp);
    }

    #[test]
    fn rejects_malformed_text() {
        for text in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "+12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        ] {
            assert_eq!(
                text.parse::<Guid>(),
                Err(GuidError::Malformed {
                    text: text.to_owned()
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn derived_guids_are_stable_distinct_and_marked_v8() {
        let a = Guid::derive("test", &[b"seed", b"esp"]);
        assert_eq!(a, Guid::derive("test", &[b"seed", b"esp"]));
        assert_ne!(a, Guid::derive("test", &[b"seed", b"root-a"]));
        assert_ne!(a, Guid::derive("test", &[b"see", b"desp"]));
        assert_ne!(a, Guid::derive("other", &[b"seed", b"esp"]));
        assert_eq!(a.as_bytes()[6] >> 4, 8);
        assert_eq!(a.as_bytes()[8] >> 6, 0b10);
        assert_eq!(a.to_string().as_bytes()[14], b'8');
    }
}

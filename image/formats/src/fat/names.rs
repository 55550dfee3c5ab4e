//! FAT directory entry names: 8.3 short names (with `~N` tails when a long name does not
//! fit), and the VFAT long-name (LFN) entries that carry the real name.

use std::collections::BTreeSet;

/// A short name as stored: 8 bytes of base and 3 of extension, space-padded.
pub type ShortName = [u8; 11];

/// UTF-16 code units one LFN entry holds.
const LFN_UNITS_PER_ENTRY: usize = 13;

/// Characters allowed in a short name besides A-Z and 0-9.
const SHORT_NAME_SPECIALS: &[u8] = b"!#$%&'()-@^_`{}~";

fn is_short_name_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || SHORT_NAME_SPECIALS.contains(&c)
}

/// How a name is stored in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedName {
    /// The short (8.3) name.
    pub short: ShortName,
    /// Whether LFN entries must precede the short entry to keep the real name.
    pub needs_long: bool,
}

impl EncodedName {
    /// Number of 32-byte directory slots this name takes.
    pub fn slots(&self, name: &str) -> usize {
        if self.needs_long {
            name.encode_utf16().count().div_ceil(LFN_UNITS_PER_ENTRY) + 1
        } else {
            1
        }
    }
}

/// `name` as an exact short name, if it is one already (upper case, 8.3, valid characters).
fn exact_short_name(name: &str) -> Option<ShortName> {
    let (base, ext) = match name.split_once('.') {
        Some((base, ext)) => (base, ext),
        None => (name, ""),
    };
    let fits = !base.is_empty() && base.len() <= 8 && ext.len() <= 3;
    let valid = base.bytes().chain(ext.bytes()).all(is_short_name_char);
    if !fits || !valid || (name.contains('.') && ext.is_empty()) {
        return None;
    }
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(base.as_bytes());
    short[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(short)
}

/// Picks the short name for `name` in a directory whose short names so far are `taken`:
/// the name itself when it is a valid 8.3 name, its upper-case form when only the case
/// differs, otherwise a `BASE~N.EXT` form with the smallest free `N` (as Windows does).
/// Returns `None` only if every tail up to `~999999` is taken.
pub fn encode(name: &str, taken: &BTreeSet<ShortName>) -> Option<EncodedName> {
    if let Some(short) = exact_short_name(name).filter(|s| !taken.contains(s)) {
        return Some(EncodedName {
            short,
            needs_long: false,
        });
    }
    let upper = name.to_ascii_uppercase();
    if let Some(short) = exact_short_name(&upper).filter(|s| !taken.contains(s)) {
        return Some(EncodedName {
            short,
            needs_long: true,
        });
    }
    // Lossy basis: upper case, invalid characters to `_`, spaces and leading dots dropped.
    let basis = |part: &str| -> Vec<u8> {
        part.chars()
            .filter(|&c| c != ' ' && c != '.')
            .map(|c| {
                let upper = c.to_ascii_uppercase();
                if upper.is_ascii() && is_short_name_char(upper as u8) {
                    upper as u8
                } else {
                    b'_'
                }
            })
            .collect()
    };
    let trimmed = name.trim_start_matches('.');
    let (base_part, ext_part) = match trimmed.rsplit_once('.') {
        Some((base, ext)) => (base, ext),
        None => (trimmed, ""),
    };
    let mut base = basis(base_part);
    if base.is_empty() {
        base.push(b'_');
    }
    let ext = basis(ext_part);
    let ext = &ext[..ext.len().min(3)];
    for n in 1..=999_999u32 {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut short = [b' '; 11];
        short[..keep].copy_from_slice(&base[..keep]);
        short[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        short[8..8 + ext.len()].copy_from_slice(ext);
        if !taken.contains(&short) {
            return Some(EncodedName {
                short,
                needs_long: true,
            });
        }
    }
    None
}

/// The checksum of a short name that each of its LFN entries carries.
pub fn lfn_checksum(short: &ShortName) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

/// The LFN entries for `name`, in on-disk order (last part first, flagged 0x40).
pub fn lfn_entries(name: &str, short: &ShortName) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let checksum = lfn_checksum(short);
    let parts: Vec<&[u16]> = units.chunks(LFN_UNITS_PER_ENTRY).collect();
    let count = parts.len();
    let mut entries = Vec::with_capacity(count);
    for (index, part) in parts.iter().enumerate().rev() {
        let mut slots = [0xFFFFu16; LFN_UNITS_PER_ENTRY];
        slots[..part.len()].copy_from_slice(part);
        if part.len() < LFN_UNITS_PER_ENTRY {
            slots[part.len()] = 0x0000;
        }
        let mut entry = [0u8; 32];
        // Sequence numbers start at 1; the physically first entry is the last part.
        entry[0] = (index as u8 + 1) | if index + 1 == count { 0x40 } else { 0 };
        entry[11] = 0x0F; // attributes: read-only, hidden, system, volume = LFN
        entry[13] = checksum;
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (unit, offset) in slots.iter().zip(offsets) {
            entry[offset..offset + 2].copy_from_slice(&unit.to_le_bytes());
        }
        entries.push(entry);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(name: &str, taken: &[&[u8; 11]]) -> (String, bool) {
        let taken: BTreeSet<ShortName> = taken.iter().map(|s| **s).collect();
        let encoded = encode(name, &taken).unwrap();
        (
            String::from_utf8(encoded.short.to_vec()).unwrap(),
            encoded.needs_long,
        )
    }

    #[test]
    fn valid_short_names_need_no_long_name() {
        assert_eq!(short("EFI", &[]), ("EFI        ".into(), false));
        assert_eq!(short("BOOTX64.EFI", &[]), ("BOOTX64 EFI".into(), false));
    }

    #[test]
    fn case_only_differences_keep_the_name_with_a_long_entry() {
        assert_eq!(short("loader", &[]), ("LOADER     ".into(), true));
        assert_eq!(short("Linux", &[]), ("LINUX      ".into(), true));
    }

    #[test]
    fn long_or_lossy_names_get_numeric_tails() {
        assert_eq!(short("loader.conf", &[]), ("LOADER~1CON".into(), true));
        assert_eq!(
            short("systemd-bootx64.efi", &[]),
            ("SYSTEM~1EFI".into(), true)
        );
        assert_eq!(short("cairn-1+3.efi", &[]), ("CAIRN-~1EFI".into(), true));
        assert_eq!(short(".hidden", &[]), ("HIDDEN~1   ".into(), true));
        assert_eq!(
            short("loader.conf", &[b"LOADER~1CON"]),
            ("LOADER~2CON".into(), true)
        );
        assert_eq!(
            short("EFI", &[b"EFI        "]),
            ("EFI~1      ".into(), true)
        );
    }

    #[test]
    fn checksum_matches_a_known_value() {
        // Computed by hand with the rotate-right-and-add definition from the VFAT spec.
        let mut sum = 0u8;
        for &c in b"LOADER~1CON" {
            sum = (if sum & 1 == 1 { 0x80 } else { 0 }) + (sum >> 1);
            sum = sum.wrapping_add(c);
        }
        assert_eq!(lfn_checksum(b"LOADER~1CON"), sum);
    }

    #[test]
    fn long_entries_split_terminate_and_pad() {
        let name = "systemd-bootx64.efi"; // 19 units: 13 + 6
        let entries = lfn_entries(name, b"SYSTEM~1EFI");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0][0], 0x42, "last part first, flagged");
        assert_eq!(entries[1][0], 0x01);
        assert!(
            entries
                .iter()
                .all(|e| e[11] == 0x0F && e[26] == 0 && e[27] == 0)
        );
        // Second part "64.efi" then a 0x0000 terminator, then 0xFFFF padding.
        assert_eq!(&entries[0][1..3], &[b'6', 0]);
        assert_eq!(&entries[0][14..16], &[b'i', 0]);
        assert_eq!(&entries[0][16..18], &[0, 0]);
        assert_eq!(&entries[0][18..20], &[0xFF, 0xFF]);
        assert_eq!(
            EncodedName {
                short: *b"SYSTEM~1EFI",
                needs_long: true
            }
            .slots(name),
            3
        );
    }
}

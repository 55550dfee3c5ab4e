//! Version strings: their syntax and systemd's order.
//!
//! The order is systemd's `strverscmp_improved`
//! (`src/fundamental/string-util-fundamental.c`), the order systemd-boot uses
//! to pick its default entry, so "newer" means the same thing to the updater
//! and to the boot loader.

use std::cmp::Ordering;

pub use cairn_site::version_syntax::{MAX_LEN, VersionError, is_version_char, validate};

/// Characters `strverscmp_improved` looks at; everything else is skipped.
fn is_cmp_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// Compares two versions the way systemd's `strverscmp_improved` does.
///
/// Segments are runs of digits (compared numerically, leading zeros ignored)
/// or of letters (compared as bytes, a longer run that extends a shorter one
/// is newer). `~` sorts before everything (even the end: `1~rc1 < 1`), `-`
/// and `^` and `.` separate segments, and a string with more segments is
/// newer. Characters outside `[A-Za-z0-9~^.-]` (e.g. `_`) are ignored.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    // The byte at `k`, 0 past the end (like the C string's NUL).
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    loop {
        while i < a.len() && !is_cmp_char(a[i]) {
            i += 1;
        }
        while j < b.len() && !is_cmp_char(b[j]) {
            j += 1;
        }
        // '~' is older than anything, even the end of the string.
        if at(a, i) == b'~' || at(b, j) == b'~' {
            let r = (at(a, i) != b'~').cmp(&(at(b, j) != b'~'));
            if r.is_ne() {
                return r;
            }
            i += 1;
            j += 1;
        }
        // One string ended: the longer one is newer.
        if i >= a.len() || j >= b.len() {
            return at(a, i).cmp(&at(b, j));
        }
        for sep in [b'-', b'^', b'.'] {
            if at(a, i) == sep || at(b, j) == sep {
                let r = (at(a, i) != sep).cmp(&(at(b, j) != sep));
                if r.is_ne() {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }
        let (ai, bj);
        if at(a, i).is_ascii_digit() || at(b, j).is_ascii_digit() {
            let mut aa = i;
            while at(a, aa).is_ascii_digit() {
                aa += 1;
            }
            let mut bb = j;
            while at(b, bb).is_ascii_digit() {
                bb += 1;
            }
            // A numeric segment is newer than a non-numeric one.
            let r = (aa != i).cmp(&(bb != j));
            if r.is_ne() {
                return r;
            }
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }
            let r = (aa - i).cmp(&(bb - j));
            if r.is_ne() {
                return r;
            }
            let r = a[i..aa].cmp(&b[j..bb]);
            if r.is_ne() {
                return r;
            }
            (ai, bj) = (aa, bb);
        } else {
            let mut aa = i;
            while at(a, aa).is_ascii_alphabetic() {
                aa += 1;
            }
            let mut bb = j;
            while at(b, bb).is_ascii_alphabetic() {
                bb += 1;
            }
            let n = (aa - i).min(bb - j);
            let r = a[i..i + n].cmp(&b[j..j + n]);
            if r.is_ne() {
                return r;
            }
            let r = (aa - i).cmp(&(bb - j));
            if r.is_ne() {
                return r;
            }
            (ai, bj) = (aa, bb);
        }
        i = ai;
        j = bj;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Asserts `older < newer` in both directions and each equal to itself.
    fn newer(older: &str, newer: &str) {
        assert_eq!(compare(older, newer), Less, "{older:?} < {newer:?}");
        assert_eq!(compare(newer, older), Greater, "{newer:?} > {older:?}");
        assert_eq!(compare(older, older), Equal, "{older:?}");
        assert_eq!(compare(newer, newer), Equal, "{newer:?}");
    }

    #[test]
    fn systemd_ascending_list_is_strictly_ordered() {
        // The list from systemd's test-string-util, oldest first.
        let versions = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (i, a) in versions.iter().enumerate() {
            for b in &versions[i + 1..] {
                newer(a, b);
            }
        }
    }

    #[test]
    fn systemd_pairs() {
        for (a, b) in [
            ("123.45-67.88", "123.45-67.89"),
            ("123.45-67.89", "123.45-67.89a"),
            ("123.45-67.ab", "123.45-67.89"),
            ("123.45-67.9", "123.45-67.89"),
            ("123.45-67", "123.45-67.89"),
            ("123.45-66.89", "123.45-67.89"),
            ("123.45-9.99", "123.45-67.89"),
            ("123.42-99.99", "123.45-67.89"),
            ("123-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123.45-67.89"),
            ("123~rc1-99.99", "123-45.67.89"),
            ("123~rc1-99.99", "123~rc2-67.89"),
            ("123~rc1-99.99", "123^aa2-67.89"),
            ("123~rc1-99.99", "123aa2-67.89"),
            ("123-99.99", "123^aa2-67.89"),
            ("123-99.99", "123aa2-67.89"),
            ("123^45-67.89", "123.45-67.89"),
            ("123^aa1-99.99", "123^aa2-67.89"),
            ("123^aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123aa2-67.89"),
            ("123.aa2-67.89", "123.ab2-67.89"),
        ] {
            newer(a, b);
        }
    }

    #[test]
    fn systemd_corner_cases() {
        for (a, b, want) in [
            ("123_aa2-67.89", "123aa+2-67.89", Equal),
            ("123.", "123", Greater),
            ("12_3", "123", Less),
            ("12_3", "12", Greater),
            ("12_3", "12.3", Greater),
            ("123.0", "123", Greater),
            ("123_0", "123", Greater),
            ("123..0", "123.0", Less),
            ("0_", "0", Equal),
            ("_0_", "0", Equal),
            ("_0", "0", Equal),
            ("0", "0___", Equal),
            ("", "_", Equal),
            ("_", "", Equal),
            ("_", "_", Equal),
            ("", "~", Greater),
            ("~", "", Less),
            ("~", "~", Equal),
        ] {
            assert_eq!(compare(a, b), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn rpm_cases_as_systemd_orders_them() {
        for (a, b, want) in [
            ("1.0", "2.0", Less),
            ("2.0", "2.0.1", Less),
            ("2.0.1a", "2.0.1", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p1", "5.5p10", Less),
            ("10xyz", "10.1xyz", Greater),
            ("xyz10", "xyz10.1", Less),
            ("xyz.4", "8", Less),
            ("xyz.4", "2", Less),
            ("5.5p2", "5.6p1", Less),
            ("5.6p1", "6.5p1", Less),
            ("6.0.rc1", "6.0", Greater),
            ("10b2", "10a1", Greater),
            ("1.0a", "1.0aa", Less),
            ("10.0001", "10.1", Equal),
            ("10.0001", "10.0039", Less),
            ("4.999.9", "5.0", Less),
            ("20101121", "20101122", Less),
            ("2.0", "2_0", Less),
            ("a+", "a_", Equal),
            ("+a", "_a", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~rc1~git123", "1.0~rc1", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0^git2", Less),
            ("1.0^git1", "1.01", Less),
            ("1.0^20160101", "1.0.1", Less),
            ("1.0^20160102", "1.0^20160101^git1", Greater),
            ("1.0~rc1^git1", "1.0~rc1", Greater),
            ("1.0^git1", "1.0^git1~pre", Greater),
            ("1b.fc17", "1.fc17", Greater),
            ("1.1.α", "1.1.β", Equal),
        ] {
            assert_eq!(compare(a, b), want, "{a:?} vs {b:?}");
            assert_eq!(compare(b, a), want.reverse(), "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn cairn_style_versions_order_numerically() {
        newer("0.1.0", "0.2.0");
        newer("0.9.0", "0.10.0");
        newer("0.2.0~rc1", "0.2.0");
        newer("2025.12.31", "2026.01.01");
        newer("1.0", "1.0.1");
    }

    #[test]
    fn the_order_docs_update_md_describes() {
        newer("1-1", "1^1");
        newer("1^1", "1.1");
        newer("1.1", "1a");
        newer("1.0a", "1.0aa");
        newer("0.9.0", "0.10.0");
        newer("12.3", "12_3");
        newer("12_3", "123");
        assert_eq!(compare("007", "7"), Equal);
    }
}

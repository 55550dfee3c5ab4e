//! The systemd-boot Type #2 entries cairn writes on the ESP:
//! `EFI/Linux/cairn-<version>[+<left>[-<done>]].efi`, and the order
//! systemd-boot 252 puts them in (which decides what boots next).

use std::cmp::Ordering;

use crate::version;

/// Directory of the UKIs on the ESP.
pub const DIR: &str = "EFI/Linux";

/// File name prefix of cairn's UKIs.
pub const PREFIX: &str = "cairn-";

/// File name suffix of UKIs.
pub const SUFFIX: &str = ".efi";

/// systemd-boot caps the tries-done counter at `INT_MAX`.
const DONE_MAX: u32 = 0x7fff_ffff;

/// One cairn UKI on the ESP, as its file name describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The image version.
    pub version: String,
    /// Boot counting state; `None` for a blessed (or never counted) entry.
    pub tries: Option<Tries>,
}

/// systemd-boot's boot counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tries {
    /// Tries left before the entry is bad.
    pub left: u32,
    /// Tries made so far.
    pub done: u32,
}

/// Parses one decimal counter as systemd-boot does (digits only, fits u32).
fn counter(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Entry {
    /// Reads a file name in `EFI/Linux`; `None` for anything that is not a
    /// cairn UKI (other files, hidden and `.tmp` files, bad versions or counters).
    pub fn parse(file_name: &str) -> Option<Entry> {
        let stem = file_name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (version, tries) = match stem.split_once('+') {
            None => (stem, None),
            Some((version, counters)) => {
                // "+LEFT" or "+LEFT-DONE" (a missing DONE is 0).
                let tries = match counters.split_once('-') {
                    None => Tries {
                        left: counter(counters)?,
                        done: 0,
                    },
                    Some((left, done)) => Tries {
                        left: counter(left)?,
                        done: counter(done)?,
                    },
                };
                (version, Some(tries))
            }
        };
        version::validate(version).ok()?;
        Some(Entry {
            version: version.to_owned(),
            tries,
        })
    }

    /// A freshly installed entry: `tries` left, none done (`cairn-<v>+<tries>.efi`).
    pub fn new_counted(version: &str, tries: u32) -> Entry {
        Entry {
            version: version.to_owned(),
            tries: Some(Tries {
                left: tries,
                done: 0,
            }),
        }
    }

    /// The file name: `cairn-<v>.efi`, `cairn-<v>+<left>.efi` when nothing was
    /// done yet, else `cairn-<v>+<left>-<done>.efi`.
    pub fn file_name(&self) -> String {
        match self.tries {
            None => format!("{PREFIX}{}{SUFFIX}", self.version),
            Some(Tries { left, done: 0 }) => format!("{PREFIX}{}+{left}{SUFFIX}", self.version),
            Some(Tries { left, done }) => {
                format!("{PREFIX}{}+{left}-{done}{SUFFIX}", self.version)
            }
        }
    }

    /// The same entry blessed: no counter.
    pub fn blessed(&self) -> Entry {
        Entry {
            version: self.version.clone(),
            tries: None,
        }
    }

    /// Whether systemd-boot considers it bad: counted with no tries left.
    pub fn is_bad(&self) -> bool {
        self.tries.is_some_and(|t| t.left == 0)
    }

    /// The same version demoted for a downgrade: `cairn-<v>+0.efi`, a bad entry
    /// (sorted after every good one, still booted when nothing good is left)
    /// that was never tried.
    pub fn demoted(&self) -> Entry {
        Entry {
            version: self.version.clone(),
            tries: Some(Tries { left: 0, done: 0 }),
        }
    }

    /// Whether it is a demoted entry: no tries left and none done. systemd-boot
    /// never makes this name (it counts `+1-<n>` down to `+0-<n+1>`), so only a
    /// downgrade's demotion does.
    pub fn is_demoted(&self) -> bool {
        self.tries == Some(Tries { left: 0, done: 0 })
    }

    /// The name systemd-boot 252 renames a counted entry to before it boots it
    /// (`config_entry_bump_counters`): one try less (never below 0), one more done.
    /// A bad entry booted as the last resort is renamed too (`+0` → `+0-1`), and
    /// `LoaderBootCountPath` names it, so cairn-init counts and blesses that boot.
    /// A blessed entry is not renamed.
    pub fn counted_down(&self) -> Entry {
        Entry {
            version: self.version.clone(),
            tries: self.tries.map(|t| Tries {
                left: t.left.saturating_sub(1),
                done: t.done.saturating_add(1).min(DONE_MAX),
            }),
        }
    }
}

/// Name a UKI is written under before it is complete and checked
/// (`.cairn-<v>.tmp`: hidden and not `*.efi`, so systemd-boot ignores it).
pub fn temp_name(version: &str) -> String {
    format!(".{PREFIX}{version}.tmp")
}

/// systemd-boot 252's `config_entry_compare` for entries that share an
/// `IMAGE_ID` (all of cairn's do): bad entries last, then newest version
/// first, then by id (the lower-cased file name, newest first), then more
/// tries left first, then fewer tries done first.
fn compare(a: &Entry, b: &Entry) -> Ordering {
    a.is_bad()
        .cmp(&b.is_bad())
        .then_with(|| version::compare(&b.version, &a.version))
        .then_with(|| {
            version::compare(
                &b.file_name().to_ascii_lowercase(),
                &a.file_name().to_ascii_lowercase(),
            )
        })
        .then_with(|| match (a.tries, b.tries) {
            (Some(x), Some(y)) => y.left.cmp(&x.left).then(x.done.cmp(&y.done)),
            _ => Ordering::Equal,
        })
}

/// Sorts entries into systemd-boot 252's menu order for one `IMAGE_ID`.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(compare);
}

/// The entry systemd-boot boots when no default is configured: the first after [`sort`].
pub fn default_entry(entries: &[Entry]) -> Option<&Entry> {
    entries.iter().min_by(|a, b| compare(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str) -> Entry {
        Entry::parse(name).unwrap_or_else(|| panic!("{name} should parse"))
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(Entry::file_name).collect()
    }

    #[test]
    fn names_parse_and_format_both_ways() {
        for (name, version, tries) in [
            ("cairn-0.2.0.efi", "0.2.0", None),
            ("cairn-0.2.0+3.efi", "0.2.0", Some((3, 0))),
            ("cairn-0.2.0+2-1.efi", "0.2.0", Some((2, 1))),
            ("cairn-0.2.0+0-3.efi", "0.2.0", Some((0, 3))),
            (
                "cairn-1.0~rc1^git2_x+1-2.efi",
                "1.0~rc1^git2_x",
                Some((1, 2)),
            ),
        ] {
            let entry = e(name);
            assert_eq!(entry.version, version, "{name}");
            assert_eq!(entry.tries.map(|t| (t.left, t.done)), tries, "{name}");
            assert_eq!(entry.file_name(), name);
        }
        // "-0" is what systemd assumes when DONE is missing.
        assert_eq!(e("cairn-1+4-0.efi").tries, Some(Tries { left: 4, done: 0 }));
        assert_eq!(e("cairn-1+4-0.efi").file_name(), "cairn-1+4.efi");
    }

    #[test]
    fn other_files_are_not_entries() {
        for name in [
            "cairn-0.2.0.tmp",
            ".cairn-0.2.0.tmp",
            &temp_name("0.2.0"),
            "cairn-.efi",
            "cairn-0.2.0.EFI",
            "linux-6.1.efi",
            "cairn-0.2.0+.efi",
            "cairn-0.2.0+x.efi",
            "cairn-0.2.0+1-.efi",
            "cairn-0.2.0+-1.efi",
            "cairn-0.2.0+1-2-3.efi",
            "cairn-0.2.0+1+2.efi",
            "cairn-0.2.0+99999999999.efi",
            "cairn-a/b.efi",
            "cairn-0.2.0",
        ] {
            assert_eq!(Entry::parse(name), None, "{name}");
        }
        assert_eq!(temp_name("0.2.0"), ".cairn-0.2.0.tmp");
    }

    #[test]
    fn counted_blessed_and_bad() {
        let n = Entry::new_counted("0.3.0", 3);
        assert_eq!(n.file_name(), "cairn-0.3.0+3.efi");
        assert!(!n.is_bad());
        assert_eq!(n.blessed().file_name(), "cairn-0.3.0.efi");
        assert!(e("cairn-0.3.0+0-3.efi").is_bad());
        assert!(!e("cairn-0.3.0+1-2.efi").is_bad());
        assert!(!e("cairn-0.3.0.efi").is_bad());
    }

    #[test]
    fn newest_boots_first_and_exhausted_ones_fall_back() {
        // Fresh install: the new counted entry is newer, so it is the default.
        let mut v = vec![e("cairn-0.2.0.efi"), e("cairn-0.3.0+3.efi")];
        sort(&mut v);
        assert_eq!(names(&v), ["cairn-0.3.0+3.efi", "cairn-0.2.0.efi"]);
        // Still tries left: it stays first.
        let v = vec![e("cairn-0.2.0.efi"), e("cairn-0.3.0+1-2.efi")];
        assert_eq!(
            default_entry(&v).map(Entry::file_name).as_deref(),
            Some("cairn-0.3.0+1-2.efi")
        );
        // Out of tries: the previous version boots.
        let mut v = vec![e("cairn-0.3.0+0-3.efi"), e("cairn-0.2.0.efi")];
        assert_eq!(
            default_entry(&v).map(Entry::file_name).as_deref(),
            Some("cairn-0.2.0.efi")
        );
        sort(&mut v);
        assert_eq!(names(&v), ["cairn-0.2.0.efi", "cairn-0.3.0+0-3.efi"]);
        // Version order, not string order.
        let mut v = vec![
            e("cairn-0.9.0.efi"),
            e("cairn-0.10.0.efi"),
            e("cairn-0.10.0~rc1.efi"),
        ];
        sort(&mut v);
        assert_eq!(
            names(&v),
            [
                "cairn-0.10.0.efi",
                "cairn-0.10.0~rc1.efi",
                "cairn-0.9.0.efi"
            ]
        );
        // Only bad entries: the first of them is still booted.
        let v = vec![e("cairn-0.1.0+0-1.efi"), e("cairn-0.2.0+0-3.efi")];
        assert_eq!(
            default_entry(&v).map(Entry::file_name).as_deref(),
            Some("cairn-0.2.0+0-3.efi")
        );
        assert_eq!(default_entry(&[]), None);
    }

    #[test]
    fn a_downgrade_boots_the_older_version_and_falls_back_to_the_newer_one() {
        // The running 0.5.0 is demoted after 0.4.0 is installed with its tries.
        let running = e("cairn-0.5.0.efi");
        let demoted = running.demoted();
        assert_eq!(demoted.file_name(), "cairn-0.5.0+0.efi");
        assert!(demoted.is_bad() && demoted.is_demoted());
        assert_eq!(Entry::parse("cairn-0.5.0+0.efi"), Some(demoted.clone()));
        let mut v = vec![demoted.clone(), e("cairn-0.4.0+3.efi")];
        sort(&mut v);
        assert_eq!(names(&v), ["cairn-0.4.0+3.efi", "cairn-0.5.0+0.efi"]);
        // Without the demotion the older version would never boot.
        let v = vec![running.clone(), e("cairn-0.4.0+3.efi")];
        assert_eq!(
            default_entry(&v).map(Entry::file_name).as_deref(),
            Some("cairn-0.5.0.efi")
        );
        // 0.4.0 used up its tries: both bad, the newest of them (0.5.0) boots,
        // renamed like any counted entry.
        let v = vec![demoted.clone(), e("cairn-0.4.0+0-3.efi")];
        let first = default_entry(&v).unwrap();
        assert_eq!(first.file_name(), "cairn-0.5.0+0.efi");
        assert_eq!(first.counted_down().file_name(), "cairn-0.5.0+0-1.efi");
        assert!(!first.counted_down().is_demoted(), "tried now");
        // Tries count down as systemd-boot does; blessed entries stay.
        assert_eq!(
            e("cairn-0.4.0+3.efi").counted_down().file_name(),
            "cairn-0.4.0+2-1.efi"
        );
        assert_eq!(
            e("cairn-0.4.0+1-2.efi").counted_down().file_name(),
            "cairn-0.4.0+0-3.efi"
        );
        assert_eq!(running.counted_down(), running);
        assert!(!e("cairn-0.4.0+0-3.efi").is_demoted());
        assert!(!running.is_demoted());
    }

    #[test]
    fn same_version_is_ordered_by_file_name_like_systemd_boot() {
        // Not a state cairn creates, but systemd-boot's order is kept: the id
        // (file name) decides, compared by strverscmp_improved, which skips
        // '+': "2.efi" > "2-1.efi" ('-' starts an older segment) > "1-2.efi".
        let mut v = vec![
            e("cairn-1+1-2.efi"),
            e("cairn-1+2-0.efi"),
            e("cairn-1+2-1.efi"),
        ];
        sort(&mut v);
        assert_eq!(
            names(&v),
            ["cairn-1+2.efi", "cairn-1+2-1.efi", "cairn-1+1-2.efi"]
        );
        let mut v = vec![e("cairn-1+1-2.efi"), e("cairn-1.efi")];
        sort(&mut v);
        assert_eq!(names(&v), ["cairn-1+1-2.efi", "cairn-1.efi"]);
    }
}

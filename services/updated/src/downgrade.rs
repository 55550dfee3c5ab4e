//! What became of a downgrade under way, decided without I/O from the running version and
//! the entries on the ESP (docs/update.md, "Downgrades").
//!
//! A downgrade installs the older version `to` with its tries exactly like an upgrade, records
//! `{from, to}` in state.json, and then demotes the running entry to `cairn-<from>+0.efi`: a bad
//! entry, so systemd-boot boots `to` (the newest good entry). If `to` is blessed, done; if it
//! uses up its tries, every entry is bad and systemd-boot boots the newest of them, `from`,
//! renamed `+0-1` like any counted entry, which cairn-init blesses once healthy.

use cairn_update::entries::Entry;

use crate::state::Downgrade;

/// What became of a recorded downgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The box runs `to`, not blessed yet: keep the record and wait.
    UnderWay,
    /// The box runs `to`, blessed: the downgrade is done.
    Succeeded,
    /// The box runs `from` again and `to` has no tries left (or no entry any more): `to`
    /// failed and is never tried again.
    Failed {
        /// Boots `to` had (the tries systemd-boot counted); `None` when its entry is gone.
        boots: Option<u32>,
    },
    /// The box runs `from` from its demoted entry, never booted since: the agent restarted
    /// between the demotion and the reboot. The demotion is undone (the entry renamed back
    /// to its blessed name) and the next check decides again.
    Interrupted {
        /// The demoted entry of `from`.
        demoted: Entry,
    },
    /// The box runs `from` and `to` still has tries left: the demotion never happened (the
    /// agent stopped before it) or `from` was picked by hand. Nothing failed.
    NotHappened,
    /// The box runs neither version (picked by hand): the record is stale.
    Unrelated,
}

/// The entry of `version` systemd-boot would pick among several (good before bad).
fn entry_of<'a>(entries: &'a [Entry], version: &str) -> Option<&'a Entry> {
    let mut of: Vec<&Entry> = entries.iter().filter(|e| e.version == version).collect();
    of.sort_by_key(|e| e.is_bad());
    of.first().copied()
}

/// Judges the downgrade `d` on a box running `running` with `entries` on its ESP.
pub fn judge(d: &Downgrade, running: &str, entries: &[Entry]) -> Verdict {
    if running == d.to {
        return match entry_of(entries, &d.to) {
            Some(e) if e.tries.is_none() => Verdict::Succeeded,
            _ => Verdict::UnderWay,
        };
    }
    if running != d.from {
        return Verdict::Unrelated;
    }
    if let Some(from) = entry_of(entries, &d.from).filter(|e| e.is_demoted()) {
        return Verdict::Interrupted {
            demoted: from.clone(),
        };
    }
    match entry_of(entries, &d.to) {
        None => Verdict::Failed { boots: None },
        Some(e) if e.is_bad() => Verdict::Failed {
            boots: e.tries.map(|t| t.done),
        },
        Some(_) => Verdict::NotHappened,
    }
}

/// Whether rollback detection must leave the bad entry `e` alone: a demoted entry (never
/// tried: it is the fallback of a downgrade, not a failed version), or the `from` of a
/// downgrade under way.
pub fn is_fallback(e: &Entry, under_way: Option<&Downgrade>) -> bool {
    e.is_demoted() || under_way.is_some_and(|d| d.from == e.version)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d() -> Downgrade {
        Downgrade {
            from: "0.5.0".into(),
            to: "0.4.0".into(),
        }
    }

    fn esp(names: &[&str]) -> Vec<Entry> {
        names.iter().map(|n| Entry::parse(n).unwrap()).collect()
    }

    #[test]
    fn running_the_target_waits_for_its_blessing() {
        // First boot of 0.4.0: systemd-boot counted a try; the demoted 0.5.0 waits.
        let e = esp(&["cairn-0.4.0+2-1.efi", "cairn-0.5.0+0.efi"]);
        assert_eq!(judge(&d(), "0.4.0", &e), Verdict::UnderWay);
        // Its last try.
        let e = esp(&["cairn-0.4.0+0-3.efi", "cairn-0.5.0+0.efi"]);
        assert_eq!(judge(&d(), "0.4.0", &e), Verdict::UnderWay);
        // Blessed by cairn-init.
        let e = esp(&["cairn-0.4.0.efi", "cairn-0.5.0+0.efi"]);
        assert_eq!(judge(&d(), "0.4.0", &e), Verdict::Succeeded);
    }

    #[test]
    fn back_at_the_origin_with_the_target_exhausted_is_a_failure() {
        // systemd-boot booted the newest bad entry, 0.5.0, renamed +0-1.
        let e = esp(&["cairn-0.4.0+0-3.efi", "cairn-0.5.0+0-1.efi"]);
        assert_eq!(judge(&d(), "0.5.0", &e), Verdict::Failed { boots: Some(3) });
        // ... and cairn-init blessed it again before the agent looked.
        let e = esp(&["cairn-0.4.0+0-3.efi", "cairn-0.5.0.efi"]);
        assert_eq!(judge(&d(), "0.5.0", &e), Verdict::Failed { boots: Some(3) });
        // The target's entry is gone: failed too, so it is not retried in a loop.
        let e = esp(&["cairn-0.5.0+0-1.efi"]);
        assert_eq!(judge(&d(), "0.5.0", &e), Verdict::Failed { boots: None });
    }

    #[test]
    fn a_demoted_origin_never_booted_is_an_interrupted_downgrade() {
        let e = esp(&["cairn-0.4.0+3.efi", "cairn-0.5.0+0.efi"]);
        assert_eq!(
            judge(&d(), "0.5.0", &e),
            Verdict::Interrupted {
                demoted: Entry::parse("cairn-0.5.0+0.efi").unwrap()
            }
        );
    }

    #[test]
    fn a_target_with_tries_left_while_running_the_origin_did_not_happen() {
        // Stopped after the record, before the demotion.
        let e = esp(&["cairn-0.4.0+3.efi", "cairn-0.5.0.efi"]);
        assert_eq!(judge(&d(), "0.5.0", &e), Verdict::NotHappened);
        // 0.5.0 picked by hand in the menu after one try of 0.4.0.
        let e = esp(&["cairn-0.4.0+2-1.efi", "cairn-0.5.0+0-1.efi"]);
        assert_eq!(judge(&d(), "0.5.0", &e), Verdict::NotHappened);
    }

    #[test]
    fn a_third_version_makes_the_record_stale() {
        let e = esp(&["cairn-0.3.0.efi", "cairn-0.5.0+0.efi"]);
        assert_eq!(judge(&d(), "0.3.0", &e), Verdict::Unrelated);
    }

    #[test]
    fn demoted_entries_and_the_origin_are_not_failed_versions() {
        let demoted = Entry::parse("cairn-0.5.0+0.efi").unwrap();
        let tried = Entry::parse("cairn-0.5.0+0-1.efi").unwrap();
        let exhausted = Entry::parse("cairn-0.6.0+0-3.efi").unwrap();
        assert!(is_fallback(&demoted, None));
        assert!(!is_fallback(&tried, None));
        assert!(is_fallback(&tried, Some(&d())));
        assert!(!is_fallback(&exhausted, Some(&d())));
    }
}

//! What a publish changes in the repository index, decided without I/O:
//! the next serial, the freshness window, and the refusals (another
//! cluster's repository, the same version with other content, names that
//! would escape the repository).

use cairn_update::index::{self, Index, IndexEntry};
use cairn_update::manifest::Manifest;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Why a bundle cannot go into the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The repository belongs to another cluster.
    #[error(
        "the repository is cluster {repo:?}'s, the bundle is for cluster {bundle:?}: one repository per site"
    )]
    OtherCluster {
        /// Cluster of the repository's index.
        repo: String,
        /// Cluster of the bundle.
        bundle: String,
    },
    /// The same role/profile/version is published with other content.
    #[error(
        "{role}/{profile} {version} is already published with other content (manifest sha256 {published}, this build {new}): \
         a version names one image forever, build with a new --version"
    )]
    Conflict {
        /// Role.
        role: String,
        /// Profile.
        profile: String,
        /// Version.
        version: String,
        /// sha256 of the manifest in the repository.
        published: String,
        /// sha256 of the manifest being published.
        new: String,
    },
    /// A role, profile or version unusable as a directory name.
    #[error("manifest field `{field}`: {value:?} cannot name a directory in the repository")]
    BadName {
        /// Manifest field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The serial cannot grow any more.
    #[error("the index serial {0} cannot grow")]
    SerialExhausted(u64),
    /// A withdrawal names a role with no bundle on offer.
    #[error(
        "the repository offers no bundle for role {role:?} (roles on offer: {})",
        list(on_offer)
    )]
    UnknownRole {
        /// The role asked for.
        role: String,
        /// The roles on offer.
        on_offer: Vec<String>,
    },
    /// A withdrawal names a profile with no bundle of the role on offer.
    #[error(
        "the repository offers no {role} bundle for profile {profile:?} (profiles on offer for {role}: {})",
        list(on_offer)
    )]
    UnknownProfile {
        /// The role.
        role: String,
        /// The profile asked for.
        profile: String,
        /// The role's profiles on offer.
        on_offer: Vec<String>,
    },
    /// A withdrawal names a version that is not on offer.
    #[error(
        "{role}/{profile} {version} is not on offer (versions on offer: {})",
        list(on_offer)
    )]
    UnknownVersion {
        /// The role.
        role: String,
        /// The profile.
        profile: String,
        /// The version asked for.
        version: String,
        /// The versions on offer for the role and profile, oldest first.
        on_offer: Vec<String>,
    },
}

/// `a, b, c`, or `none`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The new index and what happened to the entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The index to sign and write.
    pub index: Index,
    /// The bundle's directory, relative to the repository (ends in `/`).
    pub path: String,
    /// The same bundle was already listed (the index is re-signed with a new
    /// serial and expiry; the files are checked and repaired).
    pub already_listed: bool,
}

/// A role, profile or version as one path component: non-empty, not `.` or
/// `..`, and only characters of the version syntax.
fn check_name(field: &'static str, value: &str) -> Result<(), PlanError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '^' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PlanError::BadName {
            field,
            value: value.to_owned(),
        })
    }
}

/// The repository directory of a bundle: `bundles/<role>/<profile>/<version>/`.
pub fn bundle_path(m: &Manifest) -> Result<String, PlanError> {
    check_name("role", &m.role)?;
    check_name("profile", &m.profile)?;
    check_name("version", &m.version)?;
    Ok(format!("bundles/{}/{}/{}/", m.role, m.profile, m.version))
}

/// The index after publishing `m` (whose manifest.json has sha256
/// `manifest_sha256`) into a repository whose current index is `old` (none
/// for a new repository), at `now` (Unix seconds), fresh for `expires_days`.
pub fn next_index(
    old: Option<&Index>,
    m: &Manifest,
    manifest_sha256: &str,
    now: u64,
    expires_days: u64,
) -> Result<Plan, PlanError> {
    let path = bundle_path(m)?;
    let (serial, mut bundles) = match old {
        None => (1, Vec::new()),
        Some(ix) => {
            if ix.cluster != m.cluster {
                return Err(PlanError::OtherCluster {
                    repo: ix.cluster.clone(),
                    bundle: m.cluster.clone(),
                });
            }
            let serial = ix
                .serial
                .checked_add(1)
                .ok_or(PlanError::SerialExhausted(ix.serial))?;
            (serial, ix.bundles.clone())
        }
    };
    let same =
        |e: &IndexEntry| e.role == m.role && e.profile == m.profile && e.version == m.version;
    let mut already_listed = false;
    if let Some(e) = bundles.iter().find(|e| same(e)) {
        if e.manifest_sha256 != manifest_sha256 {
            return Err(PlanError::Conflict {
                role: m.role.clone(),
                profile: m.profile.clone(),
                version: m.version.clone(),
                published: e.manifest_sha256.clone(),
                new: manifest_sha256.to_owned(),
            });
        }
        already_listed = true;
    }
    bundles.retain(|e| !same(e));
    bundles.push(IndexEntry {
        role: m.role.clone(),
        profile: m.profile.clone(),
        version: m.version.clone(),
        path: path.clone(),
        manifest_sha256: manifest_sha256.to_owned(),
    });
    bundles.sort_by(|a, b| {
        (&a.role, &a.profile)
            .cmp(&(&b.role, &b.profile))
            .then_with(|| cairn_update::version::compare(&a.version, &b.version))
    });
    Ok(Plan {
        index: Index {
            format: index::FORMAT,
            cluster: m.cluster.clone(),
            serial,
            published: now,
            expires: now.saturating_add(expires_days.saturating_mul(DAY)),
            bundles,
        },
        path,
        already_listed,
    })
}

/// The distinct names of `it`, sorted.
fn sorted_unique<'a>(it: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = it.cloned().collect();
    v.sort();
    v.dedup();
    v
}

/// The index after taking `role`/`profile` `version` off offer in a repository whose
/// current index is `old`: the same entries without it, `serial` + 1, published `now`, fresh
/// for `expires_days`. The bundle's files are not named here (they stay in the repository).
pub fn withdraw(
    old: &Index,
    role: &str,
    profile: &str,
    version: &str,
    now: u64,
    expires_days: u64,
) -> Result<Index, PlanError> {
    if !old.bundles.iter().any(|e| e.role == role) {
        return Err(PlanError::UnknownRole {
            role: role.to_owned(),
            on_offer: sorted_unique(old.bundles.iter().map(|e| &e.role)),
        });
    }
    let of_role: Vec<&IndexEntry> = old.bundles.iter().filter(|e| e.role == role).collect();
    if !of_role.iter().any(|e| e.profile == profile) {
        return Err(PlanError::UnknownProfile {
            role: role.to_owned(),
            profile: profile.to_owned(),
            on_offer: sorted_unique(of_role.iter().map(|e| &e.profile)),
        });
    }
    let same = |e: &IndexEntry| e.role == role && e.profile == profile && e.version == version;
    if !old.bundles.iter().any(same) {
        let mut on_offer: Vec<String> = of_role
            .iter()
            .filter(|e| e.profile == profile)
            .map(|e| e.version.clone())
            .collect();
        on_offer.sort_by(|a, b| cairn_update::version::compare(a, b));
        return Err(PlanError::UnknownVersion {
            role: role.to_owned(),
            profile: profile.to_owned(),
            version: version.to_owned(),
            on_offer,
        });
    }
    let serial = old
        .serial
        .checked_add(1)
        .ok_or(PlanError::SerialExhausted(old.serial))?;
    Ok(Index {
        format: index::FORMAT,
        cluster: old.cluster.clone(),
        serial,
        published: now,
        expires: now.saturating_add(expires_days.saturating_mul(DAY)),
        bundles: old.bundles.iter().filter(|e| !same(e)).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn_update::manifest::{RootImage, UkiFile, Verity};

    fn manifest(cluster: &str, role: &str, version: &str) -> Manifest {
        Manifest {
            format: 1,
            cluster: cluster.into(),
            version: version.into(),
            role: role.into(),
            profile: "qemu-x86_64".into(),
            source_date_epoch: 1_767_225_600,
            root: RootImage {
                file: "root.img".into(),
                size: 1,
                sha256: "0".repeat(64),
                chunk_size: 1 << 20,
                chunks: vec!["0".repeat(64)],
                verity: Verity {
                    root_hash: "0".repeat(64),
                    salt: "0".repeat(64),
                    data_blocks: 1,
                    hash_offset: 4096,
                },
            },
            uki: UkiFile {
                file: "cairn.efi".into(),
                size: 1,
                sha256: "0".repeat(64),
            },
        }
    }

    const NOW: u64 = 1_770_000_000;

    #[test]
    fn first_publish_starts_at_serial_one_and_expires_after_the_given_days() {
        let p = next_index(None, &manifest("demo", "lb", "0.2.0"), "aa", NOW, 30).unwrap();
        assert_eq!(p.index.serial, 1);
        assert_eq!(p.index.cluster, "demo");
        assert_eq!(p.index.published, NOW);
        assert_eq!(p.index.expires, NOW + 30 * 86_400);
        assert_eq!(p.path, "bundles/lb/qemu-x86_64/0.2.0/");
        assert_eq!(p.index.bundles.len(), 1);
        assert_eq!(p.index.bundles[0].manifest_sha256, "aa");
        assert!(!p.already_listed);
    }

    #[test]
    fn later_publishes_grow_the_serial_and_keep_other_bundles_in_version_order() {
        let one = next_index(None, &manifest("demo", "lb", "0.10.0"), "a", NOW, 30).unwrap();
        let two = next_index(
            Some(&one.index),
            &manifest("demo", "lb", "0.9.0"),
            "b",
            NOW + 1,
            30,
        )
        .unwrap();
        let three = next_index(
            Some(&two.index),
            &manifest("demo", "base", "0.1.0"),
            "c",
            NOW + 2,
            7,
        )
        .unwrap();
        assert_eq!(three.index.serial, 3);
        assert_eq!(three.index.expires, NOW + 2 + 7 * 86_400);
        let order: Vec<(&str, &str)> = three
            .index
            .bundles
            .iter()
            .map(|e| (e.role.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(
            order,
            [("base", "0.1.0"), ("lb", "0.9.0"), ("lb", "0.10.0")],
            "by role, then systemd's version order (0.9.0 before 0.10.0)"
        );
    }

    #[test]
    fn the_same_bundle_again_is_re_signed_but_other_content_is_refused() {
        let m = manifest("demo", "lb", "0.2.0");
        let one = next_index(None, &m, "aa", NOW, 30).unwrap();
        let again = next_index(Some(&one.index), &m, "aa", NOW + 5, 30).unwrap();
        assert!(again.already_listed);
        assert_eq!(again.index.serial, 2);
        assert_eq!(again.index.bundles.len(), 1);
        let err = next_index(Some(&one.index), &m, "bb", NOW + 5, 30).unwrap_err();
        assert!(matches!(err, PlanError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("lb/qemu-x86_64 0.2.0"), "{err}");
    }

    #[test]
    fn another_clusters_repository_is_refused() {
        let one = next_index(None, &manifest("demo", "lb", "0.2.0"), "aa", NOW, 30).unwrap();
        let err = next_index(
            Some(&one.index),
            &manifest("prod", "lb", "0.3.0"),
            "bb",
            NOW,
            30,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PlanError::OtherCluster {
                repo: "demo".into(),
                bundle: "prod".into()
            }
        );
    }

    #[test]
    fn names_that_would_leave_the_repository_are_refused() {
        for (role, version) in [("lb", ".."), ("..", "1"), ("lb/x", "1"), ("lb", "")] {
            let err = next_index(None, &manifest("demo", role, version), "aa", NOW, 30);
            assert!(
                matches!(err, Err(PlanError::BadName { .. })),
                "{role} {version}: {err:?}"
            );
        }
    }

    #[test]
    fn withdrawing_drops_one_entry_and_grows_the_serial() {
        let mut ix = next_index(
            None,
            &manifest("demo", "lb", "0.4.0"),
            &"a".repeat(64),
            NOW,
            30,
        )
        .unwrap()
        .index;
        for (role, v) in [("lb", "0.5.0"), ("base", "0.5.0")] {
            ix = next_index(
                Some(&ix),
                &manifest("demo", role, v),
                &"b".repeat(64),
                NOW,
                30,
            )
            .unwrap()
            .index;
        }
        assert_eq!(ix.serial, 3);
        let w = withdraw(&ix, "lb", "qemu-x86_64", "0.5.0", NOW + 10, 7).unwrap();
        assert_eq!(w.serial, 4);
        assert_eq!(w.published, NOW + 10);
        assert_eq!(w.expires, NOW + 10 + 7 * 86_400);
        assert_eq!(w.cluster, "demo");
        let left: Vec<(&str, &str)> = w
            .bundles
            .iter()
            .map(|e| (e.role.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(left, [("base", "0.5.0"), ("lb", "0.4.0")]);
        w.validate().unwrap();
        // The last one of a role and profile may go too.
        let w = withdraw(&w, "lb", "qemu-x86_64", "0.4.0", NOW + 20, 30).unwrap();
        assert_eq!(w.bundles.len(), 1);
        assert_eq!(w.serial, 5);
    }

    #[test]
    fn withdrawing_what_is_not_on_offer_names_what_is() {
        let mut ix = next_index(None, &manifest("demo", "lb", "0.10.0"), "a", NOW, 30)
            .unwrap()
            .index;
        ix = next_index(Some(&ix), &manifest("demo", "lb", "0.9.0"), "b", NOW, 30)
            .unwrap()
            .index;
        let e = withdraw(&ix, "web", "qemu-x86_64", "0.9.0", NOW, 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the repository offers no bundle for role \"web\" (roles on offer: lb)"
        );
        let e = withdraw(&ix, "lb", "rpi4", "0.9.0", NOW, 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the repository offers no lb bundle for profile \"rpi4\" (profiles on offer for lb: qemu-x86_64)"
        );
        let e = withdraw(&ix, "lb", "qemu-x86_64", "0.9", NOW, 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lb/qemu-x86_64 0.9 is not on offer (versions on offer: 0.9.0, 0.10.0)"
        );
        ix.serial = u64::MAX;
        assert_eq!(
            withdraw(&ix, "lb", "qemu-x86_64", "0.9.0", NOW, 30),
            Err(PlanError::SerialExhausted(u64::MAX))
        );
    }

    #[test]
    fn a_serial_at_the_end_is_refused() {
        let mut one = next_index(None, &manifest("demo", "lb", "0.2.0"), "aa", NOW, 30)
            .unwrap()
            .index;
        one.serial = u64::MAX;
        let err = next_index(Some(&one), &manifest("demo", "lb", "0.3.0"), "b", NOW, 30);
        assert_eq!(err, Err(PlanError::SerialExhausted(u64::MAX)));
    }
}

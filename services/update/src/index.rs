//! The repository index (`index.json`): which bundles a repository offers,
//! and the box's decision which one (if any) to install.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SignatureError, verify_detached};
use crate::manifest::check_name;
use crate::{hex, version};

/// The index format this crate reads and writes.
pub const FORMAT: u32 = 1;

/// A repository's signed index.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The site's cluster name.
    pub cluster: String,
    /// Grows by one with every publish; boxes refuse a lower one than they saw.
    pub serial: u64,
    /// When it was published (seconds since the epoch).
    pub published: u64,
    /// When it stops being trusted (seconds since the epoch).
    pub expires: u64,
    /// Every bundle on offer.
    pub bundles: Vec<IndexEntry>,
}

/// One bundle on offer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// The role it was built for.
    pub role: String,
    /// The hardware profile it was built for.
    pub profile: String,
    /// Its version.
    pub version: String,
    /// Directory relative to the repository base, ending in '/'.
    pub path: String,
    /// sha256 (lower-case hex) of its `manifest.json`.
    pub manifest_sha256: String,
}

/// Why an index is refused as a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The signature does not check out.
    #[error("index.json: {0}")]
    Signature(#[from] SignatureError),
    /// Not JSON of the right shape.
    #[error("index.json: {0}")]
    Json(String),
    /// A field has a bad value.
    #[error("index.json: field `{field}`: {reason}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> IndexError {
    IndexError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Whether `p` is a relative directory path without `..`, ending in '/'.
fn is_bundle_path(p: &str) -> bool {
    p.ends_with('/')
        && !p.starts_with('/')
        && p.trim_end_matches('/')
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.contains('\\'))
        && p.chars().all(|c| c.is_ascii_graphic())
}

impl Index {
    /// Parses and validates an index.
    pub fn from_json(bytes: &[u8]) -> Result<Index, IndexError> {
        let ix: Index =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Json(e.to_string()))?;
        ix.validate()?;
        Ok(ix)
    }

    /// Checks every field's value; the first problem is reported.
    pub fn validate(&self) -> Result<(), IndexError> {
        if self.format != FORMAT {
            return Err(field(
                "format",
                format!(
                    "format {} is not supported (this build reads {FORMAT})",
                    self.format
                ),
            ));
        }
        check_name(&self.cluster).map_err(|r| field("cluster", r))?;
        if self.expires <= self.published {
            return Err(field(
                "expires",
                format!(
                    "{} is not after `published` ({})",
                    self.expires, self.published
                ),
            ));
        }
        for (i, b) in self.bundles.iter().enumerate() {
            let f = |k: &str| format!("bundles[{i}].{k}");
            check_name(&b.role).map_err(|r| field(f("role"), r))?;
            check_name(&b.profile).map_err(|r| field(f("profile"), r))?;
            version::validate(&b.version).map_err(|e| field(f("version"), e.to_string()))?;
            if !is_bundle_path(&b.path) {
                return Err(field(
                    f("path"),
                    format!(
                        "{:?} is not a relative directory path ending in '/'",
                        b.path
                    ),
                ));
            }
            if !hex::is_lower_hex(&b.manifest_sha256, 64) {
                return Err(field(
                    f("manifest_sha256"),
                    format!("{:?} is not 64 lower-case hex digits", b.manifest_sha256),
                ));
            }
            if let Some(j) = self.bundles[..i]
                .iter()
                .position(|o| o.role == b.role && o.profile == b.profile && o.version == b.version)
            {
                return Err(field(
                    f("version"),
                    format!(
                        "{} {} {} is also bundles[{j}]",
                        b.role, b.profile, b.version
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The index's text: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Verifies the signature, then parses: what the box calls on
/// `index.json` + `index.json.sig`.
pub fn verify(key: &PublicKey, bytes: &[u8], sig_bytes: &[u8]) -> Result<Index, IndexError> {
    verify_detached(key, bytes, sig_bytes)?;
    Index::from_json(bytes)
}

/// What the box runs and remembers.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    /// The site's cluster name.
    pub cluster: &'a str,
    /// The box's role.
    pub role: &'a str,
    /// The box's hardware profile.
    pub profile: &'a str,
    /// The running version.
    pub version: &'a str,
    /// The running image's SOURCE_DATE_EPOCH (a clock before it is not trusted).
    pub source_date_epoch: u64,
    /// The highest index serial accepted so far.
    pub last_serial: Option<u64>,
    /// Versions that failed to boot; never installed again.
    pub failed: &'a [String],
    /// The box's clock (seconds since the epoch).
    pub now: u64,
    /// The site's `[update] allow_downgrade`: whether an older newest offer is a
    /// downgrade target instead of a refusal.
    pub allow_downgrade: bool,
}

/// What to do with an acceptable index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<'a> {
    /// Nothing newer is on offer.
    UpToDate,
    /// Install this bundle (newer than the running version).
    Install(&'a IndexEntry),
    /// Go back to this bundle: it is older than the running version, and the
    /// site allows downgrades.
    Downgrade(&'a IndexEntry),
}

/// Why an index is not acted upon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The index is for another cluster.
    #[error("index is for cluster {found:?}, this box is in {expected:?}")]
    OtherCluster {
        /// This box's cluster.
        expected: String,
        /// The index's cluster.
        found: String,
    },
    /// The serial went down: the repository was rolled back.
    #[error(
        "index serial {found} is below {last}, the last one accepted (repository rolled back?)"
    )]
    SerialRollback {
        /// The last serial accepted.
        last: u64,
        /// The index's serial.
        found: u64,
    },
    /// The index expired (a frozen mirror).
    #[error("index expired at {expires}, the clock says {now}")]
    Expired {
        /// When it expired.
        expires: u64,
        /// The box's clock.
        now: u64,
    },
    /// The newest bundle on offer is older than the running version, and the
    /// site does not allow downgrades.
    #[error(
        "the newest {role}/{profile} on offer is {offered}, older than the running {running} \
         (the site's [update] allow_downgrade is false)"
    )]
    Older {
        /// The role.
        role: String,
        /// The profile.
        profile: String,
        /// The newest version on offer.
        offered: String,
        /// The running version.
        running: String,
    },
}

/// Picks the bundle to install, if any.
///
/// Refuses an index for another cluster, one whose serial is below
/// `last_serial`, and an expired one (only when `now >= source_date_epoch`:
/// an earlier clock is not trusted). Among the entries for the box's role and
/// profile that are not in `failed`, the newest is the target: newer than the
/// running version, it is installed; equal, the box is up to date; older, it
/// is a [`Choice::Downgrade`] when `allow_downgrade` is set and the index is
/// refused with [`Refusal::Older`] otherwise.
pub fn choose<'a>(index: &'a Index, me: &Running<'_>) -> Result<Choice<'a>, Refusal> {
    if index.cluster != me.cluster {
        return Err(Refusal::OtherCluster {
            expected: me.cluster.to_owned(),
            found: index.cluster.clone(),
        });
    }
    if let Some(last) = me.last_serial.filter(|&last| index.serial < last) {
        return Err(Refusal::SerialRollback {
            last,
            found: index.serial,
        });
    }
    if me.now >= me.source_date_epoch && me.now >= index.expires {
        return Err(Refusal::Expired {
            expires: index.expires,
            now: me.now,
        });
    }
    let newest = index
        .bundles
        .iter()
        .filter(|b| b.role == me.role && b.profile == me.profile)
        .filter(|b| !me.failed.iter().any(|f| f == &b.version))
        .max_by(|a, b| version::compare(&a.version, &b.version));
    let Some(newest) = newest else {
        return Ok(Choice::UpToDate);
    };
    match version::compare(&newest.version, me.version) {
        Ordering::Greater => Ok(Choice::Install(newest)),
        Ordering::Equal => Ok(Choice::UpToDate),
        Ordering::Less if me.allow_downgrade => Ok(Choice::Downgrade(newest)),
        Ordering::Less => Err(Refusal::Older {
            role: me.role.to_owned(),
            profile: me.profile.to_owned(),
            offered: newest.version.clone(),
            running: me.version.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn entry(role: &str, profile: &str, version: &str) -> IndexEntry {
        IndexEntry {
            role: role.into(),
            profile: profile.into(),
            version: version.into(),
            path: format!("bundles/{role}/{profile}/{version}/"),
            manifest_sha256: "ab".repeat(32),
        }
    }

    fn index(bundles: Vec<IndexEntry>) -> Index {
        Index {
            format: FORMAT,
            cluster: "demo".into(),
            serial: 7,
            published: 1_764_400_000,
            expires: 1_767_000_000,
            bundles,
        }
    }

    fn me<'a>(version: &'a str, failed: &'a [String]) -> Running<'a> {
        Running {
            cluster: "demo",
            role: "lb",
            profile: "qemu-x86_64",
            version,
            source_date_epoch: 1_700_000_000,
            last_serial: Some(7),
            failed,
            now: 1_765_000_000,
            allow_downgrade: false,
        }
    }

    fn offered() -> Index {
        index(vec![
            entry("lb", "qemu-x86_64", "0.2.0"),
            entry("lb", "qemu-x86_64", "0.10.0"),
            entry("lb", "qemu-x86_64", "0.3.0"),
            entry("lb", "generic-x86_64", "9.0"),
            entry("base", "qemu-x86_64", "9.0"),
        ])
    }

    fn picked<'a>(c: Result<Choice<'a>, Refusal>) -> Option<&'a str> {
        match c.unwrap() {
            Choice::UpToDate => None,
            Choice::Install(e) => Some(e.version.as_str()),
            Choice::Downgrade(e) => panic!("unexpected downgrade to {}", e.version),
        }
    }

    fn downgrade_to<'a>(c: Result<Choice<'a>, Refusal>) -> Option<&'a str> {
        match c.unwrap() {
            Choice::Downgrade(e) => Some(e.version.as_str()),
            other => panic!("expected a downgrade, got {other:?}"),
        }
    }

    #[test]
    fn the_newest_for_role_and_profile_is_installed() {
        let ix = offered();
        // 0.10.0 is newest by version order (not by string order or position);
        // other roles and profiles offering 9.0 are ignored.
        assert_eq!(picked(choose(&ix, &me("0.1.0", &[]))), Some("0.10.0"));
        assert_eq!(picked(choose(&ix, &me("0.3.0", &[]))), Some("0.10.0"));
    }

    #[test]
    fn equal_is_up_to_date_and_nothing_on_offer_too() {
        let ix = offered();
        assert_eq!(picked(choose(&ix, &me("0.10.0", &[]))), None);
        let mut other = me("0.1.0", &[]);
        other.profile = "rpi4";
        assert_eq!(picked(choose(&ix, &other)), None);
    }

    #[test]
    fn older_than_running_is_refused() {
        let ix = offered();
        assert_eq!(
            choose(&ix, &me("0.11.0", &[])),
            Err(Refusal::Older {
                role: "lb".into(),
                profile: "qemu-x86_64".into(),
                offered: "0.10.0".into(),
                running: "0.11.0".into(),
            })
        );
    }

    #[test]
    fn older_than_running_is_refused_with_the_hint() {
        let e = choose(&offered(), &me("0.11.0", &[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "the newest lb/qemu-x86_64 on offer is 0.10.0, older than the running 0.11.0 \
             (the site's [update] allow_downgrade is false)"
        );
    }

    #[test]
    fn allow_downgrade_makes_an_older_newest_offer_the_target() {
        let ix = offered();
        let mut m = me("0.11.0", &[]);
        m.allow_downgrade = true;
        // The newest on offer, not the one just below the running version.
        assert_eq!(downgrade_to(choose(&ix, &m)), Some("0.10.0"));
        // Failed versions are skipped as for upgrades: the next older one is the target.
        let failed = vec!["0.10.0".to_owned()];
        let mut m = me("0.11.0", &failed);
        m.allow_downgrade = true;
        assert_eq!(downgrade_to(choose(&ix, &m)), Some("0.3.0"));
        // Newer and equal behave as without the switch.
        let mut m = me("0.2.0", &[]);
        m.allow_downgrade = true;
        assert_eq!(picked(choose(&ix, &m)), Some("0.10.0"));
        let mut m = me("0.10.0", &[]);
        m.allow_downgrade = true;
        assert_eq!(picked(choose(&ix, &m)), None);
        // Nothing on offer (everything withdrawn or failed) is never a downgrade.
        let all = vec!["0.10.0".to_owned(), "0.3.0".to_owned(), "0.2.0".to_owned()];
        let mut m = me("0.11.0", &all);
        m.allow_downgrade = true;
        assert_eq!(picked(choose(&ix, &m)), None);
        // The index checks come first: a rolled-back index is still refused.
        let mut m = me("0.11.0", &[]);
        m.allow_downgrade = true;
        m.last_serial = Some(8);
        assert_eq!(
            choose(&ix, &m),
            Err(Refusal::SerialRollback { last: 8, found: 7 })
        );
    }

    #[test]
    fn failed_versions_are_skipped() {
        let ix = offered();
        let failed = vec!["0.10.0".to_owned()];
        assert_eq!(picked(choose(&ix, &me("0.1.0", &failed))), Some("0.3.0"));
        let failed = vec!["0.10.0".to_owned(), "0.3.0".to_owned(), "0.2.0".to_owned()];
        assert_eq!(picked(choose(&ix, &me("0.1.0", &failed))), None);
        // Running 0.3.0 with 0.10.0 failed: nothing newer, up to date.
        let failed = vec!["0.10.0".to_owned()];
        assert_eq!(picked(choose(&ix, &me("0.3.0", &failed))), None);
    }

    #[test]
    fn other_cluster_is_refused() {
        let mut ix = offered();
        ix.cluster = "prod".into();
        assert_eq!(
            choose(&ix, &me("0.1.0", &[])),
            Err(Refusal::OtherCluster {
                expected: "demo".into(),
                found: "prod".into()
            })
        );
    }

    #[test]
    fn serial_rollback_is_refused() {
        let ix = offered();
        let mut m = me("0.1.0", &[]);
        m.last_serial = Some(8);
        assert_eq!(
            choose(&ix, &m),
            Err(Refusal::SerialRollback { last: 8, found: 7 })
        );
        m.last_serial = Some(7);
        assert!(choose(&ix, &m).is_ok());
        m.last_serial = None;
        assert!(choose(&ix, &m).is_ok());
    }

    #[test]
    fn expired_is_refused_unless_the_clock_is_before_the_build() {
        let ix = offered();
        let mut m = me("0.1.0", &[]);
        m.now = ix.expires;
        assert_eq!(
            choose(&ix, &m),
            Err(Refusal::Expired {
                expires: ix.expires,
                now: ix.expires
            })
        );
        // A clock before the running image was built is not trusted.
        m.now = 1_000;
        assert_eq!(picked(choose(&ix, &m)), Some("0.10.0"));
    }

    #[test]
    fn json_round_trip_and_signature() {
        let k = SigningKey::from_bytes(&[5; 32]);
        let ix = offered();
        let text = ix.to_json();
        assert_eq!(Index::from_json(text.as_bytes()).unwrap(), ix);
        let sig = k.sign(text.as_bytes()).to_json();
        assert_eq!(
            verify(&k.public_key(), text.as_bytes(), sig.as_bytes()).unwrap(),
            ix
        );
        let tampered = text.replace("\"serial\": 7", "\"serial\": 9");
        assert!(matches!(
            verify(&k.public_key(), tampered.as_bytes(), sig.as_bytes()),
            Err(IndexError::Signature(SignatureError::Bad(_)))
        ));
    }

    /// A change that makes a valid value invalid.
    type Change = Box<dyn Fn(&mut Index)>;

    #[test]
    fn bad_fields_are_named() {
        let good = offered();
        good.validate().unwrap();
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|i| i.format = 0), "field `format`"),
            (Box::new(|i| i.cluster = "a b".into()), "field `cluster`"),
            (Box::new(|i| i.expires = i.published), "field `expires`"),
            (
                Box::new(|i| i.bundles[1].version = "1+2".into()),
                "field `bundles[1].version`",
            ),
            (
                Box::new(|i| i.bundles[2].path = "../x/".into()),
                "field `bundles[2].path`",
            ),
            (
                Box::new(|i| i.bundles[2].path = "/abs/".into()),
                "field `bundles[2].path`",
            ),
            (
                Box::new(|i| i.bundles[2].path = "no-slash".into()),
                "field `bundles[2].path`",
            ),
            (
                Box::new(|i| i.bundles[0].manifest_sha256 = "x".into()),
                "field `bundles[0].manifest_sha256`",
            ),
            (
                Box::new(|i| i.bundles[0].role = String::new()),
                "field `bundles[0].role`",
            ),
            (
                Box::new(|i| i.bundles[2].version = "0.2.0".into()),
                "field `bundles[2].version`: lb qemu-x86_64 0.2.0 is also bundles[0]",
            ),
        ];
        for (change, want) in cases {
            let mut ix = good.clone();
            change(&mut ix);
            let e = Index::from_json(ix.to_json().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("index.json: "), "{e}");
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
        let e = Index::from_json(b"{\"format\": 1}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }
}

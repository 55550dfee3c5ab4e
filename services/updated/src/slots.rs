//! Which partitions hold the root slots and the ESP, and which slot the box booted from.
//!
//! There is no udev on the box: partitions are found by scanning
//! `<sys>/class/block/*/uevent` for `PARTNAME=root-a`, `root-b` and `esp`, whose `DEVNAME`
//! names the node under `<dev>`; sizes come from `<sys>/class/block/<name>/size` (512-byte
//! sectors). Both roots are passed in, so tests run against a fake tree.

use std::fmt;
use std::path::{Path, PathBuf};

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// `root-a`.
    A,
    /// `root-b`.
    B,
}

impl Slot {
    /// Both slots, `a` first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// `a` or `b`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The partition label, `root-a` or `root-b`.
    pub fn partname(self) -> &'static str {
        match self {
            Slot::A => "root-a",
            Slot::B => "root-b",
        }
    }

    /// Parses `a` or `b` (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Option<Slot> {
        match text.trim() {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A partition found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its device node, `<dev>/<DEVNAME>`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// The partitions cairn uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    /// `root-a`.
    pub root_a: Partition,
    /// `root-b`.
    pub root_b: Partition,
}

impl Partitions {
    /// The partition of `slot`.
    pub fn slot(&self, slot: Slot) -> &Partition {
        match slot {
            Slot::A => &self.root_a,
            Slot::B => &self.root_b,
        }
    }
}

/// Why the slots could not be found.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// `<sys>/class/block` could not be listed.
    #[error("cannot list {}: {source}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No partition carries the label.
    #[error("no partition labelled {partname} in {}", sys.display())]
    Missing {
        /// The label.
        partname: &'static str,
        /// The sysfs root searched.
        sys: PathBuf,
    },
    /// Two partitions carry the label (e.g. a second cairn disk).
    #[error("two partitions are labelled {partname}: {first} and {second}")]
    Duplicate {
        /// The label.
        partname: &'static str,
        /// One device.
        first: String,
        /// The other.
        second: String,
    },
    /// The size file is missing or not a number.
    #[error("cannot read the size of {name} from {}: {reason}", path.display())]
    Size {
        /// The block device.
        name: String,
        /// The size file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The boot-slot file could not be read or holds neither `a` nor `b`.
    #[error("{}: {reason}", path.display())]
    BootSlot {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// `KEY=value` from a uevent file.
fn uevent_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Finds `root-a` and `root-b` under `sys` (e.g. `/sys`), with device nodes under `dev`.
pub fn find_partitions(sys: &Path, dev: &Path) -> Result<Partitions, SlotError> {
    let class = sys.join("class/block");
    let entries = std::fs::read_dir(&class).map_err(|source| SlotError::List {
        path: class.clone(),
        source,
    })?;
    let mut found: [Option<(String, String)>; 2] = [None, None];
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let Ok(text) = std::fs::read_to_string(class.join(&name).join("uevent")) else {
            continue;
        };
        let Some(partname) = uevent_value(&text, "PARTNAME") else {
            continue;
        };
        let devname = uevent_value(&text, "DEVNAME").unwrap_or(&name).to_owned();
        for (i, slot) in Slot::ALL.iter().enumerate() {
            if partname == slot.partname() {
                if let Some((_, first)) = &found[i] {
                    return Err(SlotError::Duplicate {
                        partname: slot.partname(),
                        first: first.clone(),
                        second: devname,
                    });
                }
                found[i] = Some((name.clone(), devname.clone()));
            }
        }
    }
    let part = |i: usize, slot: Slot| -> Result<Partition, SlotError> {
        let (name, devname) = found[i].clone().ok_or_else(|| SlotError::Missing {
            partname: slot.partname(),
            sys: sys.to_path_buf(),
        })?;
        let size_path = class.join(&name).join("size");
        let size_error = |reason: String| SlotError::Size {
            name: name.clone(),
            path: size_path.clone(),
            reason,
        };
        let sectors: u64 = std::fs::read_to_string(&size_path)
            .map_err(|e| size_error(e.to_string()))?
            .trim()
            .parse()
            .map_err(|e: std::num::ParseIntError| size_error(e.to_string()))?;
        Ok(Partition {
            path: dev.join(devname),
            size: sectors * 512,
        })
    };
    Ok(Partitions {
        root_a: part(0, Slot::A)?,
        root_b: part(1, Slot::B)?,
    })
}

/// The booted slot from the early stage's file, `None` when the file does not exist (the
/// box did not boot from disk).
pub fn booted_slot(file: &Path) -> Result<Option<Slot>, SlotError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Slot::parse(&text)
            .map(Some)
            .ok_or_else(|| SlotError::BootSlot {
                path: file.to_path_buf(),
                reason: format!("holds {:?}, expected \"a\" or \"b\"", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SlotError::BootSlot {
            path: file.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Writes a fake sysfs block entry: `<sys>/class/block/<name>/{uevent,size}`; for tests
/// (here and in the integration tests).
pub fn write_fake_block(
    sys: &Path,
    name: &str,
    partname: Option<&str>,
    sectors: u64,
) -> std::io::Result<()> {
    let dir = sys.join("class/block").join(name);
    std::fs::create_dir_all(&dir)?;
    let mut uevent = format!("MAJOR=259\nMINOR=1\nDEVNAME={name}\nDEVTYPE=partition\n");
    if let Some(p) = partname {
        uevent.push_str(&format!("PARTN=1\nPARTNAME={p}\n"));
    }
    std::fs::write(dir.join("uevent"), uevent)?;
    std::fs::write(dir.join("size"), format!("{sectors}\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_slots_by_partition_label() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        write_fake_block(&sys, "vda", None, 1000).unwrap();
        write_fake_block(&sys, "vda1", Some("esp"), 100).unwrap();
        write_fake_block(&sys, "vda2", Some("root-a"), 2048).unwrap();
        write_fake_block(&sys, "vda3", Some("root-b"), 4096).unwrap();
        write_fake_block(&sys, "vda4", Some("data"), 10).unwrap();
        let p = find_partitions(&sys, Path::new("/dev")).unwrap();
        assert_eq!(
            p.slot(Slot::A),
            &Partition {
                path: PathBuf::from("/dev/vda2"),
                size: 2048 * 512
            }
        );
        assert_eq!(p.slot(Slot::B).path, PathBuf::from("/dev/vda3"));
        assert_eq!(p.slot(Slot::B).size, 4096 * 512);
    }

    #[test]
    fn missing_and_duplicate_labels_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        write_fake_block(&sys, "vda2", Some("root-a"), 2048).unwrap();
        let err = find_partitions(&sys, Path::new("/dev")).unwrap_err();
        assert!(
            err.to_string().starts_with("no partition labelled root-b"),
            "{err}"
        );
        write_fake_block(&sys, "vdb2", Some("root-a"), 2048).unwrap();
        let err = find_partitions(&sys, Path::new("/dev")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "two partitions are labelled root-a: vda2 and vdb2"
        );
    }

    #[test]
    fn boot_slot_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("boot-slot");
        assert_eq!(booted_slot(&f).unwrap(), None);
        std::fs::write(&f, "b\n").unwrap();
        assert_eq!(booted_slot(&f).unwrap(), Some(Slot::B));
        std::fs::write(&f, "c\n").unwrap();
        assert!(booted_slot(&f).unwrap_err().to_string().contains("\"c\""));
        assert_eq!(Slot::A.other(), Slot::B);
    }
}

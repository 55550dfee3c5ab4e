//! `cairn.root=ab`: finds which A/B root slot holds the image the UKI was
//! built for. The kernel command line carries the dm-verity root hash, and
//! the root hash is sha256(salt ‖ top block of the hash tree), so reading one
//! block of each slot tells which one holds the image, without trusting
//! anything else on the disk. The same UKI therefore boots from either slot.
//! The partition found here is still set up through dm-verity and checked in
//! full afterwards: the match only picks the slot, it verifies nothing else.
//! See docs/update.md ("Finding the root").

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::blockdev::{self, Roots};
use crate::cmdline::{DeviceSpec, SLOT_LABELS, Slot, VERITY_BLOCK, VerityParams, to_hex};
use crate::dm;

/// Where the booted slot's letter is written for the real system (cairn-updated).
pub const BOOT_SLOT_FILE: &str = "/run/cairn/boot-slot";

/// How many hex digits of a foreign hash the console shows.
const SHORT_HASH: usize = 16;

/// The byte offset of the block whose salted sha256 is the root hash.
///
/// `head` is what the device holds at the hash offset (at least a
/// veritysetup superblock's worth when the device is that large): with a
/// superblock the tree starts one block later ([`dm::hash_start`]). A tree
/// over a single data block has no hash blocks at all; its root hash is the
/// salted hash of that data block (checked against veritysetup in the tests).
pub fn top_block_offset(v: &VerityParams, head: &[u8]) -> Result<u64, String> {
    if v.data_blocks == 1 {
        return Ok(0);
    }
    Ok(dm::hash_start(v, head)? * VERITY_BLOCK)
}

/// sha256(salt ‖ block): dm-verity's (format 1) hash of one block.
pub fn salted_hash(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// What one slot's partition holds, as far as the root hash can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The image the command line names.
    Match,
    /// Another image (or anything else): the salted hash of its top block.
    Other {
        /// sha256(salt ‖ block) with our salt.
        digest: [u8; 32],
    },
    /// Only zeros where the hash tree's top block should be (a blank slot).
    Blank,
    /// The partition cannot be read far enough, or its superblock disagrees.
    Unreadable(String),
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Match => f.write_str("the image"),
            Content::Other { digest } => write!(
                f,
                "another image (its top hash block hashes to {}...)",
                &to_hex(digest)[..SHORT_HASH]
            ),
            Content::Blank => f.write_str("nothing (zeros where the hash tree should start)"),
            Content::Unreadable(why) => f.write_str(why),
        }
    }
}

/// Classifies the top block read from a slot.
pub fn classify(v: &VerityParams, block: &[u8]) -> Content {
    let digest = salted_hash(&v.salt, block);
    if digest == v.root_hash {
        Content::Match
    } else if block.iter().all(|b| *b == 0) {
        Content::Blank
    } else {
        Content::Other { digest }
    }
}

/// Reads `len` bytes at `offset` of `path`, or fewer where the file ends.
fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads the top block of the verity tree of the device (or image file)
/// at `path` and says what it holds.
pub fn examine(path: &Path, v: &VerityParams) -> Content {
    let head = match read_at(path, v.hash_offset, dm::SUPERBLOCK_SIZE) {
        Ok(h) => h,
        Err(e) => return Content::Unreadable(format!("cannot read: {e}")),
    };
    let at = match top_block_offset(v, &head) {
        Ok(at) => at,
        Err(why) => return Content::Unreadable(why),
    };
    match read_at(path, at, VERITY_BLOCK as usize) {
        Ok(block) if block.len() == VERITY_BLOCK as usize => classify(v, &block),
        Ok(block) => Content::Unreadable(format!(
            "too small: it ends at byte {}, inside the hash tree block at byte {at}",
            at + block.len() as u64
        )),
        Err(e) => Content::Unreadable(format!("cannot read byte {at}: {e}")),
    }
}

/// One slot, as found (or not) by [`find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    /// The slot.
    pub slot: Slot,
    /// Its partition name, e.g. `root-a`.
    pub label: &'static str,
    /// The kernel device name, when the partition was found.
    pub device: Option<String>,
    /// What it holds; `None` when it was never found.
    pub content: Option<Content>,
    /// Why it could not be looked at (not found, ambiguous).
    pub problem: Option<String>,
}

impl fmt::Display for SlotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label)?;
        if let Some(d) = &self.device {
            write!(f, " ({d})")?;
        }
        match (&self.content, &self.problem) {
            (Some(c), _) => write!(f, " holds {c}"),
            (None, Some(p)) => write!(f, ": {p}"),
            (None, None) => write!(f, ": not found"),
        }
    }
}

/// No slot holds the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cairn.root=ab: no slot holds the image with root hash {}: {}", to_hex(root_hash), slots.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct NoSlot {
    /// The root hash from `cairn.verity=`.
    pub root_hash: [u8; 32],
    /// What each slot holds.
    pub slots: Vec<SlotReport>,
}

/// The slot found and its device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The slot.
    pub slot: Slot,
    /// The partition's device node.
    pub node: PathBuf,
}

/// Waits up to `wait` (polling every `poll`) for the partitions labelled
/// `root-a` and `root-b`, examining each once it appears, and returns the
/// first (A before B) that holds the image. Gives up early once both were
/// examined and neither matched.
pub fn find(
    roots: &Roots,
    v: &VerityParams,
    wait: Duration,
    poll: Duration,
) -> Result<Found, NoSlot> {
    let start = Instant::now();
    let mut reports: Vec<SlotReport> = SLOT_LABELS
        .iter()
        .map(|&(slot, label)| SlotReport {
            slot,
            label,
            device: None,
            content: None,
            problem: None,
        })
        .collect();
    loop {
        for r in reports.iter_mut().filter(|r| r.content.is_none()) {
            let spec = DeviceSpec::PartLabel(r.label.to_owned());
            let dev =
                match blockdev::scan(roots, &spec).and_then(|m| blockdev::choose(&spec, m, None)) {
                    Ok(Some(dev)) => dev,
                    Ok(None) => continue,
                    Err(e) => {
                        r.problem = Some(e.to_string());
                        continue;
                    }
                };
            r.device = Some(dev.name.clone());
            let node = match blockdev::ensure_node(roots, &dev) {
                Ok(n) => n,
                Err(e) => {
                    r.problem = Some(e.to_string());
                    continue;
                }
            };
            let content = examine(&node, v);
            let matched = content == Content::Match;
            r.content = Some(content);
            r.problem = None;
            if matched {
                return Ok(Found { slot: r.slot, node });
            }
        }
        let all_seen = reports.iter().all(|r| r.content.is_some());
        if all_seen || start.elapsed() >= wait {
            break;
        }
        std::thread::sleep(poll);
    }
    let waited = start.elapsed().as_millis();
    for r in reports
        .iter_mut()
        .filter(|r| r.content.is_none() && r.problem.is_none())
    {
        r.problem = Some(format!("no partition with this name after {waited} ms"));
    }
    Err(NoSlot {
        root_hash: v.root_hash,
        slots: reports,
    })
}

/// The text of [`BOOT_SLOT_FILE`]: the letter and a newline.
pub fn boot_slot_text(slot: Slot) -> String {
    format!("{}\n", slot.as_str())
}

/// Writes `slot` to `path` (creating its directory), replacing it atomically.
pub fn write_boot_slot(path: &Path, slot: Slot) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, boot_slot_text(slot))?;
    std::fs::rename(&tmp, path)
}

/// Reads the booted slot from `path`: `None` when absent or malformed (a
/// PXE or test boot).
pub fn read_boot_slot(path: &Path) -> Option<Slot> {
    match std::fs::read_to_string(path).ok()?.trim() {
        "a" => Some(Slot::A),
        "b" => Some(Slot::B),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::process::Command;

    const VERITYSETUP: &str = "/usr/sbin/veritysetup";

    /// Deterministic filler bytes (xorshift), different per `seed`.
    fn filler(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A root image the way the builder makes one (image/src/build/rootimg.rs):
    /// `data_blocks` blocks of data, then `veritysetup format` at the data's end
    /// with `--no-superblock` (or with one), sha256, 4096-byte blocks and `salt`.
    /// Returns the parameters `cairn.verity=` would carry.
    fn image(
        path: &Path,
        data_blocks: u64,
        salt: &str,
        superblock: bool,
        seed: u64,
    ) -> VerityParams {
        assert!(
            Path::new(VERITYSETUP).exists(),
            "this test needs {VERITYSETUP} (cryptsetup-bin); run `cargo xtask setup`"
        );
        let hash_offset = data_blocks * VERITY_BLOCK;
        std::fs::write(path, filler(hash_offset as usize, seed)).unwrap();
        let mut cmd = Command::new(VERITYSETUP);
        cmd.arg("format");
        if !superblock {
            cmd.arg("--no-superblock");
        }
        let out = cmd
            .arg(format!("--data-blocks={data_blocks}"))
            .arg(format!("--hash-offset={hash_offset}"))
            .arg("--data-block-size=4096")
            .arg("--hash-block-size=4096")
            .arg("--hash=sha256")
            .arg(format!("--salt={salt}"))
            .arg(path)
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "veritysetup format: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let hash = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no root hash in {stdout}"));
        let line = format!("cairn.root=ab cairn.verity={hash}:{salt}:{data_blocks}:{hash_offset}");
        match crate::cmdline::parse(&line).unwrap().verity {
            Some(crate::cmdline::Verity::Params(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_top_block_of_a_veritysetup_tree_hashes_to_the_root_hash() {
        let dir = tempfile::tempdir().unwrap();
        let salt = "5a".repeat(32);
        // One data block (no hash blocks at all), one tree block, two levels.
        for (blocks, superblock) in [(1, false), (2, false), (3, true), (300, false), (300, true)] {
            let p = dir.path().join(format!("img-{blocks}-{superblock}"));
            let v = image(&p, blocks, &salt, superblock, blocks);
            assert_eq!(
                examine(&p, &v),
                Content::Match,
                "{blocks} blocks, superblock {superblock}"
            );
            // Another salt: the same bytes no longer hash to the root hash.
            let mut other = v.clone();
            other.salt = vec![0x5a; 31];
            if superblock {
                assert!(
                    matches!(examine(&p, &other), Content::Unreadable(ref w) if w.contains("salt")),
                    "a superblock with another salt is reported"
                );
            } else {
                assert!(matches!(examine(&p, &other), Content::Other { .. }));
            }
        }
    }

    #[test]
    fn another_image_or_a_damaged_tree_is_not_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let salt = "00".repeat(32);
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let va = image(&a, 300, &salt, false, 1);
        let vb = image(&b, 300, &salt, false, 2);
        assert_ne!(va.root_hash, vb.root_hash);
        assert_eq!(examine(&a, &va), Content::Match);
        let Content::Other { digest } = examine(&b, &va) else {
            panic!("b holds another image")
        };
        assert_eq!(digest, vb.root_hash, "the digest is b's own root hash");
        let shown = Content::Other { digest }.to_string();
        assert!(shown.contains(&to_hex(&vb.root_hash)[..16]), "{shown}");
        // One flipped byte in the top block.
        let mut bytes = std::fs::read(&a).unwrap();
        bytes[va.hash_offset as usize + 100] ^= 1;
        std::fs::write(&a, &bytes).unwrap();
        assert!(matches!(examine(&a, &va), Content::Other { .. }));
    }

    #[test]
    fn blank_short_and_missing_slots_are_described() {
        let dir = tempfile::tempdir().unwrap();
        let v = VerityParams {
            root_hash: [1; 32],
            salt: vec![2; 32],
            data_blocks: 10,
            hash_offset: 10 * VERITY_BLOCK,
        };
        let blank = dir.path().join("blank");
        std::fs::write(&blank, vec![0u8; 12 * 4096]).unwrap();
        assert_eq!(examine(&blank, &v), Content::Blank);
        let short = dir.path().join("short");
        std::fs::write(&short, vec![7u8; 10 * 4096 + 100]).unwrap();
        let Content::Unreadable(why) = examine(&short, &v) else {
            panic!("short image")
        };
        assert_eq!(
            why,
            "too small: it ends at byte 41060, inside the hash tree block at byte 40960"
        );
        let Content::Unreadable(why) = examine(&dir.path().join("nope"), &v) else {
            panic!("missing file")
        };
        assert!(why.starts_with("cannot read: "), "{why}");
    }

    /// A fake sysfs with disk `vdy` and the given partitions (number, label);
    /// their /dev nodes are regular files holding `contents`.
    fn fake_disk(dir: &Path, parts: &[(u32, &str, &Path)]) -> Roots {
        let roots = Roots {
            sys: dir.join("sys"),
            dev: dir.join("dev"),
        };
        std::fs::create_dir_all(roots.sys.join("class/block")).unwrap();
        std::fs::create_dir_all(&roots.dev).unwrap();
        for (n, label, content) in parts {
            let name = format!("vdy{n}");
            let d = roots.sys.join("devices/virtual/block/vdy").join(&name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("partition"), format!("{n}\n")).unwrap();
            std::fs::write(
                d.join("uevent"),
                format!("MAJOR=240\nMINOR={n}\nDEVNAME={name}\nDEVTYPE=partition\nPARTN={n}\nPARTNAME={label}\n"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&d, roots.sys.join("class/block").join(&name)).unwrap();
            std::fs::copy(content, roots.dev.join(&name)).unwrap();
        }
        roots
    }

    const SHORT: Duration = Duration::from_millis(100);
    const POLL: Duration = Duration::from_millis(10);

    #[test]
    fn finds_the_slot_holding_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let salt = "ab".repeat(32);
        let new = dir.path().join("new.img");
        let old = dir.path().join("old.img");
        let v = image(&new, 300, &salt, false, 7);
        image(&old, 300, &salt, false, 8);
        // The new image in B, the old one in A: B is found.
        let roots = fake_disk(
            &dir.path().join("1"),
            &[(2, "root-a", &old), (3, "root-b", &new)],
        );
        let f = find(&roots, &v, SHORT, POLL).unwrap();
        assert_eq!(f.slot, Slot::B);
        assert_eq!(f.node, roots.dev.join("vdy3"));
        // And the other way round.
        let roots = fake_disk(
            &dir.path().join("2"),
            &[(2, "root-a", &new), (3, "root-b", &old)],
        );
        assert_eq!(find(&roots, &v, SHORT, POLL).unwrap().slot, Slot::A);
        // Both hold it (a fresh install written twice): A.
        let roots = fake_disk(
            &dir.path().join("3"),
            &[(2, "root-a", &new), (3, "root-b", &new)],
        );
        assert_eq!(find(&roots, &v, SHORT, POLL).unwrap().slot, Slot::A);
        // Only B exists (yet): found without waiting for A.
        let roots = fake_disk(&dir.path().join("4"), &[(3, "root-b", &new)]);
        assert_eq!(
            find(&roots, &v, Duration::from_secs(60), POLL)
                .unwrap()
                .slot,
            Slot::B
        );
    }

    #[test]
    fn no_match_says_what_each_slot_holds() {
        let dir = tempfile::tempdir().unwrap();
        let salt = "ab".repeat(32);
        let new = dir.path().join("new.img");
        let old = dir.path().join("old.img");
        let blank = dir.path().join("blank.img");
        let v = image(&new, 300, &salt, false, 7);
        let v_old = image(&old, 300, &salt, false, 8);
        std::fs::write(&blank, vec![0u8; 320 * 4096]).unwrap();
        let roots = fake_disk(
            &dir.path().join("1"),
            &[(2, "root-a", &old), (3, "root-b", &blank)],
        );
        let started = Instant::now();
        let e = find(&roots, &v, Duration::from_secs(60), POLL).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "both seen: no waiting"
        );
        assert_eq!(
            e.slots[0].content,
            Some(Content::Other {
                digest: v_old.root_hash
            })
        );
        assert_eq!(e.slots[1].content, Some(Content::Blank));
        let msg = e.to_string();
        assert_eq!(
            msg,
            format!(
                "cairn.root=ab: no slot holds the image with root hash {}: root-a (vdy2) holds another image \
                 (its top hash block hashes to {}...); root-b (vdy3) holds nothing (zeros where the hash tree should start)",
                to_hex(&v.root_hash),
                &to_hex(&v_old.root_hash)[..16]
            )
        );
        // A missing slot is waited for, then named.
        let roots = fake_disk(&dir.path().join("2"), &[(2, "root-a", &old)]);
        let e = find(&roots, &v, SHORT, POLL).unwrap_err();
        assert_eq!(e.slots[1].content, None);
        let msg = e.to_string();
        assert!(
            msg.contains("root-b: no partition with this name after "),
            "{msg}"
        );
    }

    #[test]
    fn boot_slot_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/cairn/boot-slot");
        assert_eq!(read_boot_slot(&p), None);
        write_boot_slot(&p, Slot::B).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(read_boot_slot(&p), Some(Slot::B));
        write_boot_slot(&p, Slot::A).unwrap();
        assert_eq!(read_boot_slot(&p), Some(Slot::A));
        std::fs::write(&p, "c\n").unwrap();
        assert_eq!(read_boot_slot(&p), None);
    }
}

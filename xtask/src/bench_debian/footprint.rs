//! Footprint figures computed the same way for both images: files and ELF
//! executables of a root tree, the bytes an ext4 filesystem uses, and the
//! `zstd -19` size of a disk image.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What a root tree holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Regular files with an execute bit whose first bytes are the ELF magic.
    pub executables: u64,
    /// Sum of the regular files' sizes.
    pub apparent_bytes: u64,
    /// Sum of the blocks the regular files occupy on the host.
    pub allocated_bytes: u64,
}

/// Walks `dir` (symlinks are not followed and not counted).
pub fn tree_stats(dir: &Path) -> Result<TreeStats> {
    let mut s = TreeStats::default();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in entries {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                s.files += 1;
                s.apparent_bytes += meta.len();
                s.allocated_bytes += meta.blocks() * 512;
                if meta.mode() & 0o111 != 0 && is_elf(&e.path()) {
                    s.executables += 1;
                }
            }
        }
    }
    Ok(s)
}

fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|()| magic == *b"\x7fELF")
        .unwrap_or(false)
}

/// Bytes in use on an ext4 image: (block count − free blocks) × block size,
/// from `dumpe2fs -h` (metadata and journal included, as on a real disk).
pub fn ext4_used_bytes(img: &Path) -> Result<u64> {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(img)
        .output()
        .context("running dumpe2fs (e2fsprogs)")?;
    if !out.status.success() {
        bail!(
            "dumpe2fs -h {} failed: {}",
            img.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_dumpe2fs_used(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("dumpe2fs -h {}: no block counts", img.display()))
}

/// Parses `Block count`, `Free blocks` and `Block size` out of `dumpe2fs -h`.
pub fn parse_dumpe2fs_used(text: &str) -> Option<u64> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let count = field("Block count:")?;
    let free = field("Free blocks:")?;
    let size = field("Block size:")?;
    Some(count.saturating_sub(free) * size)
}

/// Size of `zstd -19` of `p` (written next to it and removed again).
pub fn zstd19_bytes(p: &Path) -> Result<u64> {
    let mut out = p.as_os_str().to_owned();
    out.push(".zst");
    let st = Command::new("zstd")
        .args(["-q", "-f", "-19", "-T0"])
        .arg(p)
        .arg("-o")
        .arg(&out)
        .status()
        .context("running zstd (run `cargo xtask setup`)")?;
    if !st.success() {
        bail!("zstd -19 {} failed ({st})", p.display());
    }
    let n = std::fs::metadata(&out)?.len();
    let _ = std::fs::remove_file(&out);
    Ok(n)
}

/// Unpacks the erofs root of a cairn PXE initrd (gzip cpio with `root.img`)
/// into `dest/tree`; returns the tree.
pub fn extract_cairn_root(pxe_initrd: &Path, dest: &Path) -> Result<std::path::PathBuf> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest)?;
    let script = "gzip -dc \"$1\" | cpio --quiet -id root.img";
    let st = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(pxe_initrd)
        .current_dir(dest)
        .status()
        .context("running gzip | cpio")?;
    if !st.success() || !dest.join("root.img").exists() {
        bail!("no root.img in {}", pxe_initrd.display());
    }
    let tree = dest.join("tree");
    let out = Command::new("fsck.erofs")
        .arg(format!("--extract={}", tree.display()))
        .arg(dest.join("root.img"))
        .output()
        .context("running fsck.erofs (erofs-utils)")?;
    if !out.status.success() {
        bail!(
            "fsck.erofs --extract failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumpe2fs_used_blocks() {
        let t = "Filesystem volume name:   x\nBlock count:              1000\nReserved block count:     50\nFree blocks:              400\nBlock size:               4096\n";
        assert_eq!(parse_dumpe2fs_used(t), Some(600 * 4096));
        assert_eq!(parse_dumpe2fs_used("Block count: 3\n"), None);
    }

    #[test]
    fn tree_stats_counts_only_elf_files_with_x_bit() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, b: &[u8], m: u32| {
            let p = d.path().join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        w("bin/a", b"\x7fELF rest", 0o755);
        w("bin/script", b"#!/bin/sh\n", 0o755);
        w("lib/b.so", b"\x7fELF", 0o644);
        w("usr/x/c", b"\x7fELF..", 0o700);
        std::os::unix::fs::symlink("a", d.path().join("bin/link")).unwrap();
        let s = tree_stats(d.path()).unwrap();
        assert_eq!(s.files, 4);
        assert_eq!(s.executables, 2);
        assert_eq!(s.apparent_bytes, 9 + 10 + 4 + 6);
    }
}

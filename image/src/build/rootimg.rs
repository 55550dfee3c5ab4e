//! The read-only root: an erofs image of the staging tree followed by its
//! dm-verity hash tree, in one file that becomes a root slot partition.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Filesystem and verity block size.
pub const BLOCK: u64 = 4096;

/// What cairn-init needs to set up dm-verity, as it goes on the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verity {
    /// Root hash (hex).
    pub root_hash: String,
    /// Salt (hex).
    pub salt: String,
    /// Number of 4 KiB data blocks (the erofs image).
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the partition.
    pub hash_offset: u64,
}

impl Verity {
    /// `cairn.verity=` value: `<root-hash>:<salt>:<data-blocks>:<hash-offset>`.
    pub fn cmdline(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.root_hash, self.salt, self.data_blocks, self.hash_offset
        )
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| {
        format!(
            "{what}: cannot run {:?} (run `cargo xtask setup`)",
            cmd.get_program()
        )
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds `out` from `tree`: erofs (lz4hc, every file root-owned with mtime
/// `epoch`, UUID `uuid`) padded to a whole block, then the verity hash tree
/// with `salt`. Returns the verity parameters.
pub fn build(tree: &Path, out: &Path, epoch: u64, uuid: &str, salt: &str) -> Result<Verity> {
    run(
        Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg("-zlz4hc")
            .arg(format!("-T{epoch}"))
            .arg(format!("-U{uuid}"))
            .arg("--all-root")
            .arg(out)
            .arg(tree),
        "mkfs.erofs",
    )?;
    let size = std::fs::metadata(out)
        .with_context(|| format!("{}", out.display()))?
        .len();
    let data_blocks = size.div_ceil(BLOCK);
    let hash_offset = data_blocks * BLOCK;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(out)
        .with_context(|| format!("{}", out.display()))?;
    f.set_len(hash_offset)
        .with_context(|| format!("padding {}", out.display()))?;
    drop(f);
    let stdout = run(
        Command::new("veritysetup")
            .arg("format")
            .arg("--no-superblock")
            .arg(format!("--data-blocks={data_blocks}"))
            .arg(format!("--hash-offset={hash_offset}"))
            .arg(format!("--data-block-size={BLOCK}"))
            .arg(format!("--hash-block-size={BLOCK}"))
            .arg("--hash=sha256")
            .arg(format!("--salt={salt}"))
            .arg(out)
            .arg(out),
        "veritysetup format",
    )?;
    let root_hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_owned())
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .with_context(|| format!("veritysetup printed no root hash: {stdout}"))?;
    Ok(Verity {
        root_hash,
        salt: salt.to_owned(),
        data_blocks,
        hash_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hello"), "hello\n").unwrap();
        std::fs::write(tree.join("big"), vec![7u8; 200_000]).unwrap();
        let salt = "00".repeat(32);
        let uuid = "6e2f1b0c-0c1e-4a8e-9d3c-2b1a0f9e8d7c";
        let a = dir.path().join("a.img");
        let b = dir.path().join("b.img");
        let va = build(&tree, &a, 1_767_225_600, uuid, &salt).unwrap();
        // Touch the tree: mtimes must not matter.
        std::fs::write(tree.join("etc/hello"), "hello\n").unwrap();
        let vb = build(&tree, &b, 1_767_225_600, uuid, &salt).unwrap();
        assert_eq!(va, vb);
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "byte-identical"
        );
        assert_eq!(va.hash_offset % BLOCK, 0);
        // veritysetup verify agrees with the root hash.
        let verifies = |img: &Path| {
            Command::new("veritysetup")
                .args(["verify", "--no-superblock"])
                .arg(format!("--data-blocks={}", va.data_blocks))
                .arg(format!("--hash-offset={}", va.hash_offset))
                .arg(format!("--salt={salt}"))
                .arg(img)
                .arg(img)
                .arg(&va.root_hash)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verifies(&a));
        // A flipped byte in the data area fails verification.
        let mut bytes = std::fs::read(&a).unwrap();
        bytes[8192] ^= 0xff;
        std::fs::write(&a, &bytes).unwrap();
        assert!(!verifies(&a), "corruption must be detected");
    }
}

//! Is a disk empty? Looks for the signatures blkid knows best in the first
//! bytes of a device. Free of I/O: the caller reads [`PROBE_BYTES`] bytes.
//!
//! A disk is formatted only when it is [`Content::Empty`]: no signature and
//! nothing but zeros in the probed bytes. Anything else (a filesystem, a
//! partition table, LVM, LUKS, swap, or bytes we cannot name) is left alone,
//! so a reflashed box keeps its bricks and a wrong disk name never costs data.

/// How many bytes from the start of the device are probed (1 MiB: covers
/// every signature below, and what partitioning tools leave at the start).
pub const PROBE_BYTES: usize = 1 << 20;

/// What the start of a device holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Only zeros: safe to format.
    Empty,
    /// A known signature (the name says which).
    Signature(&'static str),
    /// Non-zero bytes without a known signature: never formatted.
    Unknown,
}

/// (offset, magic bytes, name), checked in order.
const SIGNATURES: &[(usize, &[u8], &str)] = &[
    (0, b"XFSB", "xfs"),
    (0x438, &[0x53, 0xef], "ext2/3/4"),
    (0x10040, b"_BHRfS_M", "btrfs"),
    (1024, &[0xe2, 0xe1, 0xf5, 0xe0], "erofs"),
    (0, b"hsqs", "squashfs"),
    (0, b"LUKS\xba\xbe", "LUKS"),
    (0, b"SKUL\xba\xbe", "LUKS2 (secondary)"),
    (512, b"LABELONE", "LVM2 physical volume"),
    (24, b"LABELONE", "LVM2 physical volume"),
    (512, b"EFI PART", "GPT partition table"),
    (4086, b"SWAPSPACE2", "swap"),
    (4086, b"SWAP-SPACE", "swap"),
    (0x8001, b"CD001", "ISO 9660"),
    (3, b"NTFS    ", "NTFS"),
    (82, b"FAT32   ", "FAT32"),
    (54, b"FAT16   ", "FAT16"),
    (54, b"FAT12   ", "FAT12"),
    (0x1000, &[0xfc, 0x4e, 0x2b, 0xa9], "Linux RAID (md 1.1/1.2)"),
    (0x1018, &[0xa9, 0x2b, 0x4e, 0xfc], "Linux RAID (md 1.2)"),
    (510, &[0x55, 0xaa], "MBR / boot sector"),
];

/// Classifies the first bytes of a device (`head` may be shorter than
/// [`PROBE_BYTES`] for a small device).
pub fn classify(head: &[u8]) -> Content {
    for &(off, magic, name) in SIGNATURES {
        if head.get(off..off + magic.len()) == Some(magic) {
            return Content::Signature(name);
        }
    }
    if head.iter().all(|&b| b == 0) {
        Content::Empty
    } else {
        Content::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(off: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; PROBE_BYTES];
        v[off..off + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn zeros_are_empty_and_short_devices_too() {
        assert_eq!(classify(&vec![0; PROBE_BYTES]), Content::Empty);
        assert_eq!(classify(&[0; 100]), Content::Empty);
    }

    #[test]
    fn filesystems_and_tables_are_named() {
        assert_eq!(classify(&with(0, b"XFSB")), Content::Signature("xfs"));
        assert_eq!(
            classify(&with(0x438, &[0x53, 0xef])),
            Content::Signature("ext2/3/4")
        );
        assert_eq!(
            classify(&with(0x10040, b"_BHRfS_M")),
            Content::Signature("btrfs")
        );
        assert_eq!(
            classify(&with(512, b"EFI PART")),
            Content::Signature("GPT partition table")
        );
        assert_eq!(
            classify(&with(4086, b"SWAPSPACE2")),
            Content::Signature("swap")
        );
        assert_eq!(
            classify(&with(510, &[0x55, 0xaa])),
            Content::Signature("MBR / boot sector")
        );
    }

    #[test]
    fn stray_bytes_are_never_empty() {
        let mut v = vec![0u8; PROBE_BYTES];
        v[PROBE_BYTES - 1] = 1;
        assert_eq!(classify(&v), Content::Unknown);
    }

    /// A real XFS made by the host's mkfs.xfs, when it has one; the test fails
    /// loudly otherwise (xfsprogs is a dependency of the storage tests).
    #[test]
    fn a_real_mkfs_xfs_image_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(300 << 20).unwrap();
        let mkfs = ["/sbin/mkfs.xfs", "/usr/sbin/mkfs.xfs"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "mkfs.xfs is missing on this host: apt-get install xfsprogs (cargo xtask setup)",
            );
        let st = std::process::Command::new(mkfs)
            .args(["-q", "-i", "size=512"])
            .arg(&img)
            .status()
            .unwrap();
        assert!(st.success());
        let head = std::fs::read(&img).unwrap();
        assert_eq!(classify(&head[..PROBE_BYTES]), Content::Signature("xfs"));
    }
}

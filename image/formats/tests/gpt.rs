//! GPT disks verified with sgdisk (Debian package gdisk).

// Helpers outside #[test] fns are test code too: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_formats::gpt::{
    EFI_SYSTEM_PARTITION, GptError, LINUX_DATA, LINUX_ROOT_X86_64, Layout, Partition, write_disk,
};

const MIB: u64 = 1 << 20;

fn sgdisk(args: &[&str], disk: &Path) -> String {
    let out = Command::new("sgdisk")
        .args(args)
        .arg(disk)
        .output()
        .expect("run sgdisk (Debian package gdisk)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sgdisk {args:?} failed:\n{text}");
    text
}

fn write_pattern(path: &Path, len: usize, salt: u8) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ salt).collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn standard(esp: &Path, root: &Path) -> Vec<Partition> {
    vec![
        Partition::new("esp", EFI_SYSTEM_PARTITION, 64 * MIB).with_content(esp),
        Partition::new("root-a", LINUX_ROOT_X86_64, 256 * MIB).with_content(root),
        Partition::new("root-b", LINUX_ROOT_X86_64, 256 * MIB),
        Partition::new("data", LINUX_DATA, 128 * MIB),
    ]
}

fn read_at(disk: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(disk).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buffer = vec![0u8; len];
    file.read_exact(&mut buffer).unwrap();
    buffer
}

/// Compares two files in 1 MiB chunks (the images are too large to hold twice).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if a.metadata().unwrap().len() != b.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let n = a.read(&mut x).unwrap();
        if n == 0 {
            return true;
        }
        b.read_exact(&mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            return false;
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    esp: PathBuf,
    root: PathBuf,
    esp_bytes: Vec<u8>,
    root_bytes: Vec<u8>,
    disk: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp.img");
    let root = dir.path().join("root.erofs");
    let esp_bytes = write_pattern(&esp, 3 * MIB as usize + 17, 0x5a);
    // Zero runs inside content must survive the sparse copy too.
    let mut root_bytes = write_pattern(&root, 5 * MIB as usize, 0xa5);
    root_bytes[MIB as usize..3 * MIB as usize].fill(0);
    std::fs::write(&root, &root_bytes).unwrap();
    let disk = dir.path().join("disk.img");
    Fixture {
        esp,
        root,
        esp_bytes,
        root_bytes,
        disk,
        _dir: dir,
    }
}

#[test]
fn sgdisk_verifies_a_sparse_1_gib_disk_and_shows_the_names() {
    let f = fixture();
    let layout: Layout = write_disk(
        &f.disk,
        &standard(&f.esp, &f.root),
        b"site/base/qemu-x86_64/1",
        Some(1 << 30),
    )
    .unwrap();
    let meta = std::fs::metadata(&f.disk).unwrap();
    assert_eq!(meta.len(), 1 << 30);
    assert!(
        meta.blocks() * 512 < 32 * MIB,
        "the image should be sparse, {} bytes allocated",
        meta.blocks() * 512
    );

    let verify = sgdisk(&["-v"], &f.disk);
    assert!(verify.contains("No problems found"), "{verify}");
    let print = sgdisk(&["-p"], &f.disk);
    assert!(
        print.contains(&format!(
            "Disk identifier (GUID): {}",
            layout.disk_guid.to_string().to_uppercase()
        )),
        "{print}"
    );
    for (number, name, code) in [
        (1, "esp", "EF00"),
        (2, "root-a", "8304"),
        (3, "root-b", "8304"),
        (4, "data", "8300"),
    ] {
        let row = print
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&number.to_string()))
            .unwrap_or_else(|| panic!("partition {number} missing:\n{print}"));
        assert!(
            row.contains(code) && row.trim_end().ends_with(name),
            "{row}"
        );
        let p = &layout.partitions[number - 1];
        assert!(row.contains(&format!(" {} ", p.first_lba)), "{row}");
        assert!(row.contains(&format!(" {} ", p.last_lba)), "{row}");
        assert_eq!(p.first_lba % 2048, 0);
    }
    // sgdisk -i shows the unique GUID we report and the type name it knows.
    let info = sgdisk(&["-i", "2"], &f.disk);
    let unique = layout
        .partition("root-a")
        .unwrap()
        .unique_guid
        .to_string()
        .to_uppercase();
    assert!(
        info.contains(&format!("Partition unique GUID: {unique}")),
        "{info}"
    );
    assert!(info.contains("Linux x86-64 root (/)"), "{info}");
    assert!(info.contains("Partition name: 'root-a'"), "{info}");
    let esp_info = sgdisk(&["-i", "1"], &f.disk);
    assert!(esp_info.contains("EFI system partition"), "{esp_info}");
    let data_info = sgdisk(&["-i", "4"], &f.disk);
    assert!(data_info.contains("Linux filesystem"), "{data_info}");
}

#[test]
fn contents_land_at_the_reported_offsets() {
    let f = fixture();
    let layout = write_disk(&f.disk, &standard(&f.esp, &f.root), b"seed", None).unwrap();
    let esp = layout.partition("esp").unwrap();
    let root = layout.partition("root-a").unwrap();
    assert_eq!(
        read_at(&f.disk, esp.offset_bytes(), f.esp_bytes.len()),
        f.esp_bytes
    );
    assert_eq!(
        read_at(&f.disk, root.offset_bytes(), f.root_bytes.len()),
        f.root_bytes
    );
    // The rest of the partition after the content is zero.
    let tail = read_at(&f.disk, esp.offset_bytes() + f.esp_bytes.len() as u64, 4096);
    assert!(tail.iter().all(|&b| b == 0));
    // Default size: everything plus 1 MiB for the backup GPT, a whole number of MiB.
    assert_eq!(layout.total_size, (1 + 64 + 256 + 256 + 128 + 1) * MIB);
    assert_eq!(std::fs::metadata(&f.disk).unwrap().len(), layout.total_size);
    let verify = sgdisk(&["-v"], &f.disk);
    assert!(verify.contains("No problems found"), "{verify}");
}

#[test]
fn two_writes_are_byte_identical() {
    let f = fixture();
    let other = f.disk.with_file_name("again.img");
    let parts = standard(&f.esp, &f.root);
    let a = write_disk(&f.disk, &parts, b"seed", None).unwrap();
    let b = write_disk(&other, &parts, b"seed", None).unwrap();
    assert_eq!(a, b);
    assert!(same_bytes(&f.disk, &other), "two disk images differ");
    // Writing over an existing image replaces it completely.
    write_disk(&other, &parts[..1], b"other seed", Some(1 << 30)).unwrap();
    write_disk(&other, &parts, b"seed", None).unwrap();
    assert!(same_bytes(&f.disk, &other), "rewrite differs");
    // Another seed gives other GUIDs, hence other bytes.
    let c = write_disk(&other, &parts, b"other seed", None).unwrap();
    assert_ne!(a.disk_guid, c.disk_guid);
    assert!(!same_bytes(&f.disk, &other));
}

#[test]
fn oversized_content_names_the_partition_and_leaves_nothing() {
    let f = fixture();
    let mut parts = standard(&f.esp, &f.root);
    parts[0].size_bytes = 2 * MIB;
    let err = write_disk(&f.disk, &parts, b"seed", None).unwrap_err();
    match &err {
        GptError::ContentTooLarge {
            name,
            path,
            content_size,
            partition_size,
        } => {
            assert_eq!(name, "esp");
            assert_eq!(path, &f.esp);
            assert_eq!(*content_size, f.esp_bytes.len() as u64);
            assert_eq!(*partition_size, 2 * MIB);
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("`esp`") && text.contains("esp.img"), "{text}");
    assert!(!f.disk.exists(), "no partial disk left behind");

    let mut missing = standard(&f.esp, &f.root);
    missing[1].content = Some(f.root.with_file_name("no-such-root"));
    let err = write_disk(&f.disk, &missing, b"seed", None).unwrap_err();
    assert!(
        matches!(&err, GptError::ReadContent { name, .. } if name == "root-a"),
        "{err}"
    );
    assert!(!f.disk.exists());
}

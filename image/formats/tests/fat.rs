//! FAT images checked with dosfstools' `fsck.fat` and read back with the `fatfs` crate
//! (an independent implementation).

// Helpers outside #[test] fns are test code too: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::Command;

use cairn_formats::fat::{FatError, FatFile, FatKind, FatOptions, build_fat};

const MIB: u64 = 1 << 20;

fn options(size_bytes: u64) -> FatOptions {
    FatOptions {
        size_bytes,
        label: "ESP".into(),
        seed: b"test-image-1".to_vec(),
        timestamp: 1_700_000_000,
    }
}

fn files(kernel: &Path) -> Vec<FatFile> {
    vec![
        FatFile::from_path("EFI/BOOT/BOOTX64.EFI", kernel),
        FatFile::from_bytes("loader/loader.conf", "timeout 0\ndefault cairn-*\n"),
        FatFile::from_bytes("EFI/Linux/cairn-1+3.efi", vec![7u8; 100_000]),
        FatFile::from_bytes("EFI/systemd/systemd-bootx64.efi", b"MZ-fake".to_vec()),
        FatFile::from_bytes("loader/entries.srel", "type1\n"),
        FatFile::from_bytes("loader/empty", Vec::new()),
    ]
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs `fsck.fat -n` (never modify) verbosely with a file listing; fails the test on any
/// complaint, since fsck.fat exits non-zero when it finds something to fix.
fn fsck(image: &Path) -> String {
    let out = Command::new("fsck.fat")
        .args(["-n", "-v", "-l"])
        .arg(image)
        .output()
        .expect("run fsck.fat (Debian package dosfstools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "fsck.fat failed:\n{text}");
    text
}

fn read_back(image: &Path, path: &str) -> Vec<u8> {
    let file = std::fs::File::open(image).unwrap();
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
    let mut data = Vec::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
        .read_to_end(&mut data)
        .unwrap();
    data
}

fn check_image(image: &Path, kernel_bytes: &[u8], kind: &str) {
    let report = fsck(image);
    assert!(report.contains(kind), "{report}");
    for path in [
        "/EFI/BOOT/BOOTX64.EFI",
        "/loader/loader.conf",
        "/EFI/Linux/cairn-1+3.efi",
        "/EFI/systemd/systemd-bootx64.efi",
        "/loader/entries.srel",
    ] {
        assert!(
            report.contains(path),
            "fsck.fat does not list {path}:\n{report}"
        );
    }
    assert_eq!(read_back(image, "EFI/BOOT/BOOTX64.EFI"), kernel_bytes);
    assert_eq!(
        read_back(image, "loader/loader.conf"),
        b"timeout 0\ndefault cairn-*\n"
    );
    assert_eq!(
        read_back(image, "EFI/Linux/cairn-1+3.efi"),
        vec![7u8; 100_000]
    );
    assert_eq!(
        read_back(image, "efi/systemd/SYSTEMD-BOOTX64.EFI"),
        b"MZ-fake"
    );
    assert_eq!(read_back(image, "loader/empty"), b"");

    let fs = fatfs::FileSystem::new(std::fs::File::open(image).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    assert_eq!(fs.volume_label(), "ESP");
    assert_eq!(
        fs.read_volume_label_from_root_dir().unwrap().as_deref(),
        Some("ESP")
    );
    assert_eq!(
        fs.volume_id(),
        cairn_formats::fat::volume_id(b"test-image-1")
    );
    let entry = fs
        .root_dir()
        .iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_name() == "loader")
        .expect("loader directory listed");
    let modified = entry.modified();
    // 1_700_000_000 is 2023-11-14 22:13:20 UTC.
    assert_eq!(
        (modified.date.year, modified.date.month, modified.date.day),
        (2023, 11, 14)
    );
    assert_eq!(
        (modified.time.hour, modified.time.min, modified.time.sec),
        (22, 13, 20)
    );
}

#[test]
fn esp_sized_image_is_fat32_passes_fsck_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    let kernel_bytes = pseudo_random(3 * MIB as usize + 123);
    std::fs::write(&kernel, &kernel_bytes).unwrap();
    let image = dir.path().join("esp.img");
    let kind = build_fat(&image, &files(&kernel), &options(64 * MIB)).unwrap();
    assert_eq!(kind, FatKind::Fat32);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 * MIB);
    check_image(&image, &kernel_bytes, "32 bit entries");
}

#[test]
fn larger_fat32_with_4k_clusters_passes_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    let kernel_bytes = pseudo_random(MIB as usize + 5);
    std::fs::write(&kernel, &kernel_bytes).unwrap();
    let image = dir.path().join("esp.img");
    let kind = build_fat(&image, &files(&kernel), &options(300 * MIB)).unwrap();
    assert_eq!(kind, FatKind::Fat32);
    check_image(&image, &kernel_bytes, "32 bit entries");
}

#[test]
fn small_image_is_fat16_passes_fsck_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    let kernel_bytes = pseudo_random(200_000);
    std::fs::write(&kernel, &kernel_bytes).unwrap();
    let image = dir.path().join("small.img");
    let kind = build_fat(&image, &files(&kernel), &options(8 * MIB)).unwrap();
    assert_eq!(kind, FatKind::Fat16);
    check_image(&image, &kernel_bytes, "16 bit entries");
}

#[test]
fn two_builds_are_byte_identical_and_the_seed_matters() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    std::fs::write(&kernel, pseudo_random(500_000)).unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    let c = dir.path().join("c.img");
    // Same files given in a different order must not matter either.
    let mut reversed = files(&kernel);
    reversed.reverse();
    build_fat(&a, &files(&kernel), &options(64 * MIB)).unwrap();
    build_fat(&b, &reversed, &options(64 * MIB)).unwrap();
    let mut other_seed = options(64 * MIB);
    other_seed.seed = b"test-image-2".to_vec();
    build_fat(&c, &files(&kernel), &other_seed).unwrap();
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert!(a == b, "two builds differ");
    assert!(a != c, "the volume id should follow the seed");
}

#[test]
fn precise_errors_and_no_leftover_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("esp.img");
    let missing = dir.path().join("no-such-kernel");
    let err = build_fat(
        &image,
        &[FatFile::from_path("EFI/BOOT/BOOTX64.EFI", &missing)],
        &options(64 * MIB),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FatError::ReadSource { path, source_path, .. }
            if path == "EFI/BOOT/BOOTX64.EFI" && source_path == &missing),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-kernel"), "{err}");
    let err = build_fat(
        &image,
        &[FatFile::from_bytes("big", vec![1u8; 9 * MIB as usize])],
        &options(8 * MIB),
    )
    .unwrap_err();
    assert!(matches!(err, FatError::NoSpace { .. }), "{err}");
    let mut bad_label = options(64 * MIB);
    bad_label.label = "way too long label".into();
    assert!(matches!(
        build_fat(&image, &[], &bad_label),
        Err(FatError::BadLabel { .. })
    ));
    assert!(!image.exists(), "no image is left behind after an error");
}

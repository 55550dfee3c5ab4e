//! UKIs assembled from systemd-boot's real stub (Debian package systemd-boot-efi) with
//! objcopy, inspected with objdump. Fake kernel and initrd: the structure is what is
//! tested here; booting one is the builder's QEMU test.

// Helpers outside #[test] fns are test code too: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_formats::pe;
use cairn_formats::uki::{DEFAULT_STUB, UkiError, build_uki};

const CMDLINE: &str = "console=ttyS0 root=PARTUUID=0c1d6a5e-0000-8000-8000-000000000001 ro";
const OS_RELEASE: &str = "ID=cairn\nNAME=cairn\nVERSION_ID=1\nPRETTY_NAME=\"cairn base 1\"\n";

fn stub() -> PathBuf {
    let stub = PathBuf::from(DEFAULT_STUB);
    assert!(
        stub.is_file(),
        "{DEFAULT_STUB} is missing: install the Debian package systemd-boot-efi"
    );
    stub
}

fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd");
    let mut x = 0x9e37_79b9u32;
    let noise: Vec<u8> = (0..1_234_567)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&kernel, &noise).unwrap();
    std::fs::write(&initrd, &noise[..54_321]).unwrap();
    (kernel, initrd)
}

/// `objdump -h` rows as (name, size, vma).
fn objdump_sections(file: &Path) -> Vec<(String, u64, u64)> {
    let out = Command::new("objdump")
        .arg("-h")
        .arg(file)
        .output()
        .expect("run objdump (Debian package binutils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 4 && cols[0].parse::<u32>().is_ok() {
                Some((
                    cols[1].to_owned(),
                    u64::from_str_radix(cols[2], 16).ok()?,
                    u64::from_str_radix(cols[3], 16).ok()?,
                ))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn sections_are_present_with_the_right_sizes_past_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = inputs(dir.path());
    let out = dir.path().join("cairn.efi");
    build_uki(&stub(), &kernel, &initrd, CMDLINE, OS_RELEASE, &out).unwrap();

    let stub_sections = objdump_sections(&stub());
    let stub_end = stub_sections
        .iter()
        .map(|(_, size, vma)| vma + size)
        .max()
        .unwrap();
    let sections = objdump_sections(&out);
    let find = |name: &str| {
        sections
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing from {sections:?}"))
            .clone()
    };
    let expected = [
        (".osrel", OS_RELEASE.len() as u64),
        (".cmdline", CMDLINE.len() as u64),
        (".linux", 1_234_567),
        (".initrd", 54_321),
    ];
    let mut previous_end = stub_end;
    for (name, size) in expected {
        let (_, found_size, vma) = find(name);
        assert_eq!(found_size, size, "{name} size");
        assert_eq!(vma % 4096, 0, "{name} at {vma:#x} is page aligned");
        assert!(
            vma >= previous_end,
            "{name} at {vma:#x} overlaps what comes before"
        );
        previous_end = vma + size;
    }
    // The stub's own sections are untouched.
    for section in &stub_sections {
        assert!(sections.contains(section), "{section:?} changed");
    }
    // The section contents are the inputs.
    let dump = |name: &str| {
        let target = dir.path().join(name.trim_start_matches('.'));
        let status = Command::new("objcopy")
            .arg(format!("--dump-section={name}={}", target.display()))
            .arg(&out)
            .arg(dir.path().join("scratch.efi"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(target).unwrap()
    };
    assert_eq!(dump(".cmdline"), CMDLINE.as_bytes());
    assert_eq!(dump(".osrel"), OS_RELEASE.as_bytes());
    assert!(dump(".linux") == std::fs::read(&kernel).unwrap());
    assert!(!dir.path().join("cairn.efi.partial").exists());
}

#[test]
fn two_builds_are_byte_identical_with_the_stub_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = inputs(dir.path());
    let a = dir.path().join("a.efi");
    let b = dir.path().join("b.efi");
    build_uki(&stub(), &kernel, &initrd, CMDLINE, OS_RELEASE, &a).unwrap();
    // objcopy stamps the wall clock in seconds: make sure a second passes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_uki(&stub(), &kernel, &initrd, CMDLINE, OS_RELEASE, &b).unwrap();
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(a == b, "two UKI builds differ");
    let stub_info = pe::parse(&std::fs::read(stub()).unwrap()).unwrap();
    let info = pe::parse(&a).unwrap();
    assert_eq!(info.timestamp, stub_info.timestamp);
    // The checksum we write is the PE checksum of the final file.
    let checksum_offset = 0x3c;
    let pe_offset = u32::from_le_bytes(a[checksum_offset..checksum_offset + 4].try_into().unwrap());
    assert_eq!(
        info.checksum,
        pe::checksum(&a, pe_offset as usize + 24 + 64)
    );
}

#[test]
fn our_pe_checksum_matches_the_linker_on_the_stub() {
    let data = std::fs::read(stub()).unwrap();
    let info = pe::parse(&data).unwrap();
    let pe_offset = u32::from_le_bytes(data[0x3c..0x40].try_into().unwrap()) as usize;
    assert_ne!(info.checksum, 0, "Debian's stub carries a checksum");
    assert_eq!(pe::checksum(&data, pe_offset + 24 + 64), info.checksum);
}

#[test]
fn missing_inputs_are_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = inputs(dir.path());
    let out = dir.path().join("cairn.efi");
    let nowhere = dir.path().join("nowhere");
    let err = build_uki(&nowhere, &kernel, &initrd, CMDLINE, OS_RELEASE, &out).unwrap_err();
    assert!(
        matches!(&err, UkiError::MissingInput { what: "stub", path } if path == &nowhere),
        "{err}"
    );
    let err = build_uki(&stub(), &nowhere, &initrd, CMDLINE, OS_RELEASE, &out).unwrap_err();
    assert!(
        matches!(&err, UkiError::MissingInput { what: "kernel", path } if path == &nowhere),
        "{err}"
    );
    assert!(err.to_string().contains("kernel") && err.to_string().contains("nowhere"));
    let err = build_uki(&stub(), &kernel, dir.path(), CMDLINE, OS_RELEASE, &out).unwrap_err();
    assert!(
        matches!(&err, UkiError::MissingInput { what: "initrd", .. }),
        "{err}"
    );
    let err = build_uki(&kernel, &kernel, &initrd, CMDLINE, OS_RELEASE, &out).unwrap_err();
    assert!(matches!(&err, UkiError::BadStub { .. }), "{err}");
    let err = build_uki(&stub(), &kernel, &initrd, "", OS_RELEASE, &out).unwrap_err();
    assert!(
        matches!(
            &err,
            UkiError::EmptySection {
                section: ".cmdline"
            }
        ),
        "{err}"
    );
    assert!(!out.exists());
}

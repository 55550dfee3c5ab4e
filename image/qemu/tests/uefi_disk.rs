//! UEFI disk boot: OVMF boots a UKI from a FAT disk. The guest writes to its
//! disk; the build output must only change when the caller asked for it.
//! Needs qemu, ovmf, binutils and systemd-boot-efi (see tests/common), not root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_qemu::{Boot, DiskBus, DiskFormat, DiskWrites, Vm, VmConfig};
use common::{BOOT_TIMEOUT, MARKER, WRITTEN_BYTES, WROTE, fat_boot_disk, uki};

/// A FAT boot disk whose UKI makes the guest write to its NVMe disk.
fn writing_disk(dir: &Path) -> PathBuf {
    let efi = uki(dir, "console=ttyS0 quiet panic=-1 cairntest=write");
    let disk = dir.join("disk.img");
    fat_boot_disk(&disk, &efi);
    disk
}

fn config(name: &str, disk: &Path, writes: DiskWrites, ovmf_vars: Option<PathBuf>) -> VmConfig {
    let mut config = VmConfig::new(
        name,
        Boot::UefiDisk {
            disk: disk.to_path_buf(),
            writes,
            bus: DiskBus::Nvme,
            ovmf_vars,
        },
    );
    config.no_reboot = true;
    config
}

fn boot_and_write(config: &VmConfig) {
    let vm = Vm::start(config).unwrap();
    let marker = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    let wrote = vm.wait_for_text(WROTE, BOOT_TIMEOUT).unwrap();
    eprintln!(
        "TIMING UEFI disk boot ({}, {}): QEMU start -> marker {:.2} s",
        config.name,
        vm.accel(),
        marker.at.as_secs_f64()
    );
    assert!(vm.wait_exit(BOOT_TIMEOUT).unwrap().success());
    // The guest waited for /dev/nvme0n1 at most 100 times 0.1 s.
    assert!(
        !wrote.text.ends_with(" 100"),
        "the NVMe disk never appeared: {}",
        wrote.text
    );
}

fn written(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes[512..512 + WRITTEN_BYTES.len()] == *WRITTEN_BYTES
}

#[test]
fn snapshot_boot_leaves_the_disk_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let disk = writing_disk(dir.path());
    let before = std::fs::read(&disk).unwrap();
    boot_and_write(&config("uefi-snapshot", &disk, DiskWrites::Snapshot, None));
    assert!(
        std::fs::read(&disk).unwrap() == before,
        "snapshot mode changed the disk"
    );
}

#[test]
fn overlay_keeps_the_writes_and_the_base_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let raw = writing_disk(dir.path());
    // Boot from qcow2, as `cairn run` does with disk.qcow2.
    let base = dir.path().join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(DiskFormat::of_file(&base).unwrap(), DiskFormat::Qcow2);
    let before = std::fs::read(&base).unwrap();
    let overlay = dir.path().join("state.qcow2");
    let vars = dir.path().join("vars.fd");

    boot_and_write(&config(
        "uefi-overlay",
        &base,
        DiskWrites::Overlay(overlay.clone()),
        Some(vars.clone()),
    ));
    assert!(
        std::fs::read(&base).unwrap() == before,
        "overlay mode changed the base"
    );
    assert!(vars.is_file(), "the kept UEFI variable store was created");

    // The guest's write is visible through the overlay.
    let flat = dir.path().join("flat.img");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&overlay)
        .arg(&flat)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        written(&flat),
        "the overlay does not hold the guest's write"
    );
}

#[test]
fn in_place_writes_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = writing_disk(dir.path());
    assert!(!written(&disk));
    boot_and_write(&config("uefi-in-place", &disk, DiskWrites::InPlace, None));
    assert!(written(&disk), "in-place mode did not write to the disk");
}

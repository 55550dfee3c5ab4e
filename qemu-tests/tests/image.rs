//! The `base` image booted for real under QEMU (UEFI disk and PXE), checked
//! for reproducibility, for dm-verity refusing a corrupted root, and for
//! precise errors on bad inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use qemu_tests::{
    BOOT_TIMEOUT, base_image, boot_disk, boot_pxe, cairn_build, mac, scratch, workspace,
};

const BOX1: &str = "52:54:00:c0:00:01";

#[test]
fn base_boots_from_the_uefi_disk_to_cairn_ready_as_its_node() {
    let img = base_image();
    let t = Instant::now();
    let vm = boot_disk("disk", &img.join("disk.qcow2"), mac(BOX1));
    let line = vm
        .wait_for_text("CAIRN-READY", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "UEFI disk: CAIRN-READY {:.1} s after QEMU start: {}",
        t.elapsed().as_secs_f64(),
        line.text
    );
    assert!(
        line.text
            .starts_with("CAIRN-READY role=base node=box1 version=0.1.0 t_ms="),
        "{}",
        line.text
    );
    let console = vm.console_text();
    assert!(
        console.contains("dm-verity root /dev/mapper/root ready"),
        "{console}"
    );
    assert!(
        console.contains("network configured interface=eth0 addresses=192.0.2.5/24"),
        "{console}"
    );
    assert!(console.contains("hardware watchdog armed"), "{console}");
}

#[test]
fn base_boots_over_pxe_to_cairn_ready_as_its_node() {
    let img = base_image();
    let t = Instant::now();
    let vm = boot_pxe("pxe", img, mac(BOX1));
    let line = vm
        .wait_for_text("CAIRN-READY", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "PXE: CAIRN-READY {:.1} s after QEMU start: {}",
        t.elapsed().as_secs_f64(),
        line.text
    );
    assert!(
        line.text.starts_with("CAIRN-READY role=base node=box1 "),
        "{}",
        line.text
    );
    let console = vm.console_text();
    assert!(
        console.contains("root file:/root.img"),
        "the root came from RAM: {console}"
    );
}

#[test]
fn a_box_that_matches_no_node_says_so_and_stays_up() {
    let img = base_image();
    let vm = boot_disk(
        "stranger",
        &img.join("disk.qcow2"),
        mac("52:54:00:99:99:99"),
    );
    let line = vm
        .wait_for_text("could not identify itself", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(line.text.contains("52:54:00:99:99:99"), "{}", line.text);
    // It stays up: the control API still starts, and no READY line comes.
    vm.wait_for_text("control API listening", BOOT_TIMEOUT)
        .unwrap();
    assert!(!vm.console_text().contains("CAIRN-READY"));
}

/// First sector of partition `n` in a GPT disk image, from sgdisk.
fn partition_start_bytes(disk: &std::path::Path, n: u32) -> u64 {
    let out = Command::new("sgdisk")
        .arg("-i")
        .arg(n.to_string())
        .arg(disk)
        .output()
        .expect("sgdisk (gdisk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("sgdisk -i {n}: {text}"));
    first * 512
}

#[test]
fn a_flipped_byte_in_root_a_is_refused_with_a_reason() {
    let img = base_image();
    let dir = scratch().join("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    std::fs::copy(img.join("disk.img"), &disk).unwrap();
    let name = Command::new("sgdisk")
        .args(["-i", "2"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&name.stdout).contains("'root-a'"),
        "partition 2 is root-a"
    );
    // A byte well inside the erofs data of root-a.
    let at = partition_start_bytes(&disk, 2) + 200_000;
    let mut bytes = std::fs::read(&disk).unwrap();
    bytes[at as usize] ^= 0x5a;
    std::fs::write(&disk, &bytes).unwrap();
    drop(bytes);
    let vm = boot_disk("corrupt", &disk, mac(BOX1));
    let line = vm
        .wait_for_text("root filesystem failed verification", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("corrupted root: {}", line.text);
    // The kernel names the corrupted block too, and the box never gets to its services.
    vm.wait_for_text("verity", BOOT_TIMEOUT).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let console = vm.console_text();
    assert!(
        !console.contains("starting as PID 1"),
        "the corrupted root must not run: {console}"
    );
    assert!(!console.contains("CAIRN-READY"));
}

#[test]
fn two_builds_are_byte_identical() {
    let first = base_image();
    let second = scratch().join("base-again");
    let o = cairn_build(&workspace().join("examples/site.toml"), "base", &second);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "disk.img",
        "disk.qcow2",
        "pxe/vmlinuz",
        "pxe/initrd",
        "pxe/boot.ipxe",
        "manifest.json",
    ] {
        let a = std::fs::read(first.join(f)).unwrap();
        let b = std::fs::read(second.join(f)).unwrap();
        assert!(a == b, "{f} differs between two builds");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["role"], "base");
    assert_eq!(m["verity"]["root_hash"].as_str().map(str::len), Some(64));
    assert!(
        m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "linux-image-6.1.0-56-amd64"),
        "the kernel package is recorded"
    );
}

#[test]
fn bad_inputs_give_precise_errors_and_leave_no_output() {
    let dir = scratch().join("bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(workspace().join("examples/site.toml")).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let dup_mac = write(
        "dup-mac.toml",
        &good.replace("52:54:00:c0:00:12", "52:54:00:c0:00:11"),
    );
    let malformed = write("malformed.toml", &good.replace("[cluster]", "[cluster"));
    let site = workspace().join("examples/site.toml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--profile".into(),
                "raspberry-pi".into(),
                "--role".into(),
                "base".into(),
            ],
            "unknown hardware profile \"raspberry-pi\" (known: generic-x86_64, qemu-x86_64)",
        ),
        (
            vec![
                "--profile".into(),
                "qemu-x86_64".into(),
                "--role".into(),
                "database".into(),
            ],
            "--role: unknown role \"database\"",
        ),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        let o = Command::new(qemu_tests::cairn_bin())
            .arg("build")
            .arg("--site")
            .arg(&site)
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
        assert!(!out.exists(), "no output for a failed build");
    }
    for (site, expected) in [
        (
            &dup_mac,
            "field `node[2].mac`: MAC 52:54:00:c0:00:11 of node \"lb2\" is also the MAC of node \"lb1\"",
        ),
        (&malformed, "malformed.toml: "),
    ] {
        let out = dir.join("out-site");
        let o = cairn_build(site, "base", &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert!(!out.exists(), "no output for a failed build");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary build directories left behind: {leftovers:?}"
    );
}

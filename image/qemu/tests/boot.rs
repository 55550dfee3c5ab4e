//! Boots Debian's cloud kernel with a busybox initramfs in QEMU, directly and
//! over PXE (iPXE on QEMU's user-net TFTP, under SeaBIOS and under OVMF).
//! Needs qemu and the fixture tools (see tests/common), not root.
//! Boot times are printed; run with `--nocapture` to see them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_qemu::{Boot, Firmware, Nic, PumpEnd, Vm};
use common::{BOOT_TIMEOUT, MARKER, direct_config, pxe_root};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

#[test]
fn direct_boot_reaches_the_marker_and_exits_on_poweroff() {
    let mut config = direct_config("direct", "poweroff");
    config.no_reboot = true;
    let vm = Vm::start(&config).unwrap();
    let line = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    eprintln!(
        "TIMING direct boot ({}): QEMU start -> marker {:.2} s",
        vm.accel(),
        line.at.as_secs_f64()
    );
    assert_eq!(line.text, format!("{MARKER} mode=poweroff"));

    let status = vm.wait_exit(BOOT_TIMEOUT).unwrap();
    assert!(
        status.success(),
        "QEMU exit status after guest poweroff: {status}"
    );
    let console = vm.console_text();
    assert!(console.contains("reboot: Power down"), "{console}");
    // The marker was consumed: a second wait must not find the same line again.
    let again = vm.wait_for_text(MARKER, std::time::Duration::from_secs(1));
    assert!(
        matches!(again, Err(cairn_qemu::VmError::Exited { .. })),
        "{again:?}"
    );
}

#[test]
fn pxe_boot_under_bios_runs_the_ipxe_script_over_tftp() {
    let root = pxe_root("console=ttyS0 quiet panic=-1 cairntest=poweroff");
    let mut config = cairn_qemu::VmConfig::new(
        "pxe-bios",
        Boot::Pxe {
            firmware: Firmware::Bios,
            tftp_root: root.path().to_path_buf(),
            bootfile: "boot.ipxe".into(),
        },
    );
    config.nics.push(Nic::user(MAC));
    config.no_reboot = true;
    let vm = Vm::start(&config).unwrap();
    let script = vm.wait_for_text("boot.ipxe", BOOT_TIMEOUT).unwrap();
    let line = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    eprintln!(
        "TIMING PXE/BIOS boot ({}): QEMU start -> iPXE script {:.2} s -> marker {:.2} s",
        vm.accel(),
        script.at.as_secs_f64(),
        line.at.as_secs_f64()
    );
    // iPXE's clear-screen before the kernel ends its last line.
    assert_eq!(line.text, format!("{MARKER} mode=poweroff"));
    assert!(vm.wait_exit(BOOT_TIMEOUT).unwrap().success());
    let console = vm.console_text();
    // iPXE got the MAC we gave the NIC and fetched the files over TFTP.
    assert!(console.contains("net0 52:54:00:12:34:56"), "{console}");
    assert!(console.contains("tftp://10.0.2.2/boot.ipxe"), "{console}");
}

#[test]
fn pxe_boot_under_uefi_runs_the_ipxe_script_over_tftp() {
    let root = pxe_root("console=ttyS0 quiet panic=-1 cairntest=poweroff");
    let mut config = cairn_qemu::VmConfig::new(
        "pxe-uefi",
        Boot::Pxe {
            firmware: Firmware::Uefi { vars: None },
            tftp_root: root.path().to_path_buf(),
            bootfile: "boot.ipxe".into(),
        },
    );
    config.nics.push(Nic::user(MAC));
    config.no_reboot = true;
    let vm = Vm::start(&config).unwrap();
    let vars = vm.runtime_dir().join("OVMF_VARS.fd");
    assert!(
        vars.is_file(),
        "the VM has its own copy of the UEFI variables"
    );
    let line = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    eprintln!(
        "TIMING PXE/UEFI boot ({}): QEMU start -> marker {:.2} s",
        vm.accel(),
        line.at.as_secs_f64()
    );
    assert_eq!(line.text, format!("{MARKER} mode=poweroff"));
    assert!(vm.wait_exit(BOOT_TIMEOUT).unwrap().success());
    assert!(vm.console_text().contains("tftp://10.0.2.2/boot.ipxe"));
}

#[test]
fn pump_copies_the_whole_console_until_poweroff() {
    let mut config = direct_config("pump", "poweroff");
    config.no_reboot = true;
    let vm = Vm::start(&config).unwrap();
    let mut out = Vec::new();
    let end = vm.pump_console_to(&mut out, Some(BOOT_TIMEOUT)).unwrap();
    assert!(
        matches!(end, PumpEnd::Exited(status) if status.success()),
        "{end:?}"
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains(MARKER), "{out}");
    assert_eq!(
        out,
        vm.console_text(),
        "pump writes exactly what the console printed"
    );
}

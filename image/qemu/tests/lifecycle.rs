//! A VM's life: QMP control (reset, link, power button, quit), hard kill,
//! cleanup on drop, and the errors of a QEMU that cannot start.
//! Needs qemu and the fixture tools (see tests/common), not root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use cairn_qemu::{Boot, DiskBus, DiskWrites, HostPaths, Nic, PumpEnd, Vm, VmConfig, VmError};
use common::{BOOT_TIMEOUT, MARKER, direct_config, qemu_alive};

#[test]
fn drop_kills_qemu_and_removes_its_files() {
    let config = direct_config("dropped", "stay");
    let vm = Vm::start(&config).unwrap();
    vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    let pid = vm.pid();
    let runtime = vm.runtime_dir().to_path_buf();
    assert!(qemu_alive(pid), "QEMU runs while the Vm lives");
    assert!(runtime.join("qmp.sock").exists());

    drop(vm);
    assert!(!qemu_alive(pid), "QEMU pid {pid} is still there after drop");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} was not reaped (zombie left behind)"
    );
    assert!(!runtime.exists(), "{} was not removed", runtime.display());
}

#[test]
fn reset_reboots_the_guest_and_qmp_controls_work() {
    let mut config = direct_config("controlled", "stay");
    config.nics.push(Nic::user([0x52, 0x54, 0x00, 0, 0, 7]));
    let vm = Vm::start(&config).unwrap();
    let first = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();

    vm.set_link(0, false).unwrap();
    vm.set_link(0, true).unwrap();
    let err = vm.set_link(5, false).unwrap_err();
    assert!(err.to_string().contains("nic5"), "{err}");
    let status = vm.qmp("query-status", None).unwrap();
    assert_eq!(status["status"], "running");
    // The busybox guest has no ACPI daemon: the button press is only accepted.
    vm.powerdown().unwrap();

    vm.reset().unwrap();
    let second = vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();
    assert!(
        second.at > first.at,
        "the marker line after reset is a new line"
    );
    assert_eq!(
        vm.console_lines()
            .iter()
            .filter(|l| l.text.contains(MARKER))
            .count(),
        2
    );

    let status = vm.quit().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(vm.exit_status(), Some(status));
}

#[test]
fn kill_is_a_hard_power_off_and_pump_times_out_on_a_running_vm() {
    let vm = Vm::start(&direct_config("killed", "stay")).unwrap();
    vm.wait_for_text(MARKER, BOOT_TIMEOUT).unwrap();

    let mut out = Vec::new();
    let end = vm
        .pump_console_to(&mut out, Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(end, PumpEnd::TimedOut);
    assert!(String::from_utf8_lossy(&out).contains(MARKER));

    let timeout = vm
        .wait_for_text("never printed", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(timeout, VmError::Timeout { .. }), "{timeout}");
    assert!(
        timeout.to_string().contains(MARKER),
        "the error quotes the console: {timeout}"
    );

    let status = vm.kill().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");
    assert!(!qemu_alive(vm.pid()));
    // Killing twice is harmless.
    assert_eq!(vm.kill().unwrap(), status);
}

#[test]
fn qemu_that_rejects_its_arguments_reports_its_stderr() {
    let mut config = direct_config("bad-args", "poweroff");
    config.extra_args = vec!["-no-such-option".into()];
    let err = Vm::start(&config).unwrap_err();
    let VmError::ExitedEarly {
        stderr, command, ..
    } = &err
    else {
        panic!("expected ExitedEarly, got {err}");
    };
    assert!(stderr.contains("-no-such-option"), "{stderr}");
    assert!(command.contains("-no-such-option"), "{command}");
}

#[test]
fn missing_qemu_and_firmware_are_named() {
    let mut config = direct_config("no-qemu", "poweroff");
    config.host.qemu = PathBuf::from("/nonexistent/qemu-system-x86_64");
    let err = Vm::start(&config).unwrap_err();
    assert!(matches!(err, VmError::Host(_)), "{err}");
    assert!(err.to_string().contains("cargo xtask setup"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, [0u8; 4096]).unwrap();
    let mut config = VmConfig::new(
        "no-ovmf",
        Boot::UefiDisk {
            disk,
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        },
    );
    config.host = HostPaths {
        ovmf_code: PathBuf::from("/nonexistent/OVMF_CODE_4M.fd"),
        ..HostPaths::default()
    };
    let err = Vm::start(&config).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/OVMF_CODE_4M.fd"),
        "{err}"
    );
}

//! Accelerator detection against the real QEMU of this host.
//! Needs qemu, not root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cairn_qemu::{Accel, HostPaths, detect_accel, probe_accel};

#[test]
fn the_probe_guest_runs_to_completion_under_tcg() {
    common::require_tools(&["qemu-system-x86_64"]);
    // Proves the probe image and harness work, so a KVM failure means KVM.
    let took = probe_accel(&HostPaths::default(), Accel::Tcg).unwrap();
    eprintln!("TIMING KVM probe guest under TCG: {} ms", took.as_millis());
}

#[test]
fn detection_follows_the_kvm_probe_and_explains_itself() {
    common::require_tools(&["qemu-system-x86_64"]);
    assert!(
        std::env::var_os(cairn_qemu::accel::ACCEL_OVERRIDE_VAR).is_none(),
        "unset CAIRN_ACCEL to run this test"
    );
    let kvm = probe_accel(&HostPaths::default(), Accel::Kvm);
    let choice = detect_accel();
    eprintln!("detect_accel: {} — {}", choice.accel, choice.note);
    match kvm {
        Ok(_) => {
            assert_eq!(choice.accel, Accel::Kvm);
            assert!(choice.note.contains("KVM works"), "{}", choice.note);
        }
        Err(why) => {
            // This is the case on the project's build machines: /dev/kvm
            // exists, but QEMU cannot run a guest with it.
            assert_eq!(choice.accel, Accel::Tcg, "KVM probe failed: {why}");
            assert!(choice.note.contains("using TCG"), "{}", choice.note);
            assert!(
                choice.note.len() > "KVM unusable, using TCG".len() + 10,
                "{}",
                choice.note
            );
        }
    }
    // Cached: the same value, not a second probe.
    assert!(std::ptr::eq(choice, detect_accel()));
}

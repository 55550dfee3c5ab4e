//! Shared helpers for the QEMU tests: build images once per test process
//! with the real `cairn` binary, boot them, and read their consoles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cairn_qemu::{Boot, DiskBus, DiskWrites, Firmware, Nic, Vm, VmConfig};

/// Time allowed for a boot to reach a console line (TCG is slow; KVM is not needed).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `cairn` binary built by `cargo test --workspace` (a sibling of this
/// test's target directory). Fails loudly when it is missing.
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/cairn
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("cairn"))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} not found: run the QEMU tests with `cargo test --workspace` (or `cargo xtask test`) so the cairn binary is built",
        bin.display()
    );
    bin
}

/// Where test builds go: `<target>/tmp/qemu-tests`.
pub fn scratch() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/tmp
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("tmp/qemu-tests"))
        .unwrap_or_else(|| std::env::temp_dir().join("cairn-qemu-tests"))
}

/// Runs `cairn build` with the example site for `role` on `qemu-x86_64`.
pub fn cairn_build(site: &Path, role: &str, out: &Path) -> Output {
    Command::new(cairn_bin())
        .args([
            "build",
            "--quiet",
            "--profile",
            "qemu-x86_64",
            "--role",
            role,
        ])
        .arg("--site")
        .arg(site)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cairn: {e}"))
}

/// The example site's `base` image, built once per test process.
pub fn base_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = scratch().join("base");
        let t = Instant::now();
        let o = cairn_build(&workspace().join("examples/site.toml"), "base", &out);
        assert!(
            o.status.success(),
            "cairn build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("built the base image in {:.1} s", t.elapsed().as_secs_f64());
        out
    })
}

/// Parses "52:54:00:c0:00:01".
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    m
}

/// Boots `disk` (qcow2 or raw) through OVMF with one NIC.
pub fn boot_disk(name: &str, disk: &Path, nic_mac: [u8; 6]) -> Vm {
    let mut c = VmConfig::new(
        name,
        Boot::UefiDisk {
            disk: disk.to_path_buf(),
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        },
    );
    c.nics.push(Nic::user(nic_mac));
    c.watchdog = true;
    c.no_reboot = true;
    Vm::start(&c).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// Boots a build's PXE set through iPXE over QEMU's TFTP.
pub fn boot_pxe(name: &str, build: &Path, nic_mac: [u8; 6]) -> Vm {
    let mut c = VmConfig::new(
        name,
        Boot::Pxe {
            firmware: Firmware::Bios,
            tftp_root: build.join("pxe"),
            bootfile: "boot.ipxe".into(),
        },
    );
    c.nics.push(Nic::user(nic_mac));
    c.no_reboot = true;
    c.memory_mib = 768;
    Vm::start(&c).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

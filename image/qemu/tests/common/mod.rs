//! Guest fixtures shared by the QEMU tests: Debian's cloud kernel (fetched with
//! apt into the project's package cache), a busybox initramfs whose /init
//! prints a marker and then does what `cairntest=` on the kernel command line
//! asks, and UEFI artefacts built from them (a UKI on a FAT disk).
//!
//! Needs the host tools of `cargo xtask setup`: qemu-system-x86, qemu-utils,
//! ovmf, ipxe-qemu, busybox-static, cpio, binutils, systemd-boot-efi, apt.
//! Missing tools fail the tests with a message naming them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Debian kernel package the guests boot.
pub const KERNEL_PACKAGE: &str = "linux-image-6.1.0-56-cloud-amd64";
/// Printed by the guest's /init as soon as it runs.
pub const MARKER: &str = "CAIRN-QEMU-TEST-MARKER";
/// Printed by the guest after `cairntest=write` wrote to its NVMe disk.
pub const WROTE: &str = "CAIRN-QEMU-TEST-WROTE";
/// Bytes the guest writes at offset 512 of its NVMe disk in `write` mode.
pub const WRITTEN_BYTES: &[u8] = b"CAIRN-QEMU-TEST-DISK-WRITE";
/// Generous bound for one boot under TCG on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Paths of the shared guest files.
pub struct Fixtures {
    /// Debian's cloud kernel.
    pub kernel: PathBuf,
    /// The busybox test initramfs (uncompressed newc cpio).
    pub initrd: PathBuf,
}

/// Builds (once per test binary) or reuses the kernel and initramfs.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        require_tools(&[
            "qemu-system-x86_64",
            "qemu-img",
            "cpio",
            "dpkg-deb",
            "apt-get",
        ]);
        let dir = fixture_dir();
        Fixtures {
            kernel: kernel(&dir),
            initrd: initramfs(&dir),
        }
    })
}

/// Panics with the list of missing host programs.
pub fn require_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH");
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| cairn_qemu::host::find_program(Path::new(tool), path.as_deref()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "these QEMU tests need {missing:?} on PATH: install the host packages with `cargo xtask setup`"
    );
}

fn fixture_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cairn-qemu-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kernel .deb from the project's package cache, downloaded if absent.
/// The cache is shared with other crates: only a new file is ever added.
fn kernel_deb() -> PathBuf {
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(|c| PathBuf::from(c).join("debs"))
        .unwrap_or_else(|| workspace_root().join(".cache/debs"));
    std::fs::create_dir_all(&cache).unwrap();
    let find = || {
        std::fs::read_dir(&cache).unwrap().find_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            (name.starts_with(&format!("{KERNEL_PACKAGE}_")) && name.ends_with(".deb"))
                .then_some(path)
        })
    };
    if let Some(deb) = find() {
        return deb;
    }
    // Download into a private directory, then move into place atomically.
    let download = tempfile::Builder::new()
        .prefix(".cairn-qemu-download-")
        .tempdir_in(&cache)
        .unwrap();
    let output = Command::new("apt-get")
        .args(["download", "-q", KERNEL_PACKAGE])
        .current_dir(download.path())
        .output()
        .expect("run apt-get");
    assert!(
        output.status.success(),
        "apt-get download {KERNEL_PACKAGE} failed (run `apt-get update` first?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for entry in std::fs::read_dir(download.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        std::fs::rename(&path, cache.join(name)).unwrap();
    }
    find().expect("apt-get download left no .deb")
}

fn kernel(dir: &Path) -> PathBuf {
    let target = dir.join("vmlinuz");
    if target.exists() {
        return target;
    }
    let deb = kernel_deb();
    let unpacked = tempfile::tempdir_in(dir).unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path())
        .status()
        .expect("run dpkg-deb");
    assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
    let boot = unpacked.path().join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .unwrap_or_else(|| panic!("no vmlinuz in {}", deb.display()));
    let partial = dir.join(format!("vmlinuz.{}", std::process::id()));
    std::fs::copy(&vmlinuz, &partial).unwrap();
    std::fs::rename(&partial, &target).unwrap();
    target
}

/// The test guest's /init. Kernel parameters with `=` that the kernel does
/// not know reach init as environment variables, so `cairntest=stay` on the
/// command line arrives as `$cairntest`.
const INIT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
$bb echo "CAIRN-QEMU-TEST-MARKER mode=${cairntest:-poweroff}"
case "$cairntest" in
stay)
    while :; do $bb sleep 3600; done
    ;;
write)
    $bb mount -t devtmpfs devtmpfs /dev
    n=0
    while [ ! -b /dev/nvme0n1 ] && [ $n -lt 100 ]; do $bb sleep 0.1; n=$((n + 1)); done
    $bb printf CAIRN-QEMU-TEST-DISK-WRITE | $bb dd of=/dev/nvme0n1 bs=1 seek=512 conv=notrunc 2>/dev/null
    $bb sync
    $bb echo "CAIRN-QEMU-TEST-WROTE $n"
    ;;
esac
$bb poweroff -f
"#;

fn initramfs(dir: &Path) -> PathBuf {
    require_tools(&["cpio"]);
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "{} is missing: install busybox-static (`cargo xtask setup`)",
        busybox.display()
    );
    let root = tempfile::tempdir_in(dir).unwrap();
    for sub in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir(root.path().join(sub)).unwrap();
    }
    std::fs::copy(busybox, root.path().join("bin/busybox")).unwrap();
    let init = root.path().join("init");
    std::fs::write(&init, INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();

    let partial = dir.join(format!("initrd.{}", std::process::id()));
    let output = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet")
        .current_dir(root.path())
        .output()
        .expect("run cpio");
    assert!(
        output.status.success(),
        "cpio failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&partial, &output.stdout).unwrap();
    let target = dir.join("initrd");
    std::fs::rename(&partial, &target).unwrap();
    target
}

/// A TFTP root for PXE: vmlinuz, initrd and a `boot.ipxe` script.
pub fn pxe_root(append: &str) -> tempfile::TempDir {
    let fixtures = fixtures();
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(&fixtures.kernel, root.path().join("vmlinuz")).unwrap();
    std::fs::copy(&fixtures.initrd, root.path().join("initrd")).unwrap();
    // `initrd=initrd` is how this iPXE hands the initrd to the EFI stub; the
    // BIOS path ignores it.
    std::fs::write(
        root.path().join("boot.ipxe"),
        format!("#!ipxe\nkernel vmlinuz initrd=initrd {append}\ninitrd initrd\nboot\n"),
    )
    .unwrap();
    root
}

/// A unified kernel image: systemd's EFI stub with kernel, initrd and
/// command line as sections (addresses as in FIELD-NOTES).
pub fn uki(dir: &Path, cmdline: &str) -> PathBuf {
    require_tools(&["objcopy"]);
    let stub = Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    assert!(
        stub.is_file(),
        "{} is missing: install systemd-boot-efi (`cargo xtask setup`)",
        stub.display()
    );
    let fixtures = fixtures();
    let osrel = dir.join("osrel");
    std::fs::write(&osrel, "ID=cairn-qemu-test\n").unwrap();
    let cmdline_file = dir.join("cmdline");
    std::fs::write(&cmdline_file, cmdline).unwrap();
    let out = dir.join("uki.efi");
    let section = |name: &str, file: &Path, vma: &str| {
        vec![
            "--add-section".to_string(),
            format!("{name}={}", file.display()),
            "--change-section-vma".to_string(),
            format!("{name}={vma}"),
        ]
    };
    let status = Command::new("objcopy")
        .args(section(".osrel", &osrel, "0x20000"))
        .args(section(".cmdline", &cmdline_file, "0x30000"))
        .args(section(".linux", &fixtures.kernel, "0x2000000"))
        .args(section(".initrd", &fixtures.initrd, "0x3000000"))
        .arg(stub)
        .arg(&out)
        .status()
        .expect("run objcopy");
    assert!(status.success(), "objcopy failed to build the UKI");
    out
}

/// A raw disk holding only a FAT file system (no partition table) with
/// `efi` as `\EFI\BOOT\BOOTX64.EFI`: OVMF boots it like a removable disk.
pub fn fat_boot_disk(path: &Path, efi: &Path) {
    let payload = std::fs::read(efi).unwrap();
    let size = (payload.len() as u64 + (8 << 20)).next_multiple_of(1 << 20);
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    disk.set_len(size).unwrap();
    fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new()).unwrap();
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).unwrap();
        {
            let boot = fs
                .root_dir()
                .create_dir("EFI")
                .unwrap()
                .create_dir("BOOT")
                .unwrap();
            let mut file = boot.create_file("BOOTX64.EFI").unwrap();
            file.write_all(&payload).unwrap();
            file.flush().unwrap();
        }
        fs.unmount().unwrap();
    }
    disk.sync_all().unwrap();
}

/// Whether a process with this pid still exists and is QEMU.
pub fn qemu_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| cmdline.contains("qemu-system"))
        .unwrap_or(false)
}

/// Direct-boot config for the fixtures with `cairntest=<mode>`.
pub fn direct_config(name: &str, mode: &str) -> cairn_qemu::VmConfig {
    let fixtures = fixtures();
    cairn_qemu::VmConfig::new(
        name,
        cairn_qemu::Boot::Direct {
            kernel: fixtures.kernel.clone(),
            initrd: Some(fixtures.initrd.clone()),
            append: format!("console=ttyS0 quiet panic=-1 cairntest={mode}"),
        },
    )
}

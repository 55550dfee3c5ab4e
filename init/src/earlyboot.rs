//! The early stage, `cairn-early` (the initramfs's `/init`): everything
//! between the kernel starting `/init` and exec'ing the real root's
//! `/sbin/init` (cairn-init, in machine mode). Loads the modules, finds the
//! root (a partition, or a file in the initramfs on a loop device for PXE),
//! sets up dm-verity, checks the whole image, mounts it, moves the API
//! filesystems over, frees the initramfs, switches into the root, runs the
//! one-time machine setup there ([`crate::machine_setup`], outcome in a
//! [`BootRecord`]) and execs. With `cairn.root=ab` it first finds which A/B
//! slot holds the image ([`crate::abroot`]) and records it in
//! `/run/cairn/boot-slot`. Any failure up to the exec is printed on the
//! console, naming the step, and the box reboots after [`REBOOT_AFTER`] (so a
//! boot-counted UKI counts down and systemd-boot falls back to the previous
//! version) or, with `cairn.debug`, stays halted; it never runs an unverified
//! root. See docs/boot.md.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use crate::blockdev::{self, Roots};
use crate::bootrecord::{self, BootRecord};
use crate::cmdline::{self, BootParams, RootSource, Verity, VerityParams, VerityScan};
use crate::switch_root::{self, CARRIED_MOUNTS, INIT, NEWROOT};
use crate::{abroot, dm, kmod, loopdev, mounts};

/// The builder puts this file in the initramfs (and never in the root
/// image): with it, cairn-early running as PID 1 on a RAM root is the early stage.
pub const MARKER: &str = "/etc/cairn/initrd";
/// `RAMFS_MAGIC` from <linux/magic.h> (the initramfs is ramfs or tmpfs).
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;
/// `TMPFS_MAGIC` from <linux/magic.h>.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
/// The device-mapper name of the verified root: `/dev/mapper/root`.
pub const DM_NAME: &str = "root";
/// The root image's filesystem type.
pub const ROOT_FSTYPE: &str = "erofs";
/// How often a halted box repeats why it halted, for late console watchers.
pub const REPEAT: Duration = Duration::from_secs(300);
/// How long a failed early boot shows its reason before rebooting.
pub const REBOOT_AFTER: Duration = Duration::from_secs(10);

/// Whether a process with `/` of filesystem type `root_fs_magic` and the
/// marker file present is the early stage.
pub fn is_initramfs(marker_exists: bool, root_fs_magic: i64) -> bool {
    marker_exists && (root_fs_magic == RAMFS_MAGIC || root_fs_magic == TMPFS_MAGIC)
}

/// Whether this process runs from the initramfs (marker present and `/` is a RAM filesystem).
pub fn in_initramfs() -> bool {
    is_initramfs(Path::new(MARKER).exists(), root_fs_magic())
}

/// The filesystem magic of `/` (0 when statfs fails).
#[allow(clippy::unnecessary_cast)] // fs_type_t is i64 with glibc, not with every libc.
fn root_fs_magic() -> i64 {
    nix::sys::statfs::statfs("/")
        .map(|s| s.filesystem_type().0 as i64)
        .unwrap_or(0)
}

/// The step of the early boot that failed, as named on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The `cairn.*` parameters are wrong or missing.
    Cmdline,
    /// The root device or image could not be found or attached.
    RootDevice,
    /// The dm-verity device could not be created.
    Verity,
    /// The root image does not match its root hash.
    Verification,
    /// The root filesystem could not be mounted for another reason.
    MountRoot,
    /// Moving into the real root failed.
    Switch,
    /// The real init could not be started.
    Exec,
    /// A bug in cairn-early itself (a panic was caught).
    Internal,
}

impl Step {
    /// The words printed on the console for this step.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Cmdline => "kernel command line",
            Step::RootDevice => "root device",
            Step::Verity => "dm-verity setup failed",
            Step::Verification => "root filesystem failed verification",
            Step::MountRoot => "cannot mount the root filesystem",
            Step::Switch => "switch to the real root failed",
            Step::Exec => "cannot start the real init",
            Step::Internal => "internal error",
        }
    }
}

/// Why the early stage stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step.
    pub step: Step,
    /// The error, naming the path or parameter involved.
    pub detail: String,
}

impl Failure {
    fn new(step: Step, detail: impl fmt::Display) -> Failure {
        Failure {
            step,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cairn-early: {}: {}", self.step.describe(), self.detail)
    }
}

/// The step a failed root mount belongs to: an I/O error on a verified
/// device is dm-verity refusing a block.
pub fn mount_failure_step(verified: bool, err: &std::io::Error) -> Step {
    if verified && err.raw_os_error() == Some(libc::EIO) {
        Step::Verification
    } else {
        Step::MountRoot
    }
}

/// Writes one line on the console (stderr), ignoring write errors: PID 1
/// must not panic because the console is gone.
fn line(text: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn say(msg: impl fmt::Display) {
    line(format_args!("cairn-early: {msg}"));
}

/// Mounts /proc, /sys and /dev (devtmpfs) unless present and points
/// stdin/stdout/stderr at /dev/console.
pub fn mount_early() {
    let m = |src: &str, target: &str, fstype: &str, flags: MsFlags| {
        let _ = std::fs::create_dir_all(target);
        match mount(Some(src), target, Some(fstype), flags, None::<&str>) {
            Ok(()) | Err(nix::Error::EBUSY) => {}
            Err(e) => say(format_args!("mount {target} ({fstype}): {e}")),
        }
    };
    let secure = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    m("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID);
    m("proc", "/proc", "proc", secure);
    m("sysfs", "/sys", "sysfs", secure);
    crate::boot::attach_console();
}

/// The early stage. Never returns: it execs the real init, or shows the
/// reason on the console and reboots (halts with `cairn.debug`).
pub fn run() -> ! {
    mount_early();
    let outcome = std::panic::catch_unwind(stage);
    let failure = match outcome {
        Ok(f) => f,
        Err(_) => Failure::new(Step::Internal, "panic in the early boot stage"),
    };
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    give_up(&failure, after_failure(cmdline::debug_requested(&text)))
}

/// What a failed early boot does once it has said why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Reboot after this long: on a boot-counted entry each failed boot costs
    /// a try, so systemd-boot falls back to the previous version.
    Reboot(Duration),
    /// Stay halted forever, repeating the reason (`cairn.debug`, for diagnosis).
    Halt,
}

/// Reboot after [`REBOOT_AFTER`] unless `cairn.debug` asks to stay for diagnosis.
pub fn after_failure(debug: bool) -> AfterFailure {
    if debug {
        AfterFailure::Halt
    } else {
        AfterFailure::Reboot(REBOOT_AFTER)
    }
}

/// Prints `failure` (and the kernel's related messages), then reboots or
/// stays halted forever as `then` says, repeating the reason.
pub fn give_up(failure: &Failure, then: AfterFailure) -> ! {
    line(failure);
    for msg in kernel_lines(&["device-mapper", "verity", "erofs", "loop: ", "EXT4"], 8) {
        say(format_args!("  kernel: {msg}"));
    }
    if let AfterFailure::Reboot(after) = then {
        say(format_args!(
            "rebooting in {} s (boot with cairn.debug to stay halted here)",
            after.as_secs()
        ));
        std::thread::sleep(after);
        line(failure);
        say("rebooting now");
        nix::unistd::sync();
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
        say(format_args!("reboot failed: {e}"));
    }
    say("the box stays halted here; fix the image or the command line and reboot");
    loop {
        std::thread::sleep(REPEAT);
        line(failure);
    }
}

/// Milliseconds since `t`.
fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// Runs the early boot to its exec; returns only the failure.
fn stage() -> Failure {
    let started = Instant::now();
    let roots = Roots::system();
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let params = match cmdline::parse(&text) {
        Ok(p) => p,
        Err(e) => return Failure::new(Step::Cmdline, e),
    };
    let (root, verity) = match params.require_root() {
        Ok((r, v)) => (r.clone(), v.clone()),
        Err(e) => return Failure::new(Step::Cmdline, e),
    };
    say(format_args!(
        "early boot {}: root {root}, slot {}",
        env!("CARGO_PKG_VERSION"),
        params.slot.map_or("-", |s| s.as_str())
    ));

    let t = Instant::now();
    let report = kmod::load_list_file(Path::new(kmod::MODULES_LIST), |m, r| {
        if params.debug {
            say(format_args!("module {}: {r:?}", m.path.display()));
        }
    });
    for f in &report.failures {
        say(f);
    }
    say(format_args!(
        "{} modules loaded, {} already present, {} failed ({} ms)",
        report.inserted,
        report.already_loaded,
        report.failures.len(),
        ms(t)
    ));

    let t = Instant::now();
    // Held until the root is mounted; autoclear then leaves it to dm/mount.
    let mut loop_handle = None;
    // The slot this boot runs from: found below for `ab`, else as told (old UKIs).
    let mut slot = match root {
        RootSource::Device(_) => params.slot,
        _ => None,
    };
    let device = match &root {
        RootSource::File(path) => {
            match loopdev::attach(&roots, path, loopdev::Options::default()) {
                Ok(l) => {
                    let p = l.path.clone();
                    loop_handle = Some(l);
                    p
                }
                Err(e) => return Failure::new(Step::RootDevice, e),
            }
        }
        RootSource::Device(spec) => {
            match blockdev::wait_for(&roots, spec, None, params.root_wait, blockdev::POLL) {
                Ok((_, node)) => node,
                Err(e) => return Failure::new(Step::RootDevice, e),
            }
        }
        RootSource::AbSlots => {
            let Verity::Params(v) = &verity else {
                // require_root refuses this combination; never reached.
                return Failure::new(Step::Cmdline, "cairn.root=ab needs cairn.verity=");
            };
            match abroot::find(&roots, v, params.root_wait, blockdev::POLL) {
                Ok(found) => {
                    say(format_args!("slot {} holds the image", found.slot.as_str()));
                    slot = Some(found.slot);
                    found.node
                }
                Err(e) => return Failure::new(Step::RootDevice, e),
            }
        }
    };
    say(format_args!(
        "root {root} is {} ({} ms)",
        device.display(),
        ms(t)
    ));

    let t = Instant::now();
    let (mount_dev, verified) = match &verity {
        Verity::Params(v) => match verify(&roots, &device, v, &params) {
            Ok(p) => (p, true),
            Err(f) => return f,
        },
        Verity::Disabled => {
            say(
                "WARNING: cairn.verity=none: the root filesystem is NOT verified (development only)",
            );
            (device.clone(), false)
        }
    };
    if verified {
        say(format_args!(
            "dm-verity root {} ready ({} ms)",
            mount_dev.display(),
            ms(t)
        ));
    }

    let newroot = Path::new(NEWROOT);
    if let Err(e) = switch_root::mount_root(&mount_dev, newroot, ROOT_FSTYPE) {
        let step = match &e {
            switch_root::SwitchError::Mount { source, .. } => mount_failure_step(verified, source),
            _ => Step::MountRoot,
        };
        return Failure::new(step, e);
    }
    drop(loop_handle);
    if let Err(e) = switch_root::check_init(newroot, Path::new(INIT)) {
        return Failure::new(Step::Switch, e);
    }
    if let Some(slot) = slot {
        if let Err(e) = record_slot(slot) {
            say(format_args!(
                "cannot write {}: {e} (updates will refuse to run)",
                abroot::BOOT_SLOT_FILE
            ));
        }
    }
    switch(newroot, &params, started)
}

/// Mounts /run as machine mode would (it is carried into the real root) and
/// writes the booted slot to [`abroot::BOOT_SLOT_FILE`] in it.
fn record_slot(slot: cmdline::Slot) -> std::io::Result<()> {
    let run = Path::new("/run");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !mounts::mount_points(&mountinfo).iter().any(|p| p == run) {
        let spec = mounts::boot_mounts()
            .into_iter()
            .find(|m| Path::new(m.target) == run)
            .ok_or_else(|| std::io::Error::other("no /run in the boot mounts"))?;
        std::fs::create_dir_all(run)?;
        mount(
            Some(spec.source),
            run,
            Some(spec.fstype),
            spec.flags,
            Some(spec.data),
        )?;
    }
    abroot::write_boot_slot(Path::new(abroot::BOOT_SLOT_FILE), slot)
}

/// Creates the verity device and, with `cairn.verity.scan=full`, reads it
/// end to end so a corrupted image is refused now.
fn verify(
    roots: &Roots,
    device: &Path,
    v: &VerityParams,
    params: &BootParams,
) -> Result<PathBuf, Failure> {
    if params.debug {
        let d = blockdev::numbers(device).unwrap_or((0, 0));
        let start = dm::read_hash_start(device, v).unwrap_or(v.hash_start_block());
        say(format_args!(
            "verity table: {}",
            dm::verity_target(d, v, start).params
        ));
    }
    let node =
        dm::setup_verity(roots, DM_NAME, device, v).map_err(|e| Failure::new(Step::Verity, e))?;
    if params.verity_scan == VerityScan::Full {
        scan(&node, v.data_bytes()).map_err(|e| Failure::new(Step::Verification, e))?;
    }
    Ok(node)
}

/// A read of the verity device that failed.
#[derive(Debug, thiserror::Error)]
#[error("reading {path} at byte {offset}: {source}")]
pub struct ScanError {
    /// The device.
    pub path: PathBuf,
    /// Where the read failed.
    pub offset: u64,
    /// Why (EIO: a block does not match the hash tree).
    pub source: std::io::Error,
}

/// Reads `len` bytes of `path` from the start, failing at the first error.
pub fn scan(path: &Path, len: u64) -> Result<(), ScanError> {
    let err = |offset, source| ScanError {
        path: path.to_owned(),
        offset,
        source,
    };
    let mut f = std::fs::File::open(path).map_err(|e| err(0, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        match f.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(err(
                    done,
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "device ends early"),
                ));
            }
            Ok(n) => done += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(done, e)),
        }
    }
    Ok(())
}

/// Moves the API filesystems, frees the initramfs, switches and execs.
fn switch(newroot: &Path, params: &BootParams, started: Instant) -> Failure {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = mounts::mount_points(&mountinfo);
    if let Err(e) = switch_root::move_mounts(Path::new("/"), newroot, &CARRIED_MOUNTS, &mounted) {
        return Failure::new(Step::Switch, e);
    }
    if is_initramfs(true, root_fs_magic()) {
        let r = switch_root::delete_tree(Path::new("/"), &[newroot.to_path_buf()]);
        if r.failed > 0 {
            say(format_args!(
                "initramfs: {} entries could not be removed",
                r.failed
            ));
        }
    }
    say(format_args!(
        "switching to the real root after {} ms",
        ms(started)
    ));
    if let Err(e) = switch_root::switch_into(newroot) {
        return Failure::new(Step::Switch, e);
    }
    on_real_root(params.debug);
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if params.debug && !env.iter().any(|(k, _)| k == "CAIRN_LOG") {
        env.push(("CAIRN_LOG".into(), "debug".into()));
    }
    let e = switch_root::exec(Path::new(INIT), &[INIT.to_owned()], &env);
    Failure::new(Step::Exec, e)
}

/// On the real root, before PID 1 starts: the one-time machine setup
/// ([`crate::machine_setup`]), its outcome left in [`bootrecord::FILE`] for
/// PID 1. A panic in it is caught and recorded: PID 1 starts regardless, and
/// says why the box has no role services.
fn on_real_root(debug: bool) {
    crate::boot::mount_api_filesystems();
    crate::logging::init(debug);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "cairn-early on the real root: machine setup"
    );
    let record =
        std::panic::catch_unwind(crate::machine_setup::run).unwrap_or_else(|_| BootRecord {
            error: Some("internal error: the machine setup panicked".into()),
            ..BootRecord::default()
        });
    if let Err(e) = record.write(Path::new(bootrecord::FILE)) {
        say(format_args!("cannot write {}: {e}", bootrecord::FILE));
    }
}

/// The message of one `/dev/kmsg` record (`prio,seq,ts,flags;message`).
pub fn kmsg_message(record: &str) -> &str {
    let first = record.lines().next().unwrap_or("");
    first.split_once(';').map_or(first, |(_, m)| m)
}

/// Whether a kernel message mentions one of `needles` (the kernel's echo of
/// its command line, which names cairn.verity, is not news).
pub fn relevant(msg: &str, needles: &[&str]) -> bool {
    !msg.contains("ommand line:") && needles.iter().any(|n| msg.contains(n))
}

/// The last `max` kernel log messages containing any of `needles`.
pub fn kernel_lines(needles: &[&str], max: usize) -> Vec<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 8192];
    // Bounded: the kernel's ring holds far fewer records than this.
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let msg = kmsg_message(&rec);
                if relevant(msg, needles) {
                    out.push(msg.to_owned());
                }
            }
            // EPIPE: records were overwritten while reading; keep going.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    let skip = out.len().saturating_sub(max);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_detection_needs_marker_and_ram_root() {
        assert!(is_initramfs(true, RAMFS_MAGIC));
        assert!(is_initramfs(true, TMPFS_MAGIC));
        assert!(!is_initramfs(false, RAMFS_MAGIC));
        assert!(
            !is_initramfs(true, 0xE0F5_E1E2),
            "erofs root is the real root"
        );
        assert!(!is_initramfs(true, 0xEF53), "ext4");
    }

    #[test]
    fn failure_lines_name_the_step() {
        let e = std::io::Error::from_raw_os_error(libc::EIO);
        let f = Failure::new(
            mount_failure_step(true, &e),
            switch_root::SwitchError::Mount {
                device: "/dev/mapper/root".into(),
                source: e,
            },
        );
        assert_eq!(
            f.to_string(),
            "cairn-early: root filesystem failed verification: mount of /dev/mapper/root: Input/output error (os error 5)"
        );
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(mount_failure_step(false, &eio), Step::MountRoot);
        let enodev = std::io::Error::from_raw_os_error(libc::ENODEV);
        assert_eq!(mount_failure_step(true, &enodev), Step::MountRoot);
        let c = Failure::new(
            Step::Cmdline,
            cmdline::CmdlineError::Missing {
                param: cmdline::ROOT,
            },
        );
        assert_eq!(
            c.to_string(),
            "cairn-early: kernel command line: cairn.root is missing"
        );
    }

    #[test]
    fn failures_reboot_unless_debugging() {
        assert_eq!(after_failure(false), AfterFailure::Reboot(REBOOT_AFTER));
        assert_eq!(REBOOT_AFTER, Duration::from_secs(10));
        assert_eq!(after_failure(true), AfterFailure::Halt);
    }

    #[test]
    fn kmsg_records() {
        assert_eq!(
            kmsg_message(
                "3,1234,5678,-;device-mapper: verity: 254:0: data block 7 is corrupted\n SUBSYSTEM=block\n"
            ),
            "device-mapper: verity: 254:0: data block 7 is corrupted"
        );
        assert_eq!(kmsg_message("no header"), "no header");
        let needles = ["verity", "loop: "];
        assert!(relevant(
            "device-mapper: verity: 254:1: data block 170 is corrupted",
            &needles
        ));
        assert!(relevant("loop: module loaded", &needles));
        assert!(!relevant("Calibrating delay loop (skipped)", &needles));
        assert!(!relevant(
            "Command line: console=ttyS0 cairn.verity=00",
            &needles
        ));
        assert!(!relevant("Kernel command line: cairn.verity=00", &needles));
    }

    #[test]
    fn scan_reads_exactly_the_data_and_reports_short_devices() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("img");
        std::fs::write(&p, vec![7u8; 3 * 1024 * 1024 + 5]).unwrap_or_else(|e| panic!("{e}"));
        assert!(scan(&p, 3 * 1024 * 1024 + 5).is_ok());
        assert!(scan(&p, 4096).is_ok());
        let e = scan(&p, 4 * 1024 * 1024).unwrap_err();
        assert_eq!(e.offset, 3 * 1024 * 1024 + 5);
        assert!(e.to_string().contains("device ends early"), "{e}");
    }
}

//! The end of an orderly shutdown: stragglers, sync, unmount, reboot.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_control::PowerAction;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::mounts::unmount_order;
use crate::watchdog::Watchdog;

/// Time stragglers get between SIGTERM and SIGKILL.
const STRAGGLER_GRACE: Duration = Duration::from_secs(3);

/// As PID 1 of a namespace: SIGTERM, then SIGKILL, every process left, and
/// reap them. Never used when we are not PID 1 (it would hit the host).
pub fn kill_stragglers() {
    // The control API's server process is one of them: it must not come back.
    crate::control_api::stop_restarting();
    if std::process::id() != 1 {
        return;
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + STRAGGLER_GRACE;
    while Instant::now() < deadline {
        if !reap_all() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && reap_all() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps what has exited; false when no children are left.
fn reap_all() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Machine mode: disarm the watchdog, sync, unmount, remount / read-only and
/// reboot or power off. Never returns; if the kernel refuses, waits forever.
pub fn finish_machine(action: PowerAction, watchdog: Option<Watchdog>) -> ! {
    kill_stragglers();
    nix::unistd::sync();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in unmount_order(&info) {
        if let Err(e) = umount2(&point, MntFlags::empty()) {
            warn!(mount = %point.display(), error = %e, "unmount failed, detaching");
            let _ = umount2(&point, MntFlags::MNT_DETACH);
        }
    }
    if let Err(e) = mount::<str, Path, str, str>(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None,
    ) {
        warn!(error = %e, "cannot remount / read-only");
    }
    nix::unistd::sync();
    if let Some(w) = watchdog {
        if let Err(e) = w.close() {
            warn!(error = %e, "watchdog close failed");
        }
    }
    let mode = match action {
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
        PowerAction::Poweroff => RebootMode::RB_POWER_OFF,
    };
    info!(action = action.as_str(), "bye");
    let Err(e) = reboot(mode);
    error!(error = %e, "reboot(2) failed; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

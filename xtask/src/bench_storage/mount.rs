//! "Volume mountable": the host's FUSE client (`mount -t glusterfs`), run in
//! a client network namespace with `nsenter --net` (not `ip netns exec`, whose
//! private mount namespace would hide the mount), tried again and again until
//! a mount succeeds and its root can be listed; then unmounted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pause between two failed attempts (a refused attempt takes ≈ 0.1 s, an
/// unreachable server ≈ 3 s).
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Whether `dir` is a mount point now (`/proc/self/mounts`).
pub fn mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&dir))
}

/// Unmounts `dir` if mounted (lazily when busy).
pub fn umount(dir: &Path) {
    if mounted(dir) {
        let ok = Command::new("umount")
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(dir)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One attempt: mounts `server:/volume` on `dir` from the namespace `netns`;
/// true when the mount is there and its root lists. Leaves nothing mounted.
pub fn try_once(netns: &str, server: &str, volume: &str, dir: &Path) -> bool {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .args(["mount", "-t", "glusterfs"])
        .arg(format!("{server}:/{volume}"))
        .arg(dir)
        .stdin(Stdio::null())
        .output();
    let ok =
        out.is_ok_and(|o| o.status.success()) && mounted(dir) && std::fs::read_dir(dir).is_ok();
    umount(dir);
    ok
}

/// Tries [`try_once`] until it works (returns when the successful attempt
/// ended), `stop` is set or `timeout` passes (errors).
pub fn poll(
    netns: &str,
    server: &str,
    volume: &str,
    dir: &Path,
    stop: &AtomicBool,
    timeout: Duration,
) -> Result<(Instant, usize)> {
    if !Path::new("/sbin/mount.glusterfs").exists() {
        bail!("the host's glusterfs-client is missing: run `cargo xtask setup`");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if try_once(netns, server, volume, dir) {
            return Ok((Instant::now(), attempts));
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped before {server}:/{volume} was mountable");
        }
        if Instant::now() > deadline {
            bail!("{server}:/{volume} not mountable within {timeout:?} ({attempts} attempts)");
        }
        std::thread::sleep(RETRY_EVERY);
    }
}

/// [`poll`] on a thread; `netns` may not exist yet (attempts fail until it does).
pub fn spawn(
    netns: String,
    server: String,
    volume: &'static str,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> std::thread::JoinHandle<Result<(Instant, usize)>> {
    std::thread::spawn(move || poll(&netns, &server, volume, &dir, &stop, timeout))
}

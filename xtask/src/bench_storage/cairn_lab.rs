//! One boot of the cairn storage tier with `cairn lab up` (as
//! qemu-tests/tests/storage.rs does): three UEFI VMs from the example site,
//! forming gv0 by themselves. A thread waits for the lab's plan (`lab.json`,
//! written before the keeper starts any VM) and tries
//! `mount -t glusterfs <st1>:/gv0` from the lab's client namespace until it
//! works. QEMU start times come from the keeper's status: `CAIRN-READY` seen
//! `after_ms` after its QEMU start, at `unix_ms`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

use super::debian_image::VOLUME;
use super::{UpRun, mount};

/// `cairn lab up --timeout` (seconds), as the storage test uses.
const UP_TIMEOUT_S: u64 = 900;

/// QEMU start and CAIRN-READY of one node, milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTimes {
    /// When its QEMU started (`unix_ms − after_ms`).
    pub qemu_start_ms: u64,
    /// When `CAIRN-READY` was seen.
    pub ready_ms: u64,
}

/// Reads every VM's times out of `cairn lab status --json`.
pub fn node_times(status: &serde_json::Value) -> Result<Vec<NodeTimes>> {
    let nodes = status["nodes"]
        .as_array()
        .context("lab status: no `nodes`")?;
    let mut out = Vec::new();
    for n in nodes {
        if n["kind"].as_str().is_some_and(|k| k != "vm") {
            continue;
        }
        let name = n["name"].as_str().unwrap_or("?");
        let ready = &n["ready"];
        let (Some(after), Some(unix)) = (ready["after_ms"].as_u64(), ready["unix_ms"].as_u64())
        else {
            bail!("lab status: {name} has no CAIRN-READY");
        };
        out.push(NodeTimes {
            qemu_start_ms: unix.saturating_sub(after),
            ready_ms: unix,
        });
    }
    if out.is_empty() {
        bail!("lab status lists no VM");
    }
    Ok(out)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lab(cairn: &Path, args: &[&str], state: &Path) -> Result<std::process::Output> {
    Command::new(cairn)
        .arg("lab")
        .args(args)
        .arg("--state")
        .arg(state)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running cairn lab {}", args.join(" ")))
}

/// The client namespace of the lab in `state`, once its plan exists.
fn client_netns(state: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state.join("lab.json")).ok()?;
    let plan: serde_json::Value = serde_json::from_str(&text).ok()?;
    plan["client"]["netns"].as_str().map(str::to_owned)
}

/// Waits for the plan, then polls the mount (see module doc).
fn poller(
    state: PathBuf,
    server: String,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(Instant, usize)>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(UP_TIMEOUT_S);
        let ns = loop {
            if let Some(ns) = client_netns(&state) {
                break ns;
            }
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                bail!("no lab plan in {}", state.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        mount::poll(
            &ns,
            &server,
            VOLUME,
            &dir,
            &stop,
            Duration::from_secs(UP_TIMEOUT_S),
        )
    })
}

/// One run: `lab up`, mountable, `lab down` (always). `state` is removed
/// first except its `images/` (the built image is reused between runs).
pub fn run(
    cairn: &Path,
    site: &Path,
    state: &Path,
    server: &str,
    log_dir: &Path,
    run_no: usize,
) -> Result<UpRun> {
    let _ = lab(cairn, &["down"], state);
    let _ = std::fs::remove_file(state.join("lab.json"));
    let mnt = state.with_extension("mnt");
    let stop = Arc::new(AtomicBool::new(false));
    let (i0, s0) = (Instant::now(), SystemTime::now());
    let mut p = Some(poller(
        state.to_path_buf(),
        server.to_owned(),
        mnt.clone(),
        stop.clone(),
    ));
    let up = Command::new(cairn)
        .args(["lab", "up", "--site"])
        .arg(site)
        .arg("--state")
        .arg(state)
        .args(["--memory", &super::MEMORY_MIB.to_string()])
        .args(["--timeout", &UP_TIMEOUT_S.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running cairn lab up");
    let result = (|| {
        let up = up?;
        if !up.status.success() {
            bail!(
                "cairn lab up failed ({}): {}{}",
                up.status,
                String::from_utf8_lossy(&up.stdout),
                String::from_utf8_lossy(&up.stderr)
            );
        }
        let (at, attempts) = p
            .take()
            .context("the mount poller is gone")?
            .join()
            .map_err(|_| anyhow!("the mount poller panicked"))??;
        let status = lab(cairn, &["status", "--json"], state)?;
        let status: serde_json::Value =
            serde_json::from_slice(&status.stdout).context("cairn lab status --json: not JSON")?;
        let times = node_times(&status)?;
        let first = times.iter().map(|t| t.qemu_start_ms).min().unwrap_or(0);
        let rel = |ms: u64| ms.saturating_sub(first) as f64 / 1000.0;
        let mount_ms = unix_ms(s0) + at.saturating_duration_since(i0).as_millis() as u64;
        Ok(UpRun {
            last_qemu_start_s: times
                .iter()
                .map(|t| rel(t.qemu_start_ms))
                .fold(0.0, f64::max),
            init_s: None,
            network_s: None,
            glusterd_started_s: None,
            all_ready_s: Some(times.iter().map(|t| rel(t.ready_ms)).fold(0.0, f64::max)),
            volume_started_s: None,
            mountable_s: rel(mount_ms),
            mount_attempts: attempts,
        })
    })();
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = p {
        let _ = p.join();
    }
    mount::umount(&mnt);
    let _ = std::fs::remove_dir(&mnt);
    for n in ["st1", "st2", "st3"] {
        let _ = std::fs::copy(
            state.join("vms").join(n).join("console.log"),
            log_dir.join(format!("cairn-{n}-run{run_no}.log")),
        );
    }
    let down = lab(cairn, &["down"], state);
    let result = result.with_context(|| {
        format!(
            "cairn storage run {run_no} (consoles in {})",
            log_dir.display()
        )
    });
    match down {
        Ok(o) if o.status.success() => result,
        Ok(o) => result.and(Err(anyhow!(
            "cairn lab down failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ))),
        Err(e) => result.and(Err(e)),
    }
}

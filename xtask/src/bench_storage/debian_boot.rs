//! One boot of the three Debian storage VMs: a fresh cairn-labnet lab
//! (bridge in a switch namespace, a client namespace), three QEMUs started
//! one after the other from the switch namespace, each on its own tap with
//! the node's MAC and `disk.raw` as a `snapshot=on` virtio disk, direct
//! kernel boot. The client tries `mount -t glusterfs <first node>:/gv0` from
//! QEMU start of the first VM until it works.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use cairn_labnet::{Lab, netns};
use cairn_qemu::{Boot, NetBackend, Nic, Vm, VmConfig};

use super::UpRun;
use super::debian_image::{GLUSTERD_MARKER, Node, STARTED_MARKER, VOLUME};
use super::mount;
use crate::bench_debian::image::{CMDLINE, DebianImage};

/// Longest wait for the volume to be mountable.
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// The client's address (the lab's usual one).
const CLIENT: &str = "192.0.2.250/24";

/// Starts QEMU from a thread inside `ns` (the switch namespace, where the taps are).
fn start_in(ns: &str, config: &VmConfig) -> Result<Vm> {
    let ns = ns.to_owned();
    let config = config.clone();
    std::thread::spawn(move || -> Result<Vm> {
        netns::enter(&ns)?;
        Ok(Vm::start(&config)?)
    })
    .join()
    .map_err(|_| anyhow!("the thread starting QEMU panicked"))?
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {text:?}"))?;
    parts
        .try_into()
        .map_err(|_| anyhow!("bad MAC {text:?}: not six bytes"))
}

/// The QEMU config of one node.
fn config(img: &DebianImage, node: &Node, tap: String) -> Result<VmConfig> {
    let mut drive = OsString::from("file=");
    drive.push(img.disk.as_os_str().to_string_lossy().replace(',', ",,"));
    drive.push(",format=raw,if=none,id=rootdisk,snapshot=on");
    let mut c = VmConfig::new(
        format!("bench-st-{}", node.name),
        Boot::Direct {
            kernel: img.vmlinuz.clone(),
            initrd: Some(img.initrd.clone()),
            append: format!("{CMDLINE} systemd.hostname={}", node.name),
        },
    );
    c.nics.push(Nic {
        mac: parse_mac(&node.mac)?,
        backend: NetBackend::Tap(tap),
    });
    c.no_reboot = true;
    c.memory_mib = super::MEMORY_MIB;
    c.cpus = 1;
    c.extra_args = vec![
        "-drive".into(),
        drive,
        "-device".into(),
        "virtio-blk-pci,drive=rootdisk".into(),
    ];
    Ok(c)
}

/// Seconds since `t0` at which `vm`'s console first showed `needle`.
fn seen(vm: &Vm, t0: std::time::Instant, needle: &str) -> Option<f64> {
    let offset = vm.started_at().saturating_duration_since(t0).as_secs_f64();
    vm.console_lines()
        .into_iter()
        .find(|l| l.text.contains(needle))
        .map(|l| offset + l.at.as_secs_f64())
}

/// The console with each line's time since QEMU start of the first VM.
fn timed_console(vm: &Vm, t0: std::time::Instant) -> String {
    let offset = vm.started_at().saturating_duration_since(t0).as_secs_f64();
    vm.console_lines()
        .into_iter()
        .map(|l| format!("{:8.2} {}\n", offset + l.at.as_secs_f64(), l.text))
        .collect()
}

/// The latest of every VM's first line containing one of `needles`; `None`
/// when some VM never showed one.
fn last_seen(vms: &[Vm], t0: std::time::Instant, needles: &[&str]) -> Option<f64> {
    vms.iter()
        .map(|vm| needles.iter().find_map(|n| seen(vm, t0, n)))
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.into_iter().fold(0.0, f64::max))
}

/// Boots the three VMs once and measures; consoles go to `log_dir`.
pub fn run(img: &DebianImage, nodes: &[Node], log_dir: &Path, run_no: usize) -> Result<UpRun> {
    let mut lab = Lab::new("h21st")?;
    lab.add_node("client", &[CLIENT])?;
    let mut configs = Vec::new();
    for n in nodes {
        let tap = lab.add_tap(&n.name)?;
        configs.push(config(img, n, tap)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mnt = lab.dir().join("mnt");
    let mut vms: Vec<Vm> = Vec::new();
    let mut poller = None;
    let mut result: Result<UpRun> = Err(anyhow!("no VM started"));
    for c in &configs {
        match start_in(&lab.switch_netns(), c) {
            Ok(vm) => {
                if poller.is_none() {
                    poller = Some(mount::spawn(
                        lab.netns("client"),
                        nodes[0].ip().to_owned(),
                        VOLUME,
                        mnt.clone(),
                        stop.clone(),
                        TIMEOUT,
                    ));
                }
                vms.push(vm);
            }
            Err(e) => {
                result = Err(e.context(format!("starting QEMU for {}", c.name)));
                break;
            }
        }
    }
    if vms.len() == configs.len()
        && let Some(p) = poller.take()
    {
        result = measure(&vms, p, &stop);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        let _ = p.join();
    }
    if let Some(t0) = vms.first().map(Vm::started_at) {
        for (vm, n) in vms.iter().zip(nodes) {
            let path = log_dir.join(format!("debian-{}-run{run_no}.log", n.name));
            let _ = std::fs::write(&path, timed_console(vm, t0));
        }
    }
    let tail = vms
        .first()
        .map(|vm| {
            let lines = vm.console_lines();
            let from = lines.len().saturating_sub(15);
            lines[from..]
                .iter()
                .map(|l| format!("  {:7.2} {}", l.at.as_secs_f64(), l.text))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    drop(vms);
    mount::umount(&mnt);
    lab.destroy();
    result.with_context(|| {
        format!(
            "Debian storage run {run_no} (consoles in {}); first node's console:\n{tail}",
            log_dir.display()
        )
    })
}

fn measure(
    vms: &[Vm],
    poller: std::thread::JoinHandle<Result<(std::time::Instant, usize)>>,
    stop: &AtomicBool,
) -> Result<UpRun> {
    let t0 = vms[0].started_at();
    while !poller.is_finished() {
        if let Some(vm) = vms.iter().find(|vm| vm.exit_status().is_some()) {
            stop.store(true, Ordering::Relaxed);
            let _ = poller.join();
            return Err(anyhow!(
                "QEMU of {} exited ({}) before the volume was mountable",
                vm.name(),
                vm.exit_status().map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (at, attempts) = poller
        .join()
        .map_err(|_| anyhow!("the mount poller panicked"))??;
    let last_start = vms
        .iter()
        .map(|vm| vm.started_at().saturating_duration_since(t0).as_secs_f64())
        .fold(0.0, f64::max);
    Ok(UpRun {
        last_qemu_start_s: last_start,
        init_s: last_seen(vms, t0, &["Welcome to Debian", "systemd[1]: systemd "]),
        network_s: last_seen(vms, t0, &["Network is Online"]),
        glusterd_started_s: last_seen(vms, t0, &["Starting glusterd.service"]),
        all_ready_s: last_seen(vms, t0, &[GLUSTERD_MARKER]),
        volume_started_s: seen(&vms[0], t0, STARTED_MARKER),
        mountable_s: at.saturating_duration_since(t0).as_secs_f64(),
        mount_attempts: attempts,
    })
}

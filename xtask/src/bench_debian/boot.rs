//! One measured boot: a fresh cairn-labnet lab (bridge, two backend
//! responders, a client), the VM on a tap of the bridge, a client polling
//! the box's HTTP frontend every 20 ms, and the console timeline.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cairn_labnet::{Lab, Spawn, http, netns};
use cairn_qemu::{Boot, ControlChannel, NetBackend, Nic, Vm, VmConfig};
use serde::Serialize;

use super::agent;
use super::timeline::{self, Markers};

/// How often the client tries `GET /`.
pub const POLL_EVERY: Duration = Duration::from_millis(20);
/// Longest wait for a boot to serve (TCG boots take 15–30 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Memory is read this long after the role is ready.
pub const MEM_DELAY: Duration = Duration::from_secs(5);

/// The backends of the example site's `web` frontend.
const BACKENDS: &[(&str, &str)] = &[("web1", "192.0.2.21"), ("web2", "192.0.2.22")];
/// The client's address (the lab's usual one).
const CLIENT: &str = "192.0.2.250/24";

/// How a subject's memory is read after boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemProbe {
    /// Not measured.
    None,
    /// `cairnctl sysinfo --json` through the host control channel, 5 s after CAIRN-READY.
    Agent,
    /// The `BENCH-MEM total=… available=… pid1_rss=…` console line of the Debian image.
    Console,
}

/// One image on one boot path.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Shown in tables and the chart.
    pub label: &'static str,
    /// Short name for VM and file names.
    pub id: &'static str,
    /// Boot path.
    pub boot: Boot,
    /// Extra QEMU arguments (the Debian root disk).
    pub extra_args: Vec<OsString>,
    /// The NIC's MAC (the site's node).
    pub mac: [u8; 6],
    /// The frontend polled until the first 200, if the image serves one.
    pub serve: Option<SocketAddr>,
    /// Console markers.
    pub markers: Markers,
    /// Memory measurement.
    pub mem: MemProbe,
}

/// Memory after boot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemSample {
    /// MemTotal − MemAvailable (KiB).
    pub used_kib: f64,
    /// PID 1's VmRSS (KiB).
    pub pid1_rss_kib: f64,
    /// Where it goes: meminfo parts such as `AnonPages`, `SUnreclaim` (KiB).
    pub parts: BTreeMap<String, f64>,
    /// The largest processes by resident set.
    pub processes: Vec<ProcSample>,
}

/// One process's resident memory after boot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcSample {
    /// `Name:` from its status.
    pub name: String,
    /// VmRSS (KiB).
    pub rss_kib: f64,
    /// RssAnon (KiB).
    pub anon_kib: f64,
}

/// What one boot gave.
#[derive(Debug, Clone, Serialize)]
pub struct BootRun {
    /// Seconds since QEMU start of each of [`timeline::POINTS`].
    pub points: Vec<Option<f64>>,
    /// Memory, when measured.
    pub mem: Option<MemSample>,
}

/// Parses `BENCH-MEM total=<kB> available=<kB> pid1_rss=<kB> [<Part>=<kB>…]`.
pub fn parse_bench_mem(line: &str) -> Option<MemSample> {
    let rest = &line[line.find("BENCH-MEM")? + "BENCH-MEM".len()..];
    let words: Vec<(&str, f64)> = rest
        .split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k, v.parse::<f64>().ok()?))
        })
        .collect();
    let get = |k: &str| words.iter().find(|(w, _)| *w == k).map(|(_, v)| *v);
    let total = get("total")?;
    let available = get("available")?;
    Some(MemSample {
        used_kib: total - available,
        pid1_rss_kib: get("pid1_rss")?,
        parts: words
            .iter()
            .filter(|(k, _)| !["total", "available", "pid1_rss"].contains(k))
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        processes: Vec::new(),
    })
}

/// Parses `BENCH-PROCS <name>:<rss kB>:<anon kB> …` (largest first).
pub fn parse_bench_procs(line: &str) -> Vec<ProcSample> {
    let Some(at) = line.find("BENCH-PROCS") else {
        return Vec::new();
    };
    line[at + "BENCH-PROCS".len()..]
        .split_whitespace()
        .filter_map(|w| {
            let mut it = w.rsplitn(3, ':');
            let anon = it.next()?.parse().unwrap_or(0.0);
            let rss = it.next()?.parse().ok()?;
            Some(ProcSample {
                name: it.next()?.to_owned(),
                rss_kib: rss,
                anon_kib: anon,
            })
        })
        .collect()
}

/// How many processes the report lists per boot.
pub const TOP_PROCESSES: usize = 8;

/// Formats a MAC for `ip neigh`.
fn mac_text(mac: &[u8; 6]) -> String {
    cairn_qemu::format_mac(mac)
}

/// Starts QEMU from a thread inside `ns` (the switch namespace, where the tap is).
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

/// Polls `GET /` on `addr` from inside `ns` every [`POLL_EVERY`] until a 200
/// (its arrival time) or `stop`.
fn poll_until_200(ns: String, addr: SocketAddr, stop: Arc<AtomicBool>) -> Result<Option<Instant>> {
    netns::enter(&ns)?;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if http::get(addr, Duration::from_millis(100)).is_ok() {
            return Ok(Some(Instant::now()));
        }
        if let Some(rest) = POLL_EVERY.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(None)
}

/// Waits until a console line contains one of `needles`; its time since QEMU start.
fn wait_any(vm: &Vm, needles: &[&str], timeout: Duration) -> Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = vm
            .console_lines()
            .into_iter()
            .find(|l| needles.iter().any(|n| l.text.contains(n)))
        {
            return Ok(l.at.as_secs_f64());
        }
        if let Some(st) = vm.exit_status() {
            bail!("QEMU exited ({st}) before {needles:?}");
        }
        if Instant::now() > deadline {
            bail!("no {needles:?} on the console within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn console_tail(vm: &Vm, n: usize) -> String {
    let lines = vm.console_lines();
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("  {:7.2} {}", l.at.as_secs_f64(), l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Boots `s` once in a fresh lab and measures it; `log_dir` keeps its console.
pub fn run(s: &Subject, responder: &Path, log_dir: &Path, run_no: usize) -> Result<BootRun> {
    let mut lab = Lab::new("bb")?;
    for (name, ip) in BACKENDS {
        lab.add_node(name, &[&format!("{ip}/24")])?;
        let listen = format!("{ip}:8080");
        lab.spawn(
            name,
            name,
            &Spawn::new(responder, &["--listen", &listen, "--name", name]),
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !lab.process(name)?.log().contains(&format!("on {listen}")) {
            if Instant::now() > deadline {
                bail!("the responder {name} did not start");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    lab.add_node("client", &[CLIENT])?;
    if let Some(addr) = s.serve {
        // A static neighbour entry: the client's ARP retries do not blur the time of the first 200.
        lab.ip(
            "client",
            &[
                "neigh",
                "replace",
                &addr.ip().to_string(),
                "lladdr",
                &mac_text(&s.mac),
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )?;
    }
    let tap = lab.add_tap("vm")?;
    let ctl: PathBuf = lab.dir().join("ctl.sock");
    let mut config = VmConfig::new(format!("bench-{}", s.id), s.boot.clone());
    config.nics.push(Nic {
        mac: s.mac,
        backend: NetBackend::Tap(tap),
    });
    config.no_reboot = true;
    config.memory_mib = 512;
    config.cpus = 1;
    config.extra_args = s.extra_args.clone();
    if s.mem == MemProbe::Agent {
        config.control = Some(ControlChannel::cairn(&ctl));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let poller = s.serve.map(|addr| {
        let ns = lab.netns("client");
        let stop = stop.clone();
        std::thread::spawn(move || poll_until_200(ns, addr, stop))
    });
    let vm = start_in(&lab.switch_netns(), &config)?;
    let result = measure(s, &vm, &ctl, poller, &stop);
    stop.store(true, Ordering::Relaxed);
    let console = log_dir.join(format!("{}-run{run_no}.log", s.id));
    let _ = std::fs::write(&console, vm.console_text());
    let result = result.with_context(|| {
        format!(
            "{} run {run_no}: console (also in {}):\n{}",
            s.label,
            console.display(),
            console_tail(&vm, 25)
        )
    });
    drop(vm);
    lab.destroy();
    result
}

type Poller = std::thread::JoinHandle<Result<Option<Instant>>>;

fn measure(
    s: &Subject,
    vm: &Vm,
    ctl: &Path,
    poller: Option<Poller>,
    stop: &AtomicBool,
) -> Result<BootRun> {
    let t0 = vm.started_at();
    let first_200 = match poller {
        Some(p) => {
            let deadline = Instant::now() + BOOT_TIMEOUT;
            while !p.is_finished() {
                if Instant::now() > deadline || vm.exit_status().is_some() {
                    stop.store(true, Ordering::Relaxed);
                    let _ = p.join();
                    bail!("no HTTP 200 within {BOOT_TIMEOUT:?} (or QEMU exited)");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let at = p
                .join()
                .map_err(|_| anyhow!("the HTTP poller panicked"))??
                .context("the poller stopped without an answer")?;
            Some(at.saturating_duration_since(t0).as_secs_f64())
        }
        None => None,
    };
    let ready = wait_any(vm, s.markers.ready, BOOT_TIMEOUT)?;
    let mem = match s.mem {
        MemProbe::None => None,
        MemProbe::Agent => {
            let at = t0 + Duration::from_secs_f64(ready) + MEM_DELAY;
            if let Some(rest) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
            let info = agent::sysinfo(ctl)?;
            Some(MemSample {
                used_kib: info.mem_used_kib as f64,
                pid1_rss_kib: info.pid1_rss_kib as f64,
                parts: info
                    .meminfo
                    .iter()
                    .map(|(k, v)| (k.clone(), *v as f64))
                    .collect(),
                processes: info
                    .processes
                    .iter()
                    .take(TOP_PROCESSES)
                    .map(|p| ProcSample {
                        name: p.name.clone(),
                        rss_kib: p.rss_kib as f64,
                        anon_kib: p.anon_kib as f64,
                    })
                    .collect(),
            })
        }
        MemProbe::Console => {
            wait_any(vm, &["BENCH-MEM"], MEM_DELAY + Duration::from_secs(60))?;
            let lines = vm.console_lines();
            let line = lines
                .iter()
                .find(|l| l.text.contains("BENCH-MEM"))
                .context("BENCH-MEM line vanished")?;
            let mut m =
                parse_bench_mem(&line.text).with_context(|| format!("bad line {:?}", line.text))?;
            m.processes = lines
                .iter()
                .find(|l| l.text.contains("BENCH-PROCS"))
                .map(|l| parse_bench_procs(&l.text))
                .unwrap_or_default();
            Some(m)
        }
    };
    let lines: Vec<(f64, String)> = vm
        .console_lines()
        .into_iter()
        .map(|l| (l.at.as_secs_f64(), l.text))
        .collect();
    Ok(BootRun {
        points: timeline::points(&lines, &s.markers, first_200),
        mem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_mem_line() {
        let m = parse_bench_mem(
            "BENCH-MEM total=480000 available=400000 pid1_rss=11000 AnonPages=9000 Shmem=700",
        )
        .unwrap();
        assert_eq!(m.parts.get("AnonPages"), Some(&9000.0));
        assert_eq!(m.parts.len(), 2);
        let p = parse_bench_procs(
            "[ 30.1] BENCH-PROCS haproxy:12000:6000 systemd-journal:9000:2100 x:1",
        );
        assert_eq!(p.len(), 2, "a word without rss and anon is skipped: {p:?}");
        assert_eq!(
            (p[1].name.as_str(), p[1].rss_kib, p[1].anon_kib),
            ("systemd-journal", 9000.0, 2100.0)
        );
        assert_eq!(m.used_kib, 80000.0);
        assert_eq!(m.pid1_rss_kib, 11000.0);
        assert!(parse_bench_mem("[   12.1] BENCH-MEM total=1 available=x pid1_rss=2").is_none());
        assert!(parse_bench_mem("nothing").is_none());
    }
}

//! `cairnctl sysinfo`: the box's memory in use and PID 1's resident memory, from /proc, for
//! operators and for the benchmarks (read through the host control channel on VMs), with
//! where the memory goes: the kernel's main meminfo parts and each process's resident set.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// What `sysinfo` reports (kibibytes and milliseconds, as /proc gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysInfo {
    /// MemTotal.
    pub mem_total_kib: u64,
    /// MemAvailable.
    pub mem_available_kib: u64,
    /// MemTotal − MemAvailable: memory in use.
    pub mem_used_kib: u64,
    /// PID 1's VmRSS.
    pub pid1_rss_kib: u64,
    /// Time since boot.
    pub uptime_ms: u64,
    /// The parts of memory in use /proc/meminfo names ([`MEMINFO_PARTS`]), KiB.
    pub meminfo: BTreeMap<String, u64>,
    /// Every process, largest resident set first.
    pub processes: Vec<Process>,
}

/// One process's resident memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// The PID.
    pub pid: u32,
    /// Its name (`Name:` in status).
    pub name: String,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// RssAnon (heap, stacks: not shared, not reclaimable without swap), KiB.
    pub anon_kib: u64,
}

/// The meminfo fields that say where memory in use goes: process memory
/// (`AnonPages`), RAM file systems (`Shmem`: tmpfs, the initramfs on PXE),
/// kernel allocations (`SUnreclaim`, `KernelStack`, `PageTables`, `Percpu`,
/// `VmallocUsed`) and the page cache (`Cached`, counted as available).
pub const MEMINFO_PARTS: &[&str] = &[
    "AnonPages",
    "Shmem",
    "Cached",
    "Buffers",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "Percpu",
    "VmallocUsed",
    "Mlocked",
];

/// The `key:` value in KiB of a /proc text (`MemTotal:  1 kB`, `VmRSS:\t 2 kB`).
fn kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        (k == key).then(|| rest.trim().trim_end_matches("kB").trim().parse().ok())?
    })
}

/// The processes under `proc_root` (kernel threads have no resident set and are left out).
fn processes(proc_root: &Path) -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out: Vec<Process> = dir
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .map(|n| n.trim().to_owned())?;
            Some(Process {
                pid,
                name,
                rss_kib: kib(&status, "VmRSS")?,
                anon_kib: kib(&status, "RssAnon").unwrap_or(0),
            })
        })
        .collect();
    out.sort_by(|a, b| b.rss_kib.cmp(&a.rss_kib).then(a.pid.cmp(&b.pid)));
    out
}

/// Reads `/proc` under `proc_root` (`/proc` on a box; a fixture directory in tests).
pub fn read(proc_root: &Path) -> Result<SysInfo> {
    let file = |name: &str| {
        let path = proc_root.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let meminfo = file("meminfo")?;
    let status = file("1/status")?;
    let uptime = file("uptime")?;
    let field = |text: &str, key: &str, what: &str| -> Result<u64> {
        kib(text, key).with_context(|| format!("no {key}: in {what}"))
    };
    let total = field(&meminfo, "MemTotal", "meminfo")?;
    let available = field(&meminfo, "MemAvailable", "meminfo")?;
    let seconds: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .context("uptime is not a number")?;
    Ok(SysInfo {
        mem_total_kib: total,
        mem_available_kib: available,
        mem_used_kib: total.saturating_sub(available),
        pid1_rss_kib: field(&status, "VmRSS", "1/status")?,
        uptime_ms: (seconds * 1000.0) as u64,
        meminfo: MEMINFO_PARTS
            .iter()
            .filter_map(|k| Some(((*k).to_owned(), kib(&meminfo, k)?)))
            .collect(),
        processes: processes(proc_root),
    })
}

/// Prints the report: one JSON object with `json`, else one line per value.
pub fn show(json: bool) -> Result<()> {
    let info = read(Path::new("/proc"))?;
    if json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!(
            "memory in use {} KiB of {} KiB ({} KiB available)\nPID 1 resident {} KiB\nup {:.1} s",
            info.mem_used_kib,
            info.mem_total_kib,
            info.mem_available_kib,
            info.pid1_rss_kib,
            info.uptime_ms as f64 / 1000.0
        );
        let parts: Vec<String> = info
            .meminfo
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("meminfo (KiB): {}", parts.join(", "));
        println!("{:>7}  {:>9}  {:>9}  name", "pid", "rss KiB", "anon KiB");
        for p in &info.processes {
            println!(
                "{:>7}  {:>9}  {:>9}  {}",
                p.pid, p.rss_kib, p.anon_kib, p.name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_status_and_uptime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1")).unwrap();
        std::fs::write(
            dir.path().join("meminfo"),
            "MemTotal:         498000 kB\nMemFree:          400000 kB\nMemAvailable:     450000 kB\n\
             Shmem:              1200 kB\nAnonPages:          9000 kB\nAnonHugePages:         0 kB\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("1/status"),
            "Name:\tcairn-init\nVmPeak:\t    9000 kB\nVmRSS:\t    3316 kB\nRssAnon:\t     280 kB\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("42")).unwrap();
        std::fs::write(
            dir.path().join("42/status"),
            "Name:\thaproxy\nVmRSS:\t    9000 kB\nRssAnon:\t    6000 kB\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("2")).unwrap();
        std::fs::write(dir.path().join("2/status"), "Name:\tkthreadd\n").unwrap();
        std::fs::write(dir.path().join("uptime"), "12.34 20.00\n").unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            SysInfo {
                mem_total_kib: 498000,
                mem_available_kib: 450000,
                mem_used_kib: 48000,
                pid1_rss_kib: 3316,
                uptime_ms: 12340,
                meminfo: [("AnonPages".to_owned(), 9000), ("Shmem".to_owned(), 1200)]
                    .into_iter()
                    .collect(),
                processes: vec![
                    Process {
                        pid: 42,
                        name: "haproxy".into(),
                        rss_kib: 9000,
                        anon_kib: 6000
                    },
                    Process {
                        pid: 1,
                        name: "cairn-init".into(),
                        rss_kib: 3316,
                        anon_kib: 280
                    },
                ],
            },
            "AnonHugePages is not AnonPages; a kernel thread has no resident set"
        );
    }

    #[test]
    fn missing_fields_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1")).unwrap();
        std::fs::write(dir.path().join("meminfo"), "MemTotal: 1 kB\n").unwrap();
        std::fs::write(dir.path().join("1/status"), "").unwrap();
        std::fs::write(dir.path().join("uptime"), "1.0 1.0\n").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert_eq!(e, "no MemAvailable: in meminfo");
        std::fs::remove_file(dir.path().join("uptime")).unwrap();
        let e = format!("{:#}", read(dir.path()).unwrap_err());
        assert!(e.starts_with("reading "), "{e}");
    }

    #[test]
    fn reads_this_machine() {
        let info = read(Path::new("/proc")).unwrap();
        assert!(info.mem_total_kib > 0 && info.mem_used_kib <= info.mem_total_kib);
        assert!(info.pid1_rss_kib > 0);
    }
}

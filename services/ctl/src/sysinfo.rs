//! `cairnctl sysinfo`: the box's memory in use and PID 1's resident memory, from /proc, for
//! operators and for the benchmarks (read through the host control channel on VMs).

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
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {key} in {what}"))
    };
    let total = field(&meminfo, "MemTotal:", "meminfo")?;
    let available = field(&meminfo, "MemAvailable:", "meminfo")?;
    let seconds: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .context("uptime is not a number")?;
    Ok(SysInfo {
        mem_total_kib: total,
        mem_available_kib: available,
        mem_used_kib: total.saturating_sub(available),
        pid1_rss_kib: field(&status, "VmRSS:", "1/status")?,
        uptime_ms: (seconds * 1000.0) as u64,
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
            "MemTotal:         498000 kB\nMemFree:          400000 kB\nMemAvailable:     450000 kB\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("1/status"),
            "Name:\tcairn-init\nVmPeak:\t    9000 kB\nVmRSS:\t    3316 kB\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("uptime"), "12.34 20.00\n").unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            SysInfo {
                mem_total_kib: 498000,
                mem_available_kib: 450000,
                mem_used_kib: 48000,
                pid1_rss_kib: 3316,
                uptime_ms: 12340,
            }
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

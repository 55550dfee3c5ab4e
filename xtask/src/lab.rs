//! cairn-init in its own PID, mount and network namespaces, for the demo and
//! the benchmarks. Everything it starts ends when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_control::InitClient;

/// A running cairn-init namespace.
pub struct NsInit {
    child: Option<Child>,
    /// Control socket.
    pub control: PathBuf,
    /// Where cairn-init's console output goes.
    pub log: PathBuf,
}

impl NsInit {
    /// Starts `init` on `services` with its files under `dir`.
    pub fn start(bin: &Path, dir: &Path, services: &Path, ready_line: &str) -> Result<Self> {
        let control = dir.join("control.sock");
        let log = dir.join("init.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--net", "--kill-child"])
            .arg(bin.join("cairn-init"))
            .arg("--services")
            .arg(services)
            .arg("--control")
            .arg(&control)
            .arg("--ready-line")
            .arg(ready_line)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting unshare (util-linux)")?;
        Ok(Self {
            child: Some(child),
            control,
            log,
        })
    }

    /// Console output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a console line starting with `prefix`; returns it.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(l) = self.log_text().lines().find(|l| l.starts_with(prefix)) {
                return Ok(l.to_owned());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bail!(
            "no line starting with {prefix:?} within {timeout:?}; log:\n{}",
            self.log_text()
        )
    }

    /// A control API client (retries while the socket comes up).
    pub fn client(&self) -> Result<InitClient> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match InitClient::connect(&self.control) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > end => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Host pid of cairn-init (PID 1 of the namespace).
    pub fn init_pid(&self) -> Result<u32> {
        let u = self.child.as_ref().map(|c| c.id()).context("not running")?;
        children(u).first().copied().context("unshare has no child")
    }

    /// Host pid of a process whose namespace pid is `ns_pid`.
    pub fn host_pid(&self, ns_pid: u32) -> Result<u32> {
        let init = self.init_pid()?;
        for p in children(init) {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let nspid = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_owned));
            if nspid.as_deref() == Some(&ns_pid.to_string()) {
                return Ok(p);
            }
        }
        bail!("no process with namespace pid {ns_pid}")
    }

    /// Sends SIGTERM to cairn-init and waits for the namespace to end.
    pub fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.init_pid()?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let child = self.child.as_mut().context("not running")?;
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(st);
            }
            if Instant::now() > end {
                bail!("cairn-init did not stop within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NsInit {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Host pids whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok()),
        );
    }
    out
}

/// A field of /proc/<pid>/status in KiB (VmRSS, RssAnon, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Milliseconds on CLOCK_MONOTONIC, the clock cairn-init's `{t_ms}` uses.
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

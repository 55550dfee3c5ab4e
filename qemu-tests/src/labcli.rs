//! Driving `cairn lab` from tests: run the real `cairn` binary, read the
//! keeper's status, run cairnctl on a box, and read the lab probe's answers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cairn_bin;

/// Time `lab up` may take, builds included (TCG, shared cores).
pub const UP_TIMEOUT_S: u64 = 900;

pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    assert_eq!(
        uid, "0",
        "the lab tests need root (network namespaces, bridges, taps); run them as root"
    );
}

pub fn cairn(args: &[&str]) -> Output {
    let o = Command::new(cairn_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cairn: {e}"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let shown = if lines.len() > 30 {
        format!("[{} lines]\n", lines.len())
    } else {
        stdout.to_string()
    };
    eprintln!(
        "$ cairn {}\n{shown}{}(exit {})",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr),
        o.status
    );
    o
}

/// `cairn lab up --site <site> --state <state> --nodes <nodes>`, which must succeed.
pub fn lab_up(site: &Path, state: &str, nodes: &str) -> String {
    lab_up_with(site, state, Some(nodes), None)
}

/// `cairn lab up` with `--nodes` (all of the site's when `None`) and
/// `--memory` MiB per VM (the lab's default when `None`), which must succeed.
pub fn lab_up_with(
    site: &Path,
    state: &str,
    nodes: Option<&str>,
    memory_mib: Option<u32>,
) -> String {
    let t = Instant::now();
    let site = site.to_string_lossy();
    let timeout = UP_TIMEOUT_S.to_string();
    let memory = memory_mib.map(|m| m.to_string());
    let mut args = vec![
        "lab",
        "up",
        "--site",
        &site,
        "--state",
        state,
        "--timeout",
        &timeout,
    ];
    if let Some(n) = nodes {
        args.extend(["--nodes", n]);
    }
    if let Some(m) = &memory {
        args.extend(["--memory", m]);
    }
    let out = ok(&cairn(&args));
    eprintln!(
        "lab up ({}): {:.1} s",
        nodes.unwrap_or("all nodes"),
        t.elapsed().as_secs_f64()
    );
    out
}

pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "cairn failed: {}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn failed_with(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    let t = text(o);
    assert!(t.contains(needle), "expected {needle:?} in: {t}");
}

/// `cairn lab ctl <node> --state <state> -- <args>`: cairnctl on the VM.
pub fn ctl(state: &str, node: &str, args: &[&str]) -> Output {
    let mut all = vec!["lab", "ctl", node, "--state", state, "--"];
    all.extend_from_slice(args);
    cairn(&all)
}

/// Runs `cairn lab down` when dropped, so a failing test leaves nothing behind.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cairn(&["lab", "down", "--state", &self.0.to_string_lossy()]);
    }
}

/// The keeper's status answer.
pub fn status_json(state: &str) -> serde_json::Value {
    let o = cairn(&["lab", "status", "--state", state, "--json"]);
    serde_json::from_str(&ok(&o)).unwrap()
}

pub fn node<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {status}"))
}

/// Polls the status until `done` holds for it; panics after `timeout`.
pub fn wait_status(
    state: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let s = status_json(state);
        if done(&s) {
            eprintln!("{what}: after {:.1} s", t.elapsed().as_secs_f64());
            return s;
        }
        assert!(t.elapsed() < timeout, "{what}: not after {timeout:?}: {s}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn write_site(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("site.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// One probe attempt of cairn-lab-probe's JSON lines.
pub struct Attempt {
    /// ms since the probe started.
    pub t_ms: f64,
    /// Whether it got a 200.
    pub ok: bool,
    /// The answer's body (which backend).
    pub body: String,
    /// CLOCK_MONOTONIC at the attempt's start, ms (same clock as [`monotonic_ms`]).
    pub mono_ms: f64,
}

/// CLOCK_MONOTONIC now, in ms: the probe's `mono_ms` time line.
pub fn monotonic_ms() -> f64 {
    cairn_labnet::probe::monotonic_ms()
}

pub fn read_probe(path: &Path) -> Vec<Attempt> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Attempt {
                t_ms: v["t_ms"].as_f64().unwrap(),
                ok: v["ok"].as_bool().unwrap(),
                body: v["body"].as_str().unwrap_or("").trim().to_string(),
                mono_ms: v["mono_ms"].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

pub fn vip_holder(state: &str) -> Option<String> {
    let table = ok(&cairn(&["lab", "status", "--state", state]));
    let line = table.lines().find(|l| l.starts_with("VIP 192.0.2.100:"))?;
    let rest = line.split("held by ").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// cairn-lab-probe in the client namespace, one request every 10 ms until stopped.
pub struct Probe {
    child: std::process::Child,
    out: PathBuf,
}

impl Probe {
    pub fn start(probe_bin: &Path, client_ns: &str, out: &Path) -> Probe {
        Self::start_with_timeout(probe_bin, client_ns, out, 100)
    }

    /// Like [`Probe::start`], with another per-request timeout: a request that takes
    /// longer counts as failed.
    pub fn start_with_timeout(
        probe_bin: &Path,
        client_ns: &str,
        out: &Path,
        timeout_ms: u32,
    ) -> Probe {
        // `ip netns exec` execs the probe, so this child's pid is the probe's.
        let child = Command::new("ip")
            .args(["netns", "exec", client_ns])
            .arg(probe_bin)
            .args([
                "--target",
                "192.0.2.100:80",
                "--every-ms",
                "10",
                "--timeout-ms",
                &timeout_ms.to_string(),
                "--duration-ms",
                "0",
                "--out",
                &out.to_string_lossy(),
            ])
            .spawn()
            .unwrap();
        Probe {
            child,
            out: out.to_path_buf(),
        }
    }

    /// SIGTERM, wait (bounded), and the attempts it recorded.
    pub fn stop(mut self) -> Vec<Attempt> {
        assert!(
            Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the probe ignores SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        read_probe(&self.out)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

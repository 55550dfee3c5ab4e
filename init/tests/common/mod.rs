//! Harness for privileged tests: cairn-init as PID 1 of fresh PID, mount and
//! network namespaces (`unshare`), driven through the real `cairnctl`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails the test loudly when it cannot run (never a silent pass).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: must run as root (it creates PID, mount and network namespaces); \
         run `cargo xtask test` as root"
    );
    assert!(
        Path::new("/usr/bin/unshare").exists(),
        "privileged test: /usr/bin/unshare (util-linux) is missing; run `cargo xtask setup`"
    );
}

/// Path of the built cairnctl: built next to cairn-init by `cargo test --workspace`.
pub fn cairnctl() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_cairn-init")).with_file_name("cairnctl");
    assert!(
        p.exists(),
        "{} not found: run the tests with `cargo test --workspace` (or `cargo xtask test`) so cairnctl is built",
        p.display()
    );
    p
}

/// A running cairn-init in its own namespaces, with a temp directory.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub control: PathBuf,
    child: Option<Child>,
    pub started: Instant,
    /// Dropped after the child is killed (field order).
    _cgroup: Option<LabCgroup>,
}

/// A cgroup of its own for one lab's PID 1. cairn-init makes its services' cgroups
/// (`<name>.service`) under its own cgroup; labs running in parallel from one test
/// process would otherwise share them, and one lab's `cgroup.kill` of its `worker`
/// killed another lab's `worker`.
struct LabCgroup {
    path: PathBuf,
}

impl LabCgroup {
    /// A fresh cgroup beside the test process's own, or `None` without cgroup2.
    fn new() -> Option<Self> {
        let own = cairn_init::cgroup::Cgroups::detect(
            &std::fs::read_to_string("/proc/self/mountinfo").ok()?,
            &std::fs::read_to_string("/proc/self/cgroup").ok()?,
        )?;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = own
            .path("x")
            .parent()?
            .join(format!("cairn-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create the lab's cgroup {}: {e}", path.display()));
        Some(Self { path })
    }
}

impl Drop for LabCgroup {
    fn drop(&mut self) {
        // The namespace's processes are dying: retry while the groups are still busy.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let subs: Vec<PathBuf> = std::fs::read_dir(&self.path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            for s in subs {
                let _ = std::fs::remove_dir(s);
            }
            if std::fs::remove_dir(&self.path).is_ok() || Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Lab {
    /// Writes `services` (with `@DIR@` replaced by the lab directory and
    /// `@CTL@` by the cairnctl path) and starts cairn-init on it.
    pub fn start(services: &str) -> Lab {
        Lab::start_with(services, &[], |_| {})
    }

    /// Like [`Lab::start`], with extra cairn-init arguments (`@DIR@` replaced
    /// too) and `prepare` run on the lab directory before cairn-init starts.
    pub fn start_with(services: &str, args: &[&str], prepare: impl FnOnce(&Path)) -> Lab {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let extra: Vec<String> = args
            .iter()
            .map(|a| a.replace("@DIR@", dir.path().to_str().unwrap()))
            .collect();
        let text = services
            .replace("@DIR@", dir.path().to_str().unwrap())
            .replace("@CTL@", cairnctl().to_str().unwrap());
        let file = dir.path().join("services.toml");
        std::fs::write(&file, text).unwrap();
        let control = dir.path().join("run/control.sock");
        let log = std::fs::File::create(dir.path().join("init.log")).unwrap();
        let cgroup = LabCgroup::new();
        // The shell joins the lab's cgroup and becomes unshare, whose children inherit it.
        let mut cmd = match &cgroup {
            Some(cg) => {
                let mut c = Command::new("/bin/sh");
                c.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                    .arg(cg.path.join("cgroup.procs"))
                    .arg("/usr/bin/unshare");
                c
            }
            None => Command::new("/usr/bin/unshare"),
        };
        let child = cmd
            .args(["--pid", "--fork", "--mount-proc", "--net", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_cairn-init"))
            .arg("--services")
            .arg(&file)
            .arg("--control")
            .arg(&control)
            .args(&extra)
            .env("CAIRN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn unshare");
        let lab = Lab {
            dir,
            control,
            child: Some(child),
            started: Instant::now(),
            _cgroup: cgroup,
        };
        lab.wait_until("control socket answers", Duration::from_secs(10), || {
            lab.try_ctl(&["status", "--json"]).status.success()
        });
        lab
    }

    /// The init log (cairn-init's stderr, which includes echoed service output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("init.log")).unwrap_or_default()
    }

    /// Runs cairnctl against this lab.
    pub fn try_ctl(&self, args: &[&str]) -> Output {
        Command::new(cairnctl())
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs cairnctl and asserts success; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.try_ctl(args);
        assert!(
            out.status.success(),
            "cairnctl {args:?} failed: {}\n--- init log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cairnctl status --json`, parsed.
    pub fn status(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ctl(&["status", "--json"])).unwrap()
    }

    /// The status object of one service.
    pub fn service(&self, name: &str) -> serde_json::Value {
        self.status()
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name} in status"))
    }

    /// Polls `cond` every 20 ms until it holds; panics with the log after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out after {timeout:?} waiting for: {what}\n--- init log ---\n{}",
            self.log()
        );
    }

    /// Host pid of `unshare`.
    pub fn unshare_pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Host pid of cairn-init (the namespace's PID 1).
    pub fn init_pid(&self) -> u32 {
        let u = self.unshare_pid();
        let kids = children(u);
        assert_eq!(kids.len(), 1, "unshare should have one child, has {kids:?}");
        kids[0]
    }

    /// Sends a signal to cairn-init.
    pub fn signal_init(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init_pid() as i32), sig).unwrap();
    }

    /// Waits for the namespace to end; returns unshare's exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            if Instant::now() > end {
                panic!(
                    "cairn-init did not exit within {timeout:?}\n--- init log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines of a service's log ring: (t_ms, stream, text).
    pub fn logs(&self, name: &str) -> Vec<(u64, String, String)> {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&self.ctl(&["logs", name, "-n", "10000", "--json"])).unwrap();
        v.iter()
            .map(|l| {
                (
                    l["t_ms"].as_u64().unwrap(),
                    l["stream"].as_str().unwrap().to_owned(),
                    l["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // --kill-child: unshare's death SIGKILLs the namespace's PID 1,
            // which takes every process of the namespace with it.
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
        let p = task.path().join("children");
        for w in std::fs::read_to_string(p)
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Ok(n) = w.parse() {
                out.push(n);
            }
        }
    }
    out
}

/// State letter of a process (`Z` for a zombie), from /proc/<pid>/stat.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

//! The main demo: the example site's load-balancer pair as a QEMU lab. Two `lb` boxes
//! (HAProxy + cairn-vipd) and two backends come up on a bridge in network namespaces; a
//! client reaches the backends through the floating VIP; the master is killed under load and
//! the VIP moves to the backup. Ends with a summary and removes the lab.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_labnet::probe::ProbeSummary;

use crate::{root, step, target_dir};

/// The VIP and frontend of `examples/site.toml`.
const VIP: &str = "192.0.2.100";

/// Runs the demo; `keep` leaves the lab running at the end.
pub fn run(keep: bool) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab creates network namespaces, bridges and taps: run the demo as root");
    }
    step("building cairn (the image builder and lab) and the lab's HTTP responder and probe");
    crate::run_cmd(crate::cargo().args([
        "build",
        "--release",
        "-p",
        "cairn",
        "-p",
        "cairn-labnet",
    ]))?;
    let bin = target_dir().join("release");
    let cairn = bin.join("cairn");
    let state = target_dir().join("demo/lab");
    let state_s = state.to_string_lossy().into_owned();
    let site = root().join("examples/site.toml");
    // A lab left by an interrupted demo goes first.
    let _ = lab(&cairn, &["down", "--state", &state_s]);

    step("cairn lab up: build the lb image, boot lb1 and lb2, start web1 and web2");
    let t_up = Instant::now();
    let st = Command::new(&cairn)
        .args(["lab", "up", "--site"])
        .arg(&site)
        .args(["--state", &state_s, "--nodes", "lb1,lb2,web1,web2"])
        .status()
        .context("running cairn lab up")?;
    if !st.success() {
        bail!("cairn lab up failed ({st})");
    }
    let demo = Demo {
        cairn: cairn.clone(),
        state: state_s.clone(),
    };
    let result = demo.show(&bin, t_up);
    if keep && result.is_ok() {
        println!(
            "\nthe lab keeps running: `{} lab status --state {state_s}`; remove it with `{} lab down --state {state_s}`",
            cairn.display(),
            cairn.display()
        );
    } else {
        step("cairn lab down: VMs, responders, namespaces and taps removed");
        let out = lab(&cairn, &["down", "--state", &state_s])?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    result
}

struct Demo {
    cairn: PathBuf,
    state: String,
}

impl Demo {
    /// `cairn lab <sub> --state <state> <rest...>` (before any `--`, which ends lab's options).
    fn lab(&self, args: &[&str]) -> Result<Output> {
        let (sub, rest) = args.split_first().context("no lab subcommand")?;
        let mut all: Vec<&str> = vec![sub, "--state", &self.state];
        all.extend(rest);
        lab(&self.cairn, &all)
    }

    fn curl(&self) -> Result<Option<String>> {
        let out = self.lab(&[
            "exec",
            "client",
            "--",
            "curl",
            "-s",
            "-m",
            "2",
            &format!("http://{VIP}/"),
        ])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    /// The VIP holder as the client sees it (its neighbour entry), from `lab status`.
    fn holder(&self) -> Option<String> {
        let out = self.lab(&["status"]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("VIP {VIP}:")))?;
        let rest = line.split("held by ").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    }

    fn settled_holder(&self, timeout: Duration) -> Result<String> {
        let end = Instant::now() + timeout;
        let mut last: Option<(String, Instant)> = None;
        loop {
            let now = Instant::now();
            let current = self.holder();
            match (&last, current) {
                (Some((h, since)), Some(c)) if *h == c => {
                    if now.duration_since(*since) >= Duration::from_secs(3) {
                        return Ok(c);
                    }
                }
                (_, Some(c)) => last = Some((c, now)),
                (_, None) => last = None,
            }
            if now > end {
                bail!("the VIP holder did not settle within {timeout:?} (last: {last:?})");
            }
            // Traffic keeps the client's neighbour entry fresh.
            let _ = self.curl();
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn show(&self, bin: &Path, t_up: Instant) -> Result<()> {
        // Serving: the first answer through the VIP.
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(body) = self.curl()? {
                break body;
            }
            if Instant::now() > deadline {
                bail!("no answer through the VIP {VIP} 60 s after the boxes were ready");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let up_to_serving = t_up.elapsed();
        println!(
            "    first answer through the VIP {:.1} s after `lab up` started: {first}",
            up_to_serving.as_secs_f64()
        );
        let out = self.lab(&["status"])?;
        print!("{}", String::from_utf8_lossy(&out.stdout));

        step(&format!(
            "six requests from the client namespace: curl http://{VIP}/ (HAProxy round robin)"
        ));
        for _ in 0..6 {
            println!(
                "    -> {}",
                self.curl()?.unwrap_or_else(|| "(failed)".into())
            );
        }
        // Checks start out failing, so right after boot whichever box is first to pass its
        // Master_Down_Interval may hold the VIP briefly before the higher-priority box
        // preempts it: wait until the holder has been the same for 3 s.
        let master = self.settled_holder(Duration::from_secs(60))?;
        println!("    the VIP is held by {master} (unchanged for 3 s)");

        step(&format!(
            "killing {master} (hard power-off) under one request every 10 ms"
        ));
        let probe_out = PathBuf::from(&self.state).join("demo-probe.jsonl");
        let probe = bin.join("cairn-lab-probe");
        let mut child = Command::new(&self.cairn)
            .args(["lab", "exec", "client", "--state", &self.state, "--"])
            .arg(&probe)
            .args([
                "--target",
                &format!("{VIP}:80"),
                "--every-ms",
                "10",
                "--timeout-ms",
                "100",
                "--duration-ms",
                "6000",
                "--out",
            ])
            .arg(&probe_out)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting the probe in the client namespace")?;
        std::thread::sleep(Duration::from_secs(2));
        let killed = Instant::now();
        self.lab(&["kill", &master])?;
        let kill_ms = killed.elapsed().as_secs_f64() * 1000.0;
        let st = child.wait().context("waiting for the probe")?;
        if !st.success() {
            bail!("the probe failed ({st})");
        }
        let (_, summary) = ProbeSummary::from_file(&probe_out)?;
        let new = wait_for(
            || self.holder().filter(|h| h != &master),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|| "(nobody)".into());
        println!("    the VIP moved to {new}");
        println!("    probe: {}", summary.line());
        for line in console_lines(&self.state, &new, "-> master") {
            println!("    {new} | {line}");
        }
        let out = self.lab(&["status"])?;
        print!("{}", String::from_utf8_lossy(&out.stdout));

        println!(
            "\nsummary: `lab up` to first answer through the VIP {:.1} s; {master} killed \
             (the kill itself took {kill_ms:.0} ms): VIP on {new}, {} of {} requests failed, \
             longest outage {:.0} ms (advert interval 100 ms: Master_Down_Interval ≈ 361 ms)",
            up_to_serving.as_secs_f64(),
            summary.failures,
            summary.attempts,
            summary.longest_outage_ms(),
        );
        Ok(())
    }
}

fn lab(cairn: &Path, args: &[&str]) -> Result<Output> {
    Command::new(cairn)
        .arg("lab")
        .args(args)
        .output()
        .with_context(|| format!("running cairn lab {}", args.join(" ")))
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>, timeout: Duration) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lines of a node's console containing `needle`.
fn console_lines(state: &str, node: &str, needle: &str) -> Vec<String> {
    let path = Path::new(state).join("vms").join(node).join("console.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

//! `cargo xtask bench`: measurements, never assertions. Writes
//! `bench/report.md` and `bench/report.json`.
//!
//! Section "PID 1" (cairn-init): resident memory with ten services, time from
//! start to all-ready, restart latency after a SIGKILL, orderly shutdown time,
//! and tini's resident memory as a minimal-init reference measured in the
//! same run.
//!
//! Section "Failover (VRRPv3)": see `bench_vrrp`.
//!
//! Section "Boot to serving and footprint" (cairn `lb` against minimal Debian,
//! and `bench/boot-timeline.png`): see `bench_debian`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::lab::{NsInit, children, monotonic_ms, status_kib};
use crate::{build_release, root, step, target_dir};

/// Ten services: six independent, a chain of three, one oneshot.
fn ten_services() -> String {
    let mut s = String::new();
    s.push_str("[[service]]\nname = \"setup\"\nexec = [\"/bin/true\"]\noneshot = true\n\n");
    for i in 1..=6 {
        s.push_str(&format!("[[service]]\nname = \"svc{i}\"\nexec = [\"/bin/sleep\", \"100000\"]\nafter = [\"setup\"]\n\n"));
    }
    s.push_str("[[service]]\nname = \"chain1\"\nexec = [\"/bin/sleep\", \"100000\"]\nafter = [\"setup\"]\n\n");
    s.push_str("[[service]]\nname = \"chain2\"\nexec = [\"/bin/sleep\", \"100000\"]\nafter = [\"chain1\"]\n\n");
    s.push_str(
        "[[service]]\nname = \"crashy\"\nexec = [\"/bin/sleep\", \"100000\"]\nafter = [\"chain2\"]\n\
         restart_delay_ms = 0\nstart_limit = { burst = 1000, interval_ms = 1000 }\n",
    );
    s
}

/// One measured quantity with its samples.
#[derive(Debug, Serialize)]
pub struct Metric {
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) samples: Vec<f64>,
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) goal: String,
}

impl Metric {
    /// Sorts the samples and computes median, min and max.
    pub fn new(name: &str, unit: &str, goal: &str, mut samples: Vec<f64>) -> Self {
        samples.sort_by(|a, b| a.total_cmp(b));
        let n = samples.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2.0
        };
        Self {
            name: name.into(),
            unit: unit.into(),
            min: samples.first().copied().unwrap_or(f64::NAN),
            max: samples.last().copied().unwrap_or(f64::NAN),
            median,
            samples,
            goal: goal.into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    runs: usize,
    pid1: Vec<Metric>,
    images: Vec<Metric>,
    images_identical: bool,
    accel: String,
    failover: crate::bench_vrrp::FailoverReport,
    boot: crate::bench_debian::BootReport,
    upgrade: crate::bench_update::UpgradeReport,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    rustc: String,
    cairn_init_bytes: u64,
    tini: String,
}

fn machine(bin: &Path) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|v| v.split_once(':'))
                .map(|v| v.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let out = |c: &mut Command| {
        c.output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        kernel: out(Command::new("uname").arg("-r")),
        rustc: out(Command::new("rustc").arg("--version")),
        cairn_init_bytes: std::fs::metadata(bin.join("cairn-init"))
            .map(|m| m.len())
            .unwrap_or(0),
        tini: out(Command::new("dpkg-query").args(["-W", "-f=${Version}", "tini"])),
    }
}

struct Pid1Run {
    ready_ms: f64,
    rss_kib: f64,
    rss_after_api_kib: f64,
    anon_kib: f64,
    server_rss_kib: f64,
    server_anon_kib: f64,
    restart_ms: Vec<f64>,
    shutdown_ms: f64,
}

fn pid1_run(bin: &Path, dir: &Path, services: &Path) -> Result<Pid1Run> {
    let t0 = monotonic_ms();
    let mut init = NsInit::start(bin, dir, services, "BENCH-READY t_ms={t_ms}")?;
    let line = init.wait_line("BENCH-READY", Duration::from_secs(30))?;
    let t_ready: u64 = line
        .trim_start_matches("BENCH-READY t_ms=")
        .trim()
        .parse()?;
    let pid = init.init_pid()?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_kib = status_kib(pid, "VmRSS").context("VmRSS")? as f64;
    let client = init.client()?;
    for _ in 0..20 {
        client.list_services()?;
    }
    let rss_after_api_kib = status_kib(pid, "VmRSS").context("VmRSS")? as f64;
    let anon_kib = status_kib(pid, "RssAnon").unwrap_or(0) as f64;
    // The control API's D-Bus server runs in a child of PID 1 (init/src/control_api.rs).
    let server = control_server_of(pid).context("PID 1's control-API server process")?;
    let server_rss_kib = status_kib(server, "VmRSS").context("server VmRSS")? as f64;
    let server_anon_kib = status_kib(server, "RssAnon").unwrap_or(0) as f64;

    // Restart latency: SIGKILL the service, time until a new process is ready.
    let mut restart_ms = Vec::new();
    for _ in 0..5 {
        let st = client.list_services()?;
        let old = st
            .iter()
            .find(|s| s.name == "crashy")
            .context("crashy")?
            .pid;
        let host = init.host_pid(old)?;
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(host as i32),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let end = t + Duration::from_secs(5);
        loop {
            let st = client.list_services()?;
            let s = st.iter().find(|s| s.name == "crashy").context("crashy")?;
            if s.pid != 0 && s.pid != old && s.ready {
                restart_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > end {
                bail!("crashy was not restarted within 5 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    let t = Instant::now();
    init.stop(Duration::from_secs(30))?;
    let shutdown_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(Pid1Run {
        ready_ms: t_ready.saturating_sub(t0) as f64,
        rss_kib,
        rss_after_api_kib,
        anon_kib,
        server_rss_kib,
        server_anon_kib,
        restart_ms,
        shutdown_ms,
    })
}

/// The child of `init` running `cairn-init serve-init-api`.
fn control_server_of(init: u32) -> Option<u32> {
    // Children hang off the thread that started them (the relay thread), so every task's.
    let mut children = String::new();
    for task in std::fs::read_dir(format!("/proc/{init}/task"))
        .ok()?
        .flatten()
    {
        children
            .push_str(&std::fs::read_to_string(task.path().join("children")).unwrap_or_default());
        children.push(' ');
    }
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("serve-init-api"))
        })
}

/// Resident memory of tini as PID 1 of a namespace supervising one child.
fn tini_rss() -> Result<f64> {
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "/usr/bin/tini",
            "--",
            "/bin/sleep",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tini")?;
    std::thread::sleep(Duration::from_millis(300));
    let tini = children(child.id()).first().copied();
    let rss = tini.and_then(|p| status_kib(p, "VmRSS"));
    let _ = child.kill();
    let _ = child.wait();
    rss.map(|r| r as f64).context("tini did not start")
}

/// Runs the benchmarks and writes the report.
pub fn run(runs: usize) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmarks create namespaces: run them as root");
    }
    let bin = build_release()?;
    let pid1 = pid1_metrics(&bin, runs)?;
    let img = crate::bench_image::run(runs.min(5))?;
    let failover = crate::bench_vrrp::run(runs)?;
    let boot = crate::bench_debian::run(runs.min(5))?;
    let upgrade = crate::bench_update::run(crate::bench_update::runs_for(runs))?;
    let report = Report {
        machine: machine(&bin),
        runs,
        pid1,
        images: img.metrics,
        images_identical: img.identical,
        accel: img.accel,
        failover,
        boot,
        upgrade,
    };
    write_report(&report)?;
    Ok(())
}

/// `--only pid1`: the PID 1 part alone, written into its section of the report.
pub fn run_pid1_alone(runs: usize) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmarks create namespaces: run them as root");
    }
    let bin = build_release()?;
    let metrics = pid1_metrics(&bin, runs)?;
    let m = machine(&bin);
    let mut section = pid1_markdown(runs, &metrics);
    section.push_str(&format!(
        "
Machine: {} ({} cores), kernel {}, {}; cairn-init binary {} KiB (release, stripped).
",
        m.cpu,
        m.cores,
        m.kernel,
        m.rustc,
        m.cairn_init_bytes / 1024
    ));
    write_part(
        PID1_HEADING,
        &section,
        "pid1",
        serde_json::to_value(&metrics)?,
    )
}

/// The heading line of the PID 1 section.
const PID1_HEADING: &str = "## PID 1 (";

fn pid1_markdown(runs: usize, metrics: &[Metric]) -> String {
    let mut md = format!(
        "{PID1_HEADING}cairn-init in supervise-only mode as PID 1 of a PID namespace, {runs} runs)\n\n"
    );
    md.push_str("| metric | median | min | max | unit | goal |\n|---|---:|---:|---:|---|---|\n");
    for x in metrics {
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
            x.name, x.median, x.min, x.max, x.unit, x.goal
        ));
    }
    md.push_str(
        "\nPID 1 binds the control socket and relays calls; the D-Bus server (zbus, tokio) runs in \
         a child process it keeps running (docs/init.md, \"The control API server\"), shown apart.\n",
    );
    md
}

fn pid1_metrics(bin: &Path, runs: usize) -> Result<Vec<Metric>> {
    let dir = target_dir().join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let services = dir.join("services.toml");
    std::fs::write(&services, ten_services())?;

    step(&format!("PID 1: cairn-init with ten services, {runs} runs"));
    let mut results = Vec::new();
    for r in 1..=runs {
        let run = pid1_run(bin, &dir, &services).with_context(|| format!("run {r}"))?;
        println!(
            "    run {r}/{runs}: ready {:.0} ms, RSS {:.0} KiB, restart median {:.1} ms, shutdown {:.0} ms",
            run.ready_ms,
            run.rss_after_api_kib,
            Metric::new("", "", "", run.restart_ms.clone()).median,
            run.shutdown_ms
        );
        results.push(run);
    }
    step("reference: tini as PID 1");
    let tini: Vec<f64> = (0..runs.min(3))
        .map(|_| tini_rss())
        .collect::<Result<_>>()?;

    let col = |f: &dyn Fn(&Pid1Run) -> f64| results.iter().map(f).collect::<Vec<_>>();
    let pid1 = vec![
        Metric::new(
            "cairn-init PID 1 resident memory (VmRSS), 10 services",
            "KiB",
            "< 2048 KiB",
            col(&|r| r.rss_kib),
        ),
        Metric::new(
            "  same, after 20 control API calls",
            "KiB",
            "< 2048 KiB",
            col(&|r| r.rss_after_api_kib),
        ),
        Metric::new(
            "  of which anonymous (heap, stacks)",
            "KiB",
            "",
            col(&|r| r.anon_kib),
        ),
        Metric::new(
            "control-API server process (child of PID 1) resident memory",
            "KiB",
            "",
            col(&|r| r.server_rss_kib),
        ),
        Metric::new(
            "  of which anonymous (the rest is cairnctl's text, shared with the ctl-agent)",
            "KiB",
            "",
            col(&|r| r.server_anon_kib),
        ),
        Metric::new(
            "tini PID 1 resident memory, 1 child (reference)",
            "KiB",
            "",
            tini,
        ),
        Metric::new(
            "start to all ten services ready",
            "ms",
            "",
            col(&|r| r.ready_ms),
        ),
        Metric::new(
            "restart latency (SIGKILL to new process ready)",
            "ms",
            "",
            results.iter().flat_map(|r| r.restart_ms.clone()).collect(),
        ),
        Metric::new(
            "orderly shutdown of ten services (SIGTERM to exit)",
            "ms",
            "",
            col(&|r| r.shutdown_ms),
        ),
    ];
    Ok(pid1)
}

fn write_report(report: &Report) -> Result<()> {
    let out = root().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    let m = &report.machine;
    let mut md = String::new();
    md.push_str("# cairn benchmark report\n\n");
    md.push_str("Generated by `cargo xtask bench`. Measurements only: nothing here is asserted by a test.\n\n");
    md.push_str(&format!(
        "Machine: {} ({} cores), kernel {}, {}; cairn-init binary {} KiB (release, stripped); tini {}.\n\n",
        m.cpu,
        m.cores,
        m.kernel,
        m.rustc,
        m.cairn_init_bytes / 1024,
        m.tini
    ));
    md.push_str(&pid1_markdown(report.runs, &report.pid1));
    md.push_str(&format!(
        "\n## Images (`qemu-x86_64` profile, example sites: builds of every role — `base`, `lb` from examples/site.toml, `storage`, `k8s-node` (as shipped, no kubelet) from their example sites; sizes and boots of `base`)\n\nBoots under {}; one VM at a time. \
         Two builds byte-identical, update bundle included: **{}**.\n\n",
        report.accel,
        if report.images_identical { "yes" } else { "NO" }
    ));
    md.push_str("| metric | median | min | max | unit | goal |\n|---|---:|---:|---:|---|---|\n");
    for x in &report.images {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            x.name, x.median, x.min, x.max, x.unit, x.goal
        ));
    }
    md.push_str(
        "\nThe side-by-side comparison with a minimal Debian bookworm image (systemd, haproxy) is in \
         the section \"Boot to serving and footprint\" below. Restart latency uses `restart_delay_ms = 0`; \
         with the default first delay of 100 ms add that.\n",
    );
    md.push('\n');
    md.push_str(&crate::bench_vrrp::markdown(&report.failover));
    md.push('\n');
    md.push_str(&crate::bench_debian::markdown(&report.boot));
    md.push('\n');
    md.push_str(&crate::bench_update::markdown(&report.upgrade));
    crate::bench_debian::write_chart(&out, &report.boot)?;
    std::fs::write(out.join("report.md"), &md)?;
    println!("\n{md}");
    println!("wrote {} and report.json", out.join("report.md").display());
    Ok(())
}

/// `--only <part>`: puts `section` (markdown, starting with `heading`) into
/// `bench/report.md` and `value` under `key` in `bench/report.json`, keeping the
/// other parts of both.
pub fn write_part(heading: &str, section: &str, key: &str, value: serde_json::Value) -> Result<()> {
    let out = root().join("bench");
    std::fs::create_dir_all(&out)?;
    let md_path = out.join("report.md");
    let existing = std::fs::read_to_string(&md_path).unwrap_or_else(|_| {
        "# cairn benchmark report\n\nGenerated by `cargo xtask bench`. Measurements only: \
         nothing here is asserted by a test.\n"
            .into()
    });
    std::fs::write(&md_path, splice_section(&existing, heading, section))
        .with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = out.join("report.json");
    let mut json: serde_json::Value = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    json[key] = value;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("\n{section}");
    println!("wrote {} and report.json", md_path.display());
    Ok(())
}

/// Replaces the report section that starts with the heading line `heading` in `existing`
/// (up to the next `## ` heading) with `section`, or appends it: how `bench --only <part>`
/// updates its own section and keeps the others.
pub fn splice_section(existing: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = existing
        .match_indices(heading)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || existing[..i].ends_with('\n'))
    else {
        let base = existing.trim_end();
        return if base.is_empty() {
            format!("{section}\n")
        } else {
            format!("{base}\n\n{section}\n")
        };
    };
    let after = &existing[start + heading.len()..];
    let rest = after.find("\n## ").map(|i| &after[i + 1..]).unwrap_or("");
    let mut out = existing[..start].to_owned();
    out.push_str(section);
    out.push('\n');
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(rest);
    }
    out
}

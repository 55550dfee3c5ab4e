//! The live demo on the built-in example: build the `base` image from
//! `examples/site.toml`, boot it in QEMU (UEFI disk) to CAIRN-READY, then show
//! cairn-init supervising a few services as PID 1 of a fresh PID namespace,
//! driven through cairnctl.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::lab::{NsInit, monotonic_ms, status_kib};
use crate::{build_release, step, target_dir};

const SERVICES: &str = r#"# The demo's services file (written by `cargo xtask demo`).

# A oneshot: brings up loopback in the demo's network namespace, then is "done".
[[service]]
name = "net"
exec = ["/usr/sbin/ip", "link", "set", "lo", "up"]
oneshot = true

# A web server, ready once its TCP port accepts connections.
[[service]]
name = "web"
exec = ["/bin/busybox", "httpd", "-f", "-v", "-p", "127.0.0.1:8080", "-h", "@DIR@/www"]
after = ["net"]
ready = { tcp = "127.0.0.1:8080" }
stop_grace_ms = 2000

# A worker that reports readiness with sd_notify (READY=1) after warming up.
[[service]]
name = "worker"
exec = ["/bin/sh", "-c", "echo warming up; sleep 0.5; @BIN@/cairnctl notify READY=1 'STATUS=processing jobs'; while :; do sleep 1; done"]
after = ["web"]
ready = { notify = true }

# A service that keeps crashing: restarted with exponential backoff until the start limit.
[[service]]
name = "flaky"
exec = ["/bin/sh", "-c", "echo starting; sleep 0.2; echo oops >&2; exit 1"]
restart_delay_ms = 200
start_limit = { burst = 4, interval_ms = 30000, cooldown_ms = 0 }
"#;

fn ctl(bin: &Path, control: &Path, args: &[&str]) -> Result<()> {
    println!("\n$ cairnctl {}", args.join(" "));
    let st = Command::new(bin.join("cairnctl"))
        .arg("--control")
        .arg(control)
        .args(args)
        .status()
        .context("running cairnctl")?;
    if !st.success() {
        bail!("cairnctl {args:?} failed ({st})");
    }
    Ok(())
}

/// Runs the demo.
pub fn run() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates PID and network namespaces: run it as root");
    }
    image_demo()?;
    supervisor_demo()
}

/// Builds the example's `base` image and boots it from its UEFI disk.
fn image_demo() -> Result<()> {
    step("building the cairn image builder");
    crate::run_cmd(crate::cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let out = target_dir().join("demo/base");
    step("cairn build --site examples/site.toml --profile qemu-x86_64 --role base");
    crate::run_cmd(
        Command::new(&cairn)
            .args([
                "build",
                "--profile",
                "qemu-x86_64",
                "--role",
                "base",
                "--site",
            ])
            .arg(crate::root().join("examples/site.toml"))
            .arg("--out")
            .arg(&out),
    )?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    for a in manifest["artifacts"].as_array().into_iter().flatten() {
        println!(
            "    {:<16} {:>10} bytes  sha256 {}",
            a["path"].as_str().unwrap_or(""),
            a["size"],
            &a["sha256"].as_str().unwrap_or("")[..16]
        );
    }
    step("booting disk.qcow2 in QEMU (OVMF, systemd-boot, UKI) as node box1");
    let accel = cairn_qemu::detect_accel();
    println!("    accelerator: {} ({})", accel.accel.name(), accel.note);
    let mut config = cairn_qemu::VmConfig::new(
        "demo-box1",
        cairn_qemu::Boot::UefiDisk {
            disk: out.join("disk.qcow2"),
            writes: cairn_qemu::DiskWrites::Snapshot,
            bus: cairn_qemu::DiskBus::Virtio,
            ovmf_vars: None,
        },
    );
    config
        .nics
        .push(cairn_qemu::Nic::user([0x52, 0x54, 0x00, 0xc0, 0x00, 0x01]));
    config.watchdog = true;
    config.no_reboot = true;
    config.accel = Some(accel.accel);
    let vm = cairn_qemu::Vm::start(&config)?;
    let ready = vm.wait_for_line(
        |l| {
            let show = l.starts_with("cairn-init:")
                || l.contains(" INFO ")
                || l.contains(" WARN ")
                || l.starts_with("CAIRN-READY");
            if show {
                println!("    | {l}");
            }
            l.starts_with("CAIRN-READY")
        },
        Duration::from_secs(180),
    )?;
    println!(
        "    box1 ready {:.1} s after QEMU started ({} kernel-to-ready)",
        ready.at.as_secs_f64(),
        ready.text.rsplit(' ').next().unwrap_or("")
    );
    drop(vm);
    Ok(())
}

/// cairn-init as PID 1 of a PID namespace, supervising the demo services.
fn supervisor_demo() -> Result<()> {
    let bin = build_release()?;
    let dir = target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www"))?;
    std::fs::write(
        dir.join("www/index.html"),
        "hello from a service supervised by cairn-init\n",
    )?;
    let services = dir.join("services.toml");
    std::fs::write(
        &services,
        SERVICES
            .replace("@DIR@", &dir.display().to_string())
            .replace("@BIN@", &bin.display().to_string()),
    )?;

    step("starting cairn-init as PID 1 of a new PID + network namespace");
    println!("    services file: {}", services.display());
    let t0 = monotonic_ms();
    let mut init = NsInit::start(&bin, &dir, &services, "DEMO-READY t_ms={t_ms}")?;
    let ready = init.wait_line("DEMO-READY", Duration::from_secs(30))?;
    let t_ready: u64 = ready
        .trim_start_matches("DEMO-READY t_ms=")
        .trim()
        .parse()
        .unwrap_or(t0);
    println!(
        "    all services ready {} ms after start",
        t_ready.saturating_sub(t0)
    );
    ctl(&bin, &init.control, &["status"])?;

    step("the web service answers inside the namespace");
    let init_pid = init.init_pid()?;
    let out = Command::new("nsenter")
        .args([
            "-t",
            &init_pid.to_string(),
            "-n",
            "/bin/busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ])
        .output()
        .context("nsenter")?;
    print!("    GET / -> {}", String::from_utf8_lossy(&out.stdout));

    step("the crashing service backs off (200, 400, 800 ms) and hits its start limit");
    let client = init.client()?;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let st = client.list_services()?;
        if st.iter().any(|s| s.name == "flaky" && s.state == "failed") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ctl(&bin, &init.control, &["logs", "flaky", "-n", "12"])?;

    step("operator actions: restart web, then show its log");
    ctl(&bin, &init.control, &["restart", "web"])?;
    std::thread::sleep(Duration::from_millis(300));
    ctl(&bin, &init.control, &["status"])?;
    ctl(&bin, &init.control, &["logs", "web", "-n", "5"])?;

    let rss = status_kib(init_pid, "VmRSS").unwrap_or(0);

    step("orderly shutdown: SIGTERM to PID 1 stops services in reverse dependency order");
    let t = Instant::now();
    let st = init.stop(Duration::from_secs(30))?;
    let log = init.log_text();
    for line in log
        .lines()
        .skip_while(|l| !l.contains("shutdown requested"))
    {
        println!("    {line}");
    }
    println!(
        "\nsummary: ready in {} ms, PID 1 resident memory {} KiB with 4 services, shutdown took {} ms ({st})",
        t_ready.saturating_sub(t0),
        rss,
        t.elapsed().as_millis()
    );
    println!("full console log: {}", dir.join("init.log").display());
    Ok(())
}

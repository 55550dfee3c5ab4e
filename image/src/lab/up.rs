//! `cairn lab up`: plan the lab, build missing role images, create the
//! network, start the keeper, and wait until every VM printed `CAIRN-READY`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::client;
use super::net;
use super::plan::{self, BRIDGE, LabPlan, NODE_IFACE, PlanRequest};
use super::procs;
use super::protocol::{NodeKind, NodeStatus, Request, Response};
use super::state::{Stamp, StateDir, write_atomic};
use super::status;

/// How long the keeper may take to open its socket.
const KEEPER_START: Duration = Duration::from_secs(60);
/// How often `up` prints what the VMs still booting last said.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// What `cairn lab up` was given.
#[derive(Debug)]
pub struct UpArgs {
    /// The site file.
    pub site: PathBuf,
    /// The state directory (created if missing).
    pub state: PathBuf,
    /// `--nodes`.
    pub nodes: Option<Vec<String>>,
    /// Hardware profile.
    pub profile: String,
    /// Guest memory per VM, MiB.
    pub memory_mib: u32,
    /// Time allowed for every VM to get ready.
    pub timeout: Duration,
}

/// Brings the lab up.
pub fn run(a: &UpArgs) -> Result<()> {
    let t0 = Instant::now();
    check_root()?;
    std::fs::create_dir_all(&a.state)
        .with_context(|| format!("--state {}: cannot create it", a.state.display()))?;
    let root = std::fs::canonicalize(&a.state)
        .with_context(|| format!("--state {}", a.state.display()))?;
    let state = StateDir::new(root);
    let site_path = std::fs::canonicalize(&a.site)
        .with_context(|| format!("--site {}: no such file", a.site.display()))?;
    let site = cairn_site::load_site(&site_path)?;
    let plan = plan::plan(
        &site,
        &PlanRequest {
            lab: plan::lab_name(state.root()),
            site_path: site_path.clone(),
            profile: a.profile.clone(),
            nodes: a.nodes.as_deref(),
            memory_mib: a.memory_mib,
        },
    )?;
    check_host(&plan)?;
    refuse_existing(&state, &plan)?;
    ensure_images(&state, &plan, &site_path, t0)?;
    fresh_vm_dirs(&state, &plan)?;
    state.save_plan(&plan)?;
    eprintln!(
        "[{:>6.1} s] network: namespaces {}-*, bridge {BRIDGE}, {} tap(s), client {}",
        t0.elapsed().as_secs_f64(),
        plan.lab,
        plan.vms.len(),
        plan.client.address
    );
    if let Err(e) = create_network(&plan) {
        let _ = super::down::teardown(&state, Some(&plan), &plan.lab);
        return Err(e).context("creating the lab network (everything made so far was removed)");
    }
    if let Err(e) = start_keeper(&state, &plan) {
        let _ = super::down::teardown(&state, Some(&plan), &plan.lab);
        return Err(e.context("starting the lab keeper (everything made so far was removed)"));
    }
    let nodes = wait_ready(&state, &plan, a.timeout, t0)?;
    println!(
        "lab {} is up ({} VM(s), {:.1} s); state in {}",
        plan.lab,
        plan.vms.len(),
        t0.elapsed().as_secs_f64(),
        state.root().display()
    );
    print!("{}", status::table(&plan, &nodes));
    if !plan.vips.is_empty() {
        let holders = status::vip_holders(&plan, &super::cairn_exe()?);
        print!("{}", status::vip_lines(&holders));
    }
    println!(
        "client address {} (namespace {}): cairn lab exec client --state {} -- <command>",
        plan.client.address,
        plan.client.netns,
        state.root().display()
    );
    if let Some(listen) = plan.client.repo {
        println!(
            "update repository {} served at http://{listen}/: cairn publish --repo {} <build dir>",
            state.repo().display(),
            state.repo().display()
        );
    }
    Ok(())
}

/// Fails unless the effective user is root.
fn check_root() -> Result<()> {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if euid != "0" {
        bail!("cairn lab up needs root: it creates network namespaces, a bridge and tap devices");
    }
    Ok(())
}

/// Fails with every missing host tool at once.
fn check_host(plan: &LabPlan) -> Result<()> {
    let mut missing = Vec::new();
    for (program, package) in [
        ("ip", "iproute2"),
        ("bridge", "iproute2"),
        ("setsid", "util-linux"),
    ] {
        if !net::have_program(program) {
            missing.push(format!("{program} (package {package})"));
        }
    }
    if !net::have_program("/usr/bin/kill") && !net::have_program("/bin/kill") {
        missing.push("/usr/bin/kill (package procps)".into());
    }
    let host = cairn_qemu::HostPaths::default();
    if let Err(e) = host.resolve_qemu() {
        missing.push(e.to_string());
    }
    if let Err(e) = host.resolve_qemu_img() {
        missing.push(e.to_string());
    }
    if let Err(e) = host.check_ovmf() {
        missing.push(e.to_string());
    }
    if !plan.externals.is_empty() {
        let responder = super::responder_program();
        if !net::have_program(&responder.to_string_lossy()) {
            missing.push(format!(
                "{} (the HTTP responder for external nodes: `cargo build -p cairn-labnet`, or set CAIRN_LAB_RESPONDER)",
                responder.display()
            ));
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing host tools: {} (`cargo xtask setup` installs the packages)",
            missing.join("; ")
        );
    }
    Ok(())
}

/// Refuses a state directory with a running lab, or with remains of one.
fn refuse_existing(state: &StateDir, plan: &LabPlan) -> Result<()> {
    let root = state.root().display();
    if state.plan_file().exists() {
        if let Some(pid) = state.keeper_pid().filter(|p| procs::is_keeper(*p)) {
            bail!(
                "{root} already has a running lab (keeper pid {pid}); `cairn lab down --state {root}` first, or use another --state"
            );
        }
        bail!(
            "{root} holds the remains of a lab whose keeper is gone; `cairn lab down --state {root}` removes them"
        );
    }
    let prefix = format!("{}-", plan.lab);
    let left: Vec<String> = net::list_netns()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if !left.is_empty() {
        bail!(
            "namespaces of an earlier lab in {root} still exist ({}); `cairn lab down --state {root}` removes them",
            left.join(", ")
        );
    }
    Ok(())
}

/// Builds the image of every role the plan boots, when missing or stale.
fn ensure_images(state: &StateDir, plan: &LabPlan, site: &Path, t0: Instant) -> Result<()> {
    let exe = super::cairn_exe()?;
    let meta = std::fs::metadata(&exe).with_context(|| format!("{}", exe.display()))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let site_bytes = std::fs::read(site).with_context(|| format!("{}", site.display()))?;
    let sources =
        super::state::source_fingerprint(&crate::build::source_root(), super::state::IMAGE_SOURCES);
    let stamp = Stamp::new(&site_bytes, meta.len(), mtime_ns, &plan.profile, &sources);
    for role in plan.roles() {
        let out = state.image(&role);
        let stamp_path = state.image_stamp(&role);
        let old: Option<Stamp> = std::fs::read_to_string(&stamp_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let reason = if out.join("disk.qcow2").is_file() {
            stamp.rebuild_reason(old.as_ref())
        } else {
            Some("not built yet")
        };
        let Some(reason) = reason else {
            eprintln!(
                "[{:>6.1} s] image {role}: up to date ({})",
                t0.elapsed().as_secs_f64(),
                out.display()
            );
            continue;
        };
        eprintln!(
            "[{:>6.1} s] image {role}: building ({reason}) into {}",
            t0.elapsed().as_secs_f64(),
            out.display()
        );
        let _ = std::fs::remove_file(&stamp_path);
        let t = Instant::now();
        let status = Command::new(&exe)
            .args([
                "build",
                "--profile",
                &plan.profile,
                "--role",
                &role,
                "--site",
            ])
            .arg(site)
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {} build", exe.display()))?;
        if !status.success() {
            bail!("building the {role} image failed ({status}); see the output above");
        }
        let text = serde_json::to_string_pretty(&stamp)?;
        write_atomic(&stamp_path, text.as_bytes())?;
        eprintln!(
            "[{:>6.1} s] image {role}: built in {:.1} s",
            t0.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Every VM starts from a fresh overlay, fresh UEFI variables and an empty console log.
fn fresh_vm_dirs(state: &StateDir, plan: &LabPlan) -> Result<()> {
    for vm in &plan.vms {
        let dir = state.vm_dir(&vm.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for f in ["disk.qcow2", "OVMF_VARS.fd", "runtime", "ctl.sock"] {
            let p = dir.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        let log = state.console_log(&vm.name);
        std::fs::write(&log, b"").with_context(|| format!("creating {}", log.display()))?;
    }
    for ext in &plan.externals {
        let log = state.responder_log(&ext.name);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&log, b"").with_context(|| format!("creating {}", log.display()))?;
    }
    Ok(())
}

/// The switch namespace with its bridge and taps, the client, the external nodes.
fn create_network(plan: &LabPlan) -> Result<()> {
    let sw = &plan.switch_netns;
    net::add_netns(sw)?;
    net::add_bridge(sw, BRIDGE)?;
    for vm in &plan.vms {
        net::add_tap(sw, BRIDGE, &vm.tap)?;
    }
    net::add_netns(&plan.client.netns)?;
    net::add_veth(
        sw,
        BRIDGE,
        &plan.client.port,
        &plan.client.netns,
        NODE_IFACE,
        std::slice::from_ref(&plan.client.address),
    )?;
    for ext in &plan.externals {
        net::add_netns(&ext.netns)?;
        net::add_veth(
            sw,
            BRIDGE,
            &ext.port,
            &ext.netns,
            NODE_IFACE,
            &ext.addresses,
        )?;
    }
    Ok(())
}

/// Starts the keeper detached in the switch namespace and waits for its socket.
fn start_keeper(state: &StateDir, plan: &LabPlan) -> Result<()> {
    let exe = super::cairn_exe_while_alive()?;
    let log_path = state.keeper_log();
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("{}", log_path.display()))?;
    let _ = std::fs::remove_file(state.socket());
    let _ = std::fs::remove_file(state.keeper_pid_file());
    // setsid: its own session, so the terminal's signals and hangup never reach
    // it; `ip netns exec` puts it (and so QEMU) next to the taps.
    let mut child = Command::new("setsid")
        .args(["ip", "netns", "exec", &plan.switch_netns])
        .arg(&exe)
        .args(["lab", "keeper", "--state"])
        .arg(state.root())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .context("cannot run setsid ip netns exec … cairn lab keeper")?;
    let deadline = Instant::now() + KEEPER_START;
    loop {
        if let Ok(r) = client::ask(state, &Request::Status, Duration::from_secs(10)) {
            if r.ok {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the keeper exited ({status}); {} says:\n{}",
                log_path.display(),
                tail(&log_path, 20)
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!(
                "the keeper did not open {} within {} s; its log:\n{}",
                state.socket().display(),
                KEEPER_START.as_secs(),
                tail(&log_path, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the keeper until every VM printed `CAIRN-READY`, printing each as it
/// does; fails when a VM stops first or the timeout passes (the lab is then
/// left running for diagnosis).
fn wait_ready(
    state: &StateDir,
    plan: &LabPlan,
    timeout: Duration,
    t0: Instant,
) -> Result<Vec<NodeStatus>> {
    let names: Vec<&str> = plan.vms.iter().map(|v| v.name.as_str()).collect();
    eprintln!(
        "[{:>6.1} s] booting {} (keeper log {})",
        t0.elapsed().as_secs_f64(),
        names.join(", "),
        state.keeper_log().display()
    );
    let start = Instant::now();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut last_progress = Instant::now();
    let root = state.root().display().to_string();
    loop {
        let r: Response = client::ask(state, &Request::Status, Duration::from_secs(30))?;
        let mut pending = Vec::new();
        for n in r.nodes.iter().filter(|n| n.kind == NodeKind::Vm) {
            match (&n.ready, n.running) {
                (Some(ready), _) => {
                    if reported.insert(n.name.clone()) {
                        eprintln!(
                            "[{:>6.1} s] {}: CAIRN-READY {:.1} s after QEMU start ({})",
                            t0.elapsed().as_secs_f64(),
                            n.name,
                            ready.after_ms as f64 / 1000.0,
                            ready.line
                        );
                    }
                }
                (None, false) => bail!(
                    "{} stopped before CAIRN-READY ({}); console ends with:\n{}\nthe lab is left up for diagnosis: `cairn lab console {} --state {root}`, then `cairn lab down --state {root}`",
                    n.name,
                    n.exit.as_deref().unwrap_or("no exit status"),
                    tail(&state.console_log(&n.name), 15),
                    n.name
                ),
                (None, true) => pending.push(n.name.clone()),
            }
        }
        if let Some(n) = r
            .nodes
            .iter()
            .find(|n| n.kind == NodeKind::External && !n.running)
        {
            bail!(
                "external node {}'s responders are not running ({}); log {}:\n{}",
                n.name,
                n.exit.as_deref().unwrap_or("?"),
                state.responder_log(&n.name).display(),
                tail(&state.responder_log(&n.name), 10)
            );
        }
        if pending.is_empty() {
            return Ok(r.nodes);
        }
        if start.elapsed() >= timeout {
            let tails: Vec<String> = pending
                .iter()
                .map(|p| format!("{p}:\n{}", tail(&state.console_log(p), 10)))
                .collect();
            bail!(
                "{} not ready after {} s; consoles end with:\n{}\nthe lab is left up for diagnosis; `cairn lab down --state {root}` removes it",
                pending.join(", "),
                timeout.as_secs(),
                tails.join("\n")
            );
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            for p in &pending {
                eprintln!(
                    "[{:>6.1} s] {p}: booting… {}",
                    t0.elapsed().as_secs_f64(),
                    tail(&state.console_log(p), 1)
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last `n` non-empty lines of a log, terminal escapes removed.
pub fn tail(path: &Path, n: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let lines: Vec<String> = bytes
        .split(|b| *b == b'\n')
        .map(cairn_qemu::console::clean_line)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

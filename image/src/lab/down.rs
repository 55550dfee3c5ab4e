//! `cairn lab down`: remove everything a lab made, whether or not its keeper
//! still runs. The keeper is asked first (it stops QEMU and the responders
//! cleanly); then every process still inside one of the lab's namespaces is
//! killed, the namespaces are deleted (taps, bridge and veths go with them),
//! and the run files and overlays are removed. Console and keeper logs stay.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use super::client;
use super::net;
use super::plan::{self, LabPlan};
use super::procs;
use super::protocol::Request;
use super::state::StateDir;

/// How long the keeper may take to stop everything.
const KEEPER_DOWN: Duration = Duration::from_secs(60);
/// How long killed processes may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// The keeper answered and stopped its VMs and responders.
    pub keeper_stopped: bool,
    /// Processes killed inside the namespaces.
    pub killed: Vec<u32>,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
}

/// `cairn lab down --state <dir>`.
pub fn run(state: &StateDir) -> Result<()> {
    let plan = state.load_plan().unwrap_or_else(|e| {
        eprintln!("cairn lab down: {e}; cleaning up by the state directory's lab name");
        None
    });
    let lab = plan
        .as_ref()
        .map(|p| p.lab.clone())
        .unwrap_or_else(|| plan::lab_name(state.root()));
    let had_plan = plan.is_some();
    let removed = teardown(state, plan.as_ref(), &lab)?;
    if !had_plan && removed.namespaces.is_empty() && removed.killed.is_empty() {
        println!("no lab in {} (nothing to remove)", state.root().display());
        return Ok(());
    }
    println!(
        "lab {lab} down: keeper {}, {} leftover process(es) killed, namespaces removed: {}",
        if removed.keeper_stopped {
            "stopped its VMs and responders"
        } else {
            "was not running"
        },
        removed.killed.len(),
        if removed.namespaces.is_empty() {
            "none".to_string()
        } else {
            removed.namespaces.join(", ")
        }
    );
    Ok(())
}

/// Removes the lab `lab` kept in `state`; safe to call on a half-made or
/// already removed lab. Fails only when something could not be removed.
pub fn teardown(state: &StateDir, plan: Option<&LabPlan>, lab: &str) -> Result<Removed> {
    let mut removed = Removed::default();
    let keeper_pid = state.keeper_pid().filter(|p| procs::is_keeper(*p));
    if state.socket().exists() {
        match client::ask(state, &Request::Down, KEEPER_DOWN) {
            Ok(r) if r.ok => removed.keeper_stopped = true,
            Ok(r) => eprintln!(
                "cairn lab down: the keeper answered: {}",
                r.error.unwrap_or_default()
            ),
            Err(client::ClientError::Connect { .. }) => {
                eprintln!("cairn lab down: the keeper is gone; killing what is left")
            }
            Err(e) => eprintln!("cairn lab down: {e}; killing what is left instead"),
        }
    }
    if let Some(pid) = keeper_pid {
        if !procs::wait_gone(&[pid], KILL_WAIT).is_empty() {
            eprintln!("cairn lab down: the keeper (pid {pid}) is still there; killing it");
            procs::kill_all(&[pid]);
            removed.killed.push(pid);
        }
    }
    // Every namespace of the lab: the plan's, and any other with its prefix
    // (a plan lost or from an older run).
    let prefix = format!("{lab}-");
    let existing = net::list_netns()?;
    let mut namespaces: Vec<String> = plan.map(LabPlan::namespaces).unwrap_or_default();
    for n in existing.iter().filter(|n| n.starts_with(&prefix)) {
        if !namespaces.contains(n) {
            namespaces.push(n.clone());
        }
    }
    namespaces.retain(|n| existing.contains(n));
    let mut pids = Vec::new();
    for ns in &namespaces {
        pids.extend(net::netns_pids(ns)?);
    }
    if !pids.is_empty() {
        procs::kill_all(&pids);
        removed.killed.extend(&pids);
    }
    let left = procs::wait_gone(&pids, KILL_WAIT);
    if !left.is_empty() {
        bail!("processes {left:?} in the lab's namespaces survived SIGKILL; namespaces kept");
    }
    for ns in namespaces.iter().rev() {
        net::del_netns(ns)?;
        removed.namespaces.push(ns.clone());
    }
    remove_run_files(state, plan);
    let still: Vec<String> = net::list_netns()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    if !still.is_empty() {
        bail!("namespaces {} are still there", still.join(", "));
    }
    Ok(removed)
}

/// Removes lab.json, the keeper's socket and pid file, each VM's overlay,
/// UEFI variables and QEMU runtime directory (if the keeper died before it
/// could). Consoles and logs stay for post-mortems.
fn remove_run_files(state: &StateDir, plan: Option<&LabPlan>) {
    let vms_dir = state.root().join("vms");
    let mut nodes: Vec<String> = plan
        .map(|p| p.vms.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(&vms_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !nodes.contains(&name) {
                nodes.push(name);
            }
        }
    }
    for node in nodes {
        let dir = state.vm_dir(&node);
        if let Ok(runtime) = std::fs::read_to_string(dir.join("runtime")) {
            remove_qemu_runtime(Path::new(runtime.trim()));
        }
        for f in ["disk.qcow2", "OVMF_VARS.fd", "runtime", "ctl.sock"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }
    for f in [state.plan_file(), state.socket(), state.keeper_pid_file()] {
        let _ = std::fs::remove_file(f);
    }
}

/// Removes a dead QEMU's runtime directory, but only one that looks like
/// cairn-qemu's (`<tmp>/cairn-qemu-*`), never anything else a corrupt note names.
fn remove_qemu_runtime(dir: &Path) {
    let tmp = std::env::temp_dir();
    let ours = dir.parent() == Some(tmp.as_path())
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cairn-qemu-"));
    if ours {
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! `cairn run`: boot a build in QEMU, print its serial console, and exit
//! when the VM powers off or the timeout passes.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cairn_qemu::{Boot, DiskBus, DiskWrites, Firmware, Nic, PumpEnd, Vm, VmConfig, detect_accel};
use serde::Deserialize;

/// The parts of `manifest.json` `cairn run` needs.
#[derive(Debug, Deserialize)]
struct ManifestView {
    role: String,
    version: String,
}

/// The MAC the VM gets: the named node's, or the first node of the build's role.
fn mac_for(dir: &Path, role: &str, node: Option<&str>) -> Result<[u8; 6]> {
    let site_path = dir.join("site.toml");
    let site = cairn_site::load_site(&site_path)?;
    let n = match node {
        Some(name) => site
            .node(name)
            .with_context(|| format!("--node {name}: no such node in {}", site_path.display()))?,
        None => site
            .nodes
            .iter()
            .find(|n| n.role.as_str() == role && !n.external)
            .with_context(|| format!("{}: no node has role {role}", site_path.display()))?,
    };
    let mac = n
        .mac
        .with_context(|| format!("node {} has no MAC in the site file", n.name))?;
    Ok(mac.0)
}

/// Boots the build in `dir`.
pub fn run(dir: &Path, pxe: bool, node: Option<&str>, timeout: u64) -> Result<()> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{}: not a cairn build directory", dir.display()))?;
    let m: ManifestView =
        serde_json::from_str(&text).with_context(|| format!("{}", manifest_path.display()))?;
    let mac = mac_for(dir, &m.role, node)?;
    let accel = detect_accel();
    eprintln!(
        "cairn run: {} {} on {} ({})",
        m.role,
        m.version,
        accel.accel.name(),
        accel.note
    );
    let boot = if pxe {
        Boot::Pxe {
            firmware: Firmware::Bios,
            tftp_root: dir.join("pxe"),
            bootfile: "boot.ipxe".into(),
        }
    } else {
        Boot::UefiDisk {
            disk: dir.join("disk.qcow2"),
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        }
    };
    let mut config = VmConfig::new(format!("cairn-{}", m.role), boot);
    config.nics.push(Nic::user(mac));
    config.watchdog = true;
    config.no_reboot = true;
    config.accel = Some(accel.accel);
    let vm = Vm::start(&config)?;
    let mut out = std::io::stdout().lock();
    match vm.pump_console_to(&mut out, Some(Duration::from_secs(timeout)))? {
        PumpEnd::Exited(st) => {
            eprintln!("\ncairn run: the VM stopped ({st})");
            Ok(())
        }
        PumpEnd::TimedOut => {
            drop(vm);
            bail!("timeout: stopped the VM after {timeout} s")
        }
    }
}

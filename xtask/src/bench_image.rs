//! Image benchmarks: build time (cold and warm), reproducibility, sizes, and
//! boot time from QEMU start to CAIRN-READY over the UEFI disk and PXE.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_qemu::{Boot, DiskBus, DiskWrites, Firmware, Nic, Vm, VmConfig};

use crate::bench::Metric;
use crate::{root, step, target_dir};

const BOX1: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x01];

/// What the image benchmarks measured.
pub struct ImageResults {
    /// Metrics for the report table.
    pub metrics: Vec<Metric>,
    /// Whether two builds gave identical bytes.
    pub identical: bool,
    /// Accelerator used for the boots.
    pub accel: String,
}

/// Every role with its example site (k8s-node as the example ships it: the
/// kubelet lines are commented out, so the image holds containerd and runc).
pub const ROLES: &[(&str, &str)] = &[
    ("base", "examples/site.toml"),
    ("lb", "examples/site.toml"),
    ("storage", "examples/storage-site.toml"),
    ("k8s-node", "examples/k8s-site.toml"),
];

fn build(cairn: &Path, role: &str, out: &Path, cache: Option<&Path>) -> Result<f64> {
    let mut cmd = Command::new(cairn);
    cmd.args([
        "build",
        "--quiet",
        "--profile",
        "qemu-x86_64",
        "--role",
        role,
        "--site",
    ])
    .arg(root().join(site_of(role)))
    .arg("--out")
    .arg(out);
    if let Some(c) = cache {
        cmd.arg("--cache-dir").arg(c);
    }
    let t = Instant::now();
    let st = cmd.status().context("running cairn build")?;
    if !st.success() {
        bail!("cairn build failed ({st})");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The example site a role is built from.
pub fn site_of(role: &str) -> &'static str {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("examples/site.toml", |(_, s)| s)
}

fn boot(boot: Boot) -> Result<(f64, f64)> {
    let mut c = VmConfig::new("bench", boot);
    c.nics.push(Nic::user(BOX1));
    c.no_reboot = true;
    c.memory_mib = 768;
    let vm = Vm::start(&c)?;
    let line = vm.wait_for_text("CAIRN-READY", Duration::from_secs(180))?;
    let t_ms: f64 = line
        .text
        .rsplit("t_ms=")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Ok((line.at.as_secs_f64(), t_ms / 1000.0))
}

fn size(p: &Path) -> f64 {
    std::fs::metadata(p)
        .map(|m| m.len() as f64)
        .unwrap_or(f64::NAN)
}

/// Runs the image benchmarks with `runs` boots per path.
pub fn run(runs: usize) -> Result<ImageResults> {
    step("building the image builder");
    crate::run_cmd(crate::cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench/images");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    step(&format!(
        "image builds: cold (empty package cache) and warm, roles {}",
        ROLES.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ")
    ));
    // Box binaries are compiled by the first build; time builds after that.
    build(&cairn, "base", &dir.join("prime"), None)?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut identical = true;
    for (role, _) in ROLES.iter().copied() {
        let cold_cache = dir.join(format!("cold-cache-{role}"));
        let c = build(
            &cairn,
            role,
            &dir.join(format!("{role}-cold")),
            Some(&cold_cache),
        )?;
        let _ = std::fs::remove_dir_all(&cold_cache);
        let mut w = Vec::new();
        for i in 0..runs.min(3) {
            w.push(build(
                &cairn,
                role,
                &dir.join(format!("{role}-warm{i}")),
                None,
            )?);
        }
        println!("    {role}: cold {c:.1} s, warm {w:.1?} s");
        let same = same_bytes(
            &dir.join(format!("{role}-warm0")),
            &dir.join(format!("{role}-cold")),
        );
        println!("    {role}: two builds byte-identical (bundle included): {same}");
        identical &= same;
        cold.push((role, c));
        warm.push((role, w));
    }
    let a = dir.join("base-warm0");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json"))?)?;
    let mib = |v: f64| v / (1024.0 * 1024.0);
    let sizes = &manifest["sizes"];
    let num = |k: &str| sizes[k].as_f64().unwrap_or(f64::NAN);

    let accel = cairn_qemu::detect_accel();
    step(&format!(
        "boot to CAIRN-READY ({}, one VM at a time, {runs} runs each)",
        accel.accel.name()
    ));
    let mut disk_wall = Vec::new();
    let mut disk_kernel = Vec::new();
    let mut pxe_wall = Vec::new();
    let mut pxe_kernel = Vec::new();
    for i in 0..runs {
        let (w, k) = boot(Boot::UefiDisk {
            disk: a.join("disk.qcow2"),
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        })?;
        disk_wall.push(w);
        disk_kernel.push(k);
        let (w2, k2) = boot(Boot::Pxe {
            firmware: Firmware::Bios,
            tftp_root: a.join("pxe"),
            bootfile: "boot.ipxe".into(),
        })?;
        pxe_wall.push(w2);
        pxe_kernel.push(k2);
        println!(
            "    run {}/{runs}: disk {w:.1} s (kernel→ready {k:.2} s), PXE {w2:.1} s (kernel→ready {k2:.2} s)",
            i + 1
        );
    }
    let one = |v: f64| vec![v];
    let mut metrics = Vec::new();
    for ((role, c), (_, w)) in cold.into_iter().zip(warm) {
        metrics.push(Metric::new(
            &format!("{role}: build, cold (empty package cache; downloads the role's packages)"),
            "s",
            "",
            one(c),
        ));
        metrics.push(Metric::new(
            &format!("{role}: build, warm"),
            "s",
            "< 30 s",
            w,
        ));
    }
    metrics.extend([
        Metric::new(
            "disk.img (raw, sparse-capable)",
            "MiB",
            "",
            one(mib(size(&a.join("disk.img")))),
        ),
        Metric::new(
            "disk.qcow2 (compressed)",
            "MiB",
            "< 20 MiB",
            one(mib(size(&a.join("disk.qcow2")))),
        ),
        Metric::new(
            "disk.img zstd -19",
            "MiB",
            "",
            one(mib(zstd_size(&a.join("disk.img")).unwrap_or(f64::NAN))),
        ),
        Metric::new(
            "root filesystem (erofs, lz4hc)",
            "MiB",
            "",
            one(mib(num("rootfs"))),
        ),
        Metric::new(
            "PXE initrd (initramfs + root)",
            "MiB",
            "",
            one(mib(size(&a.join("pxe/initrd")))),
        ),
        Metric::new("UKI (kernel + initramfs)", "MiB", "", one(mib(num("uki")))),
        Metric::new(
            "executables in the root",
            "",
            "",
            one(num("root_executables")),
        ),
        Metric::new(
            "QEMU start → CAIRN-READY, UEFI disk (OVMF, systemd-boot)",
            "s",
            "",
            disk_wall,
        ),
        Metric::new(
            "  of which kernel start → CAIRN-READY",
            "s",
            "",
            disk_kernel,
        ),
        Metric::new(
            "QEMU start → CAIRN-READY, PXE (SeaBIOS, iPXE, TFTP)",
            "s",
            "",
            pxe_wall,
        ),
        Metric::new("  of which kernel start → CAIRN-READY", "s", "", pxe_kernel),
    ]);
    Ok(ImageResults {
        metrics,
        identical,
        accel: format!("{} ({})", accel.accel.name(), accel.note),
    })
}

/// Whether two build directories hold the same bytes in every artifact, the
/// signed update bundle included.
fn same_bytes(a: &Path, b: &Path) -> bool {
    [
        "disk.img",
        "disk.qcow2",
        "pxe/vmlinuz",
        "pxe/initrd",
        "pxe/boot.ipxe",
        "manifest.json",
        "bundle/manifest.json",
        "bundle/manifest.json.sig",
        "bundle/root.img",
        "bundle/cairn.efi",
    ]
    .iter()
    .all(|f| std::fs::read(a.join(f)).ok() == std::fs::read(b.join(f)).ok())
}

/// Size of `zstd -19` of a file (what a USB image download would be), if zstd exists.
fn zstd_size(p: &Path) -> Option<f64> {
    let out: PathBuf = p.with_extension("img.zst");
    let st = Command::new("zstd")
        .args(["-q", "-f", "-19", "-T0"])
        .arg(p)
        .arg("-o")
        .arg(&out)
        .status()
        .ok()?;
    if !st.success() {
        return None;
    }
    let s = size(&out);
    let _ = std::fs::remove_file(out);
    Some(s)
}

//! `cargo xtask bench --only boot`: the cairn `lb` image against a minimal
//! Debian bookworm image serving the same HAProxy frontend. Boot to serving
//! (QEMU start → first HTTP 200 seen by a client), the boot timeline from
//! the serial console, footprint (image sizes, executables, memory after
//! boot). Measures and reports; nothing is asserted. Writes the section
//! "Boot to serving" of `bench/report.md`, the key `boot` of
//! `bench/report.json` and `bench/boot-timeline.png`.

mod agent;
mod boot;
pub mod footprint;
pub mod image;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cairn_qemu::Boot;
use serde::Serialize;

use self::boot::{BootRun, MemProbe, Subject};
use self::footprint::TreeStats;
use crate::bench::Metric;
use crate::bench_chart::{self, Bar};
use crate::{BOX_TARGET, cargo, root, run_cmd, step, target_dir};

/// The report section's heading (also what `--only boot` replaces).
pub const SECTION: &str = "## Boot to serving and footprint: cairn `lb` against minimal Debian";

const LB1_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x11];
const BOX1_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x01];
/// st1 of examples/storage-site.toml.
const ST1_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x31];
/// k1 of examples/k8s-site.toml.
const K1_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xc0, 0x00, 0x41];
const MIB: f64 = 1024.0 * 1024.0;

/// One image's footprint.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    /// The disk image as shipped, uncompressed (cairn: GPT disk.img; Debian: raw ext4).
    pub disk_bytes: u64,
    /// `zstd -19` of that disk image.
    pub disk_zstd_bytes: u64,
    /// cairn's disk.qcow2 (compressed qcow2), when there is one.
    pub qcow2_bytes: Option<u64>,
    /// The root filesystem image (cairn: erofs; Debian: used ext4 blocks).
    pub rootfs_bytes: u64,
    /// Files and executables of the root tree.
    pub tree: TreeStats,
    /// Kernel + initramfs of the direct boot.
    pub kernel_initrd_bytes: u64,
}

/// Results for one subject over all runs.
#[derive(Debug, Serialize)]
pub struct SubjectResult {
    /// Its label.
    pub label: String,
    /// Every run's points (seconds since QEMU start, see `timeline::POINTS`).
    pub runs: Vec<BootRun>,
}

/// The whole boot/footprint measurement.
#[derive(Debug, Serialize)]
pub struct BootReport {
    /// Runs per subject.
    pub runs: usize,
    /// Accelerator used.
    pub accel: String,
    /// Debian kernel + version used by both.
    pub kernel: String,
    /// The Debian image's cache key and build time (0 when cached).
    pub debian_key: String,
    /// Subjects: cairn lb direct, cairn lb UEFI, Debian direct, cairn base UEFI.
    pub subjects: Vec<SubjectResult>,
    /// cairn `lb` footprint.
    pub cairn: Footprint,
    /// Debian footprint.
    pub debian: Footprint,
}

/// Builds the responder (release, static, as bench_vrrp builds it) and the image builder.
fn build_tools() -> Result<(PathBuf, PathBuf)> {
    step("building the image builder and the lab responder (release)");
    run_cmd(cargo().args(["build", "--release", "-p", "cairn"]))?;
    run_cmd(
        cargo()
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--release",
                "--target",
                BOX_TARGET,
                "-p",
                "cairn-labnet",
            ]),
    )?;
    Ok((
        target_dir().join("release/cairn"),
        target_dir()
            .join(BOX_TARGET)
            .join("release/cairn-lab-responder"),
    ))
}

fn cairn_build(cairn: &Path, role: &str, out: &Path) -> Result<()> {
    let site = crate::bench_image::site_of(role);
    step(&format!("cairn build --role {role} --site {site}"));
    run_cmd(
        Command::new(cairn)
            .args([
                "build",
                "--quiet",
                "--profile",
                "qemu-x86_64",
                "--role",
                role,
                "--site",
            ])
            .arg(root().join(site))
            .arg("--out")
            .arg(out),
    )
}

/// lb1's MAC, first address and the site's gateway from the example site.
fn lb1_network() -> Result<(String, String, String)> {
    let path = root().join("examples/site.toml");
    let site: toml::Value = toml::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let node = site
        .get("node")
        .and_then(toml::Value::as_array)
        .and_then(|n| {
            n.iter()
                .find(|n| n.get("name").and_then(toml::Value::as_str) == Some("lb1"))
        })
        .with_context(|| format!("{}: no node lb1", path.display()))?;
    let s = |v: Option<&toml::Value>, what: &str| {
        v.and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: {what} missing", path.display()))
    };
    Ok((
        s(node.get("mac"), "lb1.mac")?,
        s(
            node.get("addresses").and_then(|a| a.get(0)),
            "lb1.addresses[0]",
        )?,
        s(
            site.get("network").and_then(|n| n.get("gateway")),
            "network.gateway",
        )?,
    ))
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("stat {}", p.display()))?
        .len())
}

/// Runs the measurement.
pub fn run(runs: usize) -> Result<BootReport> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the boot benchmark creates network namespaces and runs mmdebstrap: run it as root");
    }
    let (cairn, responder) = build_tools()?;
    let dir = target_dir().join("bench/boot");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let lb = dir.join("lb");
    let base = dir.join("base");
    cairn_build(&cairn, "lb", &lb)?;
    cairn_build(&cairn, "base", &base)?;
    let storage = dir.join("storage");
    let k8s = dir.join("k8s-node");
    cairn_build(&cairn, "storage", &storage)?;
    cairn_build(&cairn, "k8s-node", &k8s)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lb.join("manifest.json"))?)?;
    let pxe_cmdline = manifest["cmdline"]["pxe"]
        .as_str()
        .context("manifest.json: no cmdline.pxe")?
        .to_owned();
    let rootfs_bytes = manifest["sizes"]["rootfs"]
        .as_u64()
        .context("manifest.json: no sizes.rootfs")?;

    step("cairn lb footprint (root tree from the PXE initrd's erofs)");
    let cairn_tree = footprint::extract_cairn_root(&lb.join("pxe/initrd"), &dir.join("lb-root"))?;
    let cairn_haproxy = std::fs::read_to_string(cairn_tree.join("etc/haproxy/haproxy.cfg"))
        .context("the lb image has no /etc/haproxy/haproxy.cfg")?;
    let cairn_fp = Footprint {
        disk_bytes: size(&lb.join("disk.img"))?,
        disk_zstd_bytes: footprint::zstd19_bytes(&lb.join("disk.img"))?,
        qcow2_bytes: Some(size(&lb.join("disk.qcow2"))?),
        rootfs_bytes,
        tree: footprint::tree_stats(&cairn_tree)?,
        kernel_initrd_bytes: size(&lb.join("pxe/vmlinuz"))? + size(&lb.join("pxe/initrd"))?,
    };
    let _ = std::fs::remove_dir_all(dir.join("lb-root"));

    let (kernel_package, kernel_version) = image::profile_kernel()?;
    let (mac, address, gateway) = lb1_network()?;
    let recipe = image::Recipe {
        kernel_package: kernel_package.clone(),
        kernel_version: kernel_version.clone(),
        cairn_haproxy_cfg: cairn_haproxy,
        mac,
        address,
        gateway,
    };
    let deb = image::build_cached(&recipe.spec())?;
    let debian_fp = Footprint {
        disk_bytes: deb.disk_bytes,
        disk_zstd_bytes: deb.disk_zstd_bytes,
        qcow2_bytes: None,
        rootfs_bytes: deb.fs_used_bytes,
        tree: deb.tree.clone(),
        kernel_initrd_bytes: size(&deb.vmlinuz)? + size(&deb.initrd)?,
    };

    let serve = Some("192.0.2.11:80".parse()?);
    let mut drive = std::ffi::OsString::from("file=");
    drive.push(deb.disk.as_os_str().to_string_lossy().replace(',', ",,"));
    drive.push(",format=raw,if=none,id=rootdisk,snapshot=on");
    let uefi = |disk: PathBuf| Boot::UefiDisk {
        disk,
        writes: cairn_qemu::DiskWrites::Snapshot,
        bus: cairn_qemu::DiskBus::Virtio,
        ovmf_vars: None,
    };
    let subjects = [
        Subject {
            label: "cairn lb, direct",
            id: "cairn-direct",
            boot: Boot::Direct {
                kernel: lb.join("pxe/vmlinuz"),
                initrd: Some(lb.join("pxe/initrd")),
                append: pxe_cmdline,
            },
            extra_args: Vec::new(),
            mac: LB1_MAC,
            serve,
            markers: timeline::CAIRN,
            mem: MemProbe::Agent,
        },
        Subject {
            label: "cairn lb, UEFI",
            id: "cairn-uefi",
            boot: uefi(lb.join("disk.qcow2")),
            extra_args: Vec::new(),
            mac: LB1_MAC,
            serve,
            markers: timeline::CAIRN,
            mem: MemProbe::Agent,
        },
        Subject {
            label: "Debian, direct",
            id: "debian-direct",
            boot: Boot::Direct {
                kernel: deb.vmlinuz.clone(),
                initrd: Some(deb.initrd.clone()),
                append: image::CMDLINE.into(),
            },
            extra_args: vec![
                "-drive".into(),
                drive,
                "-device".into(),
                "virtio-blk-pci,drive=rootdisk".into(),
            ],
            mac: LB1_MAC,
            serve,
            markers: timeline::DEBIAN,
            mem: MemProbe::Console,
        },
        Subject {
            label: "cairn base, UEFI",
            id: "base-uefi",
            boot: uefi(base.join("disk.qcow2")),
            extra_args: Vec::new(),
            mac: BOX1_MAC,
            serve: None,
            markers: timeline::CAIRN,
            mem: MemProbe::None,
        },
        Subject {
            label: "cairn storage, UEFI",
            id: "storage-uefi",
            boot: uefi(storage.join("disk.qcow2")),
            extra_args: Vec::new(),
            mac: ST1_MAC,
            serve: None,
            markers: timeline::CAIRN,
            mem: MemProbe::None,
        },
        Subject {
            label: "cairn k8s-node, UEFI",
            id: "k8s-node-uefi",
            boot: uefi(k8s.join("disk.qcow2")),
            extra_args: Vec::new(),
            mac: K1_MAC,
            serve: None,
            markers: timeline::CAIRN,
            mem: MemProbe::None,
        },
    ];
    let accel = cairn_qemu::detect_accel();
    step(&format!(
        "boots under {} ({}): {} subjects × {runs} runs, interleaved, one VM at a time",
        accel.accel.name(),
        accel.note,
        subjects.len()
    ));
    let logs = dir.join("consoles");
    std::fs::create_dir_all(&logs)?;
    let mut results: Vec<SubjectResult> = subjects
        .iter()
        .map(|s| SubjectResult {
            label: s.label.into(),
            runs: Vec::new(),
        })
        .collect();
    for r in 0..runs {
        // Rotate the order so no subject always boots first (page cache, CPU frequency).
        for k in 0..subjects.len() {
            let i = (k + r) % subjects.len();
            let s = &subjects[i];
            let run = boot::run(s, &responder, &logs, r + 1)?;
            println!(
                "    run {}/{runs} {:<18} {}{}",
                r + 1,
                s.label,
                fmt_points(&run.points),
                run.mem
                    .as_ref()
                    .map(|m| format!(
                        "; in use {:.1} MiB, PID 1 RSS {:.1} MiB",
                        m.used_kib / 1024.0,
                        m.pid1_rss_kib / 1024.0
                    ))
                    .unwrap_or_default()
            );
            results[i].runs.push(run);
        }
    }
    Ok(BootReport {
        runs,
        accel: format!("{} ({})", accel.accel.name(), accel.note),
        kernel: format!("{kernel_package} {kernel_version}"),
        debian_key: deb.key,
        subjects: results,
        cairn: cairn_fp,
        debian: debian_fp,
    })
}

fn fmt_points(p: &[Option<f64>]) -> String {
    p.iter()
        .map(|v| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into()))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn phase_metrics(s: &SubjectResult) -> Vec<Metric> {
    let durs: Vec<Vec<f64>> = s
        .runs
        .iter()
        .map(|r| timeline::durations(&r.points))
        .collect();
    timeline::PHASES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Metric::new(
                name,
                "s",
                "",
                durs.iter()
                    .map(|d| d[i])
                    .filter(|v| v.is_finite())
                    .collect(),
            )
        })
        .collect()
}

fn point_metric(s: &SubjectResult, i: usize) -> Metric {
    Metric::new(
        timeline::POINTS[i],
        "s",
        "",
        s.runs.iter().filter_map(|r| r.points[i]).collect(),
    )
}

fn mem_metric(s: &SubjectResult, f: fn(&boot::MemSample) -> f64) -> Metric {
    Metric::new(
        "",
        "MiB",
        "",
        s.runs
            .iter()
            .filter_map(|r| r.mem.as_ref().map(f))
            .map(|k| k / 1024.0)
            .collect(),
    )
}

/// The "where the memory in use goes" table: meminfo parts per subject
/// (median over runs, MiB) and the largest processes of each subject's last run.
fn memory_breakdown(r: &BootReport) -> String {
    // cairn from its disk, cairn direct, Debian direct.
    let order = [1usize, 0, 2];
    let subjects: Vec<&SubjectResult> = order.iter().filter_map(|i| r.subjects.get(*i)).collect();
    let mut parts: Vec<String> = subjects
        .iter()
        .flat_map(|s| s.runs.iter())
        .filter_map(|run| run.mem.as_ref())
        .flat_map(|m| m.parts.keys().cloned())
        .collect();
    parts.sort();
    parts.dedup();
    if parts.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n### Where the memory in use goes (5 s after ready)\n\n| | ");
    md.push_str(
        &subjects
            .iter()
            .map(|s| s.label.to_string())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    md.push_str(" |\n|---|");
    md.push_str(&"---:|".repeat(subjects.len()));
    md.push('\n');
    let median_of = |s: &SubjectResult, f: &dyn Fn(&boot::MemSample) -> Option<f64>| {
        let v: Vec<f64> = s
            .runs
            .iter()
            .filter_map(|r| r.mem.as_ref().and_then(f))
            .collect();
        (!v.is_empty()).then(|| Metric::new("", "", "", v).median / 1024.0)
    };
    let mut line = |name: &str, f: &dyn Fn(&boot::MemSample) -> Option<f64>| {
        md.push_str(&format!("| {name} |"));
        for s in &subjects {
            match median_of(s, f) {
                Some(v) => md.push_str(&format!(" {v:.1} |")),
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    };
    line("**in use** (MemTotal − MemAvailable)", &|m| {
        Some(m.used_kib)
    });
    for p in &parts {
        line(&format!("`{p}`"), &|m| m.parts.get(p).copied());
    }
    line(
        "anonymous memory of the largest processes (sum of RssAnon)",
        &|m| Some(m.processes.iter().map(|p| p.anon_kib).sum()),
    );
    md.push_str(
        "\nMiB, medians. `AnonPages` is process memory; `Shmem` RAM file systems (tmpfs, and on \
         cairn's direct boot the initramfs holding the root image); `SUnreclaim`, `KernelStack`, \
         `PageTables`, `Percpu` and `VmallocUsed` (loaded modules' code and data among it) are the \
         kernel's own; `Cached` and `SReclaimable` mostly count as available. The rest of *in use* \
         is memory the kernel holds outside these counters and its free-page reserves.\n\n\
         Largest processes, last run (resident / anonymous, MiB):\n\n",
    );
    for s in &subjects {
        let Some(m) = s.runs.iter().rev().find_map(|r| r.mem.as_ref()) else {
            continue;
        };
        let list: Vec<String> = m
            .processes
            .iter()
            .map(|p| {
                format!(
                    "{} {:.1}/{:.1}",
                    p.name,
                    p.rss_kib / 1024.0,
                    p.anon_kib / 1024.0
                )
            })
            .collect();
        md.push_str(&format!("- {}: {}\n", s.label, list.join(", ")));
    }
    md
}

fn cell(m: &Metric) -> String {
    if m.samples.is_empty() {
        "–".into()
    } else {
        format!("{:.2} ({:.2}–{:.2})", m.median, m.min, m.max)
    }
}

fn yes(b: bool) -> &'static str {
    if b { "**met**" } else { "not met" }
}

/// The chart's bars: median time of each point, stacked as phases.
fn chart_bars(r: &BootReport) -> Vec<Bar> {
    r.subjects
        .iter()
        .take(3)
        .map(|s| {
            let medians: Vec<f64> = (0..timeline::POINTS.len())
                .map(|i| point_metric(s, i).median)
                .collect();
            let mut prev = 0.0;
            let segments = medians
                .iter()
                .map(|m| {
                    let d = m - prev;
                    if m.is_finite() {
                        prev = *m;
                    }
                    d
                })
                .collect();
            Bar {
                label: s.label.to_owned(),
                segments,
            }
        })
        .collect()
}

/// The report section.
pub fn markdown(r: &BootReport) -> String {
    let mut md = format!("{SECTION}\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask bench --only boot` (also part of `cargo xtask bench`). {} runs per \
         subject, interleaved (the order rotates each run), one VM at a time, under {}. Both images run \
         the same kernel ({}) with the same QEMU settings: q35, 1 vCPU, 512 MiB, `-cpu qemu64,+rdrand`, \
         virtio-net on a tap of a bridge in a network namespace (cairn-labnet) with two backend \
         responders at 192.0.2.21:8080 and .22:8080, and the same haproxy.cfg (the one `cairn build` \
         renders for the example site, with Debian's `user/group haproxy` for cairn's numeric ids). \
         A client namespace with a static ARP entry for lb1 sends `GET http://192.0.2.11/` every 20 ms \
         from before QEMU starts; *first HTTP 200* is when the first answer arrived.\n\n",
        r.runs, r.accel, r.kernel
    ));
    md.push_str(
        "- **cairn lb, direct**: `-kernel pxe/vmlinuz -initrd pxe/initrd` with the builder's PXE command \
         line (root erofs + dm-verity from the initrd, data on tmpfs), SeaBIOS; no disk.\n\
         - **cairn lb, UEFI**: `disk.qcow2` on virtio-blk through OVMF → systemd-boot → UKI (the way a box \
         boots from its disk).\n\
         - **Debian, direct**: mmdebstrap `--variant=minbase` + systemd-sysv, udev, kmod, iproute2, \
         haproxy, initramfs-tools (`MODULES=list`: virtio_pci, virtio_blk, crc32c_generic, ext4) and the \
         same kernel package; root a raw ext4 image (`mkfs.ext4 -d`) on virtio-blk (`snapshot=on`); \
         static address through systemd-networkd (`[Match] MACAddress`, no DHCP, no IPv6 RA), which is in \
         the systemd package already and needs no ifupdown; `haproxy.service` as Debian ships it (after \
         `network-online.target`); fixed machine-id, no fsck pass. Command line `console=ttyS0,115200 \
         panic=10 root=/dev/vda rw` (the cairn image's console and panic settings, no `quiet` on either).\n\n",
    );
    md.push_str(
        "Timeline points (seconds since QEMU start), each phase ends at one: *kernel start* is estimated \
         from printk timestamps (a kernel line seen at *t* with printk time *p* puts the start at ≤ \
         *t − p*; the minimum over lines); *first userspace* is the initramfs's init (cairn `cairn-early: \
         early boot`, Debian `Loading, please wait...`); *init of the root* is PID 1 on the real root \
         (cairn `cairn-early on the real root`, the early stage switched in and running the machine \
         setup before it execs cairn-init; Debian `Welcome to Debian`); *network up* (cairn `network \
         configured`, Debian `Reached target … Network is Online`); *role ready* (cairn `CAIRN-READY`, \
         Debian `Started haproxy.service`); *first HTTP 200* from the client. The last phase can be \
         negative: HAProxy answers as soon as it listens, before the ready line has reached the console.\n\n",
    );
    md.push_str("![boot timeline](boot-timeline.png)\n\n### Phases: median (min–max), seconds\n\n");
    let subjects: Vec<&SubjectResult> = r.subjects.iter().take(3).collect();
    md.push_str("| phase |");
    for s in &subjects {
        md.push_str(&format!(" {} |", s.label));
    }
    md.push_str(" cairn direct / Debian |\n|---|");
    for _ in &subjects {
        md.push_str("---:|");
    }
    md.push_str("---:|\n");
    let phases: Vec<Vec<Metric>> = subjects.iter().map(|s| phase_metrics(s)).collect();
    for (i, name) in timeline::PHASES.iter().enumerate() {
        md.push_str(&format!("| {name} |"));
        for p in &phases {
            md.push_str(&format!(" {} |", cell(&p[i])));
        }
        md.push_str(&format!(
            " {} |\n",
            ratio(phases[0][i].median, phases[2][i].median)
        ));
    }
    let last = timeline::POINTS.len() - 1;
    let serve: Vec<Metric> = subjects.iter().map(|s| point_metric(s, last)).collect();
    let ready: Vec<Metric> = subjects.iter().map(|s| point_metric(s, last - 1)).collect();
    md.push_str("| **QEMU start → role ready** |");
    for m in &ready {
        md.push_str(&format!(" {} |", cell(m)));
    }
    md.push_str(&format!(" {} |\n", ratio(ready[0].median, ready[2].median)));
    md.push_str("| **QEMU start → first HTTP 200** |");
    for m in &serve {
        md.push_str(&format!(" **{}** |", cell(m)));
    }
    md.push_str(&format!(
        " **{}** |\n",
        ratio(serve[0].median, serve[2].median)
    ));
    let mut roles = vec![format!("`lb` {} s", cell(&ready[1]))];
    for (i, role) in [(3, "base"), (4, "storage"), (5, "k8s-node")] {
        if let Some(s) = r.subjects.get(i) {
            roles.push(format!("`{role}` {} s", cell(&point_metric(s, last - 1))));
        }
    }
    md.push_str(&format!(
        "\nCAIRN-READY of every role on the UEFI path (QEMU start → `CAIRN-READY`, one box alone, \
         the role's example site; storage: glusterd up, before any peer; k8s-node: containerd up, the \
         kubelet of the shipped example not included): {}.\n",
        roles.join(", ")
    ));

    md.push_str("\n### Footprint\n\n| metric | cairn lb | Debian | cairn / Debian |\n|---|---:|---:|---:|\n");
    let (c, d) = (&r.cairn, &r.debian);
    let mib = |b: u64| b as f64 / MIB;
    let row = |md: &mut String, name: &str, a: f64, b: f64, unit: &str| {
        let ratio = ratio(a, b);
        let (a, b) = if unit.is_empty() {
            (format!("{a:.0}"), format!("{b:.0}"))
        } else {
            (format!("{a:.1} {unit}"), format!("{b:.1} {unit}"))
        };
        md.push_str(&format!("| {name} | {a} | {b} | {ratio} |\n"));
    };
    row(
        &mut md,
        "disk image, zstd -19 (cairn disk.img, Debian raw ext4)",
        mib(c.disk_zstd_bytes),
        mib(d.disk_zstd_bytes),
        "MiB",
    );
    row(
        &mut md,
        "disk image, uncompressed",
        mib(c.disk_bytes),
        mib(d.disk_bytes),
        "MiB",
    );
    if let Some(q) = c.qcow2_bytes {
        md.push_str(&format!(
            "| cairn disk.qcow2 (compressed qcow2, what `cairn build` ships) | {:.1} MiB | – | – |\n",
            mib(q)
        ));
    }
    row(
        &mut md,
        "root filesystem (cairn erofs lz4hc; Debian ext4 blocks in use)",
        mib(c.rootfs_bytes),
        mib(d.rootfs_bytes),
        "MiB",
    );
    row(
        &mut md,
        "files in the root (apparent size)",
        mib(c.tree.apparent_bytes),
        mib(d.tree.apparent_bytes),
        "MiB",
    );
    row(
        &mut md,
        "regular files in the root",
        c.tree.files as f64,
        d.tree.files as f64,
        "",
    );
    row(
        &mut md,
        "executables in the root (ELF, x bit)",
        c.tree.executables as f64,
        d.tree.executables as f64,
        "",
    );
    row(
        &mut md,
        "kernel + initramfs of the direct boot",
        mib(c.kernel_initrd_bytes),
        mib(d.kernel_initrd_bytes),
        "MiB",
    );
    let used_c = mem_metric(&r.subjects[0], |m| m.used_kib);
    let used_d = mem_metric(&r.subjects[2], |m| m.used_kib);
    let rss_c = mem_metric(&r.subjects[0], |m| m.pid1_rss_kib);
    let rss_d = mem_metric(&r.subjects[2], |m| m.pid1_rss_kib);
    md.push_str(&format!(
        "| memory in use 5 s after ready (MemTotal − MemAvailable), median (min–max) | {} MiB | {} MiB | {} |\n\
         | PID 1 resident memory (VmRSS) 5 s after ready | {} MiB | {} MiB | {} |\n",
        cell(&used_c),
        cell(&used_d),
        ratio(used_c.median, used_d.median),
        cell(&rss_c),
        cell(&rss_d),
        ratio(rss_c.median, rss_d.median)
    ));
    let used_u = mem_metric(&r.subjects[1], |m| m.used_kib);
    let rss_u = mem_metric(&r.subjects[1], |m| m.pid1_rss_kib);
    md.push_str(&format!(
        "| same, cairn booted from its disk (UEFI; root not held in RAM): in use / PID 1 RSS | {} / {} MiB | – | {} |\n",
        cell(&used_u),
        cell(&rss_u),
        ratio(used_u.median, used_d.median)
    ));
    md.push_str(
        "\nMemory: cairn is read with `cairnctl sysinfo --json` through the host control channel \
         (virtio-serial, docs/lab.md) 5 s after `CAIRN-READY`; on the direct boot the initramfs (with \
         the 18 MB erofs root image) and the data partition (tmpfs) stay in RAM, so the UEFI row is the \
         fairer one for a disk-booted box. Debian prints \
         `BENCH-MEM total= available= pid1_rss=` on ttyS0 from a oneshot unit ordered after \
         `haproxy.service` that sleeps 5 s first. Both read /proc/meminfo and /proc/1/status. The Debian \
         disk holds the whole kernel package (/lib/modules, ≈ 390 MB of the standard flavour) as any \
         Debian install does; cairn carries only the profile's modules, in its initramfs.\n",
    );
    md.push_str(&memory_breakdown(r));

    md.push_str("\n### Goals\n\n| goal | measured | |\n|---|---|---|\n");
    let serve_ratio = serve[0].median / serve[2].median;
    md.push_str(&format!(
        "| boot to serving ≤ 1/5 of Debian's (direct boot, like with like) | {:.2} s vs {:.2} s = {:.2} | {} |\n",
        serve[0].median,
        serve[2].median,
        serve_ratio,
        yes(serve_ratio <= 0.2)
    ));
    // The part the OS image controls: firmware and kernel are the same on both.
    let after_kernel = |s: &SubjectResult| {
        let v: Vec<f64> = s
            .runs
            .iter()
            .filter_map(|r| Some(r.points.get(last).copied()?? - r.points.get(1).copied()??))
            .collect();
        Metric::new("", "s", "", v).median
    };
    let (uc, ud) = (after_kernel(subjects[0]), after_kernel(subjects[2]));
    md.push_str(&format!(
        "| same, from the first userspace line to the first HTTP 200 (firmware and kernel are the same on both) | {uc:.2} s vs {ud:.2} s = {:.2} | (for reading the row above) |\n",
        uc / ud
    ));
    let size_ratio = c.disk_zstd_bytes as f64 / d.disk_zstd_bytes as f64;
    md.push_str(&format!(
        "| lb image < 1/4 of Debian's compressed size | {:.1} MiB vs {:.1} MiB = {:.2} | {} |\n",
        mib(c.disk_zstd_bytes),
        mib(d.disk_zstd_bytes),
        size_ratio,
        yes(size_ratio < 0.25)
    ));
    md.push_str(&format!(
        "| lb image < 25 MiB (zstd -19 of disk.img) | {:.1} MiB | {} |\n",
        mib(c.disk_zstd_bytes),
        yes(mib(c.disk_zstd_bytes) < 25.0)
    ));
    md.push_str(&format!(
        "| PID 1 < 2 MiB | {:.2} MiB (max {:.2}) | {} |\n",
        rss_c.median,
        rss_c.max,
        yes(rss_c.max < 2.0)
    ));
    let mem_ratio = used_c.median / used_d.median;
    let disk_ratio = used_u.median / used_d.median;
    md.push_str(&format!(
        "| memory in use after boot < 1/2 of Debian's | direct boot (cairn's root image held in RAM): {:.1} MiB vs {:.1} MiB = {:.2}; cairn from its disk (UEFI): {:.1} MiB = {:.2} | {} |\n",
        used_c.median,
        used_d.median,
        mem_ratio,
        used_u.median,
        disk_ratio,
        yes(mem_ratio.min(disk_ratio) < 0.5)
    ));
    md
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

/// Writes `bench/boot-timeline.png` for the report.
pub fn write_chart(out: &Path, r: &BootReport) -> Result<()> {
    let path = out.join("boot-timeline.png");
    bench_chart::write_png(
        &path,
        "Boot to serving: cairn lb vs minimal Debian (median, TCG)",
        timeline::PHASES,
        &chart_bars(r),
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `cargo xtask bench --only boot`: measures, writes the chart, and puts the
/// section into `bench/report.md` and the key `boot` into `bench/report.json`.
pub fn run_alone(runs: usize) -> Result<()> {
    let report = run(runs)?;
    let out = root().join("bench");
    std::fs::create_dir_all(&out)?;
    write_chart(&out, &report)?;
    crate::bench::write_part(
        SECTION,
        &markdown(&report),
        "boot",
        serde_json::to_value(&report)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_its_section() {
        let old = format!("# r\n\n## A\n\na\n\n{SECTION}\n\nold\n\n## B\n\nb\n");
        let new = crate::bench::splice_section(&old, SECTION, &format!("{SECTION}\n\nnew\n"));
        assert_eq!(
            new,
            format!("# r\n\n## A\n\na\n\n{SECTION}\n\nnew\n\n## B\n\nb\n")
        );
        let appended = crate::bench::splice_section("# r\n", SECTION, &format!("{SECTION}\n\nx"));
        assert_eq!(appended, format!("# r\n\n{SECTION}\n\nx\n"));
    }

    #[test]
    fn chart_bars_stack_median_points() {
        let run = |p: [f64; 6]| BootRun {
            points: p.iter().map(|v| Some(*v)).collect(),
            mem: None,
        };
        let s = SubjectResult {
            label: "x".into(),
            runs: vec![
                run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                run([1.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
                run([1.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            ],
        };
        let fp = Footprint {
            disk_bytes: 0,
            disk_zstd_bytes: 0,
            qcow2_bytes: None,
            rootfs_bytes: 0,
            tree: TreeStats::default(),
            kernel_initrd_bytes: 0,
        };
        let r = BootReport {
            runs: 3,
            accel: "tcg".into(),
            kernel: "k".into(),
            debian_key: "k".into(),
            subjects: vec![s],
            cairn: fp.clone(),
            debian: fp,
        };
        let bars = chart_bars(&r);
        assert_eq!(bars[0].segments, vec![1.0, 2.0, 1.0, 1.0, 1.0, 1.0]);
        let sum: f64 = bars[0].segments.iter().sum();
        assert_eq!(sum, 7.0, "the bar ends at the median first 200");
    }
}

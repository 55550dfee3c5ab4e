//! `cargo xtask bench --only storage`: the cairn `storage` image against a
//! minimal Debian bookworm image carrying glusterfs-server (issue 9).
//! Footprint (image sizes, root file system, executables) and boot to volume
//! ready: three VMs of each on one bridge, QEMU start of the first VM → the
//! replica-3 volume `gv0` mountable from a client namespace with the host's
//! FUSE client. Measures and reports; nothing is asserted. Writes the section
//! [`SECTION`] of `bench/report.md` and the key `storage` of `bench/report.json`.

mod cairn_lab;
mod debian_boot;
mod debian_image;
mod mount;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use self::debian_image::Node;
use crate::bench::Metric;
use crate::bench_debian::Footprint;
use crate::bench_debian::{footprint, image};
use crate::{cargo, root, run_cmd, step, target_dir};

/// The report section's heading (also what `--only storage` replaces).
pub const SECTION: &str = "## Storage: cairn `storage` against Debian with glusterfs-server (footprint, boot to volume mountable)";

/// Guest memory of every VM on both sides (the storage test's `--memory`).
pub const MEMORY_MIB: u32 = 512;

/// Runs when `--runs` is larger, as the boot part: one run boots six VMs
/// in two labs and takes 3–4 minutes under TCG.
pub const MAX_RUNS: usize = 5;

const MIB: f64 = 1024.0 * 1024.0;
const SITE: &str = "examples/storage-site.toml";

/// One boot of three VMs, in seconds since QEMU start of the first.
#[derive(Debug, Clone, Serialize)]
pub struct UpRun {
    /// QEMU start of the last VM.
    pub last_qemu_start_s: f64,
    /// Debian: the last node's systemd on the root (`Welcome to Debian`).
    pub init_s: Option<f64>,
    /// Debian: the last node's `network-online.target`.
    pub network_s: Option<f64>,
    /// Debian: the last node's `Starting glusterd.service` (systemd stops
    /// printing status lines once the serial getty is up, so no `Started`).
    pub glusterd_started_s: Option<f64>,
    /// Every node's role is up (cairn: the last `CAIRN-READY`; Debian: the
    /// last node's glusterd answering the CLI, from the first-boot unit).
    pub all_ready_s: Option<f64>,
    /// The first-boot unit started the volume (Debian only; cairn forms it
    /// inside `cairn-storage bootstrap` and prints no timed line).
    pub volume_started_s: Option<f64>,
    /// The client's first successful mount ended.
    pub mountable_s: f64,
    /// Mount attempts it took.
    pub mount_attempts: usize,
}

/// The whole storage measurement.
#[derive(Debug, Serialize)]
pub struct StorageReport {
    /// Runs per side.
    pub runs: usize,
    /// Accelerator (as cairn-qemu detects it; the lab's keeper uses the same probe).
    pub accel: String,
    /// Kernel package and version both run.
    pub kernel: String,
    /// The Debian image's cache key.
    pub debian_key: String,
    /// Packages on top of Debian's minbase.
    pub debian_packages: Vec<String>,
    /// cairn `storage` footprint.
    pub cairn: Footprint,
    /// Debian footprint.
    pub debian: Footprint,
    /// cairn boots (`cairn lab up`, UEFI).
    pub cairn_runs: Vec<UpRun>,
    /// Debian boots (direct kernel boot).
    pub debian_runs: Vec<UpRun>,
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("stat {}", p.display()))?
        .len())
}

/// The storage nodes and gateway of the example site.
fn site_nodes(path: &Path) -> Result<(Vec<Node>, String)> {
    let site: toml::Value = toml::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let s = |v: Option<&toml::Value>, what: &str| {
        v.and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: field `{what}` missing", path.display()))
    };
    let mut nodes = Vec::new();
    for (i, n) in site
        .get("node")
        .and_then(toml::Value::as_array)
        .with_context(|| format!("{}: no [[node]]", path.display()))?
        .iter()
        .enumerate()
    {
        if n.get("role").and_then(toml::Value::as_str) != Some("storage") {
            continue;
        }
        nodes.push(Node {
            name: s(n.get("name"), &format!("node[{i}].name"))?,
            mac: s(n.get("mac"), &format!("node[{i}].mac"))?,
            address: s(
                n.get("addresses").and_then(|a| a.get(0)),
                &format!("node[{i}].addresses[0]"),
            )?,
        });
    }
    if nodes.len() != 3 {
        bail!(
            "{}: expected three storage nodes, found {}",
            path.display(),
            nodes.len()
        );
    }
    let gw = s(
        site.get("network").and_then(|n| n.get("gateway")),
        "network.gateway",
    )?;
    Ok((nodes, gw))
}

fn cairn_footprint(cairn: &Path, dir: &Path) -> Result<Footprint> {
    let out = dir.join("cairn");
    step("cairn build --role storage (footprint)");
    run_cmd(
        Command::new(cairn)
            .args([
                "build",
                "--quiet",
                "--profile",
                "qemu-x86_64",
                "--role",
                "storage",
                "--site",
            ])
            .arg(root().join(SITE))
            .arg("--out")
            .arg(&out),
    )?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)
            .context("parsing the storage image's manifest.json")?;
    let rootfs_bytes = manifest["sizes"]["rootfs"]
        .as_u64()
        .context("manifest.json: no sizes.rootfs")?;
    let tree = footprint::extract_cairn_root(&out.join("pxe/initrd"), &dir.join("cairn-root"))?;
    let fp = Footprint {
        disk_bytes: size(&out.join("disk.img"))?,
        disk_zstd_bytes: footprint::zstd19_bytes(&out.join("disk.img"))?,
        qcow2_bytes: Some(size(&out.join("disk.qcow2"))?),
        rootfs_bytes,
        tree: footprint::tree_stats(&tree)?,
        kernel_initrd_bytes: size(&out.join("pxe/vmlinuz"))? + size(&out.join("pxe/initrd"))?,
    };
    let _ = std::fs::remove_dir_all(dir.join("cairn-root"));
    Ok(fp)
}

/// Runs the measurement.
pub fn run(runs: usize) -> Result<StorageReport> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the storage benchmark creates network namespaces and runs mmdebstrap: run it as root"
        );
    }
    if !Path::new("/sbin/mount.glusterfs").exists() {
        bail!("the host's glusterfs-client is missing: run `cargo xtask setup`");
    }
    // `--runs 0`: footprint only, no VM (e.g. to build the images while QEMU is busy elsewhere).
    let runs = runs.min(MAX_RUNS);
    step("building the image builder (release)");
    run_cmd(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench/storage");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let site = root().join(SITE);
    let cairn_fp = cairn_footprint(&cairn, &dir)?;

    let (nodes, gateway) = site_nodes(&site)?;
    let (kp, kv) = image::profile_kernel()?;
    let spec = debian_image::spec(&nodes, &gateway, (kp.clone(), kv.clone()));
    let deb = image::build_cached(&spec)?;
    let debian_fp = Footprint {
        disk_bytes: deb.disk_bytes,
        disk_zstd_bytes: deb.disk_zstd_bytes,
        qcow2_bytes: None,
        rootfs_bytes: deb.fs_used_bytes,
        tree: deb.tree.clone(),
        kernel_initrd_bytes: size(&deb.vmlinuz)? + size(&deb.initrd)?,
    };

    if runs == 0 {
        return Ok(StorageReport {
            runs,
            accel: "no boots (--runs 0)".into(),
            kernel: format!("{kp} {kv}"),
            debian_key: deb.key,
            debian_packages: spec.packages.clone(),
            cairn: cairn_fp,
            debian: debian_fp,
            cairn_runs: Vec::new(),
            debian_runs: Vec::new(),
        });
    }
    // Probes KVM with a short-lived QEMU guest: only when booting anyway.
    let accel = cairn_qemu::detect_accel();
    step(&format!(
        "boot to volume mountable under {} ({}): 2 sides × {runs} run(s), three VMs each, one side at a time",
        accel.accel.name(),
        accel.note
    ));
    let logs = dir.join("consoles");
    std::fs::create_dir_all(&logs)?;
    let state = PathBuf::from(format!("/tmp/h21-lab-{}", std::process::id()));
    let server = nodes[0].ip().to_owned();
    let boots = boot_runs(
        runs,
        &Sides {
            cairn: &cairn,
            site: &site,
            state: &state,
            server: &server,
            deb: &deb,
            nodes: &nodes,
            logs: &logs,
        },
    );
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir(state.with_extension("mnt"));
    let (cairn_runs, debian_runs) = boots?;
    Ok(StorageReport {
        runs,
        accel: format!("{} ({})", accel.accel.name(), accel.note),
        kernel: format!("{kp} {kv}"),
        debian_key: deb.key,
        debian_packages: spec.packages.clone(),
        cairn: cairn_fp,
        debian: debian_fp,
        cairn_runs,
        debian_runs,
    })
}

/// What the boots of both sides need.
struct Sides<'a> {
    cairn: &'a Path,
    site: &'a Path,
    state: &'a Path,
    server: &'a str,
    deb: &'a image::DebianImage,
    nodes: &'a [Node],
    logs: &'a Path,
}

/// Both sides `runs` times, alternating which boots first.
fn boot_runs(runs: usize, x: &Sides) -> Result<(Vec<UpRun>, Vec<UpRun>)> {
    let mut cairn_runs = Vec::new();
    let mut debian_runs = Vec::new();
    for r in 0..runs {
        // Alternate which side boots first.
        for k in 0..2 {
            if (k + r) % 2 == 0 {
                let u = cairn_lab::run(x.cairn, x.site, x.state, x.server, x.logs, r + 1)?;
                println!("    run {}/{runs} cairn  {}", r + 1, fmt_run(&u));
                cairn_runs.push(u);
            } else {
                let u = debian_boot::run(x.deb, x.nodes, x.logs, r + 1)?;
                println!("    run {}/{runs} Debian {}", r + 1, fmt_run(&u));
                debian_runs.push(u);
            }
        }
    }
    Ok((cairn_runs, debian_runs))
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "–".into())
}

fn fmt_run(u: &UpRun) -> String {
    format!(
        "last QEMU start {:.1} s, all ready {}, volume started {}, mountable {:.1} s ({} attempts)",
        u.last_qemu_start_s,
        opt(u.all_ready_s),
        opt(u.volume_started_s),
        u.mountable_s,
        u.mount_attempts
    )
}

fn cell(m: &Metric) -> String {
    if m.samples.is_empty() {
        "–".into()
    } else {
        format!("{:.1} ({:.1}–{:.1})", m.median, m.min, m.max)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

/// Reads one point of a run.
type Field = fn(&UpRun) -> Option<f64>;

fn metric(runs: &[UpRun], f: Field) -> Metric {
    Metric::new("", "s", "", runs.iter().filter_map(f).collect())
}

/// The report section.
pub fn markdown(r: &StorageReport) -> String {
    let mut md = format!("{SECTION}\n\n");
    md.push_str(&format!(
        "Generated by `cargo xtask bench --only storage` (also part of `cargo xtask bench`). {} run(s) per \
         side (at most {MAX_RUNS}: a run boots six VMs and takes 3–4 minutes under TCG), the sides alternating, \
         one lab at a time, under {}. Both run the same kernel ({}), three VMs of 1 vCPU and {MEMORY_MIB} MiB \
         each on one bridge in a network namespace, started one after the other, and form a replica-3 volume \
         `gv0` with one brick per node in a directory of the root/data file system. *Mountable*: a client \
         namespace on the same bridge runs the host's FUSE client, `mount -t glusterfs {}:/gv0` (the first \
         node's address on both sides; Debian has no VIP), from QEMU start of the first VM, again every \
         0.5 s after a failure (a refused attempt takes ≈ 0.1 s, an unreachable server ≈ 3 s), until a mount \
         succeeds and its root lists; the time is when that attempt ended, since QEMU start of the first VM.\n\n",
        r.runs,
        r.accel,
        r.kernel,
        "192.0.2.31"
    ));
    md.push_str(&format!(
        "- **cairn**: `cairn lab up --site examples/storage-site.toml --memory {MEMORY_MIB}` (docs/lab.md), as \
         qemu-tests/tests/storage.rs runs it: UEFI (OVMF → systemd-boot → UKI) from a qcow2 overlay on the \
         role's `disk.qcow2`, i6300esb watchdog; the boxes form the pool and the volume by themselves \
         (`cairn-storage bootstrap`, docs/storage.md). QEMU start times come from the keeper \
         (`CAIRN-READY` seen `after_ms` after QEMU start, at `unix_ms`). The lab builds its image before \
         booting; that is not timed.\n\
         - **Debian**: mmdebstrap `--variant=minbase` + {} and the same kernel package; root a raw ext4 \
         image on virtio-blk (`snapshot=on`, one image for the three VMs), **direct kernel boot** \
         (`-kernel vmlinuz -initrd initrd.img`, initramfs-tools `MODULES=list`, `{} systemd.hostname=stN`), \
         static addresses by systemd-networkd matched on the MAC, an `/etc/resolv.conf` without a name \
         server (mmdebstrap leaves the build host's there, unreachable from the lab, and glusterd's lookups \
         would wait out its timeouts; cairn's image has none), Debian's `glusterd.service`, and the \
         first-boot automation an admin would add: `gluster-form.service`, a oneshot after \
         `glusterd.service` and `network-online.target` on every node, that waits until `gluster pool list` \
         answers and, on the first node only, runs `gluster peer probe` for the two others every second \
         until both are `Peer in Cluster (Connected)`, then `gluster volume create gv0 replica 3 \
         <ip>:/srv/gluster/gv0/brick ×3 force` and `volume start gv0` (brick directory from tmpfiles.d).\n\n\
         Boot paths differ: cairn boots the way a box boots from its disk (UEFI), Debian the fast direct \
         way. The boot part (section \"Boot to serving\") measured UEFI firmware + loader at ≈ 5.5 s more \
         than the direct boot for the same cairn image under TCG; the comparison below favours Debian by \
         about that much.\n\n",
        r.debian_packages.join(", "),
        image::CMDLINE
    ));
    if r.cairn_runs.is_empty() && r.debian_runs.is_empty() {
        md.push_str(
            "### Boot to volume mountable\n\nNot measured in this report (`--runs 0`: footprint only); \
             run `cargo xtask bench --only storage --runs 3`.\n",
        );
    } else {
        boot_table(&mut md, r);
    }
    md.push_str("\n### Footprint\n\n| metric | cairn storage | Debian + glusterfs-server | cairn / Debian |\n|---|---:|---:|---:|\n");
    let (c, d) = (&r.cairn, &r.debian);
    let mib = |b: u64| b as f64 / MIB;
    let mut row = |name: &str, a: f64, b: f64, unit: &str| {
        let q = ratio(a, b);
        let (a, b) = if unit.is_empty() {
            (format!("{a:.0}"), format!("{b:.0}"))
        } else {
            (format!("{a:.1} {unit}"), format!("{b:.1} {unit}"))
        };
        md.push_str(&format!("| {name} | {a} | {b} | {q} |\n"));
    };
    row(
        "disk image, zstd -19 (cairn disk.img, Debian raw ext4)",
        mib(c.disk_zstd_bytes),
        mib(d.disk_zstd_bytes),
        "MiB",
    );
    row(
        "disk image, uncompressed",
        mib(c.disk_bytes),
        mib(d.disk_bytes),
        "MiB",
    );
    row(
        "root file system (cairn erofs; Debian ext4 blocks in use)",
        mib(c.rootfs_bytes),
        mib(d.rootfs_bytes),
        "MiB",
    );
    row(
        "files in the root (apparent size)",
        mib(c.tree.apparent_bytes),
        mib(d.tree.apparent_bytes),
        "MiB",
    );
    row(
        "regular files in the root",
        c.tree.files as f64,
        d.tree.files as f64,
        "",
    );
    row(
        "executables in the root (ELF, x bit)",
        c.tree.executables as f64,
        d.tree.executables as f64,
        "",
    );
    row(
        "kernel + initramfs of the direct boot",
        mib(c.kernel_initrd_bytes),
        mib(d.kernel_initrd_bytes),
        "MiB",
    );
    if let Some(q) = c.qcow2_bytes {
        md.push_str(&format!(
            "| cairn disk.qcow2 (what `cairn build` ships) | {:.1} MiB | – | – |\n",
            mib(q)
        ));
    }
    md.push_str(
        "\nSizes as in the boot part: `zstd -19 -T0` of the disk images; cairn's root tree is extracted from \
         the erofs in the PXE initrd, Debian's counted before `mkfs.ext4 -d`. The Debian disk holds the whole \
         kernel package's modules and glusterfs-server's full dependency closure (glusterfs-client, \
         Python 3.11 for the geo-replication and events tools…), as any Debian install does.\n",
    );
    md
}

/// The boot-to-mountable table and the mount attempts line.
fn boot_table(md: &mut String, r: &StorageReport) {
    md.push_str("### Boot to volume mountable: median (min–max), seconds since QEMU start of the first VM\n\n");
    md.push_str("| point | cairn storage (lab, UEFI) | Debian + glusterfs-server (direct) | cairn / Debian |\n|---|---:|---:|---:|\n");
    let rows: [(&str, Field); 7] = [
        ("QEMU start of the third VM", |u| Some(u.last_qemu_start_s)),
        (
            "Debian: systemd on the root, last node (`Welcome to Debian`)",
            |u| u.init_s,
        ),
        ("Debian: network online, last node", |u| u.network_s),
        ("Debian: `Starting glusterd.service`, last node", |u| {
            u.glusterd_started_s
        }),
        (
            "every node's role up (cairn: last `CAIRN-READY`; Debian: last glusterd answering)",
            |u| u.all_ready_s,
        ),
        ("volume started (Debian: the first-boot unit's line)", |u| {
            u.volume_started_s
        }),
        ("**volume mountable from the client**", |u| {
            Some(u.mountable_s)
        }),
    ];
    for (name, f) in rows {
        let c = metric(&r.cairn_runs, f);
        let d = metric(&r.debian_runs, f);
        md.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            cell(&c),
            cell(&d),
            ratio(c.median, d.median)
        ));
    }
    let att = |runs: &[UpRun]| {
        runs.iter()
            .map(|u| u.mount_attempts.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    md.push_str(&format!(
        "\nMount attempts per run: cairn {}; Debian {}.\n",
        att(&r.cairn_runs),
        att(&r.debian_runs)
    ));
}

/// `cargo xtask bench --only storage`: measures and puts the section into
/// `bench/report.md` and the key `storage` into `bench/report.json`.
pub fn run_alone(runs: usize) -> Result<()> {
    let report = run(runs)?;
    crate::bench::write_part(
        SECTION,
        &markdown(&report),
        "storage",
        serde_json::to_value(&report)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_nodes_reads_the_example_site() {
        let (nodes, gw) = site_nodes(&root().join(SITE)).unwrap();
        assert_eq!(gw, "192.0.2.1");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].name, "st1");
        assert_eq!(nodes[0].ip(), "192.0.2.31");
        assert_eq!(nodes[2].mac, "52:54:00:c0:00:33");
    }

    #[test]
    fn node_times_take_qemu_start_from_ready() {
        let status = serde_json::json!({"ok": true, "nodes": [
            {"name": "st1", "kind": "vm", "ready": {"after_ms": 20000, "unix_ms": 1_000_020_000u64, "line": "x"}},
            {"name": "st2", "kind": "vm", "ready": {"after_ms": 21000, "unix_ms": 1_000_022_000u64, "line": "x"}},
        ]});
        let t = cairn_lab::node_times(&status).unwrap();
        assert_eq!(t[0].qemu_start_ms, 1_000_000_000);
        assert_eq!(t[1].qemu_start_ms, 1_000_001_000);
        assert_eq!(t[1].ready_ms, 1_000_022_000);
        let not_ready =
            serde_json::json!({"nodes": [{"name": "st1", "kind": "vm", "ready": null}]});
        assert!(cairn_lab::node_times(&not_ready).is_err());
    }

    #[test]
    fn markdown_has_both_sides_and_ratios() {
        let fp = |z: u64| Footprint {
            disk_bytes: 4 * z,
            disk_zstd_bytes: z,
            qcow2_bytes: None,
            rootfs_bytes: 2 * z,
            tree: Default::default(),
            kernel_initrd_bytes: 0,
        };
        let run = |m: f64| UpRun {
            last_qemu_start_s: 1.0,
            init_s: None,
            network_s: None,
            glusterd_started_s: None,
            all_ready_s: Some(m - 5.0),
            volume_started_s: None,
            mountable_s: m,
            mount_attempts: 3,
        };
        let r = StorageReport {
            runs: 1,
            accel: "tcg".into(),
            kernel: "k".into(),
            debian_key: "x".into(),
            debian_packages: vec!["glusterfs-server".into()],
            cairn: fp(50 << 20),
            debian: fp(200 << 20),
            cairn_runs: vec![run(30.0)],
            debian_runs: vec![run(60.0)],
        };
        let md = markdown(&r);
        assert!(md.starts_with(SECTION), "{md}");
        assert!(
            md.contains("| **volume mountable from the client** | 30.0 (30.0–30.0) | 60.0 (60.0–60.0) | 0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| disk image, zstd -19 (cairn disk.img, Debian raw ext4) | 50.0 MiB | 200.0 MiB | 0.25 |"),
            "{md}"
        );
        let footprint_only = StorageReport {
            runs: 0,
            cairn_runs: Vec::new(),
            debian_runs: Vec::new(),
            ..r
        };
        let md = markdown(&footprint_only);
        assert!(md.contains("Not measured in this report"), "{md}");
        assert!(!md.contains("volume mountable from the client"), "{md}");
    }
}

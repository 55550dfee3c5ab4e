//! The Debian reference image: a minimal bookworm root made with mmdebstrap
//! (`--variant=minbase` plus systemd, udev, kmod, iproute2, haproxy and the
//! `qemu-x86_64` profile's kernel, its initramfs made by initramfs-tools inside
//! the chroot), serving the same HAProxy frontend as the cairn `lb` image,
//! written as a raw ext4 disk with `mkfs.ext4 -d` (no loop mounts). Built once
//! and cached under the target directory, keyed by everything it is made from.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::footprint::{self, TreeStats};
use crate::{root, run_cmd, step, target_dir};

/// Bumped whenever the recipe below changes in a way the key would not see.
const RECIPE_VERSION: &str = "debian-ref-3";

/// Packages of the `lb` reference on top of minbase. `systemd-sysv` makes
/// systemd PID 1; networkd (part of `systemd`) configures the address: no
/// ifupdown, no DHCP client.
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "iproute2",
    "haproxy",
    "initramfs-tools",
];

/// Modules the initramfs carries (`MODULES=list`): just enough to mount the
/// ext4 root on virtio-blk; udev loads the rest (virtio_net) from the root.
/// Debian's default `MODULES=most` makes a 36 MB initramfs that takes
/// seconds longer to unpack under TCG; the reference gets the fast setting.
pub const INITRAMFS_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];

/// The kernel command line: the cairn image's console and panic settings
/// (manifest `cmdline.pxe` starts the same way), plus the root device.
pub const CMDLINE: &str = "console=ttyS0,115200 panic=10 root=/dev/vda rw";

/// What the image is made from.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Kernel package, e.g. `linux-image-6.1.0-56-amd64` (from the hardware profile).
    pub kernel_package: String,
    /// Its exact version, e.g. `6.1.192-2`.
    pub kernel_version: String,
    /// haproxy.cfg as the cairn builder rendered it for the `lb` role.
    pub cairn_haproxy_cfg: String,
    /// lb1's MAC, address (CIDR) and gateway from the example site.
    pub mac: String,
    /// lb1's address with prefix length.
    pub address: String,
    /// The site's gateway.
    pub gateway: String,
}

/// Everything a Debian reference image is made from, whatever it serves: the
/// `lb` reference ([`Recipe::spec`]) and the `storage` one (`bench_storage`)
/// differ only in packages, added files and enabled units.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Cache directory under `target/bench/`; each keeps only its newest key,
    /// so two references need two names.
    pub cache: &'static str,
    /// Recipe version, part of the key: bump it when something the key does
    /// not see changes (the `enable` list, the hooks).
    pub version: &'static str,
    /// Packages on top of minbase, without the kernel.
    pub packages: Vec<String>,
    /// Kernel package, e.g. `linux-image-6.1.0-56-amd64`.
    pub kernel_package: String,
    /// Its exact version.
    pub kernel_version: String,
    /// Files written into the root after the packages: path, mode, text.
    pub files: Vec<(String, u32, String)>,
    /// Units `systemctl enable`d in the chroot.
    pub enable: Vec<String>,
}

impl Recipe {
    /// The `lb` reference as a [`Spec`] (cache `target/bench/debian`).
    pub fn spec(&self) -> Spec {
        Spec {
            cache: "debian",
            version: RECIPE_VERSION,
            packages: PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
            kernel_package: self.kernel_package.clone(),
            kernel_version: self.kernel_version.clone(),
            files: files(self),
            enable: vec![
                "systemd-networkd.service".into(),
                "bench-mem.service".into(),
            ],
        }
    }
}

/// A built (or cached) Debian image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DebianImage {
    /// Directory holding everything below.
    pub dir: PathBuf,
    /// The kernel, copied out of the root's /boot.
    pub vmlinuz: PathBuf,
    /// The initramfs initramfs-tools made in the chroot.
    pub initrd: PathBuf,
    /// Raw ext4 disk image of the root (`/dev/vda`).
    pub disk: PathBuf,
    /// Size of the raw disk file (its apparent size).
    pub disk_bytes: u64,
    /// `zstd -19` of the raw disk.
    pub disk_zstd_bytes: u64,
    /// Bytes the ext4 filesystem uses (used blocks × block size).
    pub fs_used_bytes: u64,
    /// Files and executables of the root tree.
    pub tree: TreeStats,
    /// The cache key the image was built for.
    pub key: String,
    /// How long the build took when it ran (seconds).
    pub build_s: f64,
}

/// Reads the kernel package and version of the `qemu-x86_64` profile.
pub fn profile_kernel() -> Result<(String, String)> {
    let path = root().join("hardware-profiles/qemu-x86_64.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let field = |k: &str| {
        value
            .get("kernel")
            .and_then(|t| t.get(k))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: field `kernel.{k}` missing", path.display()))
    };
    Ok((field("package")?, field("version")?))
}

/// The cairn haproxy.cfg adapted to Debian's package: workers run as the
/// `haproxy` user of the Debian package instead of cairn's numeric uid/gid.
/// Everything else (frontend, backends, checks, timeouts) is kept verbatim.
pub fn debian_haproxy_cfg(cairn: &str) -> String {
    let mut out = String::new();
    for line in cairn.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("uid ") {
            out.push_str(&format!("{indent}user haproxy\n"));
        } else if t.starts_with("gid ") {
            out.push_str(&format!("{indent}group haproxy\n"));
        } else if t.starts_with("# workers run as") {
            out.push_str(&format!(
                "{indent}# workers run as Debian's haproxy user and live in an empty chroot\n"
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The script a oneshot unit runs 5 s after HAProxy started: one line on the
/// serial console with memory in use and systemd's resident memory.
const BENCH_MEM_SCRIPT: &str = r#"#!/bin/sh
# cairn benchmark: report memory 5 s after haproxy.service started.
sleep 5
t=; a=; r=; parts=
while read -r k v _; do
    case "$k" in
        MemTotal:) t=$v ;;
        MemAvailable:) a=$v ;;
        AnonPages:|Shmem:|Cached:|Buffers:|SReclaimable:|SUnreclaim:|KernelStack:|PageTables:|Percpu:|VmallocUsed:|Mlocked:)
            parts="$parts ${k%:}=$v" ;;
    esac
done < /proc/meminfo
while read -r k v _; do
    case "$k" in VmRSS:) r=$v ;; esac
done < /proc/1/status
for d in /proc/[0-9]*; do
    n=; rss=; an=
    while read -r k v _; do
        case "$k" in Name:) n=$v ;; VmRSS:) rss=$v ;; RssAnon:) an=$v ;; esac
    done < "$d/status" 2>/dev/null
    [ -n "$rss" ] && echo "$rss ${an:-0} $n"
done | sort -rn | head -8 | {
    l=
    while read -r rss an n; do l="$l $n:$rss:$an"; done
    echo "BENCH-PROCS$l" > /dev/ttyS0
}
echo "BENCH-MEM total=$t available=$a pid1_rss=$r$parts" > /dev/ttyS0
"#;

const BENCH_MEM_UNIT: &str = "[Unit]
Description=cairn benchmark: memory report 5 s after HAProxy
After=haproxy.service
Wants=haproxy.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bench-mem

[Install]
WantedBy=multi-user.target
";

/// Files written into the root after the packages are installed: path, mode, text.
fn files(r: &Recipe) -> Vec<(String, u32, String)> {
    let f = |p: &str, m: u32, t: String| (p.to_owned(), m, t);
    vec![
        f("etc/hostname", 0o644, "lb1\n".into()),
        f(
            "etc/hosts",
            0o644,
            "127.0.0.1 localhost\n127.0.1.1 lb1\n".into(),
        ),
        // A fixed machine id: not a first boot (systemd-firstboot stays quiet).
        f(
            "etc/machine-id",
            0o444,
            format!("{:016x}{:016x}\n", fnv64(b"lb1-a"), fnv64(b"lb1-b")),
        ),
        // Root is mounted rw by the initramfs; no fsck pass at boot.
        f(
            "etc/fstab",
            0o644,
            "/dev/vda / ext4 rw,noatime 0 0\n".into(),
        ),
        f(
            "etc/systemd/network/10-lb1.network",
            0o644,
            format!(
                "[Match]\nMACAddress={}\n\n[Network]\nAddress={}\nGateway={}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
                r.mac, r.address, r.gateway
            ),
        ),
        f(
            "etc/haproxy/haproxy.cfg",
            0o644,
            debian_haproxy_cfg(&r.cairn_haproxy_cfg),
        ),
        // The stats socket's directory (the cairn cfg puts it in /run/haproxy).
        f(
            "etc/tmpfiles.d/haproxy-run.conf",
            0o644,
            "d /run/haproxy 0775 haproxy haproxy -\n".into(),
        ),
        f("usr/local/sbin/bench-mem", 0o755, BENCH_MEM_SCRIPT.into()),
        f(
            "etc/systemd/system/bench-mem.service",
            0o644,
            BENCH_MEM_UNIT.into(),
        ),
    ]
}

/// Files needed before the kernel package's postinst runs update-initramfs.
fn early_files() -> Vec<(String, u32, String)> {
    vec![
        (
            "etc/initramfs-tools/conf.d/zz-cairn-bench.conf".into(),
            0o644,
            "MODULES=list\n".into(),
        ),
        (
            "usr/share/initramfs-tools/modules.d/cairn-bench".into(),
            0o644,
            INITRAMFS_MODULES.join("\n") + "\n",
        ),
    ]
}

/// FNV-1a, 64 bit: a stable hash for cache keys (std's hasher may change).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache key: every input of the image (the `enable` list through
/// [`Spec::version`]).
pub fn key(r: &Spec) -> String {
    let mut text = format!(
        "{}\n{}\n{}={}\n{CMDLINE}\n",
        r.version,
        r.packages.join(","),
        r.kernel_package,
        r.kernel_version
    );
    for (p, m, t) in early_files().into_iter().chain(r.files.iter().cloned()) {
        text.push_str(&format!("--- {p} {m:o}\n{t}"));
    }
    format!("{:016x}", fnv64(text.as_bytes()))
}

/// Where debs downloaded by mmdebstrap are kept between builds:
/// `$CAIRN_CACHE/apt/mmdebstrap`, else `.cache/apt/mmdebstrap` in the tree.
fn deb_cache() -> PathBuf {
    std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache"))
        .join("apt/mmdebstrap")
}

fn write_files(dir: &Path, files: &[(String, u32, String)]) -> Result<()> {
    for (p, mode, text) in files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Single-quotes `p` for the shell hooks mmdebstrap runs.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Returns the cached image for `r`, building it first when missing.
pub fn build_cached(r: &Spec) -> Result<DebianImage> {
    let key = key(r);
    let base = target_dir().join("bench").join(r.cache);
    let dir = base.join(&key);
    let stamp = dir.join("image.json");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && let Ok(img) = serde_json::from_str::<DebianImage>(&text)
        && img.disk.exists()
        && img.vmlinuz.exists()
        && img.initrd.exists()
    {
        println!(
            "    Debian reference image {key}: cached in {}",
            dir.display()
        );
        return Ok(img);
    }
    if !Path::new("/usr/bin/mmdebstrap").exists() {
        bail!("mmdebstrap is missing: run `cargo xtask setup`");
    }
    // Older keys are stale: keep the target directory from growing.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    std::fs::create_dir_all(&dir)?;
    step(&format!(
        "building the Debian reference image (mmdebstrap minbase + {}, {}={})",
        r.packages.join(" "),
        r.kernel_package,
        r.kernel_version
    ));
    let t = std::time::Instant::now();
    let tree = dir.join("tree");
    let early = dir.join("files-early");
    let late = dir.join("files");
    write_files(&early, &early_files())?;
    write_files(&late, &r.files)?;
    let cache = deb_cache();
    std::fs::create_dir_all(&cache)?;
    let include = r
        .packages
        .iter()
        .cloned()
        .chain([format!("{}={}", r.kernel_package, r.kernel_version)])
        .collect::<Vec<_>>()
        .join(",");
    let c = sh_quote(&cache);
    run_cmd(
        Command::new("mmdebstrap")
            .args([
                "--mode=root",
                "--variant=minbase",
                "--skip=essential/unlink",
            ])
            .arg(format!("--include={include}"))
            .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
            .arg(format!("--setup-hook=sync-in {c} /var/cache/apt/archives/"))
            .arg(format!("--essential-hook=sync-in {} /", sh_quote(&early)))
            .arg(format!("--customize-hook=sync-in {} /", sh_quote(&late)))
            .arg(format!(
                "--customize-hook=chroot \"$1\" systemctl enable {}",
                r.enable.join(" ")
            ))
            .arg(format!(
                "--customize-hook=sync-out /var/cache/apt/archives {c}"
            ))
            .arg("--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb")
            .arg("bookworm")
            .arg(&tree)
            .arg("deb http://deb.debian.org/debian bookworm main")
            .arg("deb http://deb.debian.org/debian bookworm-updates main")
            .arg("deb http://deb.debian.org/debian-security bookworm-security main"),
    )?;
    let kver = r
        .kernel_package
        .strip_prefix("linux-image-")
        .context("kernel package name does not start with linux-image-")?;
    let vmlinuz = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    std::fs::copy(tree.join(format!("boot/vmlinuz-{kver}")), &vmlinuz)
        .context("copying the kernel out of the Debian root")?;
    std::fs::copy(tree.join(format!("boot/initrd.img-{kver}")), &initrd)
        .context("copying the initramfs out of the Debian root (did initramfs-tools run?)")?;
    let stats = footprint::tree_stats(&tree)?;
    let disk = dir.join("disk.raw");
    // Room for ext4's own metadata and journal plus some free space, as an
    // installer would leave; the compressed size hardly depends on it.
    let size_mib = (stats.allocated_bytes * 5 / 4) / (1024 * 1024) + 128;
    run_cmd(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "debian-root", "-d"])
            .arg(&tree)
            .arg(&disk)
            .arg(format!("{size_mib}M")),
    )?;
    let fs_used_bytes = footprint::ext4_used_bytes(&disk)?;
    let disk_bytes = std::fs::metadata(&disk)?.len();
    let disk_zstd_bytes = footprint::zstd19_bytes(&disk)?;
    let _ = std::fs::remove_dir_all(&tree);
    let img = DebianImage {
        dir: dir.clone(),
        vmlinuz,
        initrd,
        disk,
        disk_bytes,
        disk_zstd_bytes,
        fs_used_bytes,
        tree: stats,
        key,
        build_s: t.elapsed().as_secs_f64(),
    };
    std::fs::write(&stamp, serde_json::to_string_pretty(&img)?)?;
    println!(
        "    built in {:.0} s: {} files, {} executables, disk {} MiB raw, {:.1} MiB zstd -19",
        img.build_s,
        img.tree.files,
        img.tree.executables,
        disk_bytes / (1024 * 1024),
        disk_zstd_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(cfg: &str) -> Recipe {
        Recipe {
            kernel_package: "linux-image-6.1.0-56-amd64".into(),
            kernel_version: "6.1.192-2".into(),
            cairn_haproxy_cfg: cfg.into(),
            mac: "52:54:00:c0:00:11".into(),
            address: "192.0.2.11/24".into(),
            gateway: "192.0.2.1".into(),
        }
    }

    #[test]
    fn haproxy_cfg_swaps_uid_gid_for_debian_user_and_keeps_the_rest() {
        let cairn = "global\n    master-worker\n    # workers run as haproxy and live in an empty chroot\n    uid 110\n    gid 110\n    chroot /var/lib/haproxy\n\nfrontend web\n    bind *:80\n";
        let d = debian_haproxy_cfg(cairn);
        assert!(d.contains("    user haproxy\n    group haproxy\n"), "{d}");
        assert!(!d.contains("uid 110") && !d.contains("gid 110"), "{d}");
        assert!(d.contains("    chroot /var/lib/haproxy\n\nfrontend web\n    bind *:80\n"));
    }

    #[test]
    fn key_changes_with_every_input() {
        let a = recipe("x");
        let base = key(&a.spec());
        assert_eq!(base, key(&a.clone().spec()), "key is stable");
        assert_ne!(base, key(&recipe("y").spec()), "haproxy.cfg is an input");
        let mut k = a.clone();
        k.kernel_version = "6.1.192-3".into();
        assert_ne!(base, key(&k.spec()), "kernel version is an input");
        let mut m = a.clone();
        m.address = "192.0.2.12/24".into();
        assert_ne!(base, key(&m.spec()), "network config is an input");
        let mut p = a.spec();
        p.packages.push("glusterfs-server".into());
        assert_ne!(base, key(&p), "the package list is an input");
        let mut v = a.spec();
        v.version = "other";
        assert_ne!(base, key(&v), "the recipe version is an input");
    }

    #[test]
    fn network_file_matches_the_mac_and_sets_a_static_address() {
        let fs = files(&recipe("x"));
        let (_, _, net) = fs
            .iter()
            .find(|(p, _, _)| p.ends_with("10-lb1.network"))
            .unwrap();
        assert!(net.contains("MACAddress=52:54:00:c0:00:11"));
        assert!(net.contains("Address=192.0.2.11/24\nGateway=192.0.2.1"));
    }

    #[test]
    fn fnv64_known_values() {
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

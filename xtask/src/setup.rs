//! Host packages, installed through apt with a package cache inside the
//! project (`.cache/apt`, git-ignored) and only when something is missing.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run_cmd, step};

/// Debian packages the build host needs, with what each is for.
pub const PACKAGES: &[(&str, &str)] = &[
    (
        "util-linux",
        "unshare, setpriv, nsenter: namespaces for the privileged tests and demo",
    ),
    ("iproute2", "ip: loopback and links inside test namespaces"),
    ("procps", "process inspection in the demo"),
    (
        "busybox-static",
        "httpd and wget for demo and test services",
    ),
    ("tini", "reference PID 1 in the benchmark"),
    (
        "keepalived",
        "the VRRP reference cairn-vipd interoperates with and is benchmarked against",
    ),
    ("curl", "HTTP client in the lab's client namespace"),
    (
        "glusterfs-client",
        "the native FUSE client that mounts the storage lab's volume",
    ),
    ("xfsprogs", "mkfs.xfs for the storage role's brick tests"),
    (
        "haproxy",
        "`haproxy -c` checks the haproxy.cfg the builder renders for the lb role",
    ),
    (
        "qemu-system-x86",
        "boots images in the QEMU tests and `cairn run`",
    ),
    ("qemu-utils", "qemu-img: disk.qcow2"),
    ("ovmf", "UEFI firmware for QEMU"),
    ("ipxe-qemu", "iPXE network boot ROMs for `cairn run --pxe`"),
    (
        "systemd-boot-efi",
        "systemd-boot and the EFI stub the UKI is built on",
    ),
    ("erofs-utils", "mkfs.erofs: the read-only root filesystem"),
    ("cryptsetup-bin", "veritysetup: the dm-verity hash tree"),
    ("binutils", "objcopy: assembling the UKI"),
    (
        "protobuf-compiler",
        "protoc: the k8s-cri crate compiles the Kubernetes CRI protobufs (cairn-k8s)",
    ),
    ("gdisk", "sgdisk: checking GPT layouts in tests"),
    ("dosfstools", "fsck.fat: checking the ESP in tests"),
    ("cpio", "cpio: checking initramfs archives in tests"),
    ("zstd", "compressed image sizes in the benchmark report"),
    (
        "mmdebstrap",
        "the minimal Debian reference image of `cargo xtask bench --only boot`",
    ),
    (
        "e2fsprogs",
        "mkfs.ext4 -d and dumpe2fs: the Debian reference image's root",
    ),
    (
        "golang-go",
        "Go 1.19: `cargo xtask k8s-bins` builds kubelet and the control plane from Debian's kubernetes source",
    ),
    ("rsync", "the kubernetes source's make rules copy with it"),
    (
        "dpkg-dev",
        "dpkg-source: unpacks Debian's kubernetes source package with its patches",
    ),
    (
        "etcd-server",
        "the store of the k8s lab's test control plane (qemu-tests k8s_control)",
    ),
    (
        "openssl",
        "the k8s lab's test PKI: CA, apiserver and admin certificates, CSRs",
    ),
    // Debian's kubectl (kubernetes-client) is not installed here: on hosts where
    // another package owns /usr/bin/kubectl (Google's cloud SDK) dpkg refuses it.
    // `cargo xtask k8s-bins` unpacks its .deb into the k8s bin directory instead.
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .output()
        .map(|o| o.status.success() && o.stdout == b"installed")
        .unwrap_or(false)
}

fn missing() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect()
}

/// Installs whatever is missing from [`PACKAGES`]. Installing one package can
/// remove another (a backported qemu-utils gives way to bookworm's QEMU), so
/// the whole list is checked again afterwards, with a second round if needed.
pub fn run() -> Result<()> {
    let mut todo = missing();
    if todo.is_empty() {
        println!("host packages: all {} present", PACKAGES.len());
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing host packages {todo:?}; run `cargo xtask setup` as root (or apt-get install them)"
        );
    }
    let archives = root().join(".cache/apt/archives");
    std::fs::create_dir_all(archives.join("partial"))
        .with_context(|| format!("creating {}", archives.display()))?;
    let cache = format!("-oDir::Cache::Archives={}", archives.display());
    run_cmd(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "update"]),
    )?;
    for _round in 0..2 {
        step(&format!("installing host packages: {}", todo.join(" ")));
        let install = || {
            let mut cmd = Command::new("apt-get");
            cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
                "-q",
                "-y",
                "--no-install-recommends",
                &cache,
                "install",
            ]);
            cmd
        };
        if let Err(e) = run_cmd(install().args(&todo)) {
            // A backported qemu-utils (newer than bookworm's QEMU) makes apt refuse the
            // whole transaction ("Breaks: qemu-system-common"); take bookworm's qemu-utils.
            step(&format!(
                "{e}; retrying with bookworm's qemu-utils (--allow-downgrades)"
            ));
            run_cmd(
                install()
                    .arg("--allow-downgrades")
                    .args(todo.iter().filter(|p| **p != "qemu-utils"))
                    .arg("qemu-utils/bookworm"),
            )?;
        }
        todo = missing();
        if todo.is_empty() {
            return Ok(());
        }
    }
    bail!("apt-get reported success but {todo:?} are not installed")
}

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
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .output()
        .map(|o| o.status.success() && o.stdout == b"installed")
        .unwrap_or(false)
}

/// Installs whatever is missing from [`PACKAGES`].
pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("host packages: all {} present", PACKAGES.len());
        return Ok(());
    }
    step(&format!("installing host packages: {}", missing.join(" ")));
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "missing host packages {missing:?}; run `cargo xtask setup` as root (or apt-get install them)"
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
    run_cmd(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "-y", "--no-install-recommends", &cache, "install"])
            .args(&missing),
    )?;
    let still: Vec<&str> = missing.into_iter().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get reported success but {still:?} are not installed");
    }
    Ok(())
}

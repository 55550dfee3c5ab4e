//! The root filesystem tree: cairn's own static binaries, the role's
//! programs with their libraries, and the configuration files a box reads.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Dirs, Inputs, source_root};

/// Directories every root has (mount points and the config directory).
const DIRS: &[&str] = &[
    "dev",
    "etc/cairn",
    "newroot",
    "proc",
    "run",
    "sys",
    "tmp",
    "var",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "root",
];

/// Builds the static box binaries (cairn-init, cairnctl) from the source tree,
/// or takes them from `--box-bin`; returns their directory.
pub fn box_binaries(dirs: &Dirs) -> Result<PathBuf> {
    if let Some(d) = &dirs.box_bin {
        for b in ["cairn-init", "cairnctl"] {
            if !d.join(b).is_file() {
                bail!("--box-bin {}: {b} is missing", d.display());
            }
        }
        return Ok(d.clone());
    }
    let target = "x86_64-unknown-linux-gnu";
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source_root().join("target"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(source_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "--release", "--target", target])
        .args(["-p", "cairn-init", "-p", "cairnctl"])
        .status()
        .context("running cargo to build the static cairn-init and cairnctl")?;
    if !status.success() {
        bail!("building cairn-init and cairnctl failed ({status})");
    }
    Ok(target_dir.join(target).join("release"))
}

/// Copies a file, creating parents, with the given mode.
pub fn install(src: &Path, tree: &Path, dst: &str, mode: u32) -> Result<()> {
    let to = tree.join(dst.trim_start_matches('/'));
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    std::fs::copy(src, &to)
        .with_context(|| format!("copying {} to {}", src.display(), to.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))?;
    Ok(())
}

/// Writes a text file into the tree.
pub fn write(tree: &Path, dst: &str, text: &str, mode: u32) -> Result<()> {
    let to = tree.join(dst.trim_start_matches('/'));
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    std::fs::write(&to, text).with_context(|| format!("writing {}", to.display()))?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))?;
    Ok(())
}

/// The configuration files of a root: passwd, group, os-release, the site
/// file, the image description and the services file.
pub fn config_files(inputs: &Inputs, tree: &Path, services: &str) -> Result<()> {
    for d in DIRS {
        std::fs::create_dir_all(tree.join(d)).with_context(|| format!("creating {d}"))?;
    }
    write(
        tree,
        "etc/passwd",
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    )?;
    write(tree, "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    let version = &inputs.site.image.version;
    write(
        tree,
        "etc/os-release",
        &format!(
            "NAME=cairn\nID=cairn\nPRETTY_NAME=\"cairn {version} ({} role)\"\nVERSION_ID={version}\nIMAGE_ID=cairn-{}\nIMAGE_VERSION={version}\n",
            inputs.role, inputs.role
        ),
        0o644,
    )?;
    write(tree, "etc/cairn/site.toml", &inputs.site_text, 0o644)?;
    write(
        tree,
        "etc/cairn/image.toml",
        &format!(
            "role = \"{}\"\nprofile = \"{}\"\nversion = \"{version}\"\n",
            inputs.role, inputs.profile.name
        ),
        0o644,
    )?;
    write(tree, "etc/cairn/services.toml", services, 0o644)?;
    Ok(())
}

/// Every regular file and symlink under `tree`, relative, sorted (for the
/// executable count and the manifest).
pub fn list(tree: &Path) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => {
                    if let Ok(rel) = p.strip_prefix(tree) {
                        out.insert(rel.to_path_buf());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out.into_iter().collect()
}

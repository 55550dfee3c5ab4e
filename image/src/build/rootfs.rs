//! The root filesystem tree: cairn's own static binaries, the role's
//! programs with their libraries, and the configuration files a box reads.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{Dirs, Inputs, source_root};
use crate::role::RoleUser;

/// Directories every root has (mount points and the config directory).
const DIRS: &[&str] = &[
    "dev",
    "efi", // the ESP, mounted by cairn-init on disk boots (A/B updates)
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

/// Workspace programs in every image, beside the roles' `box_binaries`
/// (package names; the `cairn-init` package also builds [`EARLY_INIT`]).
pub const CORE_BOX_BINARIES: &[&str] = &["cairn-init", "cairnctl"];

/// The initramfs's `/init`, a second binary of the `cairn-init` package: the
/// early stage, which also runs the one-time machine setup so that PID 1 on
/// the root stays small (docs/boot.md).
pub const EARLY_INIT: &str = "cairn-early";

/// Builds the static box binaries (cairn-init, cairnctl and the roles'
/// `extra` workspace programs) from the source tree, or takes them from
/// `--box-bin`; returns their directory.
pub fn box_binaries(dirs: &Dirs, extra: &[String]) -> Result<PathBuf> {
    let names: Vec<&str> = CORE_BOX_BINARIES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect();
    if let Some(d) = &dirs.box_bin {
        for b in names.iter().chain(&[EARLY_INIT]) {
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
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(source_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--quiet", "--release", "--target", target]);
    for n in &names {
        cargo.args(["-p", n]);
    }
    let status = cargo
        .status()
        .with_context(|| format!("running cargo to build the static {}", names.join(", ")))?;
    if !status.success() {
        bail!("building {} failed ({status})", names.join(", "));
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

/// `/etc/passwd` and `/etc/group`: root, the roles' users (each with its own
/// group), nobody/nogroup.
pub fn user_db<'a>(users: impl Iterator<Item = &'a RoleUser>) -> (String, String) {
    let mut passwd = String::from("root:x:0:0:root:/root:/usr/sbin/nologin\n");
    let mut group = String::from("root:x:0:\n");
    for u in users {
        passwd.push_str(&format!(
            "{0}:x:{1}:{1}:{0}:{2}:/usr/sbin/nologin\n",
            u.name,
            u.uid,
            u.home.display()
        ));
        group.push_str(&format!("{}:x:{}:\n", u.name, u.uid));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    group.push_str("nogroup:x:65534:\n");
    (passwd, group)
}

/// The configuration files of a root: passwd, group, os-release (with
/// `CAIRN_PROFILE`, the hardware profile, for cairn-updated), the site
/// file and what the roles render from it, the image description and the
/// services file.
pub fn config_files(inputs: &Inputs, tree: &Path, services: &str) -> Result<()> {
    for d in DIRS {
        std::fs::create_dir_all(tree.join(d)).with_context(|| format!("creating {d}"))?;
    }
    let (passwd, group) = user_db(inputs.users());
    write(tree, "etc/passwd", &passwd, 0o644)?;
    write(tree, "etc/group", &group, 0o644)?;
    for (path, text) in &inputs.site_configs {
        write(tree, path, text, 0o644)?;
    }
    let version = &inputs.site.image.version;
    write(
        tree,
        "etc/os-release",
        &format!(
            "NAME=cairn\nID=cairn\nPRETTY_NAME=\"cairn {version} ({} role)\"\nVERSION_ID={version}\nIMAGE_ID=cairn-{}\nIMAGE_VERSION={version}\nCAIRN_PROFILE={}\n",
            inputs.role, inputs.role, inputs.profile.name
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_db_lists_role_users_between_root_and_nobody() {
        let users = [RoleUser {
            name: "haproxy".into(),
            uid: 110,
            home: PathBuf::from("/var/lib/haproxy"),
        }];
        let (passwd, group) = user_db(users.iter());
        assert_eq!(
            passwd,
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             haproxy:x:110:110:haproxy:/var/lib/haproxy:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(group, "root:x:0:\nhaproxy:x:110:\nnogroup:x:65534:\n");
    }
}

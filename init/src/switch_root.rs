//! Leaves the initramfs for the real root: mount the verified image
//! read-only, move the API filesystems into it, free the initramfs's memory
//! by deleting its files (never crossing into another mount), make the new
//! root `/` and exec its init. Each step is a function taking its paths, so
//! the steps are tested in a private mount namespace of a temp directory.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

/// Where the early stage mounts the real root.
pub const NEWROOT: &str = "/newroot";
/// The mounts carried over into the real root, in order (relative to `/`).
pub const CARRIED_MOUNTS: [&str; 4] = ["dev", "proc", "sys", "run"];
/// The real root's init.
pub const INIT: &str = "/sbin/init";

/// A step of the switch that failed.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// A mount point could not be created.
    #[error("cannot create {path}: {source}")]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Mounting the root image failed.
    #[error("mount of {device}: {source}")]
    Mount {
        /// The device.
        device: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Moving an API filesystem into the new root failed.
    #[error(
        "moving {from} to {to}: {source} (the root image must contain /dev, /proc, /sys and /run)"
    )]
    Move {
        /// The mount point in the initramfs.
        from: PathBuf,
        /// Where it should go.
        to: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root image has no init to run.
    #[error("the root image has no {path}")]
    NoInit {
        /// The init path inside the new root.
        path: PathBuf,
    },
    /// chdir, the move onto `/`, or chroot failed.
    #[error("{step} {path}: {source}")]
    Pivot {
        /// Which call.
        step: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// exec of the real init failed.
    #[error("exec {path}: {source}")]
    Exec {
        /// The init.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Mounts `device` read-only as `fstype` on `target`, creating the directory.
pub fn mount_root(device: &Path, target: &Path, fstype: &str) -> Result<(), SwitchError> {
    std::fs::create_dir_all(target).map_err(|source| SwitchError::Mkdir {
        path: target.to_owned(),
        source,
    })?;
    mount(
        Some(device),
        target,
        Some(fstype),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| SwitchError::Mount {
        device: device.to_owned(),
        source: e.into(),
    })
}

/// Moves each of `names` (relative, e.g. `dev`) that is a mount point under
/// `old_root` (listed in `mounted`) to the same name under `new_root`,
/// submounts included. Returns the mount points that were moved.
pub fn move_mounts(
    old_root: &Path,
    new_root: &Path,
    names: &[&str],
    mounted: &[PathBuf],
) -> Result<Vec<PathBuf>, SwitchError> {
    let mut moved = Vec::new();
    for name in names {
        let from = old_root.join(name);
        if !mounted.contains(&from) {
            continue;
        }
        let to = new_root.join(name);
        mount(
            Some(&from),
            &to,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| SwitchError::Move {
            from: from.clone(),
            to: to.clone(),
            source: e.into(),
        })?;
        moved.push(from);
    }
    Ok(moved)
}

/// What deleting the initramfs achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Files, links and directories removed.
    pub removed: usize,
    /// Entries that could not be removed (left in place).
    pub failed: usize,
}

/// Deletes everything below `dir` that lives on `dir`'s own filesystem:
/// entries on another device (mount points) and the paths in `keep` are
/// left alone and never entered; symbolic links are removed, not followed.
pub fn delete_tree(dir: &Path, keep: &[PathBuf]) -> DeleteReport {
    let mut report = DeleteReport::default();
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        report.failed += 1;
        return report;
    };
    delete_below(dir, meta.dev(), keep, &mut report);
    report
}

fn delete_below(dir: &Path, dev: u64, keep: &[PathBuf], report: &mut DeleteReport) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        report.failed += 1;
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if keep.contains(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            report.failed += 1;
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        let ok = if meta.is_dir() {
            delete_below(&path, dev, keep, report);
            std::fs::remove_dir(&path).is_ok()
        } else {
            std::fs::remove_file(&path).is_ok()
        };
        if ok {
            report.removed += 1;
        } else if !meta.is_dir() || std::fs::symlink_metadata(&path).is_ok() {
            report.failed += 1;
        }
    }
}

/// Makes `new_root` the root of this process: chdir into it, move its mount
/// onto `/`, chroot to it and chdir to the new `/`.
pub fn switch_into(new_root: &Path) -> Result<(), SwitchError> {
    let pivot = |step: &'static str, path: &Path, e: nix::Error| SwitchError::Pivot {
        step,
        path: path.to_owned(),
        source: e.into(),
    };
    nix::unistd::chdir(new_root).map_err(|e| pivot("chdir", new_root, e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| pivot("mount --move", new_root, e))?;
    nix::unistd::chroot(".").map_err(|e| pivot("chroot", new_root, e))?;
    nix::unistd::chdir("/").map_err(|e| pivot("chdir", Path::new("/"), e))?;
    Ok(())
}

/// Checks that `new_root` has an executable init at `init` (before the point
/// of no return). Symbolic links are resolved inside `new_root`, as they
/// will be once it is `/`.
pub fn check_init(new_root: &Path, init: &Path) -> Result<(), SwitchError> {
    let no_init = || SwitchError::NoInit {
        path: new_root.join(init.strip_prefix("/").unwrap_or(init)),
    };
    let mut inside = init.to_path_buf();
    for _ in 0..16 {
        let on_host = new_root.join(inside.strip_prefix("/").unwrap_or(&inside));
        let meta = std::fs::symlink_metadata(&on_host).map_err(|_| no_init())?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&on_host).map_err(|_| no_init())?;
            inside = if target.is_absolute() {
                target
            } else {
                inside.parent().unwrap_or(Path::new("/")).join(target)
            };
            continue;
        }
        return if meta.is_file() && meta.mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(no_init())
        };
    }
    Err(no_init())
}

/// Replaces this process with `init`; returns only on failure.
pub fn exec(init: &Path, argv: &[String], env: &[(String, String)]) -> SwitchError {
    let cstr = |s: &str| CString::new(s).unwrap_or_default();
    let path = cstr(&init.to_string_lossy());
    let argv: Vec<CString> = argv.iter().map(|a| cstr(a)).collect();
    let env: Vec<CString> = env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect();
    match nix::unistd::execve(&path, &argv, &env) {
        Err(e) => SwitchError::Exec {
            path: init.to_owned(),
            source: e.into(),
        },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deletes_files_dirs_and_links_but_not_kept_paths_or_link_targets() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::fs::write(r.join("a/b/c/f"), "1").unwrap();
        std::fs::write(r.join("init"), "2").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("link")).unwrap();
        std::fs::create_dir(r.join("newroot")).unwrap();
        std::fs::write(r.join("newroot/keepme"), "3").unwrap();
        let report = delete_tree(r, &[r.join("newroot")]);
        assert_eq!(
            report,
            DeleteReport {
                removed: 6,
                failed: 0
            }
        );
        let left: Vec<_> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["newroot"]);
        assert!(r.join("newroot/keepme").exists());
        assert!(
            outside.path().join("precious").exists(),
            "links are not followed"
        );
    }

    #[test]
    fn check_init_wants_an_executable() {
        let root = tempfile::tempdir().unwrap();
        let e = check_init(root.path(), Path::new(INIT)).unwrap_err();
        assert!(e.to_string().ends_with("/sbin/init"), "{e}");
        std::fs::create_dir_all(root.path().join("sbin")).unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        // An absolute link resolves inside the new root, not on the host.
        std::os::unix::fs::symlink("/bin/true", root.path().join("sbin/init")).unwrap();
        assert!(check_init(root.path(), Path::new(INIT)).is_err());
        std::fs::remove_file(root.path().join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/cairn-init", root.path().join("sbin/init")).unwrap();
        let bin = root.path().join("usr/bin/cairn-init");
        std::fs::write(&bin, "").unwrap();
        assert!(
            check_init(root.path(), Path::new(INIT)).is_err(),
            "not executable"
        );
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(check_init(root.path(), Path::new(INIT)).is_ok());
        std::fs::remove_file(root.path().join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("../usr/bin/cairn-init", root.path().join("sbin/init")).unwrap();
        assert!(
            check_init(root.path(), Path::new(INIT)).is_ok(),
            "relative link"
        );
    }

    #[test]
    fn move_skips_points_that_are_not_mounted() {
        let moved = move_mounts(Path::new("/"), Path::new("/nonexistent"), &["run"], &[]).unwrap();
        assert!(moved.is_empty());
    }
}

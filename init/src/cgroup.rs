//! One cgroup v2 group per service, under the cgroup cairn-init itself runs in.
//!
//! Works both as the machine's PID 1 (groups directly under the root) and in
//! a container or test (groups under whatever group we were started in).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::mounts::mounts_with_types;

/// Failure to manage a service's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// mkdir, open or write under the cgroup tree failed.
    #[error("{path}: {source}")]
    Io {
        /// The cgroup file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where service cgroups are created.
#[derive(Debug, Clone)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Finds the cgroup2 mount in `mountinfo` and our own group in
    /// `proc_self_cgroup` (the `0::/path` line). None when cgroup2 is absent.
    pub fn detect(mountinfo: &str, proc_self_cgroup: &str) -> Option<Self> {
        let mount = mounts_with_types(mountinfo)
            .into_iter()
            .find(|(t, _)| t == "cgroup2")
            .map(|(_, p)| p)?;
        let own = proc_self_cgroup
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        let own = own.trim_start_matches('/');
        let base = if own.is_empty() {
            mount
        } else {
            mount.join(own)
        };
        Some(Self { base })
    }

    /// Uses `base` directly (tests).
    pub fn at(base: PathBuf) -> Self {
        Self { base }
    }

    /// Directory of a service's group.
    pub fn path(&self, service: &str) -> PathBuf {
        self.base.join(format!("{service}.service"))
    }

    /// Creates the service's group if needed and opens its `cgroup.procs` for
    /// the child to write "0" into between fork and exec.
    pub fn prepare(&self, service: &str) -> Result<File, CgroupError> {
        let dir = self.path(service);
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(|source| CgroupError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let procs = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&procs)
            .map_err(|source| CgroupError::Io {
                path: procs,
                source,
            })
    }

    /// Kills every process left in the service's group (`cgroup.kill`).
    pub fn kill(&self, service: &str) -> Result<(), CgroupError> {
        let path = self.path(service).join("cgroup.kill");
        if !path.exists() {
            return Ok(());
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| CgroupError::Io {
                path: path.clone(),
                source,
            })?;
        f.write_all(b"1")
            .map_err(|source| CgroupError::Io { path, source })
    }

    /// Process ids currently in the service's group.
    pub fn pids(&self, service: &str) -> Vec<u32> {
        read_pids(&self.path(service).join("cgroup.procs"))
    }

    /// Removes the service's group if it is empty (best effort).
    pub fn remove(&self, service: &str) {
        let _ = std::fs::remove_dir(self.path(service));
    }
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_unified_and_hybrid_layouts() {
        let unified = "28 24 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let c = Cgroups::detect(unified, "0::/\n");
        assert_eq!(
            c.map(|c| c.path("web")),
            Some(PathBuf::from("/sys/fs/cgroup/web.service"))
        );
        let hybrid = "30 24 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let c = Cgroups::detect(hybrid, "1:cpu:/\n0::/ci/job7\n");
        assert_eq!(
            c.map(|c| c.path("web")),
            Some(PathBuf::from("/sys/fs/cgroup/unified/ci/job7/web.service"))
        );
        assert!(Cgroups::detect("22 1 254:0 / / ro - ext4 /dev/vda rw\n", "0::/\n").is_none());
    }

    #[test]
    fn prepare_creates_and_opens_procs_in_a_plain_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cg = Cgroups::at(dir.path().to_owned());
        // A plain directory stands in for cgroupfs: mkdir works, cgroup.procs does not exist.
        assert!(matches!(cg.prepare("a"), Err(CgroupError::Io { .. })));
        assert!(dir.path().join("a.service").is_dir());
        std::fs::write(dir.path().join("a.service/cgroup.procs"), "12\n34\n").expect("write");
        assert!(cg.prepare("a").is_ok());
        assert_eq!(cg.pids("a"), vec![12, 34]);
    }
}

//! Kernel settings the container runtime needs, written on every boot (the
//! box has no sysctl.d): forwarding for pod traffic and bridged pod traffic
//! through netfilter (portmap, kube-proxy). The `/proc/sys` root is passed in
//! so the logic is tested in a temporary directory.

use std::path::{Path, PathBuf};

/// The settings, as paths under `/proc/sys` and values.
pub const SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/bridge/bridge-nf-call-iptables", "1"),
    ("net/bridge/bridge-nf-call-ip6tables", "1"),
];

/// Why a setting could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot set {path}: {source} (is the module loaded? br_netfilter makes net/bridge)")]
pub struct PrepError {
    /// The file under /proc/sys.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The cgroup containerd's runc shims move to (`ShimCgroup` in containerd's
/// config), out of containerd's service cgroup: cairn-init empties that one
/// when containerd exits, which would kill every pod with it.
pub const SHIM_CGROUP: &str = "k8s-shims";

/// Why the cgroup setup failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// cgroup v2 is not mounted.
    #[error("cgroup v2 is not mounted on {0} (runc's cgroupfs driver needs it)")]
    NotMounted(PathBuf),
    /// The shim cgroup could not be made.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Checks cgroup v2 under `root` (`/sys/fs/cgroup`) and makes the shim cgroup.
pub fn cgroups(root: &Path) -> Result<PathBuf, CgroupError> {
    if !root.join("cgroup.controllers").exists() {
        return Err(CgroupError::NotMounted(root.to_owned()));
    }
    let path = root.join(SHIM_CGROUP);
    match std::fs::create_dir(&path) {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
        Err(source) => Err(CgroupError::Create { path, source }),
    }
}

/// Writes every setting under `proc_sys`; returns `key=value` lines.
pub fn apply(proc_sys: &Path) -> Result<Vec<String>, PrepError> {
    let mut done = Vec::new();
    for (key, value) in SYSCTLS {
        let path = proc_sys.join(key);
        std::fs::write(&path, value).map_err(|source| PrepError {
            path: path.clone(),
            source,
        })?;
        done.push(format!("{}={value}", key.replace('/', ".")));
    }
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_cgroup_is_made_once_and_cgroup1_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = cgroups(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cgroup v2 is not mounted"), "{e}");
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let p = cgroups(dir.path()).unwrap();
        assert_eq!(p, dir.path().join("k8s-shims"));
        assert!(p.is_dir());
        assert_eq!(cgroups(dir.path()).unwrap(), p);
    }

    #[test]
    fn writes_every_setting_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        for (k, _) in SYSCTLS {
            let p = dir.path().join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "0").unwrap();
        }
        let done = apply(dir.path()).unwrap();
        assert_eq!(done[0], "net.ipv4.ip_forward=1");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/bridge/bridge-nf-call-iptables")).unwrap(),
            "1"
        );
        std::fs::remove_dir_all(dir.path().join("net/bridge")).unwrap();
        let e = apply(dir.path()).unwrap_err().to_string();
        assert!(e.contains("net/bridge/bridge-nf-call-iptables"), "{e}");
    }
}

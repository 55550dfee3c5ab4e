//! ARP settings around an IPv4 virtual-MAC link (`use_vmac`), written through
//! `/proc/sys/net/ipv4/conf/<link>/` of the daemon's network namespace.
//!
//! With the VIP on the macvlan and the parent's own address on the parent, Linux's
//! defaults (any interface answers ARP for any local address; an ARP request names the
//! outgoing packet's source address) make hosts map the VIP to the parent's MAC: when the
//! new master answers a client it has not talked to, it asks for the client's MAC from
//! the parent with the VIP as sender address, and the client takes the parent's MAC for
//! the VIP — exactly what the virtual MAC is there to avoid. So:
//!
//! - parent `arp_announce = 2`: ARP requests from the parent name its own address;
//! - parent `arp_ignore = 1`: the parent answers ARP only for its own addresses (not for
//!   the VIP, which the macvlan answers with the virtual MAC);
//! - macvlan `arp_ignore = 1`: the macvlan does not answer for the parent's addresses.
//!
//! keepalived sets `arp_ignore` (and `arp_filter`) the same way. The parent's previous
//! values are put back by [`ArpConf::restore`] when the daemon stops.

use std::path::{Path, PathBuf};

/// A sysctl could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ArpConfError {
    /// The sysctl file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Sets the ARP sysctls for virtual-MAC links and remembers the parents' old values.
#[derive(Debug)]
pub struct ArpConf {
    root: PathBuf,
    saved: Vec<(PathBuf, String)>,
}

impl ArpConf {
    /// Working on `/proc/sys/net/ipv4/conf` (the current network namespace).
    pub fn system() -> Self {
        Self::with_root("/proc/sys/net/ipv4/conf")
    }

    /// Working on another directory laid out like `/proc/sys/net/ipv4/conf` (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        ArpConf {
            root: root.into(),
            saved: Vec::new(),
        }
    }

    /// Sets the sysctls for the macvlan `vmac` on `parent` (see the module doc); the
    /// parent's values before the first change are kept for [`ArpConf::restore`].
    pub fn prepare(&mut self, parent: &str, vmac: &str) -> Result<(), ArpConfError> {
        self.set_saved(parent, "arp_announce", "2")?;
        self.set_saved(parent, "arp_ignore", "1")?;
        write(&self.root.join(vmac).join("arp_ignore"), "1")
    }

    /// Sets the sysctls for parking VIPs on the loopback of `link`'s box: `link` answers ARP
    /// only for its own addresses (`arp_ignore = 1`) and names its own address in its ARP
    /// requests (`arp_announce = 2`), so a parked VIP is never announced from here. The old
    /// values are kept for [`ArpConf::restore`].
    pub fn prepare_parking(&mut self, link: &str) -> Result<(), ArpConfError> {
        self.set_saved(link, "arp_announce", "2")?;
        self.set_saved(link, "arp_ignore", "1")
    }

    /// Puts the parents' saved values back (failures are logged); idempotent.
    pub fn restore(&mut self) {
        for (path, old) in self.saved.drain(..).rev() {
            if let Err(e) = write(&path, &old) {
                tracing::warn!("cannot restore {}: {e}", e.path.display());
            }
        }
    }

    fn set_saved(&mut self, link: &str, key: &str, value: &str) -> Result<(), ArpConfError> {
        let path = self.root.join(link).join(key);
        let old = std::fs::read_to_string(&path)
            .map_err(|source| ArpConfError {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_owned();
        if old == value {
            return Ok(());
        }
        write(&path, value)?;
        tracing::info!("set {} = {value} (was {old})", path.display());
        if !self.saved.iter().any(|(p, _)| *p == path) {
            self.saved.push((path, old));
        }
        Ok(())
    }
}

fn write(path: &Path, value: &str) -> Result<(), ArpConfError> {
    std::fs::write(path, value).map_err(|source| ArpConfError {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(links: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for l in links {
            std::fs::create_dir_all(dir.path().join(l)).unwrap();
            for key in ["arp_announce", "arp_ignore"] {
                std::fs::write(dir.path().join(l).join(key), "0\n").unwrap();
            }
        }
        dir
    }

    fn read(dir: &Path, link: &str, key: &str) -> String {
        std::fs::read_to_string(dir.join(link).join(key))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn prepare_sets_parent_and_vmac_and_restore_puts_the_parent_back() {
        let dir = fake_root(&["eth0", "vrrp.51", "vrrp.52"]);
        let mut conf = ArpConf::with_root(dir.path());
        conf.prepare("eth0", "vrrp.51").unwrap();
        conf.prepare("eth0", "vrrp.52").unwrap();
        assert_eq!(read(dir.path(), "eth0", "arp_announce"), "2");
        assert_eq!(read(dir.path(), "eth0", "arp_ignore"), "1");
        assert_eq!(read(dir.path(), "vrrp.51", "arp_ignore"), "1");
        assert_eq!(read(dir.path(), "vrrp.52", "arp_ignore"), "1");
        conf.restore();
        // The values from before the first change, not the ones set for vrrp.51.
        assert_eq!(read(dir.path(), "eth0", "arp_announce"), "0");
        assert_eq!(read(dir.path(), "eth0", "arp_ignore"), "0");
        conf.restore();
        assert_eq!(read(dir.path(), "eth0", "arp_ignore"), "0");
    }

    #[test]
    fn a_missing_link_is_an_error_naming_the_file() {
        let dir = fake_root(&["eth0"]);
        let mut conf = ArpConf::with_root(dir.path());
        let e = conf.prepare("eth9", "vrrp.51").unwrap_err();
        assert!(e.path.ends_with("eth9/arp_announce"), "{e}");
        let e = conf.prepare("eth0", "vrrp.51").unwrap_err();
        assert!(e.path.ends_with("vrrp.51/arp_ignore"), "{e}");
    }
}

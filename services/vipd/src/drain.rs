//! The new master's half of a lossless planned move: while an instance drains, segments for
//! its VIPs that belong to connections the old holder accepted go to the old holder (see
//! `cairn_nft`). The tables are installed at startup with no drain, so conntrack already
//! knows this box's own connections when a drain begins; they are removed when the daemon
//! stops.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use cairn_netlink::IpNet;
use cairn_nft::{Drain, DrainRuleset, Family, Nft};

/// Conntrack's timeout for a closed connection (both sides sent FIN), per network namespace.
pub const TIME_WAIT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait";
/// What [`TIME_WAIT_SYSCTL`] is lowered to, in seconds. Nothing needs a closed connection's
/// entry (nothing is NATed; a late segment of it is harmless either way), and at the
/// kernel's 120 s a VIP taking 100 connections a second keeps 12,000 entries, near the
/// table's limit on a small box (a full table drops new connections).
pub const TIME_WAIT_S: u64 = 10;

/// Lowers `path` (conntrack's TIME_WAIT timeout) to [`TIME_WAIT_S`] if it is higher; a
/// failure is only logged.
pub fn shorten_time_wait(path: &Path) {
    let current = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match current {
        Some(old) if old > TIME_WAIT_S => match std::fs::write(path, TIME_WAIT_S.to_string()) {
            Ok(()) => tracing::info!("set {} = {TIME_WAIT_S} (was {old})", path.display()),
            Err(e) => tracing::warn!("cannot set {}: {e}", path.display()),
        },
        Some(_) => {}
        None => tracing::warn!("cannot read {}", path.display()),
    }
}

/// One instance's active drain.
#[derive(Debug, Clone)]
struct Active {
    ifindex: u32,
    to: IpAddr,
    vips: Vec<IpAddr>,
}

/// The drain rules of every instance, kept in the kernel as one table per family.
pub struct Drains {
    nft: Option<Nft>,
    families: Vec<Family>,
    /// Every VIP that may be drained: conntrack follows their connections only.
    vips: Vec<IpAddr>,
    active: BTreeMap<String, Active>,
}

impl Drains {
    /// Installs the empty tables for the families of `vips` (all instances' VIPs). Failure
    /// (no nf_tables in the kernel) leaves draining off, with a warning: planned moves then
    /// reset the connections in flight, as in keepalived.
    pub fn install(vips: &[IpAddr]) -> Self {
        let mut families = Vec::new();
        if vips.iter().any(IpAddr::is_ipv4) {
            families.push(Family::V4);
        }
        if vips.iter().any(IpAddr::is_ipv6) {
            families.push(Family::V6);
        }
        let mut drains = Drains {
            nft: None,
            families,
            vips: vips.to_vec(),
            active: BTreeMap::new(),
        };
        if drains.families.is_empty() {
            return drains;
        }
        match Nft::open() {
            Ok(nft) => drains.nft = Some(nft),
            Err(e) => {
                tracing::warn!("draining off: {e}");
                return drains;
            }
        }
        if let Err(e) = drains.apply() {
            tracing::warn!("draining off: {e}");
            drains.nft = None;
            return drains;
        }
        shorten_time_wait(Path::new(TIME_WAIT_SYSCTL));
        drains
    }

    /// Starts (or retargets) instance `name`'s drain.
    pub fn start(
        &mut self,
        name: &str,
        ifindex: u32,
        to: IpAddr,
        vips: &[IpNet],
    ) -> Result<(), String> {
        if self.nft.is_none() {
            return Err("nf_tables is not available (see the startup warning)".into());
        }
        self.active.insert(
            name.to_owned(),
            Active {
                ifindex,
                to,
                vips: vips.iter().map(|v| v.addr()).collect(),
            },
        );
        self.apply()
    }

    /// Ends instance `name`'s drain.
    pub fn stop(&mut self, name: &str) -> Result<(), String> {
        if self.active.remove(name).is_none() || self.nft.is_none() {
            return Ok(());
        }
        self.apply()
    }

    /// Removes the tables (daemon exit); failures are logged.
    pub fn remove(&mut self) {
        self.active.clear();
        if let Some(nft) = self.nft.as_mut() {
            for &family in &self.families {
                if let Err(e) = nft.remove(family) {
                    tracing::warn!("cannot remove the drain table: {e}");
                }
            }
        }
    }

    /// Puts the kernel's tables in line with `active`.
    fn apply(&mut self) -> Result<(), String> {
        let Some(nft) = self.nft.as_mut() else {
            return Ok(());
        };
        for &family in &self.families {
            let drains = self
                .active
                .values()
                .flat_map(|a| {
                    a.vips
                        .iter()
                        .filter(|vip| vip.is_ipv6() == (family == Family::V6))
                        .map(|&vip| Drain {
                            vip,
                            to: a.to,
                            ifindex: a.ifindex,
                        })
                })
                .collect();
            let tracked = self
                .vips
                .iter()
                .copied()
                .filter(|vip| vip.is_ipv6() == (family == Family::V6))
                .collect();
            nft.apply(&DrainRuleset {
                family,
                drains,
                tracked,
            })
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_is_lowered_never_raised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("time_wait");
        std::fs::write(&path, "120\n").expect("write");
        shorten_time_wait(&path);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "10");
        std::fs::write(&path, "5\n").expect("write");
        shorten_time_wait(&path);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "5\n");
    }
}

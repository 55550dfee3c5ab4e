//! VRRP daemons in a lab node: one instance description rendered as a keepalived or a
//! cairn-vipd configuration, started as a lab process, killed hard (node death) or asked
//! to stop (graceful resignation).

use std::fmt::Write as _;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::process::Spawn;
use crate::{Lab, LabError};

/// Which implementation runs on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// `keepalived` from `PATH` (Debian's 2.2.7 in CI).
    Keepalived,
    /// cairn-vipd at this path.
    CairnVipd(PathBuf),
}

impl Daemon {
    /// Short label for logs and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Daemon::Keepalived => "keepalived",
            Daemon::CairnVipd(_) => "cairn-vipd",
        }
    }
}

/// One VRRP instance as both daemons understand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance name.
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface (the node's `eth0`).
    pub interface: String,
    /// Priority 1..=254 (255 = address owner).
    pub priority: u8,
    /// Advertisement interval in milliseconds (a multiple of 10).
    pub advert_interval_ms: u32,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// Virtual addresses with prefix length, e.g. `192.0.2.100/24`.
    pub vips: Vec<String>,
    /// Unicast peers instead of multicast (empty: multicast).
    pub unicast_peers: Vec<String>,
    /// VIPs on a macvlan with the virtual router MAC (`use_vmac` in both daemons).
    pub use_vmac: bool,
    /// Extra lines for keepalived's `vrrp_instance` block (e.g. `unicast_src_ip ...`,
    /// `unicast_ttl 255`); cairn-vipd ignores them.
    pub keepalived_extra: Vec<String>,
    /// Extra `key = value` lines for cairn-vipd's `[[instance]]` (e.g. `drain_ms = 0`);
    /// keepalived ignores them.
    pub vipd_extra: Vec<String>,
}

impl Instance {
    /// Instance `web`, VRID 51 on `eth0`, 100 ms adverts, preempting, one VIP.
    pub fn web(priority: u8, vip: &str) -> Self {
        Instance {
            name: "web".into(),
            vrid: 51,
            interface: "eth0".into(),
            priority,
            advert_interval_ms: 100,
            preempt: true,
            vips: vec![vip.to_owned()],
            unicast_peers: Vec::new(),
            use_vmac: false,
            keepalived_extra: Vec::new(),
            vipd_extra: Vec::new(),
        }
    }

    /// keepalived.conf text. VRRPv3, not strict (strict mode would add firewall rules
    /// dropping traffic to the VIP, breaking the HTTP probe, and refuses unicast), always
    /// starting as BACKUP (a node must win the election, and `nopreempt` requires it).
    pub fn keepalived_conf(&self, router_id: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "global_defs {{");
        let _ = writeln!(s, "    router_id {router_id}");
        let _ = writeln!(s, "    vrrp_version 3");
        let _ = writeln!(s, "}}");
        let _ = writeln!(s, "vrrp_instance {} {{", self.name);
        let _ = writeln!(s, "    state BACKUP");
        let _ = writeln!(s, "    interface {}", self.interface);
        let _ = writeln!(s, "    virtual_router_id {}", self.vrid);
        let _ = writeln!(s, "    priority {}", self.priority);
        let secs = f64::from(self.advert_interval_ms) / 1000.0;
        let _ = writeln!(s, "    advert_int {secs}");
        if !self.preempt {
            let _ = writeln!(s, "    nopreempt");
        }
        if self.use_vmac {
            let _ = writeln!(s, "    use_vmac");
        }
        if !self.unicast_peers.is_empty() {
            let _ = writeln!(s, "    unicast_peer {{");
            for p in &self.unicast_peers {
                let _ = writeln!(s, "        {p}");
            }
            let _ = writeln!(s, "    }}");
        }
        for line in &self.keepalived_extra {
            let _ = writeln!(s, "    {line}");
        }
        let _ = writeln!(s, "    virtual_ipaddress {{");
        for v in &self.vips {
            if self.use_vmac {
                // keepalived puts VIPs without `dev` on the virtual MAC link.
                let _ = writeln!(s, "        {v}");
            } else {
                let _ = writeln!(s, "        {v} dev {}", self.interface);
            }
        }
        let _ = writeln!(s, "    }}");
        let _ = writeln!(s, "}}");
        s
    }

    /// cairn-vipd TOML text.
    pub fn vipd_toml(&self) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::new();
        let _ = writeln!(s, "[[instance]]");
        let _ = writeln!(s, "name = {:?}", self.name);
        let _ = writeln!(s, "vrid = {}", self.vrid);
        let _ = writeln!(s, "interface = {:?}", self.interface);
        let _ = writeln!(s, "priority = {}", self.priority);
        let _ = writeln!(s, "advert_interval_ms = {}", self.advert_interval_ms);
        let _ = writeln!(s, "preempt = {}", self.preempt);
        let _ = writeln!(s, "vips = [{}]", list(&self.vips));
        if !self.unicast_peers.is_empty() {
            let _ = writeln!(s, "unicast_peers = [{}]", list(&self.unicast_peers));
        }
        if self.use_vmac {
            let _ = writeln!(s, "use_vmac = true");
        }
        for line in &self.vipd_extra {
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

/// The lab process name of the VRRP daemon on `node`.
pub fn process_name(node: &str) -> String {
    format!("vrrp-{node}")
}

/// Where cairn-vipd on `node` serves its control API (one socket per node, in the lab
/// directory, so daemons of several nodes never share the system default).
pub fn control_socket(lab: &Lab, node: &str) -> PathBuf {
    lab.dir().join(format!("{node}.vip.sock"))
}

/// Writes the configuration for `daemon` into the lab directory and starts it on `node`
/// (process [`process_name`]). cairn-vipd gets `NOTIFY_SOCKET` only if `notify` is given.
pub fn start(
    lab: &mut Lab,
    node: &str,
    daemon: &Daemon,
    instance: &Instance,
    extra_env: &[(&str, &str)],
) -> Result<String, LabError> {
    let name = process_name(node);
    let dir = lab.dir().to_owned();
    let write = |file: PathBuf, text: String| {
        std::fs::write(&file, text).map_err(|source| LabError::Dir {
            lab: lab.name().to_owned(),
            path: file,
            source,
        })
    };
    let mut spec = match daemon {
        Daemon::Keepalived => {
            let conf = dir.join(format!("{node}.keepalived.conf"));
            write(conf.clone(), instance.keepalived_conf(node))?;
            let p = |s: &str| dir.join(format!("{node}.{s}.pid")).display().to_string();
            // A daemon killed with SIGKILL leaves its pid files; keepalived refuses to
            // start while the pid in them still exists (an unreaped zombie counts).
            for kind in ["main", "vrrp", "checkers"] {
                let _ = std::fs::remove_file(p(kind));
            }
            let conf = conf.display().to_string();
            // -n no fork, -l log to the console (our log file), -D detail, -G no syslog,
            // -P VRRP only, -R do not respawn a killed child (a kill must stay a death),
            // own pid files so several run on one host.
            Spawn::new(
                "keepalived",
                &[
                    "-n",
                    "-l",
                    "-D",
                    "-G",
                    "-P",
                    "-R",
                    "-f",
                    &conf,
                    "-p",
                    &p("main"),
                    "-r",
                    &p("vrrp"),
                    "-c",
                    &p("checkers"),
                ],
            )
        }
        Daemon::CairnVipd(bin) => {
            let conf = dir.join(format!("{node}.vipd.toml"));
            write(conf.clone(), instance.vipd_toml())?;
            let control = control_socket(lab, node).display().to_string();
            Spawn::new(
                bin,
                &[
                    "--config",
                    &conf.display().to_string(),
                    "--control",
                    &control,
                ],
            )
        }
    };
    for (k, v) in extra_env {
        spec = spec.env(k, v);
    }
    lab.spawn(node, &name, &spec)?;
    Ok(name)
}

/// Node death: SIGKILL to the daemon's whole process group (keepalived's VRRP child
/// included, so nobody gets to send a priority-0 advert).
pub fn kill9(lab: &mut Lab, node: &str) -> Result<(), LabError> {
    let lab_name = lab.name().to_owned();
    let p = lab.process_mut(&process_name(node))?;
    p.kill_and_wait()
        .map(drop)
        .map_err(|source| LabError::Process {
            lab: lab_name,
            source,
        })
}

/// Graceful stop: SIGTERM to the daemon (it resigns with priority 0).
pub fn terminate(lab: &Lab, node: &str) -> Result<(), LabError> {
    lab.process(&process_name(node))?
        .signal(Signal::SIGTERM)
        .map_err(|source| LabError::Process {
            lab: lab.name().to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_conf_has_version_3_and_centisecond_interval() {
        let mut i = Instance::web(150, "192.0.2.100/24");
        i.preempt = false;
        let c = i.keepalived_conf("a");
        assert!(c.contains("vrrp_version 3"));
        assert!(c.contains("advert_int 0.1\n"));
        assert!(c.contains("nopreempt"));
        assert!(c.contains("192.0.2.100/24 dev eth0"));
        assert!(!c.contains("vrrp_strict"));
    }

    #[test]
    fn vipd_toml_matches_the_documented_format() {
        let mut i = Instance::web(150, "192.0.2.100/24");
        i.unicast_peers = vec!["192.0.2.12".into()];
        let t = i.vipd_toml();
        assert_eq!(
            t,
            "[[instance]]\nname = \"web\"\nvrid = 51\ninterface = \"eth0\"\npriority = 150\n\
             advert_interval_ms = 100\npreempt = true\nvips = [\"192.0.2.100/24\"]\n\
             unicast_peers = [\"192.0.2.12\"]\n"
        );
        i.use_vmac = true;
        i.keepalived_extra = vec!["unicast_ttl 255".into()];
        assert!(i.vipd_toml().ends_with("use_vmac = true\n"));
        assert!(!i.vipd_toml().contains("ttl"));
        assert!(i.keepalived_conf("a").contains("    unicast_ttl 255\n"));
        let c = i.keepalived_conf("a");
        assert!(c.contains("    use_vmac\n"));
        assert!(c.contains("        192.0.2.100/24\n"), "{c}");
    }
}

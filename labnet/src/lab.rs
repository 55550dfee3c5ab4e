//! A lab: a switch namespace with a bridge, node namespaces wired to it by veth pairs,
//! tap devices for VMs, and the processes started in them. It owns all of it and removes it
//! on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::cmd::{self, CmdError};
use crate::names::{self, BRIDGE, NODE_IFACE, NameError, SWITCH_SUFFIX};
use crate::process::{LabProcess, ProcessError, Spawn};

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A refused name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A command (`ip`, `sysctl`) failed.
    #[error("lab {lab}: {source}")]
    Cmd {
        /// The lab name.
        lab: String,
        /// The failed command.
        source: CmdError,
    },
    /// A process operation failed.
    #[error("lab {lab}: {source}")]
    Process {
        /// The lab name.
        lab: String,
        /// What failed.
        source: ProcessError,
    },
    /// The lab directory could not be created.
    #[error("lab {lab}: create {path}: {source}")]
    Dir {
        /// The lab name.
        lab: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A node or tap of that name exists already.
    #[error("lab {lab}: {what} {name:?} exists already")]
    Exists {
        /// The lab name.
        lab: String,
        /// Node or tap.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No node of that name.
    #[error("lab {lab}: no node {name:?}")]
    NoNode {
        /// The lab name.
        lab: String,
        /// The name asked for.
        name: String,
    },
}

/// Must run as root: panics with a clear message otherwise (for privileged tests).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: must run as root (it creates network namespaces, veth pairs and a bridge); \
         run `cargo xtask test` as root"
    );
    assert!(
        Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists(),
        "privileged test: `ip` (iproute2) is missing; run `cargo xtask setup`"
    );
}

/// A network lab. Namespaces: `<lab>-sw` (bridge `br0`, ports `v-<node>`, taps) and one
/// `<lab>-<node>` per node (link `eth0`). Dropping it kills its processes and deletes its
/// namespaces (unless [`Lab::keep`] was called).
#[derive(Debug)]
pub struct Lab {
    name: String,
    dir: PathBuf,
    nodes: Vec<String>,
    taps: Vec<String>,
    processes: BTreeMap<String, LabProcess>,
    switch_created: bool,
    keep: bool,
}

impl Lab {
    /// A new lab named `<tag><pid>x<seq>` (unique per process and call), with its switch.
    pub fn new(tag: &str) -> Result<Self, LabError> {
        Self::named(&names::unique_lab_name(tag, std::process::id()))
    }

    /// A new lab with exactly this name (for a CLI that finds it again later).
    pub fn named(name: &str) -> Result<Self, LabError> {
        names::validate("lab", name, 32)?;
        let dir = std::env::temp_dir().join(format!("cairn-lab-{name}"));
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Dir {
            lab: name.to_owned(),
            path: dir.clone(),
            source,
        })?;
        let mut lab = Lab {
            name: name.to_owned(),
            dir,
            nodes: Vec::new(),
            taps: Vec::new(),
            processes: BTreeMap::new(),
            switch_created: false,
            keep: false,
        };
        let sw = lab.switch_netns();
        lab.cmd(cmd::ip(&["netns", "add", &sw]))?;
        lab.switch_created = true;
        lab.cmd(cmd::ip_in(&sw, &["link", "set", "lo", "up"]))?;
        // STP off and no forward delay: ports forward at once; no multicast snooping, so
        // VRRP (224.0.0.18, ff02::12) is flooded to every port whatever IGMP/MLD said.
        lab.cmd(cmd::ip_in(
            &sw,
            &[
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ],
        ))?;
        lab.cmd(cmd::ip_in(&sw, &["link", "set", BRIDGE, "up"]))?;
        tracing::info!(lab = %lab.name, "lab created");
        Ok(lab)
    }

    /// Deletes every namespace of a lab called `name` left behind (for example by a
    /// process that was killed); returns the namespaces removed.
    pub fn remove_leftovers(name: &str) -> Result<Vec<String>, LabError> {
        let prefix = format!("{name}-");
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir("/run/netns") {
            Ok(e) => e,
            Err(_) => return Ok(removed),
        };
        for entry in entries.flatten() {
            let ns = entry.file_name().to_string_lossy().into_owned();
            if ns.starts_with(&prefix) {
                cmd::ip(&["netns", "del", &ns]).map_err(|source| LabError::Cmd {
                    lab: name.to_owned(),
                    source,
                })?;
                removed.push(ns);
            }
        }
        Ok(removed)
    }

    fn cmd<T>(&self, r: Result<T, CmdError>) -> Result<T, LabError> {
        r.map_err(|source| LabError::Cmd {
            lab: self.name.clone(),
            source,
        })
    }

    /// The lab's name (prefix of all its namespaces).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Directory for logs and config files of this lab.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The switch namespace (holds the bridge, the ports and the taps).
    pub fn switch_netns(&self) -> String {
        names::netns(&self.name, SWITCH_SUFFIX)
    }

    /// The namespace of `node` (`sw` gives the switch namespace).
    pub fn netns(&self, node: &str) -> String {
        names::netns(&self.name, node)
    }

    /// The nodes added so far.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn check_node(&self, node: &str) -> Result<(), LabError> {
        if node == SWITCH_SUFFIX || self.nodes.iter().any(|n| n == node) {
            Ok(())
        } else {
            Err(LabError::NoNode {
                lab: self.name.clone(),
                name: node.to_owned(),
            })
        }
    }

    /// Adds node `name`: its namespace with `lo` up and `eth0` (a veth whose peer
    /// `v-<name>` is on the bridge) up with `addrs` (`192.0.2.11/24`, `2001:db8::11/64`).
    /// IPv6 duplicate address detection is off on `eth0` so addresses work at once.
    pub fn add_node(&mut self, name: &str, addrs: &[&str]) -> Result<(), LabError> {
        names::validate_node(name)?;
        if self.nodes.iter().any(|n| n == name) {
            return Err(LabError::Exists {
                lab: self.name.clone(),
                what: "node",
                name: name.to_owned(),
            });
        }
        let ns = self.netns(name);
        let sw = self.switch_netns();
        let port = names::port(name);
        self.cmd(cmd::ip(&["netns", "add", &ns]))?;
        self.nodes.push(name.to_owned());
        self.cmd(cmd::ip_in(&ns, &["link", "set", "lo", "up"]))?;
        self.cmd(cmd::ip_in(
            &sw,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", NODE_IFACE, "netns", &ns,
            ],
        ))?;
        self.cmd(cmd::ip_in(
            &sw,
            &["link", "set", &port, "master", BRIDGE, "up"],
        ))?;
        self.cmd(cmd::sysctl_in(
            &ns,
            &format!("net.ipv6.conf.{NODE_IFACE}.accept_dad"),
            "0",
        ))?;
        for addr in addrs {
            self.cmd(cmd::ip_in(&ns, &["addr", "add", addr, "dev", NODE_IFACE]))?;
        }
        self.cmd(cmd::ip_in(&ns, &["link", "set", NODE_IFACE, "up"]))?;
        Ok(())
    }

    /// Adds a persistent tap device `t-<name>` on the bridge, for a QEMU VM started in the
    /// switch namespace (`-netdev tap,ifname=t-<name>,script=no,downscript=no`); returns
    /// the device name.
    pub fn add_tap(&mut self, name: &str) -> Result<String, LabError> {
        names::validate("tap", name, names::NODE_NAME_MAX)?;
        let dev = format!("t-{name}");
        if self.taps.contains(&dev) {
            return Err(LabError::Exists {
                lab: self.name.clone(),
                what: "tap",
                name: name.to_owned(),
            });
        }
        let sw = self.switch_netns();
        self.cmd(cmd::ip_in(
            &sw,
            &["tuntap", "add", "dev", &dev, "mode", "tap"],
        ))?;
        self.taps.push(dev.clone());
        self.cmd(cmd::ip_in(
            &sw,
            &["link", "set", &dev, "master", BRIDGE, "up"],
        ))?;
        Ok(dev)
    }

    fn port_of(&self, node: &str) -> Result<String, LabError> {
        if self.nodes.iter().any(|n| n == node) {
            Ok(names::port(node))
        } else if self.taps.contains(&format!("t-{node}")) {
            Ok(format!("t-{node}"))
        } else {
            Err(LabError::NoNode {
                lab: self.name.clone(),
                name: node.to_owned(),
            })
        }
    }

    /// Pulls the cable: sets the bridge-side link of `node` (or tap) down, so the node's
    /// `eth0` loses carrier.
    pub fn cut(&self, node: &str) -> Result<(), LabError> {
        let port = self.port_of(node)?;
        self.cmd(cmd::ip_in(
            &self.switch_netns(),
            &["link", "set", &port, "down"],
        ))
        .map(drop)
    }

    /// Plugs the cable back in (the port comes back up and forwards at once: no STP).
    pub fn heal(&self, node: &str) -> Result<(), LabError> {
        let port = self.port_of(node)?;
        self.cmd(cmd::ip_in(
            &self.switch_netns(),
            &["link", "set", &port, "up"],
        ))
        .map(drop)
    }

    /// Partitions `node` at the switch: its port leaves the bridge but stays up, so the
    /// node keeps carrier and sees nothing (a failed switch or uplink, not a cable).
    pub fn isolate(&self, node: &str) -> Result<(), LabError> {
        let port = self.port_of(node)?;
        self.cmd(cmd::ip_in(
            &self.switch_netns(),
            &["link", "set", &port, "nomaster"],
        ))
        .map(drop)
    }

    /// Ends [`Lab::isolate`]: the port rejoins the bridge.
    pub fn rejoin(&self, node: &str) -> Result<(), LabError> {
        let port = self.port_of(node)?;
        self.cmd(cmd::ip_in(
            &self.switch_netns(),
            &["link", "set", &port, "master", BRIDGE],
        ))
        .map(drop)
    }

    /// Runs a short command inside `node`'s namespace and returns its output if it exits 0.
    pub fn exec(&self, node: &str, args: &[&str]) -> Result<Output, LabError> {
        self.check_node(node)?;
        let ns = self.netns(node);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        self.cmd(cmd::run("ip", &all))
    }

    /// Runs `ip <args>` inside `node`'s namespace.
    pub fn ip(&self, node: &str, args: &[&str]) -> Result<Output, LabError> {
        self.check_node(node)?;
        self.cmd(cmd::ip_in(&self.netns(node), args))
    }

    /// Starts `spec` inside `node`'s namespace as process `name`, logging to
    /// `<dir>/<name>.log`. A process of the same name that has exited is replaced.
    pub fn spawn(&mut self, node: &str, name: &str, spec: &Spawn) -> Result<&LabProcess, LabError> {
        self.check_node(node)?;
        if let Some(old) = self.processes.get_mut(name) {
            let running = old
                .try_exit()
                .map_err(|source| LabError::Process {
                    lab: self.name.clone(),
                    source,
                })?
                .is_none();
            if running {
                return Err(LabError::Exists {
                    lab: self.name.clone(),
                    what: "running process",
                    name: name.to_owned(),
                });
            }
        }
        let log = self.dir.join(format!("{name}.log"));
        let p = LabProcess::start(name, &self.netns(node), spec, &log).map_err(|source| {
            LabError::Process {
                lab: self.name.clone(),
                source,
            }
        })?;
        self.processes.insert(name.to_owned(), p);
        self.processes.get(name).ok_or_else(|| LabError::Process {
            lab: self.name.clone(),
            source: ProcessError::Unknown(name.to_owned()),
        })
    }

    /// The process called `name`.
    pub fn process(&self, name: &str) -> Result<&LabProcess, LabError> {
        self.processes.get(name).ok_or_else(|| LabError::Process {
            lab: self.name.clone(),
            source: ProcessError::Unknown(name.to_owned()),
        })
    }

    /// The process called `name`, mutable (to wait for it).
    pub fn process_mut(&mut self, name: &str) -> Result<&mut LabProcess, LabError> {
        let lab = self.name.clone();
        self.processes.get_mut(name).ok_or(LabError::Process {
            lab,
            source: ProcessError::Unknown(name.to_owned()),
        })
    }

    /// Keeps everything after drop (namespaces, processes, logs), for a CLI or debugging.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Kills every process (SIGKILL to each process group, then reaps), deletes taps and
    /// namespaces. Idempotent; errors are logged, the rest is still removed.
    pub fn destroy(&mut self) {
        for (name, p) in &mut self.processes {
            if let Err(e) = p.kill_and_wait() {
                tracing::warn!(lab = %self.name, process = %name, error = %e, "kill");
            }
        }
        self.processes.clear();
        let sw = self.switch_netns();
        for tap in std::mem::take(&mut self.taps) {
            if let Err(e) = cmd::ip_in(&sw, &["tuntap", "del", "dev", &tap, "mode", "tap"]) {
                tracing::warn!(lab = %self.name, %tap, error = %e, "delete tap");
            }
        }
        for node in std::mem::take(&mut self.nodes) {
            let ns = self.netns(&node);
            if let Err(e) = cmd::ip(&["netns", "del", &ns]) {
                tracing::warn!(lab = %self.name, %ns, error = %e, "delete namespace");
            }
        }
        if std::mem::take(&mut self.switch_created) {
            if let Err(e) = cmd::ip(&["netns", "del", &sw]) {
                tracing::warn!(lab = %self.name, ns = %sw, error = %e, "delete namespace");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.destroy();
        if std::thread::panicking() {
            eprintln!("lab {}: logs kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

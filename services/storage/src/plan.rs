//! What to ask glusterd next, given the site and what glusterd reports.
//! Free of I/O: the bootstrap loop gathers `peer status` and `volume info`,
//! calls [`plan`], runs the actions, and calls it again.
//!
//! One node leads: the first storage node of the site. Only it probes peers
//! (a node that is already in a pool refuses probes from another pool, so two
//! probing nodes could split the site in two) and changes volumes (two nodes
//! changing one volume at once fight over Gluster's cluster lock). The volume
//! needs every brick node anyway, the leader included, so waiting for it costs
//! nothing.

use cairn_site::{Node, Role, Site, Volume, VolumeType};
use serde::Serialize;

use crate::xml::{Peer, VolumeInfo};

/// One gluster CLI call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Action {
    /// `peer probe <address>`.
    Probe {
        /// The node.
        node: String,
        /// Its address.
        address: String,
    },
    /// `volume create ...`.
    Create {
        /// Volume name.
        volume: String,
    },
    /// `volume set <volume> <key> <value>`.
    Set {
        /// Volume name.
        volume: String,
        /// Option.
        key: String,
        /// Value.
        value: String,
    },
    /// `volume start <volume>`.
    Start {
        /// Volume name.
        volume: String,
    },
}

impl Action {
    /// The gluster CLI arguments (after the global `--mode=script --xml`).
    pub fn args(&self, site: &Site) -> Vec<String> {
        let s = |x: &str| x.to_owned();
        match self {
            Action::Probe { address, .. } => vec![s("peer"), s("probe"), address.clone()],
            Action::Create { volume } => site
                .storage
                .as_ref()
                .and_then(|st| st.volumes.iter().find(|v| &v.name == volume))
                .map(|v| create_args(site, v))
                .unwrap_or_default(),
            Action::Set { volume, key, value } => {
                vec![
                    s("volume"),
                    s("set"),
                    volume.clone(),
                    key.clone(),
                    value.clone(),
                ]
            }
            Action::Start { volume } => vec![s("volume"), s("start"), volume.clone()],
        }
    }
}

/// The outcome of one planning round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Calls to make now, in order.
    pub actions: Vec<Action>,
    /// What the site still waits for (a node not in the pool yet, ...).
    pub waiting: Vec<String>,
    /// Things that differ from the site and are left alone on purpose.
    pub warnings: Vec<String>,
    /// Whether this node leads.
    pub leader: bool,
}

impl Plan {
    /// Every volume exists, carries its options and is started; every node
    /// is in the pool.
    pub fn converged(&self) -> bool {
        self.actions.is_empty() && self.waiting.is_empty()
    }

    /// One line for the service status.
    pub fn summary(&self) -> String {
        let role = if self.leader { "leader" } else { "member" };
        if self.converged() {
            let mut s = format!("{role}: volumes started, pool complete");
            if !self.warnings.is_empty() {
                s.push_str(&format!(" ({})", self.warnings.join("; ")));
            }
            return s;
        }
        let mut parts = Vec::new();
        if !self.actions.is_empty() {
            parts.push(format!("{} step(s) to run", self.actions.len()));
        }
        parts.extend(self.waiting.iter().cloned());
        format!("{role}: {}", parts.join("; "))
    }
}

/// The address peers and bricks use for a node: its first IPv4 address,
/// else its first address.
pub fn node_address(n: &Node) -> Option<String> {
    n.addresses
        .iter()
        .find(|a| a.addr.is_ipv4())
        .or_else(|| n.addresses.first())
        .map(|a| a.addr.to_string())
}

/// The storage nodes booted as boxes, in site order; the first leads.
pub fn storage_nodes(site: &Site) -> Vec<&Node> {
    site.boxes_with_role(Role::Storage).collect()
}

/// The peer entry for a node, matched by any of its addresses or names.
pub fn peer_of<'a>(site: &Site, node: &Node, peers: &'a [Peer]) -> Option<&'a Peer> {
    let mut names: Vec<String> = node.addresses.iter().map(|a| a.addr.to_string()).collect();
    names.push(node.name.clone());
    if let Some(d) = &site.cluster.domain {
        names.push(format!("{}.{d}", node.name));
    }
    peers
        .iter()
        .find(|p| p.hostnames.iter().any(|h| names.contains(h)))
}

/// `volume create` arguments for a volume of the site.
pub fn create_args(site: &Site, v: &Volume) -> Vec<String> {
    let mut a = vec!["volume".to_owned(), "create".to_owned(), v.name.clone()];
    match v.kind {
        VolumeType::Replica => {
            a.push("replica".into());
            a.push(v.set_size().to_string());
        }
        VolumeType::Disperse => {
            a.push("disperse".into());
            a.push(v.set_size().to_string());
            a.push("redundancy".into());
            a.push(v.redundancy().to_string());
        }
        VolumeType::Distribute => {}
    }
    a.push("transport".into());
    a.push("tcp".into());
    a.extend(brick_names(site, v));
    a
}

/// `address:path` of every brick of a volume, in the site's order.
pub fn brick_names(site: &Site, v: &Volume) -> Vec<String> {
    v.bricks
        .iter()
        .filter_map(|b| site.node(b))
        .filter_map(node_address)
        .map(|addr| format!("{addr}:{}", v.brick_path()))
        .collect()
}

/// Plans the next round for node `me`.
pub fn plan(site: &Site, me: &str, peers: &[Peer], volumes: &[VolumeInfo]) -> Plan {
    let nodes = storage_nodes(site);
    let leader = nodes.first().is_some_and(|n| n.name == me);
    let mut p = Plan {
        actions: Vec::new(),
        waiting: Vec::new(),
        warnings: Vec::new(),
        leader,
    };
    let Some(storage) = site.storage.as_ref() else {
        p.warnings.push("the site has no [storage] section".into());
        return p;
    };
    // Pool membership, as this node sees it.
    let mut in_pool = vec![me.to_owned()];
    for n in nodes.iter().filter(|n| n.name != me) {
        match peer_of(site, n, peers) {
            Some(peer) if peer.in_cluster() => in_pool.push(n.name.clone()),
            Some(peer) if !peer.connected => p.waiting.push(format!("{} is not connected", n.name)),
            Some(peer) => p
                .waiting
                .push(format!("{} is joining ({})", n.name, peer.state)),
            None if leader => match node_address(n) {
                Some(address) => {
                    p.actions.push(Action::Probe {
                        node: n.name.clone(),
                        address,
                    });
                    p.waiting.push(format!("{} is not in the pool yet", n.name));
                }
                None => p
                    .warnings
                    .push(format!("{} has no address to probe", n.name)),
            },
            None => p.waiting.push(format!(
                "{} is not in the pool yet (the leader {} probes it)",
                n.name,
                nodes.first().map_or("?", |l| l.name.as_str())
            )),
        }
    }
    for v in &storage.volumes {
        plan_volume(site, v, &in_pool, volumes, &mut p);
    }
    for v in volumes {
        if !storage.volumes.iter().any(|s| s.name == v.name) {
            p.warnings
                .push(format!("volume {} is not in the site; left alone", v.name));
        }
    }
    p
}

fn plan_volume(site: &Site, v: &Volume, in_pool: &[String], volumes: &[VolumeInfo], p: &mut Plan) {
    let Some(have) = volumes.iter().find(|x| x.name == v.name) else {
        let missing: Vec<&str> = v
            .bricks
            .iter()
            .filter(|b| !in_pool.contains(b))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            p.waiting.push(format!(
                "volume {} waits for {} to join the pool",
                v.name,
                missing.join(", ")
            ));
        } else if p.leader {
            p.actions.push(Action::Create {
                volume: v.name.clone(),
            });
            set_options(v, None, p);
            p.actions.push(Action::Start {
                volume: v.name.clone(),
            });
        } else {
            p.waiting
                .push(format!("volume {} is to be created by the leader", v.name));
        }
        return;
    };
    let want = brick_names(site, v);
    if have.bricks != want {
        p.warnings.push(format!(
            "volume {} has bricks {} but the site says {}; left alone",
            v.name,
            have.bricks.join(" "),
            want.join(" ")
        ));
    }
    if p.leader {
        set_options(v, Some(have), p);
        if have.status != "Started" {
            p.actions.push(Action::Start {
                volume: v.name.clone(),
            });
        }
    } else if have.status != "Started" {
        p.waiting.push(format!(
            "volume {} is {}",
            v.name,
            have.status.to_lowercase()
        ));
    }
}

fn set_options(v: &Volume, have: Option<&VolumeInfo>, p: &mut Plan) {
    for (key, value) in &v.options {
        let current = have.and_then(|h| h.options.get(key));
        if current.is_none_or(|c| !c.eq_ignore_ascii_case(value)) {
            p.actions.push(Action::Set {
                volume: v.name.clone(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn site() -> Site {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        cairn_site::load_site(&root.join("examples/storage-site.toml")).unwrap()
    }

    fn peer(addr: &str, connected: bool, state: &str) -> Peer {
        Peer {
            uuid: format!("uuid-{addr}"),
            hostnames: vec![addr.to_owned()],
            connected,
            state: state.to_owned(),
        }
    }

    fn joined(addr: &str) -> Peer {
        peer(addr, true, "Peer in Cluster")
    }

    fn started() -> Vec<VolumeInfo> {
        crate::xml::volume_info(crate::xml::tests::INFO).unwrap()
    }

    #[test]
    fn the_leader_probes_every_missing_peer_first() {
        let s = site();
        let p = plan(&s, "st1", &[], &[]);
        assert!(p.leader);
        assert_eq!(
            p.actions,
            vec![
                Action::Probe {
                    node: "st2".into(),
                    address: "192.0.2.32".into()
                },
                Action::Probe {
                    node: "st3".into(),
                    address: "192.0.2.33".into()
                },
            ]
        );
        assert!(
            p.waiting
                .iter()
                .any(|w| w == "volume gv0 waits for st2, st3 to join the pool")
        );
        assert!(!p.converged());
    }

    #[test]
    fn members_never_probe_nor_create() {
        let s = site();
        let p = plan(&s, "st2", &[], &[]);
        assert!(!p.leader);
        assert!(p.actions.is_empty());
        assert!(
            p.waiting
                .iter()
                .any(|w| w == "st1 is not in the pool yet (the leader st1 probes it)"),
            "{:?}",
            p.waiting
        );
        let p = plan(
            &s,
            "st2",
            &[joined("192.0.2.31"), joined("192.0.2.33")],
            &[],
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.waiting, vec!["volume gv0 is to be created by the leader"]);
    }

    #[test]
    fn a_joining_or_absent_peer_holds_the_volume_back() {
        let s = site();
        let p = plan(
            &s,
            "st1",
            &[
                joined("192.0.2.32"),
                peer("192.0.2.33", true, "Accepted peer request"),
            ],
            &[],
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(
            p.waiting,
            vec![
                "st3 is joining (Accepted peer request)",
                "volume gv0 waits for st3 to join the pool"
            ]
        );
        let p = plan(
            &s,
            "st1",
            &[
                joined("192.0.2.32"),
                peer("192.0.2.33", false, "Peer in Cluster"),
            ],
            &[],
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.waiting[0], "st3 is not connected");
    }

    #[test]
    fn a_complete_pool_creates_sets_and_starts_in_that_order() {
        let s = site();
        let p = plan(
            &s,
            "st1",
            &[joined("192.0.2.32"), joined("192.0.2.33")],
            &[],
        );
        assert_eq!(
            p.actions,
            vec![
                Action::Create {
                    volume: "gv0".into()
                },
                Action::Set {
                    volume: "gv0".into(),
                    key: "cluster.heal-timeout".into(),
                    value: "10".into()
                },
                Action::Set {
                    volume: "gv0".into(),
                    key: "network.ping-timeout".into(),
                    value: "10".into()
                },
                Action::Start {
                    volume: "gv0".into()
                },
            ]
        );
        assert_eq!(
            p.actions[0].args(&s),
            vec![
                "volume",
                "create",
                "gv0",
                "replica",
                "3",
                "transport",
                "tcp",
                "192.0.2.31:/var/lib/cairn/bricks/gv0/brick",
                "192.0.2.32:/var/lib/cairn/bricks/gv0/brick",
                "192.0.2.33:/var/lib/cairn/bricks/gv0/brick",
            ]
        );
        assert_eq!(
            p.actions[1].args(&s),
            vec!["volume", "set", "gv0", "cluster.heal-timeout", "10"]
        );
    }

    #[test]
    fn an_existing_volume_gets_missing_options_and_a_start_only() {
        let s = site();
        let peers = [joined("192.0.2.32"), joined("192.0.2.33")];
        let mut vols = started();
        let p = plan(&s, "st1", &peers, &vols);
        // heal-timeout is set already; ping-timeout is not.
        assert_eq!(
            p.actions,
            vec![Action::Set {
                volume: "gv0".into(),
                key: "network.ping-timeout".into(),
                value: "10".into()
            }]
        );
        vols[0]
            .options
            .insert("network.ping-timeout".into(), "10".into());
        let p = plan(&s, "st1", &peers, &vols);
        assert!(p.converged(), "{p:?}");
        assert_eq!(p.summary(), "leader: volumes started, pool complete");
        vols[0].status = "Stopped".into();
        let p = plan(&s, "st1", &peers, &vols);
        assert_eq!(
            p.actions,
            vec![Action::Start {
                volume: "gv0".into()
            }]
        );
        // The same on a member: nothing to do, it says what it waits for.
        let p = plan(
            &s,
            "st3",
            &[joined("192.0.2.31"), joined("192.0.2.32")],
            &vols,
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.waiting, vec!["volume gv0 is stopped"]);
    }

    #[test]
    fn other_bricks_and_foreign_volumes_are_reported_not_changed() {
        let s = site();
        let peers = [joined("192.0.2.32"), joined("192.0.2.33")];
        let mut vols = started();
        vols[0].bricks.pop();
        vols[0]
            .options
            .insert("network.ping-timeout".into(), "10".into());
        let mut other = vols[0].clone();
        other.name = "old".into();
        vols.push(other);
        let p = plan(&s, "st1", &peers, &vols);
        assert!(p.actions.is_empty());
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("volume gv0 has bricks"));
        assert_eq!(p.warnings[1], "volume old is not in the site; left alone");
    }

    #[test]
    fn disperse_and_distribute_volumes_are_created_with_their_counts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("examples/storage-site.toml")).unwrap();
        let d = text.replace("type = \"replica\"\nreplica = 3", "type = \"disperse\"");
        let s = cairn_site::parse_site(&d, Path::new("site.toml")).unwrap();
        let v = &s.storage.as_ref().unwrap().volumes[0];
        assert_eq!(
            create_args(&s, v)[..9],
            [
                "volume",
                "create",
                "gv0",
                "disperse",
                "3",
                "redundancy",
                "1",
                "transport",
                "tcp"
            ]
        );
        let d = text.replace("type = \"replica\"\nreplica = 3", "type = \"distribute\"");
        let s = cairn_site::parse_site(&d, Path::new("site.toml")).unwrap();
        let v = &s.storage.as_ref().unwrap().volumes[0];
        let a = create_args(&s, v);
        assert_eq!(a[..5], ["volume", "create", "gv0", "transport", "tcp"]);
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn peers_match_by_any_address_or_name() {
        let s = site();
        let st3 = s.node("st3").unwrap();
        let by_name = Peer {
            hostnames: vec!["10.9.9.9".into(), "st3.cairn.test".into()],
            ..joined("x")
        };
        assert!(peer_of(&s, st3, std::slice::from_ref(&by_name)).is_some());
        assert!(peer_of(&s, st3, &[joined("192.0.2.32")]).is_none());
    }
}

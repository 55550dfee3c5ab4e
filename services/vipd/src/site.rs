//! Deriving the config from the site file (`--site`): one instance for the load balancer
//! pair, on the interface that carries the node's MAC.
//!
//! - name `lb`, VRID, VIPs, advert interval and preempt from `[lb]`;
//! - priority: the node's `priority` (default [`DEFAULT_PRIORITY`]);
//! - tracks, every [`CHECK_INTERVAL_MS`]: cairn-init service `haproxy` ready (fall 1), and a
//!   TCP connect to `127.0.0.1:<port>` of every frontend (fall 2), each with weight
//!   [`TRACK_WEIGHT`] (255): one failing check takes the node to priority 1, below every
//!   healthy peer (site priorities are 1..=254), and a master at priority 1 resigns at once;
//! - multicast adverts, no virtual MAC, default announcements.

use std::net::IpAddr;

use cairn_site::{Role, Site};

use crate::config::{ConfigFile, InstanceSpec, TrackKind, TrackSpec};

/// Priority of a load balancer whose node entry has none.
pub const DEFAULT_PRIORITY: u8 = 100;
/// Weight of every derived track: large enough that one failing check puts the node
/// below every healthy peer (the effective priority is clamped to at least 1).
pub const TRACK_WEIGHT: u32 = 255;
/// Name of the derived instance.
pub const INSTANCE_NAME: &str = "lb";
/// The cairn-init service whose readiness is tracked.
pub const PROXY_SERVICE: &str = "haproxy";
/// Interval and timeout of the derived checks, in milliseconds. A check driving the master
/// to priority 1 makes it resign at once (cairn_vrrp::UNFIT_PRIORITY), so this interval is
/// most of the time a dead HAProxy keeps the VIP.
pub const CHECK_INTERVAL_MS: u32 = 200;

/// Why the site file gives this node no VRRP config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// `--node` / `CAIRN_NODE` names no node.
    #[error("the site has no node named {0:?}")]
    UnknownNode(String),
    /// No node has one of this box's MACs.
    #[error("no node of the site has a MAC of this box ({0})")]
    NoNodeForMacs(String),
    /// The node is not a load balancer.
    #[error("node {name:?} is a {role} node, not a load balancer")]
    NotLb {
        /// The node.
        name: String,
        /// Its role.
        role: Role,
    },
    /// The node is external (not a cairn box).
    #[error("node {0:?} is external, not a cairn box")]
    External(String),
    /// The site has no `[lb]` section.
    #[error("the site has no [lb] section")]
    NoLbSection,
    /// The node has no MAC to find its interface by.
    #[error("node {0:?} has no mac")]
    NoMac(String),
    /// No interface of this box has the node's MAC.
    #[error("no interface has node {node:?}'s MAC {mac}")]
    NoInterface {
        /// The node.
        node: String,
        /// Its MAC.
        mac: String,
    },
}

/// The node's MAC, checking that it is a load balancer box of a site with `[lb]`.
pub fn lb_node_mac(site: &Site, node: &str) -> Result<[u8; 6], SiteError> {
    let n = site
        .node(node)
        .ok_or_else(|| SiteError::UnknownNode(node.to_owned()))?;
    if n.external {
        return Err(SiteError::External(n.name.clone()));
    }
    if n.role != Role::Lb {
        return Err(SiteError::NotLb {
            name: n.name.clone(),
            role: n.role,
        });
    }
    if site.lb.is_none() {
        return Err(SiteError::NoLbSection);
    }
    n.mac
        .map(|m| m.0)
        .ok_or_else(|| SiteError::NoMac(n.name.clone()))
}

/// The config for `node`, running on `interface` (the link with the node's MAC).
pub fn derive(site: &Site, node: &str, interface: &str) -> Result<ConfigFile, SiteError> {
    lb_node_mac(site, node)?;
    let n = site
        .node(node)
        .ok_or_else(|| SiteError::UnknownNode(node.to_owned()))?;
    let lb = site.lb.as_ref().ok_or(SiteError::NoLbSection)?;
    let check = |name: String, kind: TrackKind| TrackSpec {
        name,
        kind,
        target: None,
        command: None,
        service: None,
        interval_ms: CHECK_INTERVAL_MS,
        timeout_ms: CHECK_INTERVAL_MS,
        fall: 2,
        rise: 2,
        weight: TRACK_WEIGHT,
    };
    // cairn-init's word on the service is authoritative (no flapping probe), so one failed
    // check is enough; the TCP probes keep fall = 2.
    let mut track = vec![TrackSpec {
        service: Some(PROXY_SERVICE.to_owned()),
        fall: 1,
        ..check(PROXY_SERVICE.to_owned(), TrackKind::Service)
    }];
    for fe in &lb.frontends {
        track.push(TrackSpec {
            target: Some(format!("127.0.0.1:{}", fe.port)),
            ..check(format!("frontend-{}", fe.name), TrackKind::Tcp)
        });
    }
    let instance = InstanceSpec {
        name: INSTANCE_NAME.to_owned(),
        vrid: u32::from(lb.vrid),
        interface: interface.to_owned(),
        priority: u32::from(n.priority.unwrap_or(DEFAULT_PRIORITY)),
        advert_interval_ms: lb.advert_interval_ms,
        preempt: lb.preempt,
        vips: lb.vips.iter().map(|v| v.to_string()).collect(),
        unicast_peers: Vec::<IpAddr>::new(),
        use_vmac: false,
        announce_count: 5,
        announce_interval_ms: 200,
        drain_ms: crate::config::DEFAULT_DRAIN_MS,
        track,
    };
    Ok(ConfigFile {
        instances: vec![instance],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SITE: &str = r#"
[cluster]
name = "demo"

[[node]]
name = "lb1"
role = "lb"
mac = "52:54:00:00:00:11"
addresses = ["192.0.2.11/24"]
priority = 200

[[node]]
name = "lb2"
role = "lb"
mac = "52:54:00:00:00:12"
addresses = ["192.0.2.12/24"]

[[node]]
name = "web1"
role = "base"
mac = "52:54:00:00:00:21"
addresses = ["192.0.2.21/24"]

[[node]]
name = "ext"
role = "lb"
external = true
addresses = ["192.0.2.31/24"]

[lb]
vrid = 51
vips = ["192.0.2.100/24"]
advert_interval_ms = 100
preempt = false

[[lb.frontend]]
name = "web"
port = 80
[[lb.frontend.backend]]
name = "web1"
address = "192.0.2.21:8080"

[[lb.frontend]]
name = "api"
port = 8443
[[lb.frontend.backend]]
name = "web1"
address = "192.0.2.21:8443"
"#;

    fn site() -> Site {
        cairn_site::parse_site(SITE, Path::new("site.toml")).unwrap()
    }

    #[test]
    fn lb_node_gets_one_instance_with_tracks() {
        let s = site();
        assert_eq!(lb_node_mac(&s, "lb1"), Ok([0x52, 0x54, 0, 0, 0, 0x11]));
        let file = derive(&s, "lb1", "eth0").unwrap();
        let config = file.validate(Path::new("site.toml")).unwrap();
        assert_eq!(config.instances.len(), 1);
        let i = &config.instances[0];
        assert_eq!(i.name, "lb");
        assert_eq!(i.vrid, 51);
        assert_eq!(i.interface, "eth0");
        assert_eq!(i.priority, 200);
        assert_eq!(i.interval_cs, 10);
        assert!(!i.preempt);
        assert_eq!(i.vips, vec!["192.0.2.100/24".parse().unwrap()]);
        let tracks: Vec<(String, crate::config::Probe, u8)> = i
            .tracks
            .iter()
            .map(|t| (t.name.clone(), t.probe.clone(), t.weight))
            .collect();
        use crate::config::Probe;
        assert_eq!(
            tracks,
            vec![
                ("haproxy".into(), Probe::Service("haproxy".into()), 255),
                (
                    "frontend-web".into(),
                    Probe::Tcp("127.0.0.1:80".into()),
                    255
                ),
                (
                    "frontend-api".into(),
                    Probe::Tcp("127.0.0.1:8443".into()),
                    255
                ),
            ]
        );
    }

    #[test]
    fn one_failing_check_puts_the_best_node_below_the_worst() {
        let s = site();
        let config = derive(&s, "lb1", "eth0")
            .unwrap()
            .validate(Path::new("site.toml"))
            .unwrap();
        let i = &config.instances[0];
        let mut checks: Vec<crate::health::CheckState> = i
            .tracks
            .iter()
            .map(|t| crate::health::CheckState::new(&t.name, t.fall, t.rise, t.weight))
            .collect();
        for c in &mut checks {
            c.record(Ok(()));
        }
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 200);
        checks[1].record(Err("refused".into()));
        checks[1].record(Err("refused".into()));
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 1);
    }

    #[test]
    fn default_priority_and_errors() {
        let s = site();
        let file = derive(&s, "lb2", "ens3").unwrap();
        assert_eq!(file.instances[0].priority, 100);
        assert_eq!(file.instances[0].interface, "ens3");
        assert_eq!(
            derive(&s, "nope", "eth0").unwrap_err().to_string(),
            "the site has no node named \"nope\""
        );
        assert_eq!(
            derive(&s, "web1", "eth0").unwrap_err().to_string(),
            "node \"web1\" is a base node, not a load balancer"
        );
        assert_eq!(
            derive(&s, "ext", "eth0").unwrap_err().to_string(),
            "node \"ext\" is external, not a cairn box"
        );
        let mut no_lb = s.clone();
        no_lb.lb = None;
        assert_eq!(
            derive(&no_lb, "lb1", "eth0").unwrap_err(),
            SiteError::NoLbSection
        );
    }

    #[test]
    fn derived_config_prints_as_a_valid_config_file() {
        let file = derive(&site(), "lb1", "eth0").unwrap();
        let text = toml::to_string(&file).unwrap();
        let (again, _) = crate::config::parse_config(&text, Path::new("x.toml")).unwrap();
        assert_eq!(again, file);
    }
}

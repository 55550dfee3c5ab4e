//! Deriving the config from the site file (`--site`): one instance for the node's role,
//! on the interface that carries the node's MAC.
//!
//! A load balancer (`role = "lb"`, site with `[lb]`):
//! - name `lb`, VRID, VIPs, advert interval and preempt from `[lb]`;
//! - priority: the node's `priority` (default [`DEFAULT_PRIORITY`]);
//! - tracks, every [`CHECK_INTERVAL_MS`]: cairn-init service `haproxy` ready (fall 1), and a
//!   TCP connect to `127.0.0.1:<port>` of every frontend (fall 2), each with weight
//!   [`TRACK_WEIGHT`] (255): one failing check takes the node to priority 1, below every
//!   healthy peer (site priorities are 1..=254), and a master at priority 1 resigns at once;
//! - multicast adverts, no virtual MAC, default announcements.
//!
//! A storage node (`role = "storage"`, site with `[storage] vip`):
//! - name `storage`, the VIP, VRID, advert interval and preempt from `[storage]` (defaults
//!   52, 1000 ms, no preemption);
//! - priority: the node's `priority` (default [`DEFAULT_PRIORITY`]);
//! - tracks, weight 255 each: cairn-init service `glusterd` ready (every
//!   [`CHECK_INTERVAL_MS`], fall 1) and `cairn-storage healthy` (every
//!   [`VOLUME_CHECK_INTERVAL_MS`]: glusterd answers and every volume of the site is
//!   Started);
//! - a storage node of a site without `[storage] vip` has nothing to hold:
//!   [`SiteError::NoStorageVip`], which `cairn-vipd` answers by exiting 0.

use std::net::IpAddr;
use std::path::Path;

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
/// Timeout of the derived TCP checks, in milliseconds. A refused connection (HAProxy gone)
/// fails at once whatever this is; it only bounds a listener that does not answer. At
/// 200 ms, a loaded box (a slot being written, a starved VM) failed two connects in a row
/// to its own healthy HAProxy and resigned for nothing.
pub const TCP_CHECK_TIMEOUT_MS: u32 = 1000;
/// Name of the derived storage instance.
pub const STORAGE_INSTANCE_NAME: &str = "storage";
/// The cairn-init service whose readiness the storage instance tracks.
pub const GLUSTERD_SERVICE: &str = "glusterd";
/// The storage role's health command (`cairn-storage healthy`), in the storage image.
pub const STORAGE_PROGRAM: &str = "/usr/sbin/cairn-storage";
/// Name of the storage instance's volume check.
pub const VOLUMES_CHECK: &str = "volumes";
/// Interval of the volume check: each run starts the gluster CLI, which costs a few hundred
/// ms of CPU on a small box; a dead glusterd is caught by the service check in
/// [`CHECK_INTERVAL_MS`] anyway.
pub const VOLUME_CHECK_INTERVAL_MS: u32 = 2000;
/// Timeout of the volume check: above `cairn-storage healthy`'s own bound (5 s), so the
/// command reports a hung gluster CLI itself.
pub const VOLUME_CHECK_TIMEOUT_MS: u32 = 10_000;
/// Where the site file is on a box (the path the volume check gets when none is given).
pub const DEFAULT_SITE_PATH: &str = "/etc/cairn/site.toml";

/// Why the site file gives this node no VRRP config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// `--node` / `CAIRN_NODE` names no node.
    #[error("the site has no node named {0:?}")]
    UnknownNode(String),
    /// No node has one of this box's MACs.
    #[error("no node of the site has a MAC of this box ({0})")]
    NoNodeForMacs(String),
    /// The node is neither a load balancer nor a storage node.
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
    /// A storage node in a site without `[storage] vip`: nothing to hold (not an error for
    /// the daemon, which exits 0).
    #[error("node {0:?} is a storage node and the site names no [storage] vip: nothing to hold")]
    NoStorageVip(String),
    /// `[storage] vrid` equals `[lb] vrid`: the two routers would take each other's adverts.
    #[error("storage.vrid {0} is also [lb] vrid: the storage VIP needs its own virtual router id")]
    VridClash(u8),
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

/// The node's MAC, checking that it is a box holding a VIP: a load balancer of a site with
/// `[lb]` or a storage node of a site with `[storage] vip`
/// ([`SiteError::NoStorageVip`] for a storage node without one).
pub fn node_mac(site: &Site, node: &str) -> Result<[u8; 6], SiteError> {
    let n = site
        .node(node)
        .ok_or_else(|| SiteError::UnknownNode(node.to_owned()))?;
    if n.external || n.role != Role::Storage {
        return lb_node_mac(site, node);
    }
    storage_vip_section(site, node)?;
    n.mac
        .map(|m| m.0)
        .ok_or_else(|| SiteError::NoMac(n.name.clone()))
}

/// `[storage]` of a site whose storage VIP `node` holds, with the checks that keep the
/// storage router apart from the lb one.
fn storage_vip_section<'a>(
    site: &'a Site,
    node: &str,
) -> Result<&'a cairn_site::StorageSection, SiteError> {
    let st = site
        .storage
        .as_ref()
        .filter(|st| st.vip.is_some())
        .ok_or_else(|| SiteError::NoStorageVip(node.to_owned()))?;
    if let Some(lb) = &site.lb {
        if lb.vrid == st.vrid() {
            return Err(SiteError::VridClash(lb.vrid));
        }
    }
    Ok(st)
}

/// The config for `node`, running on `interface` (the link with the node's MAC); a storage
/// node's volume check reads the site file at [`DEFAULT_SITE_PATH`].
pub fn derive(site: &Site, node: &str, interface: &str) -> Result<ConfigFile, SiteError> {
    derive_with_site_path(site, Path::new(DEFAULT_SITE_PATH), node, interface)
}

/// [`derive`], with the site file's path for a storage node's volume check
/// (`cairn-storage healthy --site <path>`).
pub fn derive_with_site_path(
    site: &Site,
    site_path: &Path,
    node: &str,
    interface: &str,
) -> Result<ConfigFile, SiteError> {
    node_mac(site, node)?;
    match site.node(node).map(|n| n.role) {
        Some(Role::Storage) => derive_storage(site, site_path, node, interface),
        _ => derive_lb(site, node, interface),
    }
}

/// A storage node's instance: the VIP of `[storage]`, tracking glusterd and the volumes.
fn derive_storage(
    site: &Site,
    site_path: &Path,
    node: &str,
    interface: &str,
) -> Result<ConfigFile, SiteError> {
    let n = site
        .node(node)
        .ok_or_else(|| SiteError::UnknownNode(node.to_owned()))?;
    let st = storage_vip_section(site, node)?;
    let vip = st
        .vip
        .ok_or_else(|| SiteError::NoStorageVip(node.to_owned()))?;
    let track = vec![
        // cairn-init's word on glusterd is authoritative: one failed check is enough.
        TrackSpec {
            name: GLUSTERD_SERVICE.to_owned(),
            kind: TrackKind::Service,
            target: None,
            command: None,
            service: Some(GLUSTERD_SERVICE.to_owned()),
            interval_ms: CHECK_INTERVAL_MS,
            timeout_ms: CHECK_INTERVAL_MS,
            fall: 1,
            rise: 2,
            weight: TRACK_WEIGHT,
        },
        // The gluster CLI can fail once while glusterd is busy (a probe of an absent peer):
        // fall 2.
        TrackSpec {
            name: VOLUMES_CHECK.to_owned(),
            kind: TrackKind::Exec,
            target: None,
            command: Some(vec![
                STORAGE_PROGRAM.to_owned(),
                "healthy".to_owned(),
                "--site".to_owned(),
                site_path.display().to_string(),
            ]),
            service: None,
            interval_ms: VOLUME_CHECK_INTERVAL_MS,
            timeout_ms: VOLUME_CHECK_TIMEOUT_MS,
            fall: 2,
            rise: 2,
            weight: TRACK_WEIGHT,
        },
    ];
    let instance = InstanceSpec {
        name: STORAGE_INSTANCE_NAME.to_owned(),
        vrid: u32::from(st.vrid()),
        interface: interface.to_owned(),
        priority: u32::from(n.priority.unwrap_or(DEFAULT_PRIORITY)),
        advert_interval_ms: st.advert_interval_ms(),
        preempt: st.preempt(),
        vips: vec![vip.to_string()],
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

/// A load balancer's instance: `[lb]`'s VIPs, tracking HAProxy and its frontends.
fn derive_lb(site: &Site, node: &str, interface: &str) -> Result<ConfigFile, SiteError> {
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
            timeout_ms: TCP_CHECK_TIMEOUT_MS,
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
    const STORAGE_SITE: &str = r#"
[cluster]
name = "demo-storage"

[[node]]
name = "st1"
role = "storage"
mac = "52:54:00:c0:00:31"
addresses = ["192.0.2.31/24"]

[[node]]
name = "st2"
role = "storage"
mac = "52:54:00:c0:00:32"
addresses = ["192.0.2.32/24"]

[[node]]
name = "box1"
role = "base"
mac = "52:54:00:c0:00:01"
addresses = ["192.0.2.5/24"]

[storage]
vip = "192.0.2.30/24"

[[storage.volume]]
name = "gv0"
type = "replica"
replica = 2
bricks = ["st1", "st2"]
"#;

    fn storage_site() -> Site {
        cairn_site::parse_site(STORAGE_SITE, Path::new("site.toml")).unwrap()
    }

    #[test]
    fn storage_node_gets_the_storage_instance() {
        let s = storage_site();
        assert_eq!(node_mac(&s, "st2"), Ok([0x52, 0x54, 0, 0xc0, 0, 0x32]));
        let file =
            derive_with_site_path(&s, Path::new("/etc/cairn/site.toml"), "st2", "eth0").unwrap();
        let config = file.validate(Path::new("site.toml")).unwrap();
        assert_eq!(config.instances.len(), 1);
        let i = &config.instances[0];
        assert_eq!(i.name, "storage");
        assert_eq!(i.vrid, 52);
        assert_eq!(i.interface, "eth0");
        assert_eq!(i.priority, 100);
        assert_eq!(i.interval_cs, 100);
        assert!(
            !i.preempt,
            "a returning storage node must not pull the VIP back"
        );
        assert_eq!(i.vips, vec!["192.0.2.30/24".parse().unwrap()]);
        use crate::config::Probe;
        let tracks: Vec<(String, Probe, u8, u32)> = i
            .tracks
            .iter()
            .map(|t| (t.name.clone(), t.probe.clone(), t.weight, t.fall))
            .collect();
        assert_eq!(
            tracks,
            vec![
                ("glusterd".into(), Probe::Service("glusterd".into()), 255, 1),
                (
                    "volumes".into(),
                    Probe::Exec(vec![
                        "/usr/sbin/cairn-storage".into(),
                        "healthy".into(),
                        "--site".into(),
                        "/etc/cairn/site.toml".into()
                    ]),
                    255,
                    2
                ),
            ]
        );
        // `derive` gives the same instance, with the box's site path.
        assert_eq!(derive(&s, "st2", "eth0").unwrap(), file);
        // The path vipd was given reaches the check.
        let other = derive_with_site_path(&s, Path::new("/tmp/s.toml"), "st1", "eth0").unwrap();
        assert_eq!(
            other.instances[0].track[1].command.as_ref().unwrap()[3],
            "/tmp/s.toml"
        );
    }

    #[test]
    fn a_failing_storage_check_puts_the_node_below_every_healthy_peer() {
        let config = derive(&storage_site(), "st1", "eth0")
            .unwrap()
            .validate(Path::new("site.toml"))
            .unwrap();
        let i = &config.instances[0];
        let mut checks: Vec<crate::health::CheckState> = i
            .tracks
            .iter()
            .map(|t| crate::health::CheckState::new(&t.name, t.fall, t.rise, t.weight))
            .collect();
        // Pending checks count as failing: a booting node does not claim the VIP.
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 1);
        for c in &mut checks {
            c.record(Ok(()));
        }
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 100);
        // glusterd not ready: one check is enough.
        checks[0].record(Err("glusterd is starting".into()));
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 1);
        checks[0].record(Ok(()));
        checks[0].record(Ok(()));
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 100);
        // A stopped volume: two failed runs of `cairn-storage healthy`.
        checks[1].record(Err("exit status 1".into()));
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 100);
        checks[1].record(Err("exit status 1".into()));
        assert_eq!(crate::health::effective_priority(i.priority, &checks), 1);
    }

    #[test]
    fn storage_vrrp_settings_come_from_the_site() {
        let text = STORAGE_SITE.replace(
            "vip = \"192.0.2.30/24\"",
            "vip = \"192.0.2.30/24\"\nvrid = 60\nadvert_interval_ms = 300\npreempt = true",
        );
        let s = cairn_site::parse_site(&text, Path::new("site.toml")).unwrap();
        let i = &derive(&s, "st1", "ens3").unwrap().instances[0];
        assert_eq!(
            (
                i.vrid,
                i.advert_interval_ms,
                i.preempt,
                i.interface.as_str()
            ),
            (60, 300, true, "ens3")
        );
    }

    #[test]
    fn a_storage_node_without_a_vip_has_nothing_to_hold() {
        let mut s = storage_site();
        if let Some(st) = s.storage.as_mut() {
            st.vip = None;
        }
        assert_eq!(
            node_mac(&s, "st1").unwrap_err(),
            SiteError::NoStorageVip("st1".into())
        );
        assert_eq!(
            derive(&s, "st1", "eth0").unwrap_err().to_string(),
            "node \"st1\" is a storage node and the site names no [storage] vip: nothing to hold"
        );
        // Other roles keep their errors.
        assert_eq!(
            derive(&s, "box1", "eth0").unwrap_err().to_string(),
            "node \"box1\" is a base node, not a load balancer"
        );
        assert_eq!(
            lb_node_mac(&storage_site(), "st1").unwrap_err().to_string(),
            "node \"st1\" is a storage node, not a load balancer"
        );
    }

    #[test]
    fn a_storage_vrid_equal_to_the_lb_vrid_is_refused() {
        let lb = cairn_site::parse_site(SITE, Path::new("site.toml"))
            .unwrap()
            .lb
            .unwrap();
        let mut s = storage_site();
        s.lb = Some(cairn_site::LbSection { vrid: 52, ..lb });
        assert_eq!(
            derive(&s, "st1", "eth0").unwrap_err(),
            SiteError::VridClash(52)
        );
        if let Some(st) = s.storage.as_mut() {
            st.vrid = Some(53);
        }
        assert_eq!(derive(&s, "st1", "eth0").unwrap().instances[0].vrid, 53);
    }

    #[test]
    fn lb_nodes_still_derive_the_lb_instance_through_node_mac() {
        let s = site();
        assert_eq!(node_mac(&s, "lb1"), lb_node_mac(&s, "lb1"));
        assert_eq!(
            derive_with_site_path(&s, Path::new("/x"), "lb1", "eth0").unwrap(),
            derive(&s, "lb1", "eth0").unwrap()
        );
        assert_eq!(
            node_mac(&s, "ext").unwrap_err(),
            SiteError::External("ext".into())
        );
    }
}

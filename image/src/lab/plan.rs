//! What a lab consists of, worked out from the site file before anything is
//! created: which nodes boot as VMs (and from which role image), which run as
//! HTTP responders, the namespaces, links and addresses. Pure: no I/O, so every
//! rule is unit-tested; the plan is saved as `<state>/lab.json` and drives
//! `up`, the keeper, `status` and `down`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use cairn_site::{IfAddr, Site};
use serde::{Deserialize, Serialize};

/// Name of the bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";
/// Name of the client's and external nodes' interface inside their namespaces.
pub const NODE_IFACE: &str = "eth0";
/// Name of the client's bridge-side veth.
pub const CLIENT_PORT: &str = "vc";
/// The node name `exec` uses for the client namespace (reserved in sites run as labs).
pub const CLIENT: &str = "client";
/// Port a responder listens on when no `[lb]` backend names its address.
pub const DEFAULT_RESPONDER_PORT: u16 = 8080;

/// Why a site cannot become a lab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--nodes` names a node the site does not have.
    #[error("--nodes: unknown node {name:?} (the site has: {known})")]
    UnknownNode {
        /// The unknown name.
        name: String,
        /// The site's node names, comma-separated.
        known: String,
    },
    /// `--nodes` selects no box (only external nodes or nothing).
    #[error("the lab would boot no VM: {0}")]
    NoVm(String),
    /// A node is named like the client namespace.
    #[error("node {0:?}: the name \"client\" is reserved by `cairn lab` for the client namespace")]
    ReservedName(String),
    /// A box has no IPv4 address to derive the client's network from, and no other node has one.
    #[error("no node has an IPv4 address: the lab cannot pick the client's address")]
    NoIpv4,
    /// Every candidate host address is taken.
    #[error("no free address for the client in {0}")]
    NoFreeAddress(String),
}

/// One box booted as a QEMU VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPlan {
    /// Node name (also the VM's name).
    pub name: String,
    /// Role, which selects the image.
    pub role: String,
    /// The NIC's MAC (the box finds its node entry by it).
    pub mac: String,
    /// The node's addresses from the site file (configured by the box itself).
    pub addresses: Vec<String>,
    /// Tap device on the bridge, in the switch namespace.
    pub tap: String,
}

/// One external node run as HTTP responders in its own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalPlan {
    /// Node name (also the responders' answer).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its veth's bridge-side end, in the switch namespace.
    pub port: String,
    /// Addresses configured on its `eth0`.
    pub addresses: Vec<String>,
    /// Where responders listen (one process each).
    pub listen: Vec<SocketAddr>,
}

/// The client namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPlan {
    /// Its network namespace.
    pub netns: String,
    /// Its veth's bridge-side end.
    pub port: String,
    /// Its address with prefix, e.g. `192.0.2.250/24`.
    pub address: String,
    /// Where the client serves the lab's update repository: the site's
    /// `[update] url` when it points at the client's address.
    #[serde(default)]
    pub repo: Option<SocketAddr>,
}

/// A whole lab: saved as `<state>/lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabPlan {
    /// Prefix of every namespace the lab creates (`<lab>-sw`, `<lab>-client`, …).
    pub lab: String,
    /// The site file (absolute).
    pub site: PathBuf,
    /// Hardware profile of the images.
    pub profile: String,
    /// Guest memory per VM in MiB.
    pub memory_mib: u32,
    /// The switch namespace: bridge, taps, the keeper and QEMU.
    pub switch_netns: String,
    /// The client namespace.
    pub client: ClientPlan,
    /// Boxes, booted as VMs.
    pub vms: Vec<VmPlan>,
    /// External nodes, run as responders.
    pub externals: Vec<ExternalPlan>,
    /// The site's virtual IPs (`[lb] vips`, `[storage] vip`), without prefix.
    pub vips: Vec<IpAddr>,
}

impl LabPlan {
    /// Every namespace of the lab, switch first (created in this order,
    /// deleted in reverse).
    pub fn namespaces(&self) -> Vec<String> {
        let mut all = vec![self.switch_netns.clone(), self.client.netns.clone()];
        all.extend(self.externals.iter().map(|e| e.netns.clone()));
        all
    }

    /// The roles that need an image, in first-use order.
    pub fn roles(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for vm in &self.vms {
            if !seen.contains(&vm.role) {
                seen.push(vm.role.clone());
            }
        }
        seen
    }

    /// The VM of this node.
    pub fn vm(&self, name: &str) -> Option<&VmPlan> {
        self.vms.iter().find(|v| v.name == name)
    }

    /// The external node of this name.
    pub fn external(&self, name: &str) -> Option<&ExternalPlan> {
        self.externals.iter().find(|e| e.name == name)
    }

    /// All node names the lab knows (VMs, externals, `client`), for error messages.
    pub fn known_names(&self) -> String {
        let mut names: Vec<&str> = self.vms.iter().map(|v| v.name.as_str()).collect();
        names.extend(self.externals.iter().map(|e| e.name.as_str()));
        names.push(CLIENT);
        names.join(", ")
    }

    /// The node whose MAC this is (a VM), if any.
    pub fn node_by_mac(&self, mac: &str) -> Option<&VmPlan> {
        self.vms.iter().find(|v| v.mac.eq_ignore_ascii_case(mac))
    }
}

/// What `lab up` was asked for.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// Namespace prefix (see [`lab_name`]).
    pub lab: String,
    /// The site file (absolute), recorded in the plan.
    pub site_path: PathBuf,
    /// Hardware profile.
    pub profile: String,
    /// `--nodes`: only these nodes; `None` is every node of the site.
    pub nodes: Option<&'a [String]>,
    /// Guest memory per VM in MiB.
    pub memory_mib: u32,
}

/// Works out the lab for `site`.
pub fn plan(site: &Site, req: &PlanRequest<'_>) -> Result<LabPlan, PlanError> {
    let selected: Vec<&cairn_site::Node> = match req.nodes {
        None => site.nodes.iter().collect(),
        Some(names) => {
            let mut out = Vec::new();
            for name in names {
                let node = site.node(name).ok_or_else(|| PlanError::UnknownNode {
                    name: name.clone(),
                    known: site
                        .nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                if !out.iter().any(|n: &&cairn_site::Node| n.name == node.name) {
                    out.push(node);
                }
            }
            out
        }
    };
    if let Some(n) = selected.iter().find(|n| n.name == CLIENT) {
        return Err(PlanError::ReservedName(n.name.clone()));
    }
    let lab = &req.lab;
    let mut vms = Vec::new();
    let mut externals = Vec::new();
    for node in &selected {
        if node.external {
            let i = externals.len();
            externals.push(ExternalPlan {
                name: node.name.clone(),
                netns: format!("{lab}-x-{}", node.name),
                port: format!("v{i}"),
                addresses: node.addresses.iter().map(ToString::to_string).collect(),
                listen: responder_listen(site, &node.addresses),
            });
        } else {
            let i = vms.len();
            vms.push(VmPlan {
                name: node.name.clone(),
                role: node.role.as_str().to_string(),
                mac: node.mac.map(|m| m.to_string()).unwrap_or_default(),
                addresses: node.addresses.iter().map(ToString::to_string).collect(),
                tap: format!("tap{i}"),
            });
        }
    }
    if vms.is_empty() {
        return Err(PlanError::NoVm(match req.nodes {
            Some(names) => format!("--nodes {} names only external nodes", names.join(",")),
            None => "the site has only external nodes".into(),
        }));
    }
    let vips = site_vips(site);
    let client_addr = client_address(site, &selected)?;
    Ok(LabPlan {
        lab: lab.clone(),
        site: req.site_path.clone(),
        profile: req.profile.clone(),
        memory_mib: req.memory_mib,
        switch_netns: format!("{lab}-sw"),
        client: ClientPlan {
            netns: format!("{lab}-client"),
            port: CLIENT_PORT.into(),
            address: client_addr.to_string(),
            repo: site
                .update
                .as_ref()
                .and_then(|u| repo_listen(&u.url, client_addr.addr)),
        },
        vms,
        externals,
        vips,
    })
}

/// The socket address of an `http://host[:port]/…` URL whose host is
/// `client`, where the client then serves the update repository.
pub fn repo_listen(url: &str, client: IpAddr) -> Option<SocketAddr> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let addr: SocketAddr = match authority.parse() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(authority.parse().ok()?, 80),
    };
    (addr.ip() == client).then_some(addr)
}

/// Where an external node's responders listen: every `[lb]` backend that
/// points at one of its addresses, else [`DEFAULT_RESPONDER_PORT`] on each
/// address.
fn responder_listen(site: &Site, addresses: &[IfAddr]) -> Vec<SocketAddr> {
    let mut out: BTreeSet<SocketAddr> = BTreeSet::new();
    if let Some(lb) = &site.lb {
        for fe in &lb.frontends {
            for be in &fe.backends {
                if addresses.iter().any(|a| a.addr == be.address.ip()) {
                    out.insert(be.address);
                }
            }
        }
    }
    if out.is_empty() {
        for a in addresses {
            out.insert(SocketAddr::new(a.addr, DEFAULT_RESPONDER_PORT));
        }
    }
    out.into_iter().collect()
}

/// The client's address: the highest free host address at or below `.250` in
/// the IPv4 subnet of the first selected node that has one (the site's
/// first node otherwise), avoiding every node address, VIP and the gateway.
fn client_address(site: &Site, selected: &[&cairn_site::Node]) -> Result<IfAddr, PlanError> {
    let base = selected
        .iter()
        .copied()
        .chain(site.nodes.iter())
        .flat_map(|n| n.addresses.iter())
        .find(|a| a.addr.is_ipv4())
        .ok_or(PlanError::NoIpv4)?;
    let IpAddr::V4(addr) = base.addr else {
        return Err(PlanError::NoIpv4);
    };
    let prefix = u32::from(base.prefix.min(30));
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let network = u32::from(addr) & mask;
    let broadcast = network | !mask;
    let mut taken: BTreeSet<IpAddr> = site
        .nodes
        .iter()
        .flat_map(|n| n.addresses.iter().map(|a| a.addr))
        .collect();
    taken.extend(site_vips(site));
    taken.extend(site.network.gateway);
    taken.extend(site.network.dns.iter().copied());
    // `.250` of the subnet when it is that large, else its last host.
    let top = (network + 250).min(broadcast - 1);
    (network + 1..=top)
        .rev()
        .map(Ipv4Addr::from)
        .find(|a| !taken.contains(&IpAddr::V4(*a)))
        .map(|a| IfAddr {
            addr: IpAddr::V4(a),
            prefix: base.prefix,
        })
        .ok_or_else(|| {
            PlanError::NoFreeAddress(format!("{}/{}", Ipv4Addr::from(network), base.prefix))
        })
}

/// The namespace prefix of the lab kept in `state` (its canonical path):
/// `cl` and 8 hex digits of a hash of the path, so one state directory always
/// maps to the same namespaces and two state directories do not collide.
pub fn lab_name(state: &std::path::Path) -> String {
    format!(
        "cl{:08x}",
        fnv1a(state.as_os_str().as_encoded_bytes()) as u32
    )
}

/// FNV-1a, 64 bit: a stable hash for names and change stamps (not security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Every virtual IP of the site: `[lb] vips` and `[storage] vip`.
fn site_vips(site: &Site) -> Vec<IpAddr> {
    let lb = site.lb.iter().flat_map(|lb| lb.vips.iter().map(|v| v.addr));
    let storage = site.storage.iter().filter_map(|st| st.vip.map(|v| v.addr));
    lb.chain(storage).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    const SITE: &str = r#"
[cluster]
name = "t"
[network]
gateway = "192.0.2.1"
[[node]]
name = "lb1"
role = "lb"
mac = "52:54:00:c0:00:11"
addresses = ["192.0.2.11/24"]
priority = 200
[[node]]
name = "lb2"
role = "lb"
mac = "52:54:00:c0:00:12"
addresses = ["192.0.2.12/24"]
priority = 100
[[node]]
name = "box1"
role = "base"
mac = "52:54:00:c0:00:01"
addresses = ["192.0.2.250/24"]
[[node]]
name = "web1"
role = "base"
external = true
addresses = ["192.0.2.21/24"]
[[node]]
name = "web2"
role = "base"
external = true
addresses = ["192.0.2.22/24"]
[lb]
vrid = 51
vips = ["192.0.2.100/24"]
[[lb.frontend]]
name = "web"
port = 80
[[lb.frontend.backend]]
name = "web1"
address = "192.0.2.21:8080"
[[lb.frontend.backend]]
name = "web1b"
address = "192.0.2.21:8081"
"#;

    fn site(text: &str) -> Site {
        cairn_site::parse_site(text, Path::new("site.toml")).unwrap()
    }

    fn req(nodes: Option<&[String]>) -> PlanRequest<'_> {
        PlanRequest {
            lab: "cl1".into(),
            site_path: "/s/site.toml".into(),
            profile: "qemu-x86_64".into(),
            nodes,
            memory_mib: 384,
        }
    }

    #[test]
    fn whole_site_becomes_vms_externals_and_a_client() {
        let p = plan(&site(SITE), &req(None)).unwrap();
        let vms: Vec<(&str, &str, &str)> = p
            .vms
            .iter()
            .map(|v| (v.name.as_str(), v.role.as_str(), v.tap.as_str()))
            .collect();
        assert_eq!(
            vms,
            [
                ("lb1", "lb", "tap0"),
                ("lb2", "lb", "tap1"),
                ("box1", "base", "tap2")
            ]
        );
        assert_eq!(p.vms[0].mac, "52:54:00:c0:00:11");
        assert_eq!(p.roles(), ["lb", "base"]);
        assert_eq!(p.externals[0].netns, "cl1-x-web1");
        assert_eq!(p.externals[1].port, "v1");
        assert_eq!(
            p.namespaces(),
            ["cl1-sw", "cl1-client", "cl1-x-web1", "cl1-x-web2"]
        );
        assert_eq!(p.vips, [IpAddr::from([192, 0, 2, 100])]);
        assert_eq!(p.node_by_mac("52:54:00:C0:00:12").unwrap().name, "lb2");
        assert_eq!(p.known_names(), "lb1, lb2, box1, web1, web2, client");
    }

    #[test]
    fn responders_listen_where_the_backends_point_else_on_8080() {
        let p = plan(&site(SITE), &req(None)).unwrap();
        assert_eq!(
            p.externals[0].listen,
            [
                "192.0.2.21:8080".parse::<SocketAddr>().unwrap(),
                "192.0.2.21:8081".parse().unwrap()
            ]
        );
        assert_eq!(
            p.externals[1].listen,
            ["192.0.2.22:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn client_takes_the_highest_free_address_from_250_down() {
        // .250 is box1's, .100 the VIP: the client gets .249.
        let p = plan(&site(SITE), &req(None)).unwrap();
        assert_eq!(p.client.address, "192.0.2.249/24");
        let small = SITE
            .replace("192.0.2.11/24", "192.0.2.11/29")
            .replace("gateway = \"192.0.2.1\"", "gateway = \"192.0.2.9\"")
            .replace(
                "addresses = [\"192.0.2.12/24\"]",
                "addresses = [\"192.0.2.14/29\"]",
            );
        // A /29 (192.0.2.8 - .15): highest host .14 is lb2's, so .13.
        let only_lb1 = ["lb1".to_string()];
        let p = plan(&site(&small), &req(Some(&only_lb1))).unwrap();
        assert_eq!(p.client.address, "192.0.2.13/29");
    }

    #[test]
    fn nodes_selects_and_keeps_the_order_given() {
        let names = ["lb2".to_string(), "web2".to_string(), "lb2".to_string()];
        let p = plan(&site(SITE), &req(Some(&names))).unwrap();
        assert_eq!(p.vms.len(), 1);
        assert_eq!(p.vms[0].name, "lb2");
        assert_eq!(p.vms[0].tap, "tap0");
        assert_eq!(p.externals.len(), 1);
        assert_eq!(p.externals[0].name, "web2");
    }

    #[test]
    fn unknown_and_vm_less_selections_are_refused_precisely() {
        let names = ["lb3".to_string()];
        let err = plan(&site(SITE), &req(Some(&names))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--nodes: unknown node \"lb3\" (the site has: lb1, lb2, box1, web1, web2)"
        );
        let names = ["web1".to_string()];
        let err = plan(&site(SITE), &req(Some(&names))).unwrap_err();
        assert!(matches!(err, PlanError::NoVm(_)), "{err}");
    }

    #[test]
    fn the_repo_is_served_only_at_the_clients_address() {
        let c: IpAddr = "192.0.2.250".parse().unwrap();
        assert_eq!(
            repo_listen("http://192.0.2.250:8080/", c),
            Some("192.0.2.250:8080".parse().unwrap())
        );
        assert_eq!(
            repo_listen("http://192.0.2.250/updates/", c),
            Some("192.0.2.250:80".parse().unwrap())
        );
        assert_eq!(repo_listen("http://192.0.2.9:8080/", c), None);
        assert_eq!(repo_listen("https://192.0.2.250/", c), None);
        assert_eq!(repo_listen("http://updates.example/", c), None);
    }

    #[test]
    fn a_node_called_client_is_refused() {
        let s = SITE.replace("name = \"box1\"", "name = \"client\"");
        let err = plan(&site(&s), &req(None)).unwrap_err();
        assert_eq!(err, PlanError::ReservedName("client".into()));
    }

    #[test]
    fn lab_names_are_stable_short_and_differ_per_directory() {
        let a = lab_name(Path::new("/var/lab/a"));
        assert_eq!(a, lab_name(Path::new("/var/lab/a")));
        assert_ne!(a, lab_name(Path::new("/var/lab/b")));
        assert_eq!(a.len(), 10);
        assert!(a.starts_with("cl"));
        // FNV-1a test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn plan_round_trips_through_json() {
        let p = plan(&site(SITE), &req(None)).unwrap();
        let text = serde_json::to_string_pretty(&p).unwrap();
        let back: LabPlan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }
}

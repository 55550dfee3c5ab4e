//! The site file: the cluster, its nodes, and the per-role sections.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Collector, FileErrors, from_toml, read};
use crate::net::{IfAddr, Mac};
use crate::storage::StorageSection;
use crate::update::UpdateConfig;
use crate::version_syntax;

/// What a box does; one image per role and hardware profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// cairn-init and the network only.
    Base,
    /// HAProxy behind a floating VIP.
    Lb,
    /// Kubernetes worker runtime.
    K8sNode,
    /// Gluster storage node.
    Storage,
}

impl Role {
    /// Every role, in the order they are documented.
    pub const ALL: [Role; 4] = [Role::Base, Role::Lb, Role::K8sNode, Role::Storage];

    /// The name used in site files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Base => "base",
            Role::Lb => "lb",
            Role::K8sNode => "k8s-node",
            Role::Storage => "storage",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?} (known roles: {})", names.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A whole site: one file describes the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Cluster-wide names.
    pub cluster: Cluster,
    /// Image versioning and reproducibility settings.
    #[serde(default)]
    pub image: ImageSection,
    /// Settings shared by every node's network.
    #[serde(default)]
    pub network: Network,
    /// Every node, booted as a cairn box or external.
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
    /// The load balancer role's settings.
    pub lb: Option<LbSection>,
    /// The storage role's Gluster volumes (docs/storage.md).
    pub storage: Option<StorageSection>,
    /// A/B update settings; without them images carry no update bundle.
    pub update: Option<UpdateConfig>,
    /// The k8s-node role's cluster settings (docs/k8s-node.md).
    pub k8s: Option<crate::k8s::K8sSection>,
}

/// Cluster-wide names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster name (a DNS label).
    pub name: String,
    /// DNS domain of the nodes, if any.
    pub domain: Option<String>,
}

/// Image versioning and reproducibility settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Version stamped into images built from this site file.
    #[serde(default = "default_version")]
    pub version: String,
    /// Timestamp given to every file in the images (SOURCE_DATE_EPOCH).
    #[serde(default = "default_epoch")]
    pub source_date_epoch: u64,
}

fn default_version() -> String {
    "0.1.0".into()
}

fn default_epoch() -> u64 {
    // 2026-01-01T00:00:00Z
    1_767_225_600
}

impl Default for ImageSection {
    fn default() -> Self {
        Self {
            version: default_version(),
            source_date_epoch: default_epoch(),
        }
    }
}

/// Network settings shared by the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Default gateway, reachable from every node's subnet of the same family.
    pub gateway: Option<IpAddr>,
    /// DNS resolvers.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Interface MTU.
    pub mtu: Option<u32>,
}

/// One node of the site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Hostname (a DNS label), unique in the site.
    pub name: String,
    /// The node's role.
    pub role: Role,
    /// MAC of the interface that carries the node's addresses; how a box
    /// recognises itself. Required unless the node is external.
    pub mac: Option<Mac>,
    /// Addresses on that interface.
    #[serde(default)]
    pub addresses: Vec<IfAddr>,
    /// A host that is not a cairn box (e.g. a backend the lab simulates).
    #[serde(default)]
    pub external: bool,
    /// VRRP priority for load balancers and storage nodes (1-254; higher wins).
    pub priority: Option<u8>,
}

/// The load-balancer role: VIPs, frontends and backends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LbSection {
    /// VRRP virtual router id shared by the LB pair.
    pub vrid: u8,
    /// Virtual addresses that follow the master.
    pub vips: Vec<IfAddr>,
    /// VRRP advertisement interval.
    #[serde(default = "default_advert")]
    pub advert_interval_ms: u32,
    /// Whether a higher-priority box takes the VIP back when it returns.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// HAProxy frontends.
    #[serde(rename = "frontend", default)]
    pub frontends: Vec<Frontend>,
}

fn default_advert() -> u32 {
    1000
}

fn default_true() -> bool {
    true
}

/// One HAProxy frontend and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    /// Name (used in haproxy.cfg).
    pub name: String,
    /// Port on the VIPs.
    pub port: u16,
    /// `http` or `tcp`.
    #[serde(default)]
    pub mode: FrontendMode,
    /// HTTP health-check path (`GET <path>` must answer 2xx/3xx); without it
    /// a health check is a TCP connect.
    pub check_path: Option<String>,
    /// Servers traffic is spread over.
    #[serde(rename = "backend")]
    pub backends: Vec<Backend>,
}

/// Proxy mode of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendMode {
    /// Layer 7.
    #[default]
    Http,
    /// Layer 4.
    Tcp,
}

/// One backend server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Name (used in haproxy.cfg).
    pub name: String,
    /// Address and port.
    pub address: SocketAddr,
    /// Health-check it.
    #[serde(default = "default_true")]
    pub check: bool,
}

/// Reads and validates a site file.
pub fn load_site(path: &Path) -> Result<Site, FileErrors> {
    parse_site(&read(path)?, path)
}

/// Parses and validates site-file text; `file` names it in errors.
pub fn parse_site(text: &str, file: &Path) -> Result<Site, FileErrors> {
    let site: Site = from_toml(text, file)?;
    let mut c = Collector::new(file);
    site.validate(&mut c);
    c.finish(site)
}

fn check_label(c: &mut Collector, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        c.add(
            field,
            format!(
                "{name:?} is not a valid name (lower-case letters, digits and '-', at most 63)"
            ),
        );
    }
}

impl Site {
    fn validate(&self, c: &mut Collector) {
        check_label(c, "cluster.name", &self.cluster.name);
        if let Err(e) = version_syntax::validate(&self.image.version) {
            c.add("image.version", e.to_string());
        }
        if let Some(u) = &self.update {
            u.validate(c);
        }
        if self.nodes.is_empty() {
            c.add("node", "the site has no nodes");
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut macs: HashMap<Mac, usize> = HashMap::new();
        let mut addrs: HashMap<IpAddr, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let f = |k: &str| format!("node[{i}].{k}");
            check_label(c, &f("name"), &n.name);
            if let Some(&j) = names.get(n.name.as_str()) {
                c.add(
                    f("name"),
                    format!("node name {:?} is used twice (also node[{j}])", n.name),
                );
            } else {
                names.insert(&n.name, i);
            }
            match n.mac {
                None if !n.external => c.add(
                    f("mac"),
                    format!(
                        "node {:?} needs a MAC address (how the box finds itself at boot)",
                        n.name
                    ),
                ),
                None => {}
                Some(m) => {
                    if let Some(&j) = macs.get(&m) {
                        c.add(
                            f("mac"),
                            format!(
                                "MAC {m} of node {:?} is also the MAC of node {:?}",
                                n.name, self.nodes[j].name
                            ),
                        );
                    } else {
                        macs.insert(m, i);
                    }
                }
            }
            for a in &n.addresses {
                if let Some(&j) = addrs.get(&a.addr) {
                    c.add(
                        f("addresses"),
                        format!(
                            "address {} of node {:?} is also on node {:?}",
                            a.addr, n.name, self.nodes[j].name
                        ),
                    );
                } else {
                    addrs.insert(a.addr, i);
                }
            }
            if let Some(gw) = self.network.gateway {
                let same_family: Vec<&IfAddr> = n
                    .addresses
                    .iter()
                    .filter(|a| a.addr.is_ipv4() == gw.is_ipv4())
                    .collect();
                if !same_family.is_empty() && !same_family.iter().any(|a| a.contains(gw)) {
                    c.add(
                        "network.gateway",
                        format!("gateway {gw} is outside every subnet of node {:?}", n.name),
                    );
                }
            }
            match (n.role, n.priority) {
                (Role::Lb | Role::Storage, Some(p)) if p == 0 || p == 255 => c.add(
                    f("priority"),
                    "must be between 1 and 254 (0 and 255 are reserved by VRRP)",
                ),
                (Role::Lb | Role::Storage, _) | (_, None) => {}
                (_, Some(_)) => c.add(
                    f("priority"),
                    format!(
                        "only load balancers and storage nodes have a VRRP priority; node {:?} is {}",
                        n.name, n.role
                    ),
                ),
            }
        }
        let has_lb = self.nodes.iter().any(|n| n.role == Role::Lb && !n.external);
        match &self.lb {
            None if has_lb => c.add("lb", "the site has load-balancer nodes but no [lb] section"),
            None => {}
            Some(lb) => lb.validate(c),
        }
        let has_storage = self
            .nodes
            .iter()
            .any(|n| n.role == Role::Storage && !n.external);
        match &self.storage {
            None if has_storage => c.add(
                "storage",
                "the site has storage nodes but no [storage] section",
            ),
            None => {}
            Some(st) => {
                st.validate(&self.nodes, c);
                st.validate_with_lb(self.lb.as_ref(), c);
            }
        }
        crate::k8s::validate_site(self, c);
    }

    /// The node whose MAC is one of `macs` (the box's own interfaces).
    pub fn node_by_mac(&self, macs: &[Mac]) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| !n.external && n.mac.is_some_and(|m| macs.contains(&m)))
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Nodes booted as cairn boxes of a role.
    pub fn boxes_with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .filter(move |n| n.role == role && !n.external)
    }
}

impl LbSection {
    fn validate(&self, c: &mut Collector) {
        if self.vrid == 0 {
            c.add("lb.vrid", "must be between 1 and 255");
        }
        if self.vips.is_empty() {
            c.add("lb.vips", "at least one virtual IP is needed");
        }
        if !(10..=40_950).contains(&self.advert_interval_ms) {
            c.add(
                "lb.advert_interval_ms",
                "must be between 10 and 40950 (VRRPv3 centiseconds, 12 bits)",
            );
        }
        if self.frontends.is_empty() {
            c.add(
                "lb.frontend",
                "the load balancer has no [[lb.frontend]]: HAProxy would have nothing to serve",
            );
        }
        let mut ports = HashMap::new();
        let mut names = HashMap::new();
        for (i, fe) in self.frontends.iter().enumerate() {
            check_label(c, &format!("lb.frontend[{i}].name"), &fe.name);
            if let Some(j) = names.insert(fe.name.as_str(), i) {
                c.add(
                    format!("lb.frontend[{i}].name"),
                    format!(
                        "frontend name {:?} is also used by lb.frontend[{j}]",
                        fe.name
                    ),
                );
            }
            if fe.port == 0 {
                c.add(
                    format!("lb.frontend[{i}].port"),
                    "must be between 1 and 65535",
                );
            }
            if let Some(j) = ports.insert(fe.port, i) {
                c.add(
                    format!("lb.frontend[{i}].port"),
                    format!("port {} is also used by lb.frontend[{j}]", fe.port),
                );
            }
            if let Some(path) = &fe.check_path {
                let ok = path.starts_with('/')
                    && path.chars().all(|ch| ch.is_ascii_graphic() && ch != '#');
                if !ok {
                    c.add(
                        format!("lb.frontend[{i}].check_path"),
                        format!(
                            "{path:?} is not an HTTP path (starts with '/', printable ASCII, no spaces or '#')"
                        ),
                    );
                }
            }
            if fe.backends.is_empty() {
                c.add(
                    format!("lb.frontend[{i}].backend"),
                    "a frontend needs at least one backend",
                );
            }
            let mut servers = HashMap::new();
            for (k, b) in fe.backends.iter().enumerate() {
                let field = format!("lb.frontend[{i}].backend[{k}].name");
                check_label(c, &field, &b.name);
                if let Some(j) = servers.insert(b.name.as_str(), k) {
                    c.add(
                        field,
                        format!(
                            "backend name {:?} is also used by lb.frontend[{i}].backend[{j}]",
                            b.name
                        ),
                    );
                }
                if b.address.port() == 0 || b.address.ip().is_unspecified() {
                    c.add(
                        format!("lb.frontend[{i}].backend[{k}].address"),
                        format!(
                            "{} is not a server address (needs an IP and a port)",
                            b.address
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "demo"

[network]
gateway = "192.0.2.1"

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
priority = 100

[[node]]
name = "web1"
role = "base"
external = true
addresses = ["192.0.2.21/24"]

[lb]
vrid = 51
vips = ["192.0.2.100/24"]
advert_interval_ms = 100

[[lb.frontend]]
name = "web"
port = 80

[[lb.frontend.backend]]
name = "web1"
address = "192.0.2.21:8080"
"#;

    fn errs(text: &str) -> Vec<String> {
        parse_site(text, Path::new("site.toml"))
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn good_site_parses_and_finds_nodes_by_mac() {
        let s = parse_site(GOOD, Path::new("site.toml")).unwrap();
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.image.version, "0.1.0");
        let m: Mac = "52:54:00:00:00:12".parse().unwrap();
        let other: Mac = "52:54:00:99:99:99".parse().unwrap();
        assert_eq!(
            s.node_by_mac(&[other, m]).map(|n| n.name.as_str()),
            Some("lb2")
        );
        assert!(s.node_by_mac(&[other]).is_none());
        assert_eq!(s.boxes_with_role(Role::Lb).count(), 2);
        assert_eq!(
            s.lb.as_ref().unwrap().frontends[0].backends[0]
                .address
                .port(),
            8080
        );
    }

    #[test]
    fn a_mac_in_two_nodes_names_both() {
        let t = GOOD.replace("52:54:00:00:00:12", "52:54:00:00:00:11");
        let e = errs(&t);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0],
            "site.toml: field `node[1].mac`: MAC 52:54:00:00:00:11 of node \"lb2\" is also the MAC of node \"lb1\""
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let e = errs(&GOOD.replace("priority = 100", "priority = 100\nprio = 1"));
        assert!(
            e[0].contains("field `node[1].prio`") && e[0].contains("unknown field `prio`"),
            "{e:?}"
        );
        let e = errs(&GOOD.replace(
            "role = \"lb\"\nmac = \"52:54:00:00:00:12\"",
            "role = \"db\"\nmac = \"52:54:00:00:00:12\"",
        ));
        assert!(
            e[0].contains("field `node[1].role`") && e[0].contains("unknown role \"db\""),
            "{e:?}"
        );
        let e = errs(&GOOD.replace("52:54:00:00:00:12", "52:54:00:00:12"));
        assert!(
            e[0].contains("field `node[1].mac`") && e[0].contains("not a MAC"),
            "{e:?}"
        );
        let e = errs("[cluster]\nname = \"x\"\n[[node]]\nname = \"a\"\n");
        assert!(e[0].contains("missing field `role`"), "{e:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let t = GOOD
            .replace("name = \"lb2\"", "name = \"lb1\"")
            .replace("192.0.2.12/24", "198.51.100.12/24")
            .replace("vrid = 51", "vrid = 0");
        let e = errs(&t);
        assert!(
            e.iter()
                .any(|m| m.contains("node[1].name") && m.contains("used twice")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("network.gateway") && m.contains("outside")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("lb.vrid")), "{e:?}");
    }

    #[test]
    fn lb_nodes_need_an_lb_section_and_macs() {
        let t = GOOD.split("[lb]").next().unwrap_or_default().to_owned();
        assert_eq!(
            errs(&t),
            vec!["site.toml: field `lb`: the site has load-balancer nodes but no [lb] section"]
        );
        let t = GOOD.replace("mac = \"52:54:00:00:00:11\"\n", "");
        assert!(
            errs(&t)
                .iter()
                .any(|m| m.contains("node[0].mac") && m.contains("needs a MAC"))
        );
    }

    #[test]
    fn lb_without_frontends_is_refused() {
        let t = GOOD
            .split("[[lb.frontend]]")
            .next()
            .unwrap_or_default()
            .to_owned();
        let e = errs(&t);
        assert_eq!(
            e,
            vec![
                "site.toml: field `lb.frontend`: the load balancer has no [[lb.frontend]]: HAProxy would have nothing to serve"
            ]
        );
    }

    const TWO_FRONTENDS: &str = r#"
[[lb.frontend]]
name = "api"
port = 443
mode = "tcp"
check_path = "/healthz"

[[lb.frontend.backend]]
name = "a1"
address = "192.0.2.31:6443"

[[lb.frontend.backend]]
name = "a2"
address = "192.0.2.32:6443"
check = false
"#;

    #[test]
    fn second_frontend_with_check_path_parses() {
        let s = parse_site(&format!("{GOOD}{TWO_FRONTENDS}"), Path::new("site.toml")).unwrap();
        let lb = s.lb.unwrap();
        assert_eq!(lb.frontends.len(), 2);
        assert_eq!(lb.frontends[0].check_path, None);
        assert_eq!(lb.frontends[1].check_path.as_deref(), Some("/healthz"));
        assert_eq!(lb.frontends[1].mode, FrontendMode::Tcp);
        assert!(lb.frontends[1].backends[0].check);
        assert!(!lb.frontends[1].backends[1].check);
    }

    #[test]
    fn duplicate_frontend_names_ports_and_backend_names_are_named() {
        let t = format!(
            "{GOOD}{}",
            TWO_FRONTENDS
                .replace("name = \"api\"", "name = \"web\"")
                .replace("port = 443", "port = 80")
                .replace("name = \"a2\"", "name = \"a1\"")
        );
        let e = errs(&t);
        assert_eq!(
            e,
            vec![
                "site.toml: field `lb.frontend[1].name`: frontend name \"web\" is also used by lb.frontend[0]",
                "site.toml: field `lb.frontend[1].port`: port 80 is also used by lb.frontend[0]",
                "site.toml: field `lb.frontend[1].backend[1].name`: backend name \"a1\" is also used by lb.frontend[1].backend[0]",
            ]
        );
    }

    #[test]
    fn bad_check_paths_ports_and_server_addresses_are_named() {
        let t = format!(
            "{GOOD}{}",
            TWO_FRONTENDS
                .replace("/healthz", "healthz now")
                .replace("port = 443", "port = 0")
                .replace("192.0.2.32:6443", "0.0.0.0:6443")
        );
        let e = errs(&t);
        assert_eq!(
            e,
            vec![
                "site.toml: field `lb.frontend[1].port`: must be between 1 and 65535",
                "site.toml: field `lb.frontend[1].check_path`: \"healthz now\" is not an HTTP path (starts with '/', printable ASCII, no spaces or '#')",
                "site.toml: field `lb.frontend[1].backend[1].address`: 0.0.0.0:6443 is not a server address (needs an IP and a port)",
            ]
        );
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = errs("[cluster\nname = 1\n");
        assert!(
            e[0].starts_with("site.toml: ") && e[0].contains("line 1"),
            "{e:?}"
        );
    }
}

#[cfg(test)]
mod files {
    use super::*;

    #[test]
    fn the_example_site_and_profiles_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let site = load_site(&root.join("examples/site.toml")).unwrap();
        assert_eq!(site.boxes_with_role(Role::Lb).count(), 2);
        assert!(site.node("box1").is_some());
        for p in ["qemu-x86_64", "generic-x86_64"] {
            crate::load_profile(&root.join("hardware-profiles"), p).unwrap();
        }
    }
}

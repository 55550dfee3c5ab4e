//! The k8s-node role's section: where the cluster's API server is, the pod
//! and service networks, and the kubelet binary the site brings along
//! (Debian has none). Checked here so a pod network that would swallow a
//! node's own subnet is refused before an image is built.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Collector;
use crate::net::IfAddr;
use crate::site::{Role, Site};

/// `[k8s]`: what a k8s-node box needs to know about its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sSection {
    /// The API server, `https://<host>[:<port>]` (typically the lb VIP on 6443).
    pub api_endpoint: String,
    /// The node's pod network (CNI bridge + host-local IPAM), e.g. `10.244.0.0/24`.
    pub pod_cidr: IfAddr,
    /// The cluster's service network (kubelet's view; optional).
    pub service_cidr: Option<IfAddr>,
    /// Cluster DNS address handed to pods (inside `service_cidr` when both are given).
    pub cluster_dns: Option<IpAddr>,
    /// The kubelet binary to put into the image; without it the box runs
    /// the container runtime only and says the kubelet is not configured.
    pub kubelet: Option<KubeletBinary>,
    /// Absolute path on the box of the bootstrap token file the kubelet's
    /// bootstrap kubeconfig refers to (`tokenFile`); the token itself never
    /// goes into the image.
    pub bootstrap_token_file: Option<PathBuf>,
}

/// A kubelet binary named by the site file and pinned by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletBinary {
    /// Path of the binary on the build host, relative to the site file's directory.
    pub path: PathBuf,
    /// Its SHA-256, 64 lower-case hex digits; the builder refuses any other content.
    pub sha256: String,
}

/// The parts of an `https://host[:port]` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port (443 when the URL gives none).
    pub port: u16,
}

/// Parses `https://host[:port]` (IPv6 hosts in brackets, no path).
pub fn parse_api_endpoint(url: &str) -> Result<ApiEndpoint, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?} is not an https:// URL (the API server speaks TLS)"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{url:?}: give only https://<host>[:<port>], without user, path or query"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '[' around an IPv6 address"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{url:?}: {h:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: expected ':<port>' after ']'"))?,
            ),
        };
        (h.to_owned(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{url:?}: {p:?} is not a port (1-65535)")),
        },
    };
    let host_ok = host.parse::<IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }));
    if !host_ok {
        return Err(format!(
            "{url:?}: {host:?} is not a host name or IP address"
        ));
    }
    Ok(ApiEndpoint { host, port })
}

/// Whether two networks share any address.
pub fn overlaps(a: &IfAddr, b: &IfAddr) -> bool {
    let shorter = if a.prefix <= b.prefix { a } else { b };
    let longer = if a.prefix <= b.prefix { b } else { a };
    shorter.contains(longer.addr)
}

/// The network address of `a` (host bits cleared) equals `a.addr`.
fn is_network(a: &IfAddr) -> bool {
    let bits = if a.addr.is_ipv4() { 32 } else { 128 };
    if u32::from(a.prefix) == bits {
        return true;
    }
    // An address is its own network when no other address of the prefix sorts below it,
    // i.e. the host part is zero.
    match a.addr {
        IpAddr::V4(v) => {
            let host = u32::MAX.checked_shr(u32::from(a.prefix)).unwrap_or(0);
            u32::from(v) & host == 0
        }
        IpAddr::V6(v) => {
            let host = u128::MAX.checked_shr(u32::from(a.prefix)).unwrap_or(0);
            u128::from(v) & host == 0
        }
    }
}

/// Where the bootstrap token goes on a box when the site does not say.
pub const DEFAULT_TOKEN_FILE: &str = "/var/lib/cairn/k8s/bootstrap-token";

impl K8sSection {
    /// The bootstrap token file on the box (`bootstrap_token_file`, else
    /// [`DEFAULT_TOKEN_FILE`]): written by `cairnctl k8s join`, read by the
    /// kubelet through its bootstrap kubeconfig.
    pub fn token_file(&self) -> PathBuf {
        self.bootstrap_token_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE))
    }

    /// The cluster CA on the box: `ca.crt` beside the token file.
    pub fn ca_file(&self) -> PathBuf {
        let t = self.token_file();
        t.parent()
            .unwrap_or(std::path::Path::new("/var/lib/cairn/k8s"))
            .join("ca.crt")
    }

    /// The parsed `api_endpoint` (valid after the site was loaded).
    pub fn api(&self) -> Result<ApiEndpoint, String> {
        parse_api_endpoint(&self.api_endpoint)
    }

    fn validate_cidr(&self, field: &str, net: &IfAddr, site: &Site, c: &mut Collector) {
        if !is_network(net) {
            c.add(
                field,
                format!("{net} has host bits set: give the network address"),
            );
        }
        if net.prefix == 0 {
            c.add(field, format!("{net} would cover every address"));
        }
        for n in &site.nodes {
            for a in &n.addresses {
                if overlaps(net, a) {
                    c.add(
                        field,
                        format!(
                            "{net} overlaps the network {a} of node {:?}: pods would shadow the nodes",
                            n.name
                        ),
                    );
                }
            }
        }
        if let Some(lb) = &site.lb {
            for v in &lb.vips {
                if net.contains(v.addr) {
                    c.add(field, format!("{net} contains the lb VIP {}", v.addr));
                }
            }
        }
        if let Some(gw) = site.network.gateway {
            if net.contains(gw) {
                c.add(field, format!("{net} contains the gateway {gw}"));
            }
        }
    }

    pub(crate) fn validate(&self, site: &Site, c: &mut Collector) {
        if let Err(e) = parse_api_endpoint(&self.api_endpoint) {
            c.add("k8s.api_endpoint", e);
        }
        self.validate_cidr("k8s.pod_cidr", &self.pod_cidr, site, c);
        if self.pod_cidr.addr.is_ipv4() && self.pod_cidr.prefix > 30 {
            c.add(
                "k8s.pod_cidr",
                format!("{} leaves no room for pods (at most /30)", self.pod_cidr),
            );
        }
        if let Some(svc) = &self.service_cidr {
            self.validate_cidr("k8s.service_cidr", svc, site, c);
            if overlaps(svc, &self.pod_cidr) {
                c.add(
                    "k8s.service_cidr",
                    format!("{svc} overlaps k8s.pod_cidr {}", self.pod_cidr),
                );
            }
        }
        if let Some(dns) = self.cluster_dns {
            match &self.service_cidr {
                Some(svc) if !svc.contains(dns) => c.add(
                    "k8s.cluster_dns",
                    format!("{dns} is outside k8s.service_cidr {svc}"),
                ),
                _ => {}
            }
            if self.pod_cidr.contains(dns) {
                c.add(
                    "k8s.cluster_dns",
                    format!("{dns} is inside k8s.pod_cidr {}", self.pod_cidr),
                );
            }
        }
        if let Some(k) = &self.kubelet {
            let ok = k.sha256.len() == 64
                && k.sha256
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ('a'..='f').contains(&ch));
            if !ok {
                c.add(
                    "k8s.kubelet.sha256",
                    format!("{:?} is not a SHA-256 (64 lower-case hex digits)", k.sha256),
                );
            }
            if k.path.as_os_str().is_empty() {
                c.add("k8s.kubelet.path", "empty path");
            }
        }
        if let Some(t) = &self.bootstrap_token_file {
            if !t.is_absolute() {
                c.add(
                    "k8s.bootstrap_token_file",
                    format!(
                        "{} is not an absolute path on the box (e.g. /var/lib/cairn/k8s/bootstrap-token on the data partition)",
                        t.display()
                    ),
                );
            } else if !t.starts_with("/var/") || t.file_name().is_none() {
                c.add(
                    "k8s.bootstrap_token_file",
                    format!(
                        "{} is not a file under /var: `cairnctl k8s join` writes the token there, and only the data partition (/var) is writable on a box",
                        t.display()
                    ),
                );
            }
        }
    }
}

/// Site-wide checks for the k8s-node role: nodes need a `[k8s]` section.
pub(crate) fn validate_site(site: &Site, c: &mut Collector) {
    let has_nodes = site.boxes_with_role(Role::K8sNode).next().is_some();
    match &site.k8s {
        None if has_nodes => c.add(
            "k8s",
            "the site has k8s-node boxes but no [k8s] section (api_endpoint, pod_cidr)",
        ),
        None => {}
        Some(k) => k.validate(site, c),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse_site;

    const NODES: &str = r#"
[cluster]
name = "k"

[network]
gateway = "192.0.2.1"

[[node]]
name = "k1"
role = "k8s-node"
mac = "52:54:00:00:00:41"
addresses = ["192.0.2.41/24"]
"#;

    fn site(k8s: &str) -> Result<Site, Vec<String>> {
        parse_site(&format!("{NODES}\n{k8s}"), Path::new("site.toml"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_full_section_parses() {
        let s = site(
            r#"[k8s]
api_endpoint = "https://192.0.2.100:6443"
pod_cidr = "198.51.100.0/24"
service_cidr = "203.0.113.0/24"
cluster_dns = "203.0.113.10"
bootstrap_token_file = "/var/lib/cairn/k8s/token"
kubelet = { path = "bin/kubelet", sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" }
"#,
        )
        .unwrap();
        let k = s.k8s.unwrap();
        assert_eq!(
            k.api().unwrap(),
            ApiEndpoint {
                host: "192.0.2.100".into(),
                port: 6443
            }
        );
        assert_eq!(k.pod_cidr.to_string(), "198.51.100.0/24");
        assert_eq!(k.kubelet.unwrap().path, PathBuf::from("bin/kubelet"));
    }

    #[test]
    fn k8s_nodes_need_the_section() {
        let e = site("").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("field `k8s`: the site has k8s-node boxes but no [k8s] section"),
            "{e:?}"
        );
    }

    #[test]
    fn pod_cidr_overlapping_a_node_network_is_named() {
        let e = site(
            "[k8s]\napi_endpoint = \"https://192.0.2.100:6443\"\npod_cidr = \"192.0.2.128/25\"\n",
        )
        .unwrap_err();
        assert!(
            e.iter().any(|m| m.contains("site.toml: field `k8s.pod_cidr`: 192.0.2.128/25 overlaps the network 192.0.2.41/24 of node \"k1\"")),
            "{e:?}"
        );
        // A wider pod network containing the node's subnet is refused too.
        let e = site(
            "[k8s]\napi_endpoint = \"https://192.0.2.100:6443\"\npod_cidr = \"192.0.0.0/16\"\n",
        )
        .unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.contains("k8s.pod_cidr") && m.contains("of node \"k1\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("contains the gateway 192.0.2.1")),
            "{e:?}"
        );
    }

    #[test]
    fn bad_values_are_each_named() {
        let e = site(
            r#"[k8s]
api_endpoint = "http://api:6443/x"
pod_cidr = "198.51.100.7/24"
service_cidr = "198.51.100.0/25"
cluster_dns = "203.0.113.10"
bootstrap_token_file = "token"
kubelet = { path = "kubelet", sha256 = "ABC" }
"#,
        )
        .unwrap_err();
        for want in [
            "field `k8s.api_endpoint`: \"http://api:6443/x\" is not an https:// URL",
            "field `k8s.pod_cidr`: 198.51.100.7/24 has host bits set",
            "field `k8s.service_cidr`: 198.51.100.0/25 overlaps k8s.pod_cidr 198.51.100.7/24",
            "field `k8s.cluster_dns`: 203.0.113.10 is outside k8s.service_cidr 198.51.100.0/25",
            "field `k8s.bootstrap_token_file`: token is not an absolute path",
            "field `k8s.kubelet.sha256`: \"ABC\" is not a SHA-256",
        ] {
            assert!(
                e.iter().any(|m| m.contains(want)),
                "missing {want:?} in {e:#?}"
            );
        }
        assert_eq!(e.len(), 6, "{e:#?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = site("[k8s]\napi_endpoint = \"https://a:6443\"\npod_cidr = \"10.0.0.0/16\"\npod_cdir = \"x\"\n")
            .unwrap_err();
        assert!(e[0].contains("unknown field `pod_cdir`"), "{e:?}");
    }

    #[test]
    fn endpoints_parse_with_and_without_ports() {
        assert_eq!(
            parse_api_endpoint("https://api.cairn.test").unwrap().port,
            443
        );
        let v6 = parse_api_endpoint("https://[2001:db8::1]:6443/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::1", 6443));
        assert!(parse_api_endpoint("https://a:0").is_err());
        assert!(parse_api_endpoint("https://a:x").is_err());
        assert!(parse_api_endpoint("https://user@a").is_err());
        assert!(parse_api_endpoint("https://-a-").is_err());
        assert!(parse_api_endpoint("https://[nope]:1").is_err());
    }

    #[test]
    fn overlap_is_symmetric() {
        let a: IfAddr = "10.0.0.0/8".parse().unwrap();
        let b: IfAddr = "10.1.2.0/24".parse().unwrap();
        let c: IfAddr = "11.0.0.0/24".parse().unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c) && !overlaps(&c, &a));
        let v6: IfAddr = "2001:db8::/32".parse().unwrap();
        assert!(!overlaps(&a, &v6));
    }
}

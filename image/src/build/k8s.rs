//! The k8s-node role's files, rendered from the site's `[k8s]` section:
//! containerd's config, the CNI network list, and (only when the site names
//! a kubelet) the KubeletConfiguration and the bootstrap kubeconfig. Also
//! the pieces that are not text: the kubelet binary, checked against the
//! site's SHA-256 before anything is built, the pause image archive made
//! from our `cairn-pause`, and the `iptables` names the CNI plugins exec.
//!
//! Everything depends on the site alone (never on a node), so every box of
//! the role carries the same bytes (docs/k8s-node.md).

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use cairn_site::{K8sSection, Site};
use sha2::{Digest, Sha256};

use super::oci;

/// containerd's configuration file.
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The CNI network list containerd's CRI plugin loads.
pub const CNI_CONFLIST: &str = "/etc/cni/net.d/10-cairn.conflist";
/// The CNI plugins' directory (Debian's `containernetworking-plugins`).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The CRI socket (containerd's gRPC address).
pub const CRI_SOCKET: &str = "/run/containerd/containerd.sock";
/// Where the kubelet binary goes.
pub const KUBELET_PATH: &str = "/usr/bin/kubelet";
/// The KubeletConfiguration.
pub const KUBELET_CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// The bootstrap kubeconfig.
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// The resolver configuration containerd copies into every pod sandbox.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The pause image archive, imported into containerd at boot (`cairn-k8s import`).
pub const PAUSE_ARCHIVE: &str = "/usr/share/cairn/k8s/pause-oci.tar";
/// The cgroup (under /sys/fs/cgroup) the pods' shims move to.
pub const SHIM_CGROUP: &str = "/k8s-shims";
/// The CNI network's name (shown by `cairnctl k8s status`).
pub const CNI_NETWORK: &str = "cairn";
/// The CNI bridge.
pub const CNI_BRIDGE: &str = "cni0";
/// `iptables` names the CNI plugins exec (go-iptables looks them up in
/// PATH), as links to the nft variants: Debian makes these with
/// update-alternatives, which never runs here.
pub const IPTABLES_LINKS: &[(&str, &str)] = &[
    ("/usr/sbin/iptables", "iptables-nft"),
    ("/usr/sbin/iptables-save", "iptables-nft-save"),
    ("/usr/sbin/iptables-restore", "iptables-nft-restore"),
    ("/usr/sbin/ip6tables", "ip6tables-nft"),
    ("/usr/sbin/ip6tables-save", "ip6tables-nft-save"),
    ("/usr/sbin/ip6tables-restore", "ip6tables-nft-restore"),
];

/// Why the k8s-node files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The site has no `[k8s]` section.
    #[error(
        "{file}: field `k8s`: the k8s-node role needs a [k8s] section (api_endpoint, pod_cidr)"
    )]
    NoSection {
        /// The site file.
        file: PathBuf,
    },
    /// The kubelet binary named by the site cannot be read.
    #[error("{file}: field `k8s.kubelet.path`: cannot read the kubelet binary {path}: {source}")]
    KubeletMissing {
        /// The site file.
        file: PathBuf,
        /// The resolved path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kubelet binary is not what the site pinned.
    #[error(
        "{file}: field `k8s.kubelet.sha256`: {path} has SHA-256 {actual}, but the site pins {expected}: refusing a kubelet the site did not name"
    )]
    KubeletMismatch {
        /// The site file.
        file: PathBuf,
        /// The resolved path.
        path: PathBuf,
        /// What the site says.
        expected: String,
        /// What the file is.
        actual: String,
    },
    /// A kubelet without a bootstrap token reference.
    #[error(
        "{file}: field `k8s.bootstrap_token_file`: the site names a kubelet, which needs a bootstrap token file to join the cluster"
    )]
    NoBootstrapToken {
        /// The site file.
        file: PathBuf,
    },
    /// The pause archive could not be made.
    #[error("pause image: {0}")]
    Oci(#[from] oci::OciError),
    /// Writing into the root tree failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the root tree gets beyond rendered text: checked at load time,
/// installed by [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The kubelet on the build host, already checked against `kubelet_sha256`.
    pub kubelet: Option<PathBuf>,
    /// The SHA-256 the site pins for it.
    pub kubelet_sha256: Option<String>,
    /// The pause image's name (`cairn.invalid/pause:<image version>`).
    pub pause_image: String,
    /// Timestamp of the archive's entries.
    pub epoch: u64,
}

/// The name containerd knows the pause image by.
pub fn pause_image_name(site: &Site) -> String {
    format!("cairn.invalid/pause:{}", site.image.version)
}

fn section<'a>(site: &'a Site, file: &Path) -> Result<&'a K8sSection, K8sError> {
    site.k8s.as_ref().ok_or_else(|| K8sError::NoSection {
        file: file.to_owned(),
    })
}

/// SHA-256 of a file as 64 lower-case hex digits.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks the site's kubelet (exists, hash matches) and returns what
/// [`install`] needs. Nothing is written.
pub fn payload(site: &Site, site_file: &Path) -> Result<Payload, K8sError> {
    let k = section(site, site_file)?;
    let mut kubelet = None;
    let mut kubelet_sha256 = None;
    if let Some(kb) = &k.kubelet {
        if k.bootstrap_token_file.is_none() {
            return Err(K8sError::NoBootstrapToken {
                file: site_file.to_owned(),
            });
        }
        let base = site_file.parent().unwrap_or(Path::new("."));
        let path = base.join(&kb.path);
        let actual = sha256_file(&path).map_err(|source| K8sError::KubeletMissing {
            file: site_file.to_owned(),
            path: path.clone(),
            source,
        })?;
        if actual != kb.sha256 {
            return Err(K8sError::KubeletMismatch {
                file: site_file.to_owned(),
                path,
                expected: kb.sha256.clone(),
                actual,
            });
        }
        kubelet = Some(path);
        kubelet_sha256 = Some(actual);
    }
    Ok(Payload {
        kubelet,
        kubelet_sha256,
        pause_image: pause_image_name(site),
        epoch: site.image.source_date_epoch,
    })
}

/// Every text file of the role: (absolute path in the root, text).
pub fn render(site: &Site, site_file: &Path) -> Result<Vec<(String, String)>, K8sError> {
    let k = section(site, site_file)?;
    let mut out = vec![
        (CONTAINERD_CONFIG.to_owned(), containerd_config(site)),
        (CNI_CONFLIST.to_owned(), cni_conflist(k)),
        (RESOLV_CONF.to_owned(), resolv_conf(site)),
    ];
    if k.kubelet.is_some() {
        out.push((KUBELET_CONFIG.to_owned(), kubelet_config(k)));
        out.push((
            BOOTSTRAP_KUBECONFIG.to_owned(),
            bootstrap_kubeconfig(site, k),
        ));
    }
    Ok(out)
}

/// containerd 1.6's config (version 2): state on the data partition, the
/// CRI plugin with our pause image, runc with the cgroupfs driver (no
/// systemd here), overlayfs, and Debian's CNI plugins.
pub fn containerd_config(site: &Site) -> String {
    let pause = pause_image_name(site);
    format!(
        r#"# Rendered by cairn from the site file (docs/k8s-node.md). Do not edit: the root is read-only.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
# Snapshotters this kernel and role do not have; they would only log errors.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{CRI_SOCKET}"

[plugins."io.containerd.internal.v1.opt"]
  # /opt is on the read-only root.
  path = "/var/lib/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  enable_selinux = false
  restrict_oom_score_adj = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        # kubelet and containerd agree on cgroupfs: there is no systemd.
        SystemdCgroup = false
        # Shims leave containerd's service cgroup (made by cairn-k8s prep), so
        # a containerd restart, which empties that cgroup, keeps the pods.
        ShimCgroup = "{SHIM_CGROUP}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
"#
    )
}

/// `/etc/resolv.conf` from the site's `[network] dns` and the cluster's
/// domain: containerd copies it into every pod sandbox that brings no DNS
/// config of its own (and refuses to start a sandbox without the file).
pub fn resolv_conf(site: &Site) -> String {
    let mut s = String::from("# Rendered by cairn from the site file ([network] dns).\n");
    if let Some(d) = &site.cluster.domain {
        let _ = writeln!(s, "search {d}");
    }
    for ns in &site.network.dns {
        let _ = writeln!(s, "nameserver {ns}");
    }
    s
}

/// The node's pod network: a `cni0` bridge (gateway, masquerade for traffic
/// leaving the pod network) with host-local addresses from `pod_cidr`, then
/// portmap for host ports. containerd adds `lo` itself (the loopback plugin).
pub fn cni_conflist(k: &K8sSection) -> String {
    let default_route = if k.pod_cidr.addr.is_ipv4() {
        "0.0.0.0/0"
    } else {
        "::/0"
    };
    let v = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": k.pod_cidr.to_string() }]],
                    "routes": [{ "dst": default_route }],
                    "dataDir": "/var/lib/cni/networks",
                },
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
            },
        ],
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// The KubeletConfiguration: cgroupfs, the pod CIDR and DNS, and the cluster
/// CA (beside the token file) for API-server-to-kubelet client certificates.
/// The CRI socket is a command-line flag (`cairn-k8s kubelet`): the config
/// field for it only exists from kubelet 1.27 on, the flag in every version.
pub fn kubelet_config(k: &K8sSection) -> String {
    let mut s = String::from(
        "# Rendered by cairn from the site file (docs/k8s-node.md).\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         cgroupDriver: cgroupfs\n",
    );
    let _ = writeln!(s, "podCIDR: {}", k.pod_cidr);
    if let Some(dns) = k.cluster_dns {
        let _ = writeln!(s, "clusterDNS:\n- {dns}\nclusterDomain: cluster.local");
    }
    let _ = writeln!(
        s,
        "authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: {}",
        k.ca_file().display()
    );
    s.push_str(
        "authorization:\n  mode: Webhook\n\
         rotateCertificates: true\n\
         failSwapOn: false\n\
         volumePluginDir: /var/lib/kubelet/volumeplugins\n",
    );
    s
}

/// The bootstrap kubeconfig: the API endpoint, the CA and token files the
/// operator puts on the data partition with `cairnctl k8s join` (never in
/// the image).
pub fn bootstrap_kubeconfig(site: &Site, k: &K8sSection) -> String {
    let cluster = &site.cluster.name;
    format!(
        "# Rendered by cairn from the site file (docs/k8s-node.md).\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
         users:\n\
         - name: kubelet-bootstrap\n  user:\n    tokenFile: {}\n\
         contexts:\n\
         - name: bootstrap\n  context:\n    cluster: {cluster}\n    user: kubelet-bootstrap\n\
         current-context: bootstrap\n",
        k.api_endpoint,
        k.ca_file().display(),
        k.token_file().display()
    )
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> K8sError + '_ {
    move |source| K8sError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Puts the payload into the root tree: the pause archive made from
/// `box_bin/cairn-pause`, the kubelet (hashed again: it must still be the
/// file that was checked), and the iptables links.
pub fn install(p: &Payload, box_bin: &Path, tree: &Path) -> Result<(), K8sError> {
    use std::os::unix::fs::PermissionsExt;
    let program_path = box_bin.join("cairn-pause");
    let program = std::fs::read(&program_path).map_err(io(&program_path))?;
    let archive = oci::pause_archive(&p.pause_image, &program, p.epoch)?;
    let at = tree.join(PAUSE_ARCHIVE.trim_start_matches('/'));
    if let Some(d) = at.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(&at, &archive.bytes).map_err(io(&at))?;
    if let (Some(src), Some(want)) = (&p.kubelet, &p.kubelet_sha256) {
        let to = tree.join(KUBELET_PATH.trim_start_matches('/'));
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::copy(src, &to).map_err(io(src))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).map_err(io(&to))?;
        let got = sha256_file(&to).map_err(io(&to))?;
        if &got != want {
            return Err(K8sError::KubeletMismatch {
                file: src.clone(),
                path: src.clone(),
                expected: want.clone(),
                actual: got,
            });
        }
    }
    for (link, target) in IPTABLES_LINKS {
        let at = tree.join(link.trim_start_matches('/'));
        if std::fs::symlink_metadata(&at).is_err() {
            std::os::unix::fs::symlink(target, &at).map_err(io(&at))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn example() -> (Site, PathBuf) {
        let file = super::super::source_root().join("examples/k8s-site.toml");
        (cairn_site::load_site(&file).unwrap(), file)
    }

    #[test]
    fn the_example_renders_containerd_and_cni_but_no_kubelet_files() {
        let (site, file) = example();
        let files = render(&site, &file).unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [CONTAINERD_CONFIG, CNI_CONFLIST, RESOLV_CONF]);
        assert!(
            files[2]
                .1
                .ends_with("search cairn.test\nnameserver 192.0.2.1\n"),
            "{}",
            files[2].1
        );
        let cfg = &files[0].1;
        assert!(
            cfg.contains("sandbox_image = \"cairn.invalid/pause:0.1.0\""),
            "{cfg}"
        );
        assert!(cfg.contains("SystemdCgroup = false"), "{cfg}");
        assert!(cfg.contains("ShimCgroup = \"/k8s-shims\""), "{cfg}");
        assert!(cfg.contains("root = \"/var/lib/containerd\""), "{cfg}");
        // containerd must accept it as TOML.
        let v: toml::Value = toml::from_str(cfg).unwrap();
        assert_eq!(v["version"].as_integer(), Some(2));
        let cni: serde_json::Value = serde_json::from_str(&files[1].1).unwrap();
        assert_eq!(cni["name"], CNI_NETWORK);
        assert_eq!(
            cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            site.k8s.as_ref().unwrap().pod_cidr.to_string()
        );
        assert_eq!(cni["plugins"][1]["type"], "portmap");
        let p = payload(&site, &file).unwrap();
        assert_eq!(p.kubelet, None);
        assert_eq!(p.pause_image, "cairn.invalid/pause:0.1.0");
    }

    fn with_kubelet(dir: &Path, sha: &str, token: bool) -> (Site, PathBuf) {
        let (_, example) = example();
        let mut text = std::fs::read_to_string(example).unwrap();
        text.push_str(&format!(
            "\n[k8s.kubelet]\npath = \"bin/kubelet\"\nsha256 = \"{sha}\"\n"
        ));
        if token {
            text = text.replace(
                "[k8s]\n",
                "[k8s]\nbootstrap_token_file = \"/var/lib/cairn/k8s/token\"\n",
            );
        }
        let file = dir.join("site.toml");
        std::fs::write(&file, text).unwrap();
        (cairn_site::load_site(&file).unwrap(), file)
    }

    #[test]
    fn a_pinned_kubelet_is_checked_and_its_files_rendered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/kubelet"), b"not really a kubelet").unwrap();
        let sha = sha256_file(&dir.path().join("bin/kubelet")).unwrap();
        let (site, file) = with_kubelet(dir.path(), &sha, true);
        let p = payload(&site, &file).unwrap();
        assert_eq!(p.kubelet, Some(dir.path().join("bin/kubelet")));
        let files = render(&site, &file).unwrap();
        let kc = &files.iter().find(|(p, _)| p == KUBELET_CONFIG).unwrap().1;
        assert!(kc.contains("cgroupDriver: cgroupfs\n"), "{kc}");
        assert!(
            kc.contains("    clientCAFile: /var/lib/cairn/k8s/ca.crt\n"),
            "{kc}"
        );
        // The default (/usr/libexec/...) is on the read-only root.
        assert!(
            kc.contains("volumePluginDir: /var/lib/kubelet/volumeplugins\n"),
            "{kc}"
        );
        // kubelet < 1.27 does not know the field; the socket is a flag.
        assert!(!kc.contains("containerRuntimeEndpoint"), "{kc}");
        let boot = &files
            .iter()
            .find(|(p, _)| p == BOOTSTRAP_KUBECONFIG)
            .unwrap()
            .1;
        assert!(
            boot.contains("server: https://192.0.2.100:6443\n"),
            "{boot}"
        );
        assert!(
            boot.contains("tokenFile: /var/lib/cairn/k8s/token\n"),
            "{boot}"
        );
        assert!(
            boot.contains("certificate-authority: /var/lib/cairn/k8s/ca.crt\n"),
            "{boot}"
        );

        // Installing writes the archive, the kubelet and the links.
        let bin = dir.path().join("box");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("cairn-pause"), b"pause program").unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
        install(&p, &bin, &tree).unwrap();
        assert_eq!(
            std::fs::read(tree.join("usr/bin/kubelet")).unwrap(),
            b"not really a kubelet"
        );
        assert!(tree.join("usr/share/cairn/k8s/pause-oci.tar").is_file());
        assert_eq!(
            std::fs::read_link(tree.join("usr/sbin/iptables")).unwrap(),
            PathBuf::from("iptables-nft")
        );
    }

    #[test]
    fn a_wrong_hash_a_missing_binary_and_a_missing_token_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let sha = "0".repeat(64);
        let (site, file) = with_kubelet(dir.path(), &sha, true);
        let e = payload(&site, &file).unwrap_err().to_string();
        assert!(
            e.contains("field `k8s.kubelet.path`: cannot read the kubelet binary"),
            "{e}"
        );
        assert!(e.contains("bin/kubelet"), "{e}");

        std::fs::write(dir.path().join("bin/kubelet"), b"evil").unwrap();
        let e = payload(&site, &file).unwrap_err().to_string();
        let actual = sha256_file(&dir.path().join("bin/kubelet")).unwrap();
        assert!(
            e.contains(&format!(
                "field `k8s.kubelet.sha256`: {} has SHA-256 {actual}, but the site pins {sha}",
                dir.path().join("bin/kubelet").display()
            )),
            "{e}"
        );

        let (site, file) = with_kubelet(dir.path(), &actual, false);
        let e = payload(&site, &file).unwrap_err().to_string();
        assert!(e.contains("field `k8s.bootstrap_token_file`"), "{e}");
    }
}

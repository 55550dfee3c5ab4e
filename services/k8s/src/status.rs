//! `cairn-k8s status`: the runtime's state in one view — containerd's CRI
//! version and conditions, runc's version, the CNI network, the pause image,
//! pods and containers, and whether a kubelet is configured.

use std::path::Path;

use k8s_cri::v1 as cri;
use serde::Serialize;

use crate::cri::{Cri, call};

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `containerd 1.6.20 (CRI v1)`, or why the CRI did not answer.
    pub runtime: Result<String, String>,
    /// CRI conditions (`RuntimeReady`, `NetworkReady`): (type, ok, reason/message).
    pub conditions: Vec<(String, bool, String)>,
    /// First line of `runc --version`.
    pub runc: Result<String, String>,
    /// CNI network lists: (file, network name, plugin types).
    pub cni: Vec<(String, String, Vec<String>)>,
    /// The pause image's id, when containerd has it.
    pub pause_image: Result<String, String>,
    /// Pod sandboxes and containers the runtime knows of.
    pub pods: Option<(usize, usize)>,
    /// `configured (<path>)` or `not configured`.
    pub kubelet: String,
}

/// Reads the CNI `.conflist` files of `dir`: (file, name, plugin types).
pub fn cni_networks(dir: &Path) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conflist"))
        .collect();
    files.sort();
    for f in files {
        let v: serde_json::Value = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let name = v["name"].as_str().unwrap_or("(unreadable)").to_owned();
        let types = v["plugins"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["type"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.push((f.display().to_string(), name, types));
    }
    out
}

/// The first line of `runc --version`.
pub fn runc_version(runc: &Path) -> Result<String, String> {
    let o = std::process::Command::new(runc)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", runc.display()))?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .next()
        .map(str::to_owned)
        .filter(|_| o.status.success())
        .ok_or_else(|| format!("{} --version failed ({})", runc.display(), o.status))
}

/// The kubelet's state: not configured, missing, or configured with the
/// credentials it has (bootstrapped, token waiting to be used, none yet).
pub fn kubelet_state(k8s: Option<&cairn_site::K8sSection>, kubelet: &Path) -> String {
    kubelet_state_at(k8s, kubelet, Path::new(crate::kubelet::KUBECONFIG))
}

/// [`kubelet_state`] with the kubelet's own kubeconfig at `kubeconfig`.
pub fn kubelet_state_at(
    k8s: Option<&cairn_site::K8sSection>,
    kubelet: &Path,
    kubeconfig: &Path,
) -> String {
    use crate::kubelet::Credentials;
    let Some(k8s) = k8s.filter(|k| k.kubelet.is_some()) else {
        return "not configured (the site names no kubelet: runtime only)".to_owned();
    };
    if !kubelet.is_file() {
        return format!("named by the site but {} is missing", kubelet.display());
    }
    let creds = match crate::kubelet::credentials(kubeconfig, &k8s.token_file(), &k8s.ca_file()) {
        Credentials::Bootstrapped => {
            format!("joined ({} written at bootstrap)", kubeconfig.display())
        }
        Credentials::Token => format!(
            "join credentials present, not bootstrapped yet (API server {})",
            k8s.api_endpoint
        ),
        Credentials::Missing => {
            "waiting for join credentials (cairnctl k8s join --token <id.secret> --ca-cert <PEM>)"
                .to_owned()
        }
    };
    format!("configured ({}): {creds}", kubelet.display())
}

/// Asks the CRI (when `cri` is connected) and fills in the rest.
pub async fn gather(cri: Option<&mut Cri>, image: &str, kubelet: String) -> Status {
    let mut s = Status {
        runtime: Err("CRI not reachable".into()),
        conditions: Vec::new(),
        runc: runc_version(Path::new("/usr/sbin/runc")),
        cni: cni_networks(Path::new(crate::CNI_CONF_DIR)),
        pause_image: Err("CRI not reachable".into()),
        pods: None,
        kubelet,
    };
    let Some(c) = cri else {
        return s;
    };
    s.runtime = call(
        "Version",
        c.runtime.version(cri::VersionRequest::default()).await,
    )
    .map(|v| {
        format!(
            "{} {} (CRI {})",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        )
    })
    .map_err(|e| e.to_string());
    if let Ok(st) = call(
        "Status",
        c.runtime
            .status(cri::StatusRequest { verbose: false })
            .await,
    ) {
        for cond in st.status.map(|s| s.conditions).unwrap_or_default() {
            let why = [cond.reason, cond.message]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            s.conditions.push((cond.r#type, cond.status, why));
        }
    }
    s.pause_image = call(
        "ImageStatus",
        c.images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await,
    )
    .map_err(|e| e.to_string())
    .and_then(|r| {
        r.image
            .map(|i| format!("{image} {}", i.id))
            .ok_or_else(|| format!("{image} not imported"))
    });
    let pods = call(
        "ListPodSandbox",
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await,
    );
    let ctrs = call(
        "ListContainers",
        c.runtime
            .list_containers(cri::ListContainersRequest::default())
            .await,
    );
    if let (Ok(p), Ok(k)) = (pods, ctrs) {
        s.pods = Some((p.items.len(), k.containers.len()));
    }
    s
}

fn show<T: std::fmt::Display>(r: &Result<T, String>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => format!("ERROR {e}"),
    }
}

impl Status {
    /// True when the runtime and its network are ready.
    pub fn healthy(&self) -> bool {
        self.runtime.is_ok()
            && self.pause_image.is_ok()
            && !self.conditions.is_empty()
            && self.conditions.iter().all(|(_, ok, _)| *ok)
    }

    /// Human-readable lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("runtime:     {}\n", show(&self.runtime)));
        for (t, ok, why) in &self.conditions {
            s.push_str(&format!(
                "  {t}: {}{}\n",
                if *ok { "true" } else { "false" },
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ));
        }
        s.push_str(&format!("runc:        {}\n", show(&self.runc)));
        if self.cni.is_empty() {
            s.push_str("cni:         no network list in /etc/cni/net.d\n");
        }
        for (file, name, types) in &self.cni {
            s.push_str(&format!(
                "cni:         {name} ({}) from {file}\n",
                types.join(", ")
            ));
        }
        s.push_str(&format!("pause image: {}\n", show(&self.pause_image)));
        if let Some((p, c)) = self.pods {
            s.push_str(&format!("pods:        {p} sandboxes, {c} containers\n"));
        }
        s.push_str(&format!("kubelet:     {}\n", self.kubelet));
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cni_lists_are_read_in_order_with_their_plugins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-cairn.conflist"),
            r#"{"name":"cairn","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("99-other.conf"), "{}").unwrap();
        let n = cni_networks(dir.path());
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].1, "cairn");
        assert_eq!(n[0].2, ["bridge", "portmap"]);
    }

    #[test]
    fn kubelet_state_follows_the_site_the_binary_and_the_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("kubelet");
        let kc = dir.path().join("kubeconfig");
        let token = dir.path().join("k8s/bootstrap-token");
        let mut section: cairn_site::K8sSection = toml::from_str(
            "api_endpoint = \"https://192.0.2.250:6443\"\npod_cidr = \"198.51.100.0/24\"\n",
        )
        .unwrap();
        assert!(kubelet_state_at(Some(&section), &k, &kc).starts_with("not configured"));
        assert!(kubelet_state_at(None, &k, &kc).starts_with("not configured"));
        section.kubelet = Some(cairn_site::KubeletBinary {
            path: "bin/kubelet".into(),
            sha256: "0".repeat(64),
        });
        section.bootstrap_token_file = Some(token.clone());
        assert!(kubelet_state_at(Some(&section), &k, &kc).contains("is missing"));
        std::fs::write(&k, "x").unwrap();
        let s = kubelet_state_at(Some(&section), &k, &kc);
        assert!(
            s.starts_with("configured") && s.contains("waiting for join credentials"),
            "{s}"
        );
        crate::kubelet::join(
            &token,
            &section.ca_file(),
            "abcdef.0123456789abcdef",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let s = kubelet_state_at(Some(&section), &k, &kc);
        assert!(s.contains("join credentials present, not bootstrapped yet (API server https://192.0.2.250:6443)"), "{s}");
        std::fs::write(&kc, "x").unwrap();
        assert!(kubelet_state_at(Some(&section), &k, &kc).contains("joined"));
    }

    #[test]
    fn an_unreachable_runtime_renders_as_an_error_and_unhealthy() {
        let s = Status {
            runtime: Err("cannot connect".into()),
            runc: Ok("runc version 1.1.5+ds1".into()),
            pause_image: Err("CRI not reachable".into()),
            kubelet: "not configured".into(),
            conditions: Vec::new(),
            cni: Vec::new(),
            pods: None,
        };
        let text = s.render();
        assert!(text.contains("runtime:     ERROR cannot connect"), "{text}");
        assert!(
            text.contains("runc:        runc version 1.1.5+ds1"),
            "{text}"
        );
        assert!(!s.healthy());
    }
}

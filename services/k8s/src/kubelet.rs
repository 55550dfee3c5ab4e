//! `cairn-k8s kubelet`: the kubelet service. With a kubelet in the image (the
//! site named one) it becomes the kubelet, with the files the builder
//! rendered; without one it says so and exits 0, so the box is an honest
//! runtime-only node and never pretends to be a full one.

use std::net::IpAddr;

/// The rendered KubeletConfiguration.
pub const CONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// The rendered bootstrap kubeconfig.
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// The kubeconfig the kubelet writes after bootstrapping (data partition).
pub const KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
/// What the console says without a kubelet.
pub const NOT_CONFIGURED: &str = "kubelet: not configured (the site names no [k8s] kubelet): this box runs the container runtime only";

/// The kubelet's arguments for node `node` at `ip`.
pub fn args(node: &str, ip: Option<IpAddr>) -> Vec<String> {
    let mut a = vec![
        format!("--config={CONFIG}"),
        format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
        format!("--kubeconfig={KUBECONFIG}"),
        format!("--hostname-override={node}"),
    ];
    if let Some(ip) = ip {
        a.push(format!("--node-ip={ip}"));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_the_rendered_files_and_the_node() {
        let a = args("k1", "192.0.2.41".parse().ok());
        assert_eq!(
            a,
            [
                "--config=/etc/kubernetes/kubelet-config.yaml",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--hostname-override=k1",
                "--node-ip=192.0.2.41",
            ]
        );
    }
}

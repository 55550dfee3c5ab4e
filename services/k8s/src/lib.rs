//! The k8s-node role's helper, `cairn-k8s`: prepares the kernel for the
//! container runtime, imports cairn's pause image into containerd, starts the
//! kubelet when the site names one, and checks and shows the runtime through
//! the Kubernetes CRI, as the kubelet would talk to it (docs/k8s-node.md).

pub mod cri;
pub mod crilog;
pub mod import;
pub mod kubelet;
pub mod prep;
pub mod selfcheck;
pub mod status;

/// containerd's CRI socket.
pub const CRI_SOCKET: &str = "/run/containerd/containerd.sock";
/// The pause image archive the builder puts into the image.
pub const PAUSE_ARCHIVE: &str = "/usr/share/cairn/k8s/pause-oci.tar";
/// The site file on a box.
pub const SITE_FILE: &str = "/etc/cairn/site.toml";
/// Where the kubelet is when the site names one.
pub const KUBELET: &str = "/usr/bin/kubelet";
/// The CNI configuration directory.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// The pause image's name for a site: `cairn.invalid/pause:<image version>`
/// (the builder names the archive's image the same way).
pub fn pause_image_name(site: &cairn_site::Site) -> String {
    format!("cairn.invalid/pause:{}", site.image.version)
}

//! The Debian reference for the `storage` role: mmdebstrap `--variant=minbase`
//! plus systemd-sysv, udev, kmod, iproute2, glusterfs-server, xfsprogs,
//! initramfs-tools and the profile's kernel (built by `bench_debian::image`),
//! with the first-boot automation an admin would add to form the volume: a
//! oneshot unit on every node that waits for glusterd and, on the first node,
//! probes the peers and creates and starts the replica-3 volume once both are
//! connected. One image for all three VMs: networkd matches each node's MAC.

use crate::bench_debian::image::{Spec, fnv64};

/// Bumped whenever something the cache key does not see changes (the enabled
/// units, the hooks of `bench_debian::image`).
const VERSION: &str = "debian-storage-2";

/// Packages on top of minbase (the brief's list; initramfs-tools as in the
/// `lb` reference, for the direct boot's initramfs).
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "iproute2",
    "glusterfs-server",
    "xfsprogs",
    "initramfs-tools",
];

/// The volume both sides form.
pub const VOLUME: &str = "gv0";
/// The brick directory on every Debian node: on the root file system, like
/// cairn's brick on its data partition (hence `force`).
pub const BRICK: &str = "/srv/gluster/gv0/brick";
/// Printed on the console by the first node once the volume is started.
pub const STARTED_MARKER: &str = "BENCH-VOLUME-STARTED";
/// Printed by every node once its glusterd answers the CLI.
pub const GLUSTERD_MARKER: &str = "BENCH-GLUSTERD-ANSWERS";

/// One node: name, MAC, address with prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node name (also the hostname, from the kernel command line).
    pub name: String,
    /// MAC as `52:54:00:…`.
    pub mac: String,
    /// Address with prefix length, e.g. `192.0.2.31/24`.
    pub address: String,
}

impl Node {
    /// The address without its prefix length.
    pub fn ip(&self) -> &str {
        self.address.split('/').next().unwrap_or(&self.address)
    }
}

/// The first-boot script: waits for glusterd on every node; the first node
/// probes the others until both are connected, then creates and starts the
/// volume once. Every wait is bounded.
pub fn form_script(nodes: &[Node]) -> String {
    let first = nodes.first().map(Node::ip).unwrap_or_default();
    let peers: Vec<&str> = nodes.iter().skip(1).map(Node::ip).collect();
    let bricks: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{BRICK}", n.ip()))
        .collect();
    format!(
        r#"#!/bin/sh
# First-boot automation: form the replica-{n} volume {VOLUME} once.
set -u
say() {{ echo "gluster-form: $*" > /dev/ttyS0; }}
g() {{ timeout 30 gluster --mode=script "$@"; }}
i=0
until g pool list >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -ge 600 ] && {{ say "glusterd does not answer"; exit 1; }}
    sleep 1
done
say "{GLUSTERD_MARKER}"
ip -4 -o addr show | grep -q " inet {first}/" || exit 0
if g volume info {VOLUME} >/dev/null 2>&1; then say "volume {VOLUME} exists"; exit 0; fi
i=0
while :; do
    for p in {peers}; do g peer probe "$p" >/dev/null 2>&1; done
    [ "$(g peer status | grep -c 'Peer in Cluster (Connected)')" -ge {np} ] && break
    i=$((i + 1)); [ "$i" -ge 300 ] && {{ say "peers not connected"; exit 1; }}
    sleep 1
done
say "peers connected"
g volume create {VOLUME} replica {n} {bricks} force || {{ say "volume create failed"; exit 1; }}
g volume start {VOLUME} || {{ say "volume start failed"; exit 1; }}
say "{STARTED_MARKER}"
"#,
        n = nodes.len(),
        peers = peers.join(" "),
        np = peers.len(),
        bricks = bricks.join(" "),
    )
}

const FORM_UNIT: &str = "[Unit]
Description=First-boot automation: form the Gluster volume
After=glusterd.service network-online.target
Wants=glusterd.service network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/gluster-form

[Install]
WantedBy=multi-user.target
";

/// Files added to the root: path, mode, text.
pub fn files(nodes: &[Node], gateway: &str) -> Vec<(String, u32, String)> {
    let f = |p: &str, m: u32, t: String| (p.to_owned(), m, t);
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for n in nodes {
        hosts.push_str(&format!("{} {}\n", n.ip(), n.name));
    }
    let mut out = vec![
        f("etc/hosts", 0o644, hosts),
        // mmdebstrap leaves the build host's resolver here, unreachable from
        // the lab: every lookup glusterd makes would wait for its timeouts.
        // cairn's storage image has no resolv.conf; this one has no server.
        f(
            "etc/resolv.conf",
            0o644,
            "# no name server: peers are addressed by IP, names are in /etc/hosts\n".into(),
        ),
        // A fixed machine id: not a first boot for systemd (glusterd still
        // makes its own UUID on its first start, per VM).
        f(
            "etc/machine-id",
            0o444,
            format!("{:016x}{:016x}\n", fnv64(b"st-a"), fnv64(b"st-b")),
        ),
        f(
            "etc/fstab",
            0o644,
            "/dev/vda / ext4 rw,noatime 0 0\n".into(),
        ),
        f(
            "etc/tmpfiles.d/gluster-brick.conf",
            0o644,
            format!("d {BRICK} 0755 root root -\n"),
        ),
        f("usr/local/sbin/gluster-form", 0o755, form_script(nodes)),
        f(
            "etc/systemd/system/gluster-form.service",
            0o644,
            FORM_UNIT.into(),
        ),
    ];
    for n in nodes {
        out.push(f(
            &format!("etc/systemd/network/10-{}.network", n.name),
            0o644,
            format!(
                "[Match]\nMACAddress={}\n\n[Network]\nAddress={}\nGateway={gateway}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
                n.mac, n.address
            ),
        ));
    }
    out
}

/// The image spec (cache `target/bench/debian-storage`).
pub fn spec(nodes: &[Node], gateway: &str, kernel: (String, String)) -> Spec {
    Spec {
        cache: "debian-storage",
        version: VERSION,
        packages: PACKAGES.iter().map(|p| (*p).to_owned()).collect(),
        kernel_package: kernel.0,
        kernel_version: kernel.1,
        files: files(nodes, gateway),
        enable: vec![
            "systemd-networkd.service".into(),
            "glusterd.service".into(),
            "gluster-form.service".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<Node> {
        (1..=3)
            .map(|i| Node {
                name: format!("st{i}"),
                mac: format!("52:54:00:c0:00:3{i}"),
                address: format!("192.0.2.3{i}/24"),
            })
            .collect()
    }

    #[test]
    fn form_script_probes_the_others_and_creates_the_volume_on_the_first_node() {
        let s = form_script(&nodes());
        assert!(s.contains("grep -q \" inet 192.0.2.31/\" || exit 0"), "{s}");
        assert!(s.contains("for p in 192.0.2.32 192.0.2.33; do"), "{s}");
        assert!(s.contains("-ge 2 ] && break"), "{s}");
        assert!(
            s.contains(
                "volume create gv0 replica 3 192.0.2.31:/srv/gluster/gv0/brick \
                 192.0.2.32:/srv/gluster/gv0/brick 192.0.2.33:/srv/gluster/gv0/brick force"
            ),
            "{s}"
        );
        let create = s.find("volume create").unwrap();
        assert!(s.find("volume start").unwrap() > create);
        assert!(s.find(STARTED_MARKER).unwrap() > create);
    }

    #[test]
    fn every_node_gets_a_network_file_matched_by_mac() {
        let fs = files(&nodes(), "192.0.2.1");
        let nets: Vec<&(String, u32, String)> = fs
            .iter()
            .filter(|(p, _, _)| p.starts_with("etc/systemd/network/"))
            .collect();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].2.contains("MACAddress=52:54:00:c0:00:32"));
        assert!(
            nets[1]
                .2
                .contains("Address=192.0.2.32/24\nGateway=192.0.2.1")
        );
        let hosts = &fs.iter().find(|(p, _, _)| p == "etc/hosts").unwrap().2;
        assert!(hosts.contains("192.0.2.33 st3\n"), "{hosts}");
        let resolv = &fs
            .iter()
            .find(|(p, _, _)| p == "etc/resolv.conf")
            .unwrap()
            .2;
        assert!(
            !resolv.contains("nameserver"),
            "the build host's resolver must not leak in"
        );
    }

    #[test]
    fn spec_differs_from_the_lb_reference_and_keeps_its_own_cache() {
        let s = spec(&nodes(), "192.0.2.1", ("linux-image-x".into(), "1".into()));
        assert_eq!(s.cache, "debian-storage");
        assert!(s.packages.iter().any(|p| p == "glusterfs-server"));
        assert!(!s.packages.iter().any(|p| p == "haproxy"));
        assert!(s.enable.iter().any(|u| u == "gluster-form.service"));
    }
}

//! Privileged test: the node's network configured from the site file through
//! rtnetlink, inside a network namespace the test creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn node_network_from_the_site_file() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: must run as root (creates a network namespace)"
    );
    // A thread of our own moves into a fresh network namespace; the host's is never touched.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        ip(&[
            "link",
            "add",
            "veth0",
            "address",
            "52:54:00:aa:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "veth1",
        ]);
        let site = cairn_site::parse_site(
            r#"
[cluster]
name = "t"
[network]
gateway = "192.0.2.1"
[[node]]
name = "box1"
role = "base"
mac = "52:54:00:aa:00:01"
addresses = ["192.0.2.5/24", "2001:db8::5/64"]
"#,
            Path::new("site.toml"),
        )
        .unwrap();
        let node = site.node("box1").unwrap();
        let mut nl = cairn_netlink::Netlink::open().unwrap();
        let done = cairn_init::network::configure(&mut nl, &site, node).unwrap();
        assert_eq!(done.interface, "veth0");
        assert_eq!(done.gateway, Some("192.0.2.1".parse().unwrap()));
        // Idempotent: a second run changes nothing and does not fail.
        cairn_init::network::configure(&mut nl, &site, node).unwrap();
        let addrs = ip(&["-o", "addr", "show", "dev", "veth0"]);
        assert!(addrs.contains("inet 192.0.2.5/24"), "{addrs}");
        assert!(addrs.contains("inet6 2001:db8::5/64"), "{addrs}");
        let lo = ip(&["-o", "link", "show", "lo"]);
        assert!(lo.contains("UP"), "lo is up: {lo}");
        let routes = ip(&["route", "show", "default"]);
        assert!(
            routes.contains("default via 192.0.2.1 dev veth0"),
            "{routes}"
        );
        // A node whose MAC is on no interface: a precise error.
        let mut other = node.clone();
        other.mac = Some("52:54:00:aa:00:99".parse().unwrap());
        let e = cairn_init::network::configure(&mut nl, &site, &other)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "node \"box1\": no interface has MAC 52:54:00:aa:00:99");
    })
    .join()
    .unwrap();
}

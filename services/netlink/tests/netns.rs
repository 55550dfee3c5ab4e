//! Privileged tests against the real kernel. Each test runs on its own thread that first
//! moves into a fresh network namespace (`unshare(CLONE_NEWNET)`), so the host's links are
//! never touched; the namespace disappears with the thread. Setup uses `ip` from iproute2
//! (a veth pair: this machine's kernel has no `dummy` driver) and results are checked
//! against `ip -j` output as well as through the API.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); without it every test fails with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Command;

use cairn_netlink::{Errno, IpNet, Link, Netlink};
use serde_json::Value;

/// Runs `body` on a new thread inside a new, empty network namespace.
fn in_fresh_netns(body: impl FnOnce() + Send + 'static) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "cairn-netlink's namespace tests need root (they create network namespaces and veth \
         links); run `cargo test -p cairn-netlink` as root"
    );
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("unshare(CLONE_NEWNET) failed: {e}"));
        // Belt and braces: a fresh namespace holds only `lo`. Refuse to go on otherwise.
        let names: Vec<String> = ip_json(&["link", "show"])
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| l["ifname"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, ["lo"], "not in a fresh network namespace; stopping");
        body();
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` in the current thread's namespace and returns stdout; panics on failure.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j ARGS` parsed as JSON.
fn ip_json(args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let text = ip(&full);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip {full:?}: bad JSON {e}: {text}"))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("{text}: {e}")))
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|b| panic!("not a MAC: {b:?}"))
}

/// Creates the veth pair `cn0`/`cn1` and returns our view of `cn0`.
fn veth(nl: &mut Netlink) -> Link {
    ip(&["link", "add", "cn0", "type", "veth", "peer", "name", "cn1"]);
    nl.link_by_name("cn0")
        .unwrap()
        .expect("cn0 exists after ip link add")
}

/// `ip -j addr show dev NAME` as (local, prefixlen, broadcast) triples.
fn ip_addresses(dev: &str) -> Vec<(String, u64, Option<String>)> {
    let json = ip_json(&["addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for info in json[0]["addr_info"].as_array().cloned().unwrap_or_default() {
        out.push((
            info["local"].as_str().unwrap_or_default().to_owned(),
            info["prefixlen"].as_u64().unwrap_or(999),
            info["broadcast"].as_str().map(str::to_owned),
        ));
    }
    out
}

fn has_flag(dev: &str, flag: &str) -> bool {
    let json = ip_json(&["link", "show", "dev", dev]);
    json[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

#[test]
fn lists_links_and_finds_them_by_name_and_mac() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let cn0 = veth(&mut nl);
        let links = nl.links().unwrap();
        let mut names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert!(
            links.windows(2).all(|w| w[0].index < w[1].index),
            "{links:?}"
        );
        names.sort_unstable();
        assert_eq!(names, ["cn0", "cn1", "lo"]);
        let lo = &links[0];
        assert_eq!(lo.mac, None, "loopback has no MAC");
        assert_eq!(lo.mtu, 65536);

        let shown = ip_json(&["link", "show", "dev", "cn0"]);
        assert_eq!(u64::from(cn0.index), shown[0]["ifindex"].as_u64().unwrap());
        assert_eq!(u64::from(cn0.mtu), shown[0]["mtu"].as_u64().unwrap());
        let mac = parse_mac(shown[0]["address"].as_str().unwrap());
        assert_eq!(cn0.mac, Some(mac));

        assert_eq!(nl.link_by_mac(&mac).unwrap(), Some(cn0.clone()));
        let cn1 = nl.link_by_name("cn1").unwrap().unwrap();
        assert_ne!(cn1.mac, cn0.mac);
        assert_eq!(nl.link_by_name("cn9").unwrap(), None);
        assert_eq!(nl.link_by_mac(&[2, 0, 0, 0, 0, 1]).unwrap(), None);
    });
}

#[test]
fn sets_links_up_and_down() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let cn0 = veth(&mut nl);
        assert!(!cn0.up);
        nl.set_up(cn0.index).unwrap();
        assert!(has_flag("cn0", "UP"));
        let now = nl.link_by_name("cn0").unwrap().unwrap();
        assert!(now.up);
        assert!(!now.carrier, "no carrier while the veth peer is down");

        let cn1 = nl.link_by_name("cn1").unwrap().unwrap();
        nl.set_up(cn1.index).unwrap();
        let now = nl.link_by_name("cn0").unwrap().unwrap();
        assert!(now.carrier, "carrier once both veth ends are up");
        assert!(has_flag("cn0", "LOWER_UP"));

        nl.set_down(cn0.index).unwrap();
        assert!(!has_flag("cn0", "UP"));
        assert!(!nl.link_by_name("cn0").unwrap().unwrap().up);

        let lo = nl.link_by_name("lo").unwrap().unwrap();
        nl.set_up(lo.index).unwrap();
        let lo_addrs = nl.addresses(lo.index).unwrap();
        assert!(lo_addrs.contains(&net("127.0.0.1/8")), "{lo_addrs:?}");
        assert!(lo_addrs.contains(&net("::1/128")), "{lo_addrs:?}");
    });
}

#[test]
fn renames_only_a_down_link() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let cn0 = veth(&mut nl);
        // Kernels before 6.2 (bookworm's 6.1) refuse to rename a link that is up; newer
        // ones allow it. Either way the link must end up renamed once it is down.
        nl.set_up(cn0.index).unwrap();
        match nl.rename(cn0.index, "wan0") {
            Ok(()) => {
                assert!(nl.link_by_name("wan0").unwrap().is_some());
                nl.set_down(cn0.index).unwrap();
                nl.rename(cn0.index, "cn0").unwrap();
            }
            Err(busy) => {
                assert_eq!(busy.errno(), Some(Errno::EBUSY), "{busy}");
                assert!(
                    busy.to_string()
                        .starts_with("rename cn0 to wan0: Device or resource busy"),
                    "{busy}"
                );
                nl.set_down(cn0.index).unwrap();
            }
        }
        assert!(!nl.link_by_name("cn0").unwrap().unwrap().up);
        nl.rename(cn0.index, "lan0").unwrap();
        let lan0 = nl.link_by_name("lan0").unwrap().unwrap();
        assert_eq!(lan0.index, cn0.index);
        assert_eq!(lan0.mac, cn0.mac);
        assert_eq!(
            ip_json(&["link", "show", "dev", "lan0"])[0]["ifindex"].as_u64(),
            Some(u64::from(cn0.index))
        );
        assert_eq!(nl.link_by_name("cn0").unwrap(), None);

        let bad = nl.rename(cn0.index, "much-too-long-name").unwrap_err();
        assert!(
            bad.to_string().starts_with("rename link #"),
            "checked before sending, so the link is not looked up: {bad}"
        );
        assert_eq!(bad.errno(), None);
    });
}

#[test]
fn adds_and_removes_ipv4_and_ipv6_addresses() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let cn0 = veth(&mut nl);
        nl.set_up(cn0.index).unwrap();

        nl.add_address(cn0.index, net("192.0.2.10/24")).unwrap();
        nl.add_address(cn0.index, net("198.51.100.10/25")).unwrap();
        nl.add_address(cn0.index, net("2001:db8::10/64")).unwrap();

        let ours = nl.addresses(cn0.index).unwrap();
        for want in ["192.0.2.10/24", "198.51.100.10/25", "2001:db8::10/64"] {
            assert!(ours.contains(&net(want)), "{want} missing from {ours:?}");
        }
        let theirs = ip_addresses("cn0");
        assert!(theirs.contains(&("192.0.2.10".into(), 24, Some("192.0.2.255".into()))));
        assert!(theirs.contains(&("198.51.100.10".into(), 25, Some("198.51.100.127".into()))));
        assert!(theirs.contains(&("2001:db8::10".into(), 64, None)));
        // Addresses are per link: the peer has none of ours.
        let cn1 = nl.link_by_name("cn1").unwrap().unwrap();
        assert!(
            !nl.addresses(cn1.index)
                .unwrap()
                .contains(&net("192.0.2.10/24"))
        );

        let again = nl.add_address(cn0.index, net("192.0.2.10/24")).unwrap_err();
        assert_eq!(again.errno(), Some(Errno::EEXIST));
        // The kernel's extended-ACK reason follows the errno text.
        assert_eq!(
            again.to_string(),
            "add address 192.0.2.10/24 on cn0: File exists (ipv4: Address already assigned)"
        );
        let again6 = nl
            .add_address(cn0.index, net("2001:db8::10/64"))
            .unwrap_err();
        assert_eq!(again6.errno(), Some(Errno::EEXIST), "{again6}");

        assert!(!nl.ensure_address(cn0.index, net("192.0.2.10/24")).unwrap());
        assert!(
            !nl.ensure_address(cn0.index, net("2001:db8::10/64"))
                .unwrap()
        );
        assert!(nl.ensure_address(cn0.index, net("192.0.2.11/24")).unwrap());
        // Same IPv6 address, other prefix: the kernel says EEXIST but it is not what was asked.
        let other_prefix = nl
            .ensure_address(cn0.index, net("2001:db8::10/48"))
            .unwrap_err();
        assert_eq!(other_prefix.errno(), Some(Errno::EEXIST));

        // 192.0.2.11/24 is a secondary of 192.0.2.10/24: remove it first, since deleting a
        // primary IPv4 address takes its secondaries with it (promote_secondaries=0).
        assert!(
            nl.ensure_no_address(cn0.index, net("192.0.2.11/24"))
                .unwrap()
        );
        assert!(!ip_addresses("cn0").iter().any(|a| a.0 == "192.0.2.11"));
        assert!(ip_addresses("cn0").iter().any(|a| a.0 == "192.0.2.10"));

        nl.del_address(cn0.index, net("192.0.2.10/24")).unwrap();
        nl.del_address(cn0.index, net("2001:db8::10/64")).unwrap();
        let theirs = ip_addresses("cn0");
        assert!(!theirs.iter().any(|a| a.0 == "192.0.2.10"), "{theirs:?}");
        assert!(!theirs.iter().any(|a| a.0 == "2001:db8::10"), "{theirs:?}");
        assert!(theirs.iter().any(|a| a.0 == "198.51.100.10"), "{theirs:?}");

        let gone = nl.del_address(cn0.index, net("192.0.2.10/24")).unwrap_err();
        assert_eq!(gone.errno(), Some(Errno::EADDRNOTAVAIL), "{gone}");
        assert!(
            !nl.ensure_no_address(cn0.index, net("192.0.2.10/24"))
                .unwrap()
        );
        assert!(
            !nl.ensure_no_address(cn0.index, net("2001:db8::10/64"))
                .unwrap()
        );
    });
}

#[test]
fn adds_and_removes_routes() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let cn0 = veth(&mut nl);
        let cn1 = nl.link_by_name("cn1").unwrap().unwrap();
        nl.set_up(cn0.index).unwrap();
        nl.set_up(cn1.index).unwrap();
        nl.add_address(cn0.index, net("192.0.2.10/24")).unwrap();
        nl.add_address(cn0.index, net("2001:db8::10/64")).unwrap();

        // Default route via a gateway on the link.
        nl.add_route(None, Some(addr("192.0.2.1")), cn0.index)
            .unwrap();
        let shown = ip_json(&["route", "show", "default"]);
        assert_eq!(shown[0]["gateway"], "192.0.2.1", "{shown}");
        assert_eq!(shown[0]["dev"], "cn0", "{shown}");

        // A prefix route via a gateway, and an on-link one.
        nl.add_route(
            Some(net("198.51.100.0/24")),
            Some(addr("192.0.2.254")),
            cn0.index,
        )
        .unwrap();
        nl.add_route(Some(net("203.0.113.0/24")), None, cn0.index)
            .unwrap();
        let shown = ip_json(&["route", "show", "198.51.100.0/24"]);
        assert_eq!(shown[0]["gateway"], "192.0.2.254", "{shown}");
        let shown = ip_json(&["route", "show", "203.0.113.0/24"]);
        assert_eq!(shown[0]["scope"], "link", "{shown}");

        // IPv6 default route.
        nl.add_route(None, Some(addr("2001:db8::1")), cn0.index)
            .unwrap();
        let shown = ip_json(&["-6", "route", "show", "default"]);
        assert_eq!(shown[0]["gateway"], "2001:db8::1", "{shown}");

        let routes = nl.routes().unwrap();
        let default4 = routes
            .iter()
            .find(|r| r.is_default() && !r.destination.is_ipv6())
            .expect("IPv4 default route listed");
        assert_eq!(default4.gateway, Some(addr("192.0.2.1")));
        assert_eq!(default4.index, Some(cn0.index));
        assert!(routes.iter().any(|r| r.destination == net("192.0.2.0/24")
            && r.gateway.is_none()
            && r.index == Some(cn0.index)));
        assert!(
            routes
                .iter()
                .any(|r| r.destination == net("::/0") && r.gateway == Some(addr("2001:db8::1")))
        );
        assert!(
            routes.iter().all(|r| r.destination.is_network()),
            "{routes:?}"
        );

        let dup = nl
            .add_route(None, Some(addr("192.0.2.1")), cn0.index)
            .unwrap_err();
        assert_eq!(dup.errno(), Some(Errno::EEXIST));
        assert_eq!(
            dup.to_string(),
            "add default route via 192.0.2.1 on cn0: File exists"
        );
        assert!(
            !nl.ensure_route(None, Some(addr("192.0.2.1")), cn0.index)
                .unwrap()
        );

        // A gateway that is not on any link.
        let unreachable = nl
            .add_route(
                Some(net("198.18.0.0/15")),
                Some(addr("203.0.113.77")),
                cn1.index,
            )
            .unwrap_err();
        assert_eq!(
            unreachable.errno(),
            Some(Errno::ENETUNREACH),
            "{unreachable}"
        );
        assert_eq!(
            unreachable.to_string(),
            "add route 198.18.0.0/15 via 203.0.113.77 on cn1: \
             Network is unreachable (Nexthop has invalid gateway)"
        );

        nl.del_route(None, Some(addr("192.0.2.1")), cn0.index)
            .unwrap();
        assert_eq!(ip_json(&["route", "show", "default"]), Value::Array(vec![]));
        let gone = nl
            .del_route(None, Some(addr("192.0.2.1")), cn0.index)
            .unwrap_err();
        assert_eq!(gone.errno(), Some(Errno::ESRCH), "{gone}");
        assert!(
            nl.ensure_route(None, Some(addr("192.0.2.1")), cn0.index)
                .unwrap()
        );
        assert_eq!(
            ip_json(&["route", "show", "default"])[0]["gateway"],
            "192.0.2.1"
        );
    });
}

#[test]
fn errors_name_a_missing_interface() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let missing = 9999;
        let e = nl.add_address(missing, net("192.0.2.10/24")).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENODEV));
        assert_eq!(
            e.to_string(),
            "add address 192.0.2.10/24 on link #9999: No such device (ipv4: Device not found)"
        );
        let e = nl.set_up(missing).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENODEV));
        assert_eq!(e.to_string(), "set link #9999 up: No such device");
        let e = nl
            .add_route(Some(net("203.0.113.0/24")), None, missing)
            .unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENODEV), "{e}");
        assert!(
            e.to_string()
                .starts_with("add route 203.0.113.0/24 on link #9999: No such device"),
            "{e}"
        );
        assert!(nl.addresses(missing).unwrap().is_empty());
    });
}

#[test]
fn creates_and_deletes_a_private_macvlan() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let parent = veth(&mut nl);
        let vmac = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
        nl.create_macvlan(parent.index, "vrrp.51", vmac).unwrap();
        let link = nl.link_by_name("vrrp.51").unwrap().expect("macvlan exists");
        assert_eq!(link.mac, Some(vmac));
        assert!(!link.up, "created down");
        let shown = ip_json(&["-d", "link", "show", "vrrp.51"]);
        let info = &shown[0]["linkinfo"];
        assert_eq!(info["info_kind"], "macvlan", "{shown}");
        assert_eq!(info["info_data"]["mode"], "private", "{shown}");
        assert_eq!(shown[0]["link"], parent.name.as_str(), "{shown}");
        // A second one with the same name is refused.
        let e = nl
            .create_macvlan(parent.index, "vrrp.51", vmac)
            .unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EEXIST), "{e}");
        assert!(
            e.to_string().starts_with("create macvlan vrrp.51 on "),
            "{e}"
        );
        nl.delete_link(link.index).unwrap();
        assert!(nl.link_by_name("vrrp.51").unwrap().is_none());
        let e = nl.delete_link(link.index).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENODEV), "{e}");
        assert_eq!(
            e.to_string().split(':').next(),
            Some(format!("delete link #{}", link.index).as_str())
        );
    });
}

#[test]
fn nodad_ipv6_address_is_usable_at_once() {
    in_fresh_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let link = veth(&mut nl);
        nl.set_up(link.index).unwrap();
        let vip = net("2001:db8::100/64");
        assert!(nl.ensure_address_nodad(link.index, vip).unwrap());
        assert!(
            !nl.ensure_address_nodad(link.index, vip).unwrap(),
            "second time: done"
        );
        let out = ip(&["-6", "addr", "show", "dev", &link.name]);
        let line = out
            .lines()
            .find(|l| l.contains("2001:db8::100/64"))
            .unwrap_or_else(|| panic!("address missing: {out}"));
        assert!(line.contains("nodad"), "{line}");
        assert!(!line.contains("tentative"), "{line}");
        // Bindable right away: no DAD wait.
        std::net::UdpSocket::bind("[2001:db8::100]:0").unwrap();
        assert!(nl.ensure_no_address(link.index, vip).unwrap());
        // IPv4 takes the plain path.
        assert!(
            nl.ensure_address_nodad(link.index, net("192.0.2.100/24"))
                .unwrap()
        );
        assert!(
            nl.addresses(link.index)
                .unwrap()
                .contains(&net("192.0.2.100/24"))
        );
    });
}

//! cairn-vipd with `use_vmac = true`: the VIP lives on the macvlan `vrrp.51` whose MAC is
//! the virtual router MAC 00:00:5e:00:01:33 (IPv6: `vrrp6.51`, 00:00:5e:00:02:33), so a client's neighbour entry for the VIP
//! shows that MAC and keeps it across failovers (graceful and node death) while the
//! client's requests move to the new master; the macvlan is deleted when the daemon
//! stops. Privileged: run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cairn_labnet::frames::Seen;
use cairn_labnet::vrrpd;
use common::*;

/// The virtual router MAC of VRID 51 over IPv6.
const VMAC6: &str = "00:00:5e:00:02:33";

const VMAC_NET: Net = Net {
    v6: false,
    unicast: false,
    vmac: true,
};

/// `ip -o addr show dev <link>` in `node`, or `None` when the link does not exist.
fn addrs_on(c: &Cluster, node: &str, link: &str) -> Option<String> {
    let out = c.lab.ip(node, &["-o", "addr", "show", "dev", link]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `link` exists in `node`.
fn has_link(c: &Cluster, node: &str, link: &str) -> bool {
    c.lab
        .ip(node, &["link", "show", "dev", link])
        .is_ok_and(|o| o.status.success())
}

/// Samples the client's neighbour entry for the VIP every few ms for `d`; returns the
/// distinct values seen (`None`: no entry or no link-layer address).
fn sample_neighbour(c: &Cluster, d: Duration) -> (BTreeSet<Option<String>>, usize) {
    let end = Instant::now() + d;
    let mut seen = BTreeSet::new();
    let mut n = 0;
    while Instant::now() < end {
        seen.insert(neighbour_mac(c, "cl"));
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    (seen, n)
}

/// The virtual MAC of the cluster's family.
fn vmac(c: &Cluster) -> &'static str {
    if c.net.v6 { VMAC6 } else { VMAC }
}

/// Asserts the master `node` holds the VIP on `vrrp.51` / `vrrp6.51` (with the virtual
/// MAC), not on `eth0`.
fn assert_vip_on_vmac(c: &Cluster, node: &str) {
    let link = c.net.vip_link();
    assert_eq!(
        link_mac(c, node, link).as_deref(),
        Some(vmac(c)),
        "{node}: {link} with the virtual MAC\n{}",
        c.logs()
    );
    let on_vmac = addrs_on(c, node, link).unwrap_or_default();
    assert!(
        on_vmac.contains(c.net.vip_cidr()),
        "{node}: VIP not on {link}: {on_vmac}"
    );
    let on_eth0 = addrs_on(c, node, "eth0").unwrap_or_default();
    assert!(
        !on_eth0.contains(&format!(" {}/", c.vip())),
        "{node}: VIP on eth0 too: {on_eth0}"
    );
}

/// `sysctl -n key` in `node`.
fn sysctl(c: &Cluster, node: &str, key: &str) -> String {
    let out = c.lab.exec(node, &["sysctl", "-n", key]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stops `node`'s daemon with SIGTERM and waits for it to exit.
fn stop(c: &mut Cluster, node: &str) {
    c.terminate(node);
    let status = c
        .lab
        .process_mut(&vrrpd::process_name(node))
        .unwrap()
        .wait_timeout(Duration::from_secs(3))
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{node} did not exit cleanly after SIGTERM: {status:?}\n{}",
        c.logs()
    );
}

/// IPv4: the client's ARP entry for 192.0.2.100 shows 00:00:5e:00:01:33 throughout.
/// Before the `arpconf` fix the new master's ARP request for the client (sent from
/// `eth0` with the VIP as sender address) made the client map the VIP to b's `eth0` MAC.
#[test]
fn vipd_vmac_neighbour_entry_survives_failovers() {
    vmac_failovers(VMAC_NET);
}

/// IPv6: the client's neighbour entry for 2001:db8::100 shows 00:00:5e:00:02:33.
#[test]
fn vipd_vmac6_neighbour_entry_survives_failovers() {
    vmac_failovers(Net {
        v6: true,
        ..VMAC_NET
    });
}

fn vmac_failovers(net: Net) {
    let client = net.host(200);
    let mut c = Cluster::with(net, pair(vipd(), vipd()), &[("cl", &client)]);
    let link = net.vip_link();
    let vmac = vmac(&c).to_owned();
    c.start_responder("a");
    c.start_responder("b");
    c.start_with_master("a");
    assert_vip_on_vmac(&c, "a");
    // The backup has its macvlan too (same MAC), down and without the VIP.
    assert!(has_link(&c, "b", link), "b has no {link}\n{}", c.logs());
    assert!(
        !addrs_on(&c, "b", link)
            .unwrap_or_default()
            .contains(c.net.vip_cidr()),
        "the backup holds the VIP on its macvlan"
    );
    if !net.v6 {
        assert_eq!(sysctl(&c, "a", "net.ipv4.conf.eth0.arp_announce"), "2");
        assert_eq!(sysctl(&c, "a", "net.ipv4.conf.eth0.arp_ignore"), "1");
    }

    // Graceful handover with a client probing.
    let out = c.start_probe("cl", "graceful");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        neighbour_mac(&c, "cl").as_deref(),
        Some(vmac.as_str()),
        "the client resolved the VIP to the virtual MAC"
    );
    let t0 = Instant::now();
    c.terminate("a");
    let (seen, samples) = sample_neighbour(&c, Duration::from_millis(800));
    let at = c.expect_acquired("b", t0, Duration::from_secs(1), "graceful handover");
    let graceful = c.stop_probe("graceful", &out);
    eprintln!(
        "{} graceful: b after {:.0} ms; client neighbour entries seen in {samples} samples: {seen:?}; {}",
        net.label(),
        (at - t0).as_secs_f64() * 1e3,
        graceful.line()
    );
    assert_eq!(
        seen,
        BTreeSet::from([Some(vmac.clone())]),
        "the client's neighbour entry for the VIP changed during the handover (eth0 of a: {:?}, of b: {:?})",
        link_mac(&c, "a", "eth0"),
        link_mac(&c, "b", "eth0")
    );
    assert!(
        graceful.switches.last().is_some_and(|(_, n)| n == "b"),
        "b serves after the handover: {}",
        graceful.line()
    );
    let garp = c
        .wait_announcement("b", t0, Duration::from_secs(1))
        .expect("gratuitous ARP / unsolicited NA from b");
    assert!(
        matches!(garp.seen, Seen::Garp { mac, .. } if mac_text(mac) == vmac)
            || matches!(garp.seen, Seen::Na { lladdr: Some(mac), .. } if mac_text(mac) == vmac),
        "b's announcement carries the virtual MAC: {:?}",
        garp.seen
    );
    c.lab
        .process_mut(&vrrpd::process_name("a"))
        .unwrap()
        .wait_timeout(Duration::from_secs(3))
        .unwrap();
    assert!(
        !has_link(&c, "a", link),
        "a's {link} is gone after the daemon stopped"
    );
    assert_vip_on_vmac(&c, "b");

    // a comes back and preempts; then dies (SIGKILL + cable cut).
    let back = Instant::now();
    c.start("a");
    c.expect_holders(&["a"], Duration::from_secs(5), "a preempts back");
    assert_vip_on_vmac(&c, "a");
    // The VIP is on a before its gratuitous ARP re-points the switch's entry for the
    // virtual MAC (the drain starts in between); a probe started in that gap loses its
    // first SYN to b. The node-death measurement starts once a has announced.
    c.wait_announcement("a", back, Duration::from_secs(1))
        .expect("gratuitous ARP / unsolicited NA from a after it preempted");
    let out = c.start_probe("cl", "death");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    c.kill9("a");
    c.lab.cut("a").unwrap();
    let (seen, samples) = sample_neighbour(&c, Duration::from_millis(800));
    let at = c.expect_acquired("b", t0, Duration::from_secs(1), "node death");
    std::thread::sleep(Duration::from_millis(200));
    let death = c.stop_probe("death", &out);
    eprintln!(
        "{} node death: b after {:.0} ms; client neighbour entries in {samples} samples: {seen:?}; {}",
        net.label(),
        (at - t0).as_secs_f64() * 1e3,
        death.line()
    );
    assert!(
        at - t0 <= master_down(100) + MARGIN,
        "takeover after {:?}",
        at - t0
    );
    assert_eq!(
        seen,
        BTreeSet::from([Some(vmac.clone())]),
        "the client's neighbour entry for the VIP changed during the failover (eth0 of b: {:?})",
        link_mac(&c, "b", "eth0")
    );
    assert!(
        death.switches.last().is_some_and(|(_, n)| n == "b"),
        "b serves after the failover: {}",
        death.line()
    );
    assert!(death.outages.len() <= 1, "{}", death.line());

    // b stops: its macvlan goes with it.
    stop(&mut c, "b");
    assert!(
        !has_link(&c, "b", link),
        "b's {link} is gone after the daemon stopped"
    );
    if !net.v6 {
        // The parent's ARP settings are back to the kernel defaults.
        assert_eq!(sysctl(&c, "b", "net.ipv4.conf.eth0.arp_announce"), "0");
        assert_eq!(sysctl(&c, "b", "net.ipv4.conf.eth0.arp_ignore"), "0");
    }
}

//! cairn-vipd with unicast peers (`unicast_peers`): election, node death, SIGTERM
//! handover, with every advert on the bridge addressed to a peer and none to the
//! multicast group; interop with keepalived 2.2.7's `unicast_peer {}` both ways round;
//! and one IPv6 unicast pair. Privileged: run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const UNICAST: Net = Net {
    v6: false,
    unicast: true,
    vmac: false,
};

const UNICAST6: Net = Net {
    v6: true,
    unicast: true,
    vmac: false,
};

/// Three nodes: the master sends each advert to both peers (one packet per peer), never
/// to 224.0.0.18; the backups stay silent.
#[test]
fn vipd_unicast_three_nodes_elect_one_master() {
    let t0 = Instant::now();
    let c = elect_on(UNICAST, &[vipd(), vipd(), vipd()]);
    let n = assert_adverts_shape(&c, "a", t0);
    for backup in ["b", "c"] {
        // Anything a backup sent (before it heard a) was unicast too.
        if !adverts_from(&c, backup, t0).is_empty() {
            assert_adverts_shape(&c, backup, t0);
        }
    }
    let to_b = adverts_from(&c, "a", t0)
        .iter()
        .filter(|(_, d, _, _)| *d == c.node_addr("b"))
        .count();
    let to_c = n - to_b;
    // Both peers get every advert (the capture may cut one pair in half at its edges).
    assert!(to_b.abs_diff(to_c) <= 1, "to b {to_b}, to c {to_c}");
    eprintln!("unicast election: a sent {to_b} adverts to b and {to_c} to c");
}

#[test]
fn vipd_unicast_node_death() {
    let t0 = Instant::now();
    let (c, took) = node_death_on(UNICAST, vipd(), vipd(), true);
    assert_adverts_shape(&c, "a", t0);
    eprintln!(
        "unicast node death: b after {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn vipd_unicast_sigterm_hands_over() {
    let (c, _) = graceful_on(UNICAST, vipd(), vipd());
    let t0 = c.watch.started();
    assert_adverts_shape(&c, "a", t0);
    assert_adverts_shape(&c, "b", t0);
    let zero = adverts_from(&c, "a", t0)
        .into_iter()
        .filter(|(_, d, _, p)| *p == 0 && *d == c.node_addr("b"))
        .count();
    assert!(zero >= 1, "a's priority-0 advert went to b by unicast");
}

#[test]
fn vipd_unicast_master_keepalived_backup() {
    let t0 = Instant::now();
    let (c, took) = interop_on(UNICAST, vipd(), keepalived());
    assert_adverts_shape(&c, "a", t0);
    assert!(
        c.wait_garp("b", t0 + took, std::time::Duration::from_secs(2))
            .is_some()
    );
}

#[test]
fn keepalived_unicast_master_vipd_backup() {
    let t0 = Instant::now();
    let (c, took) = interop_on(UNICAST, keepalived(), vipd());
    // keepalived's unicast adverts, as the capture saw them (its checksum is the RFC one
    // with the peer as pseudo-header destination, or cairn-vipd would have taken over).
    assert_adverts_shape(&c, "a", t0);
    // b's own adverts after the takeover go to a, which is dead: they wait for address
    // resolution that never completes, so the bridge sees none (the graceful tests
    // check b's adverts, a's node being alive there).
    eprintln!("b took over after {:.0} ms", took.as_secs_f64() * 1e3);
}

#[test]
fn vipd_unicast_hands_over_gracefully_to_keepalived() {
    let (c, _) = graceful_on(UNICAST, vipd(), keepalived());
    assert_adverts_shape(&c, "a", c.watch.started());
    assert_adverts_shape(&c, "b", c.watch.started());
}

#[test]
fn keepalived_unicast_hands_over_gracefully_to_vipd() {
    let (c, _) = graceful_on(UNICAST, keepalived(), vipd());
    assert_adverts_shape(&c, "a", c.watch.started());
    assert_adverts_shape(&c, "b", c.watch.started());
}

#[test]
fn vipd_unicast_v6_node_death() {
    let t0 = Instant::now();
    let (c, _) = node_death_on(UNICAST6, vipd(), vipd(), true);
    assert_adverts_shape(&c, "a", t0);
}

/// IPv6 unicast with keepalived 2.2.7 needs `unicast_ttl 255` on the keepalived side:
/// without it keepalived sends IPv6 unicast adverts with the kernel's default hop limit
/// (64; for IPv4 it defaults to 255) and does not check the hop limit of unicast adverts
/// itself (`vrrp.c`, `vrrp_check_packet`: "MUST verify that the IPv4 TTL/IPv6 HL is 255
/// (but not if unicast)"). cairn-vipd keeps RFC 5798's check (5.1.2.3: hop limit 255, so
/// adverts cannot come from off-link) for unicast too, so it drops those adverts as
/// `dropped_wrong_ttl` and both nodes end up master. With `unicast_ttl 255` both ways
/// round work.
#[test]
fn vipd_unicast_v6_with_keepalived_both_ways() {
    // cairn-vipd master, keepalived backup (keepalived accepts any hop limit here).
    let t0 = Instant::now();
    let (c, _) = interop_on(UNICAST6, vipd(), keepalived());
    assert_adverts_shape(&c, "a", t0);
    drop(c);
    // keepalived master with unicast_ttl 255, cairn-vipd backup.
    let mut c = Cluster::with(UNICAST6, pair(keepalived(), vipd()), &[]);
    c.keepalived_unicast_ttl = Some(255);
    let t0 = Instant::now();
    c.start_with_master("a");
    assert_adverts_shape(&c, "a", t0);
    let t1 = Instant::now();
    c.kill9("a");
    c.lab.cut("a").unwrap();
    let at = c.expect_acquired("b", t1, Duration::from_secs(3), "IPv6 unicast interop");
    assert!(at - t1 <= master_down(100) + MARGIN, "took {:?}", at - t1);
    eprintln!(
        "IPv6 unicast keepalived(unicast_ttl 255) -> cairn-vipd: b after {:.0} ms",
        (at - t1).as_secs_f64() * 1e3
    );
}

/// The finding above, asserted: keepalived's default IPv6 unicast adverts (hop limit 64)
/// are dropped by cairn-vipd and counted, and the backup becomes a second master.
#[test]
fn keepalived_v6_unicast_default_hop_limit_is_refused() {
    let mut c = Cluster::with(UNICAST6, pair(keepalived(), vipd()), &[]);
    let t0 = Instant::now();
    c.start("a");
    c.expect_holders(&["a"], Duration::from_secs(5), "keepalived master");
    c.start("b");
    c.expect_holders(&["a", "b"], Duration::from_secs(3), "two masters");
    let ttls: Vec<u8> = adverts_from(&c, "a", t0)
        .into_iter()
        .map(|(_, _, ttl, _)| ttl)
        .collect();
    assert!(
        !ttls.is_empty() && ttls.iter().all(|t| *t == 64),
        "keepalived's IPv6 unicast hop limits: {ttls:?}"
    );
    let sock = cairn_labnet::vrrpd::control_socket(&c.lab, "b");
    let instances = cairn_control::VipClient::connect_with_timeout(&sock, Duration::from_secs(2))
        .and_then(|client| client.instances())
        .unwrap_or_else(|e| panic!("control API at {}: {e}\n{}", sock.display(), c.logs()));
    let wrong_ttl = instances[0]
        .counters
        .iter()
        .find(|(n, _)| n == "dropped_wrong_ttl")
        .map(|(_, v)| *v)
        .unwrap();
    assert!(wrong_ttl > 0, "{:?}", instances[0].counters);
    eprintln!(
        "keepalived IPv6 unicast hop limit {}: cairn-vipd dropped {wrong_ttl} adverts",
        ttls[0]
    );
}

//! cairn-vipd with an IPv6 instance (VIP 2001:db8::100/64, nodes at 2001:db8::11/64 and
//! ::12/64 plus their link-local addresses): election, node death, SIGTERM handover,
//! unsolicited neighbour advertisements from the new master, HTTP clients on
//! [2001:db8::100]:80 across handovers, and interop with keepalived 2.2.7 (VRRPv3, IPv6
//! instance) both ways round. Privileged: run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cairn_labnet::frames::Seen;
use common::*;

/// Asserts `node` announced the VIP with an unsolicited NA since `since`: to `ff02::1`,
/// Override set, Solicited clear, target link-layer address = its `eth0` MAC; returns the
/// NA's source address.
fn assert_na_from(c: &Cluster, node: &str, since: Instant) -> IpAddr {
    let na = c
        .wait_announcement(node, since, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no unsolicited NA for the VIP from {node}\n{}", c.logs()));
    let mac = link_mac(c, node, "eth0").expect("eth0 MAC");
    match na.seen {
        Seen::Na {
            src,
            lladdr,
            override_flag,
            solicited,
            ..
        } => {
            assert!(override_flag, "NA without Override: {:?}", na.seen);
            assert!(
                !solicited,
                "unsolicited NA with Solicited set: {:?}",
                na.seen
            );
            assert_eq!(
                lladdr.map(mac_text),
                Some(mac.clone()),
                "NA target link-layer address is not {node}'s eth0 MAC {mac}"
            );
            src
        }
        other => panic!("not an NA: {other:?}"),
    }
}

#[test]
fn vipd_v6_two_nodes_elect_one_master() {
    let t0 = Instant::now();
    let c = elect_on(Net::V6, &[vipd(), vipd()]);
    let n = assert_adverts_shape(&c, "a", t0);
    // The master's adverts come from its link-local address to ff02::12 (checked above);
    // the backup is silent once it heard the master.
    let settled = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        adverts_from(&c, "b", settled).is_empty(),
        "the backup advertises"
    );
    let src = assert_na_from(&c, "a", t0);
    assert!(
        matches!(src, IpAddr::V6(s) if s.is_unicast_link_local()),
        "our NA comes from the link-local address, got {src}"
    );
    eprintln!("IPv6 election: {n} adverts from a, NA from {src}");
}

#[test]
fn vipd_v6_node_death_backup_takes_over_and_announces() {
    let t0 = Instant::now();
    let (c, took) = node_death_on(Net::V6, vipd(), vipd(), true);
    let src = assert_na_from(&c, "b", t0 + took);
    assert_adverts_shape(&c, "b", t0 + took);
    eprintln!(
        "IPv6 node death: b after {:.0} ms, NA from {src}",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn vipd_v6_sigterm_hands_over_with_priority_zero() {
    let (c, took) = graceful_on(Net::V6, vipd(), vipd());
    // b was never master before the handover: any NA from it belongs to the takeover.
    assert_na_from(&c, "b", c.watch.started());
    // The resignation is an IPv6 advert with priority 0 from a's link-local address.
    let zero: Vec<_> = adverts_from(&c, "a", c.watch.started())
        .into_iter()
        .filter(|(_, _, _, p)| *p == 0)
        .collect();
    assert!(
        zero.iter().all(
            |(s, d, _, _)| matches!(s, IpAddr::V6(s) if s.is_unicast_link_local())
                && *d == c.net.group()
        ),
        "priority-0 adverts: {zero:?}"
    );
    eprintln!(
        "IPv6 SIGTERM: b after {:.0} ms, {} priority-0 advert(s)",
        took.as_secs_f64() * 1e3,
        zero.len()
    );
}

#[test]
fn vipd_v6_clients_through_the_vip() {
    let (_c, graceful, death, took) = probing_on(Net::V6, vipd(), vipd());
    eprintln!(
        "IPv6 clients: graceful {} ({} failed in window); death after {:.0} ms: {}",
        graceful.summary.line(),
        graceful.failed_in_window,
        took.as_secs_f64() * 1e3,
        death.line()
    );
    assert_eq!(
        graceful.failed_in_window,
        0,
        "IPv6 graceful handover lost requests: {}",
        graceful.summary.line()
    );
}

/// keepalived 2.2.7 runs an IPv6 VRRPv3 instance whose only VIP is global (RFC 5798 wants
/// the link-local VIP first; keepalived accepts the list as it is), sending from its
/// link-local address to ff02::12, and both daemons accept each other's adverts: the
/// backup stays backup while the master lives (checked by `start_with_master`) and takes
/// over within Master_Down_Interval when it dies.
#[test]
fn vipd_v6_master_keepalived_backup() {
    let t0 = Instant::now();
    let (c, took) = interop_on(Net::V6, vipd(), keepalived());
    assert_adverts_shape(&c, "a", t0);
    // keepalived's NA after its takeover (it sends from the VIP itself).
    let src = assert_na_from(&c, "b", t0 + took);
    eprintln!("keepalived's NA from {src}");
}

/// The other way round: keepalived's IPv6 adverts keep cairn-vipd a backup.
#[test]
fn keepalived_v6_master_vipd_backup() {
    let t0 = Instant::now();
    let (c, took) = interop_on(Net::V6, keepalived(), vipd());
    assert_adverts_shape(&c, "a", t0);
    assert_na_from(&c, "b", t0 + took);
}

#[test]
fn vipd_v6_hands_over_gracefully_to_keepalived() {
    graceful_on(Net::V6, vipd(), keepalived());
}

#[test]
fn keepalived_v6_hands_over_gracefully_to_vipd() {
    graceful_on(Net::V6, keepalived(), vipd());
}

//! Maintenance mode (`org.cairn.Vip1.SetMaintenance`), as cairn-updated uses it before a
//! reboot: the master hands its VIP to the peer at once and stays backup, then takes it back
//! when maintenance ends (it preempts). Privileged: run as root (builds a namespace lab).

mod common;

use std::time::{Duration, Instant};

use cairn_control::{VipClient, VipInstanceStatus};
use cairn_labnet::vrrpd;
use common::*;

fn instances(c: &Cluster, node: &str) -> Vec<VipInstanceStatus> {
    let sock = vrrpd::control_socket(&c.lab, node);
    VipClient::connect_with_timeout(&sock, Duration::from_secs(2))
        .and_then(|client| client.instances())
        .unwrap_or_else(|e| panic!("control API at {}: {e}\n{}", sock.display(), c.logs()))
}

/// Polls `node`'s instances until `ok` holds (bounded); panics with the logs otherwise.
fn wait_status(c: &Cluster, node: &str, what: &str, ok: impl Fn(&VipInstanceStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = instances(c, node);
        if got.iter().all(&ok) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {node} reports {got:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vipd_maintenance_hands_the_vip_to_the_peer_and_takes_it_back() {
    let mut c = Cluster::new(pair(vipd(), vipd()), &[]);
    c.start_with_master("a");
    let a = vrrpd::control_socket(&c.lab, "a");
    let client = VipClient::connect_with_timeout(&a, Duration::from_secs(2)).unwrap();
    assert!(instances(&c, "a").iter().all(|i| !i.maintenance));

    let t0 = Instant::now();
    client.set_maintenance(true).unwrap();
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "maintenance handover");
    assert!(
        c.resignations("a", t0) >= 1,
        "a resigned with a priority-0 advert\n{}",
        c.logs()
    );
    let b_addr = c.addr("b").to_string();
    wait_status(&c, "a", "a backup under b in maintenance", |i| {
        i.maintenance && i.effective_priority == 1 && i.peer_is_master() && i.master == b_addr
    });
    // a keeps the VIP until b's first advert plus the release linger (never vacant), then
    // only b holds it.
    c.expect_holders(
        &["b"],
        Duration::from_secs(2),
        "a released after the handover",
    );
    // a outranks b by configuration and preempts, yet stays out while in maintenance.
    c.hold_steady_among("b", &["a", "b"], Duration::from_millis(1500));
    eprintln!(
        "maintenance: b took the VIP {:.0} ms after SetMaintenance(true)",
        (at - t0).as_secs_f64() * 1000.0
    );

    let t1 = Instant::now();
    client.set_maintenance(false).unwrap();
    c.expect_acquired("a", t1, Duration::from_secs(5), "end of maintenance");
    wait_status(&c, "a", "a master again", |i| {
        !i.maintenance && i.state == "master" && i.effective_priority == 150
    });
}

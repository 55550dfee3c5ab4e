//! The scenarios with keepalived on every node: proves the lab harness (observer, capture,
//! timing bounds) against a reference VRRP implementation. Privileged: run as root.

mod common;

use common::*;

#[test]
fn keepalived_two_nodes_elect_one_master() {
    elect(&[keepalived(), keepalived()]);
}

#[test]
fn keepalived_three_nodes_elect_one_master() {
    elect(&[keepalived(), keepalived(), keepalived()]);
}

#[test]
fn keepalived_node_death_then_preempting_comeback() {
    comeback(keepalived(), keepalived(), true);
}

#[test]
fn keepalived_node_death_then_no_preempt_comeback() {
    comeback(keepalived(), keepalived(), false);
}

#[test]
fn keepalived_sigterm_hands_over_within_skew_time() {
    graceful(keepalived(), keepalived());
}

#[test]
fn keepalived_partition_heals_within_one_interval() {
    partition(keepalived(), keepalived());
}

#[test]
fn keepalived_clients_through_the_vip() {
    let (graceful, death, takeover) = probing(keepalived(), keepalived());
    // keepalived drops the VIP as it resigns, so requests sent in the Skew_Time gap go to
    // a box without the address: at most the attempts of one timeout fail.
    assert!(
        graceful.failed_in_window <= 2,
        "graceful: {}",
        graceful.summary.line()
    );
    assert!(
        death.longest_outage_ms() >= takeover.as_secs_f64() * 1000.0 - 110.0,
        "{}",
        death.line()
    );
}

//! cairn-vipd and keepalived 2.2.7 in one VRID, both ways round, plus the harness
//! scenarios that only keepalived can check without a control API (bad packets).
//! Privileged: run as root.

mod common;

use common::*;

#[test]
fn vipd_master_keepalived_backup() {
    interop(vipd(), keepalived());
}

#[test]
fn keepalived_master_vipd_backup() {
    interop(keepalived(), vipd());
}

#[test]
fn vipd_hands_over_gracefully_to_keepalived() {
    graceful(vipd(), keepalived());
}

#[test]
fn keepalived_hands_over_gracefully_to_vipd() {
    graceful(keepalived(), vipd());
}

#[test]
fn keepalived_survives_malformed_packets() {
    bad_packets(keepalived(), keepalived(), 3);
}

//! The client against Debian's haproxy 2.6 in a network lab (needs root and
//! /usr/sbin/haproxy; fails loudly without them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lab;

use cairn_haproxy::{RuntimeClient, ServerState};
use lab::HaproxyLab;

#[test]
fn show_info_and_show_stat_from_a_real_haproxy() {
    let lab = HaproxyLab::start();
    let client = RuntimeClient::new(&lab.socket);

    let info = client.show_info().unwrap();
    assert!(info.version.starts_with("2.6."), "{info:?}");
    assert_eq!(info.name.as_deref(), Some("HAProxy"));
    assert!(info.uptime_s.is_some() && info.pid.is_some(), "{info:?}");
    assert!(!info.stopping);

    let stats = client.show_stat().unwrap();
    let frontends: Vec<_> = stats
        .frontends
        .iter()
        .map(|f| (f.name.as_str(), f.status.as_str(), f.mode.as_deref()))
        .collect();
    assert_eq!(
        frontends,
        [("web", "OPEN", Some("http")), ("db", "OPEN", Some("tcp"))]
    );
    let web = stats.backend("web").unwrap();
    assert!(web.is_up());
    let web1 = &web.servers[0];
    assert_eq!(web1.address.as_deref(), Some("192.0.2.21:8080"));
    assert_eq!(web1.state, ServerState::Up);
    let check = web1.check.as_ref().unwrap();
    assert_eq!((check.status.as_str(), check.code), ("L7OK", Some(200)));
    let web2 = &web.servers[1];
    assert_eq!(web2.state, ServerState::Down);
    assert_eq!(
        web2.check.as_ref().unwrap().summary(),
        "L4CON Connection refused"
    );
    let db = stats.backend("db").unwrap();
    assert_eq!(db.servers[1].state, ServerState::NoCheck);
    assert_eq!(db.servers[1].check, None);
}

#[test]
fn sessions_and_bytes_count_requests_through_the_frontend() {
    let lab = HaproxyLab::start();
    let client = RuntimeClient::new(&lab.socket);
    for _ in 0..3 {
        let answer = lab.get();
        assert_eq!(
            answer.as_deref(),
            Ok("ok"),
            "stats: {:#?}\nlb: {}\nweb: {}\nlog: {}",
            client.show_stat(),
            lab.processes_in("lb"),
            lab.processes_in("web"),
            lab.log()
        );
    }
    // Every request went to web1, the only server up.
    lab.wait_for("3 sessions on web1", |stats| {
        stats.backend("web").unwrap().servers[0]
            .traffic
            .total_sessions
            == 3
    });
    let stats = client.show_stat().unwrap();
    let frontend = &stats.frontends[0];
    assert_eq!(frontend.traffic.total_sessions, 3);
    assert!(frontend.traffic.bytes_in > 0 && frontend.traffic.bytes_out > 0);
    let web = stats.backend("web").unwrap();
    assert_eq!(web.traffic.total_sessions, 3);
    assert_eq!(web.servers[1].traffic.total_sessions, 0);
}

#[test]
fn maintenance_set_over_the_runtime_api_shows_as_maint() {
    let lab = HaproxyLab::start();
    let client = RuntimeClient::new(&lab.socket);
    assert_eq!(client.command("disable server web/web1").unwrap(), "\n");
    let stats = client.show_stat().unwrap();
    let web = stats.backend("web").unwrap();
    assert_eq!(web.servers[0].state, ServerState::Maint);
    assert_eq!(web.servers[0].check, None);
    // web2 is down and web1 in maintenance: nothing serves.
    assert!(!web.is_up());
    assert_eq!(web.servers_in_rotation(), 0);
}

//! Privileged tests of the lab harness itself: namespaces, links, cut/heal, the address
//! observer, the bridge capture, the raw sender, the responder and the probe. Run as root;
//! without root they fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_labnet::frames::Seen;
use cairn_labnet::probe::ProbeSummary;
use cairn_labnet::vrrp_wire::RawAdvert;
use cairn_labnet::{AddrWatch, BridgeCapture, Lab, Spawn, raw, require_root};

const RESPONDER: &str = env!("CARGO_BIN_EXE_cairn-lab-responder");
const PROBE: &str = env!("CARGO_BIN_EXE_cairn-lab-probe");

fn vip() -> IpAddr {
    "192.0.2.100".parse().unwrap()
}

fn two_nodes() -> Lab {
    require_root();
    let mut lab = Lab::new("lt").unwrap();
    lab.add_node("a", &["192.0.2.11/24"]).unwrap();
    lab.add_node("b", &["192.0.2.12/24"]).unwrap();
    lab
}

/// Runs the probe in `node` against `target` for `ms` and returns its summary.
fn probe(lab: &Lab, node: &str, target: &str, ms: u64) -> ProbeSummary {
    let out = lab.dir().join(format!(
        "probe-{node}-{}.jsonl",
        Instant::now().elapsed().as_nanos()
    ));
    let o = lab
        .exec(
            node,
            &[
                PROBE,
                "--target",
                target,
                "--every-ms",
                "10",
                "--duration-ms",
                &ms.to_string(),
                "--timeout-ms",
                "100",
                "--out",
                out.to_str().unwrap(),
            ],
        )
        .unwrap();
    let printed = String::from_utf8_lossy(&o.stdout).into_owned();
    let (_, s) = ProbeSummary::from_file(&out).unwrap();
    assert_eq!(
        printed.trim(),
        s.line().trim(),
        "printed summary matches the file"
    );
    s
}

fn start_responder(lab: &mut Lab, node: &str) {
    let spec = Spawn::new(RESPONDER, &["--listen", "0.0.0.0:80", "--name", node]);
    lab.spawn(node, &format!("http-{node}"), &spec).unwrap();
    // Listening is near-instant; wait for the log line the responder prints once bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab
        .process(&format!("http-{node}"))
        .unwrap()
        .log()
        .contains("on 0.0.0.0:80")
    {
        assert!(
            Instant::now() < deadline,
            "responder on {node} did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn nodes_talk_over_the_bridge_and_everything_is_removed_on_drop() {
    let mut lab = two_nodes();
    let names = [lab.netns("a"), lab.netns("b"), lab.switch_netns()];
    for n in &names {
        assert!(Path::new("/run/netns").join(n).exists(), "{n} exists");
    }
    start_responder(&mut lab, "b");
    let pid = lab.process("http-b").unwrap().pid();
    let s = probe(&lab, "a", "192.0.2.12:80", 200);
    assert!(s.attempts >= 5, "{}", s.line());
    assert_eq!(s.failures, 0, "{}", s.line());
    assert_eq!(s.per_body.keys().collect::<Vec<_>>(), vec!["b"]);
    let dir = lab.dir().to_owned();
    drop(lab);
    for n in &names {
        assert!(!Path::new("/run/netns").join(n).exists(), "{n} removed");
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "responder killed"
    );
    assert!(!dir.exists(), "lab dir removed");
}

#[test]
fn cut_and_isolate_stop_traffic_and_heal_restores_it() {
    let mut lab = two_nodes();
    start_responder(&mut lab, "b");
    lab.cut("b").unwrap();
    let s = probe(&lab, "a", "192.0.2.12:80", 150);
    assert_eq!(s.failures, s.attempts, "cut: {}", s.line());
    // The node sees the carrier loss.
    let link = lab.ip("b", &["-o", "link", "show", "eth0"]).unwrap();
    assert!(String::from_utf8_lossy(&link.stdout).contains("NO-CARRIER"));
    lab.heal("b").unwrap();
    // a's ARP entry for b went stale while cut; re-resolution waits for the next ARP
    // retransmission (up to 1 s), so allow that much before traffic must flow again.
    let s = probe(&lab, "a", "192.0.2.12:80", 1500);
    assert!(
        s.per_body.get("b").copied().unwrap_or(0) > 0,
        "healed: {}",
        s.line()
    );
    assert!(
        s.outages.last().is_none_or(|o| o.to_ms < 1400.0),
        "healed: {}",
        s.line()
    );
    eprintln!("traffic after heal: {}", s.line());

    lab.isolate("b").unwrap();
    let link = lab.ip("b", &["-o", "link", "show", "eth0"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("NO-CARRIER"),
        "isolation keeps carrier"
    );
    let s = probe(&lab, "a", "192.0.2.12:80", 150);
    assert_eq!(s.failures, s.attempts, "isolated: {}", s.line());
    lab.rejoin("b").unwrap();
    let s = probe(&lab, "a", "192.0.2.12:80", 150);
    assert_eq!(s.failures, 0, "rejoined: {}", s.line());
}

#[test]
fn address_watch_records_adds_removes_and_overlaps() {
    let mut lab = two_nodes();
    lab.add_node("c", &["192.0.2.13/24"]).unwrap();
    // Present before the watch starts: comes from the initial dump.
    lab.ip("c", &["addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    let w = AddrWatch::start(&lab, &["a", "b", "c"], &[vip()]).unwrap();
    assert_eq!(w.holders(vip()).into_iter().collect::<Vec<_>>(), vec!["c"]);
    lab.ip("c", &["addr", "del", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    let t0 = Instant::now();
    lab.ip("a", &["addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    w.wait_holders(vip(), &["a"], Duration::from_secs(2))
        .unwrap();
    lab.ip("b", &["addr", "add", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    w.wait_holders(vip(), &["a", "b"], Duration::from_secs(2))
        .unwrap();
    lab.ip("a", &["addr", "del", "192.0.2.100/24", "dev", "eth0"])
        .unwrap();
    w.wait_holders(vip(), &["b"], Duration::from_secs(2))
        .unwrap();
    // Another address on the same link is not recorded.
    lab.ip("b", &["addr", "add", "192.0.2.101/24", "dev", "eth0"])
        .unwrap();
    let t = w.timeline();
    let o = t.overlaps(vip(), &["a", "b", "c"], t0, Instant::now());
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(o[0].duration() < Duration::from_secs(2));
    assert!(t.acquired(vip(), "a", t0).unwrap() <= t.acquired(vip(), "b", t0).unwrap());
    assert!(t.events().iter().all(|e| e.addr == vip()));
    assert_eq!(t.events().len(), 5, "{:?}", t.events());
    assert!(w.errors().is_empty(), "{:?}", w.errors());
}

#[test]
fn capture_attributes_raw_vrrp_frames_to_their_sender() {
    let lab = two_nodes();
    let cap = BridgeCapture::start(&lab).unwrap();
    let t0 = Instant::now();
    let a = RawAdvert::valid(
        Ipv4Addr::new(192, 0, 2, 11),
        77,
        0,
        10,
        &[Ipv4Addr::new(192, 0, 2, 100)],
    );
    let bad_ttl = RawAdvert {
        ttl: 1,
        ..a.clone()
    };
    raw::send_ipv4(&lab, "a", a.dst, &[a.datagram(), bad_ttl.datagram()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while cap.adverts(77, t0).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = cap.adverts(77, t0);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|c| c.from == "a"));
    let ttls: Vec<u8> = seen
        .iter()
        .map(|c| match c.seen {
            Seen::Vrrp {
                ttl,
                version,
                priority,
                ..
            } => {
                assert_eq!((version, priority), (3, 0));
                ttl
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(ttls, vec![255, 1]);
    assert!(cap.garps(vip(), t0).is_empty());
}

#[test]
fn taps_join_the_bridge_and_leave_with_the_lab() {
    require_root();
    let mut lab = Lab::new("lt").unwrap();
    let tap = lab.add_tap("vm1").unwrap();
    assert_eq!(tap, "t-vm1");
    let sw = lab.switch_netns();
    let o = std::process::Command::new("ip")
        .args(["-n", &sw, "-o", "link", "show", &tap])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("master br0"), "{text}");
    assert!(lab.add_tap("vm1").is_err(), "duplicate tap refused");
    drop(lab);
    assert!(!Path::new("/run/netns").join(&sw).exists());
}

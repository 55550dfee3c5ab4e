//! Draining: a planned move of the VIP (maintenance handover, preemption) keeps TCP
//! connections established with the old holder working. The new master hands their
//! segments to the old holder, which keeps the VIP parked on its loopback for the drain
//! window; once the window is over such a connection is reset, as it always was before.
//! Privileged: run as root (builds a namespace lab; the host kernel has nf_tables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_control::VipClient;
use cairn_labnet::Spawn;
use cairn_labnet::vrrpd;
use common::*;

const PORT: u16 = 7;
const CLIENT: &str = "client";

/// A long-lived line-echo connection opened from the client's namespace.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(c: &Cluster) -> Conn {
        Conn::open_to(c, SocketAddr::new(c.vip(), PORT))
    }

    fn open_to(c: &Cluster, to: SocketAddr) -> Conn {
        let ns = c.lab.netns(CLIENT);
        // A socket belongs to the namespace it was created in, whichever thread uses it.
        let stream = std::thread::spawn(move || {
            cairn_labnet::netns::enter(&ns).expect("enter the client namespace");
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .join()
        .expect("connect thread")
        .unwrap_or_else(|e| panic!("connect to {to}: {e}\n{}", c.logs()));
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Sends `line`; returns the answer (`<server> <line>`) or why there was none.
    fn ask(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.writer, "{line}").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        match self.reader.read_line(&mut answer) {
            Ok(0) => Err("closed by the peer".into()),
            Ok(_) => Ok(answer.trim_end().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn lab_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-vipd")).with_file_name(name)
}

/// Starts the echo responder on `node`, port 7, answering with the node's name.
fn start_echo(c: &mut Cluster, node: &str) {
    let listen = format!("0.0.0.0:{PORT}");
    let spec = Spawn::new(
        lab_bin("cairn-lab-responder"),
        &["--listen", &listen, "--name", node, "--echo"],
    );
    let name = format!("echo-{node}");
    c.lab.spawn(node, &name, &spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !c
        .lab
        .process(&name)
        .unwrap()
        .log()
        .contains(&format!("on {listen}"))
    {
        assert!(Instant::now() < deadline, "echo on {node} did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `node` has the VIP parked on its loopback.
fn parked(c: &Cluster, node: &str) -> bool {
    let out = c
        .lab
        .ip(node, &["-o", "addr", "show", "dev", "lo"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("{}/32", c.vip()))
}

/// Waits (bounded) until `what` holds.
fn wait(c: &Cluster, what: &str, timeout: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pair with `vipd_extra` lines, a master `a`, echo servers on both, and `a`'s control
/// client (maintenance mode).
fn echo_pair(vipd_extra: &[&str]) -> (Cluster, VipClient) {
    let mut c = Cluster::new(pair(vipd(), vipd()), &[(CLIENT, "192.0.2.250/24")]);
    c.vipd_extra = vipd_extra.iter().map(|l| (*l).to_owned()).collect();
    c.start_with_master("a");
    start_echo(&mut c, "a");
    start_echo(&mut c, "b");
    let sock = vrrpd::control_socket(&c.lab, "a");
    let client = VipClient::connect_with_timeout(&sock, Duration::from_secs(2)).unwrap();
    (c, client)
}

/// Sets `a`'s maintenance mode, waits until `to` holds the VIP and the client's neighbour
/// entry names `to`'s MAC.
fn move_vip(c: &Cluster, a: &VipClient, maintenance: bool, to: &str) {
    let mac = link_mac(c, to, "eth0").unwrap();
    let t0 = Instant::now();
    a.set_maintenance(maintenance).unwrap();
    c.expect_acquired(to, t0, Duration::from_secs(5), "planned move");
    wait(
        c,
        &format!("the client follows {to}'s announcement"),
        Duration::from_secs(3),
        || neighbour_mac(c, CLIENT).as_deref() == Some(mac.as_str()),
    );
}

#[test]
fn vipd_without_draining_a_handover_resets_established_connections() {
    // The control: what every VRRP daemon did so far. Proves the test below can fail.
    let (c, a) = echo_pair(&["drain_ms = 0"]);
    let mut to_a = Conn::open(&c);
    assert_eq!(to_a.ask("1").as_deref(), Ok("a 1"));
    move_vip(&c, &a, true, "b");
    assert!(!parked(&c, "a"), "nothing is parked without draining");
    let got = to_a.ask("2");
    assert!(got.is_err(), "b resets a's connection, got {got:?}");
}

#[test]
fn vipd_planned_moves_keep_established_connections() {
    let (c, a) = echo_pair(&[]);
    // Conntrack follows the VIP's connections only, and forgets closed ones soon.
    let time_wait = c
        .lab
        .exec(
            "a",
            &[
                "cat",
                "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait",
            ],
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&time_wait.stdout).trim(), "10");
    let count = || {
        let out = c
            .lab
            .exec("a", &["cat", "/proc/sys/net/netfilter/nf_conntrack_count"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let before = count();
    let a_addr = SocketAddr::new(c.node_addr("a"), PORT);
    for i in 0..20 {
        let mut conn = Conn::open_to(&c, a_addr);
        assert_eq!(conn.ask(&i.to_string()), Ok(format!("a {i}")));
    }
    assert!(
        count() < before + 5,
        "connections to a's own address are not tracked ({before} -> {} entries)",
        count()
    );
    let mut to_a = Conn::open(&c);
    assert_eq!(to_a.ask("1").as_deref(), Ok("a 1"));

    // Maintenance: a resigns, b takes the VIP and announces it; a parks it.
    move_vip(&c, &a, true, "b");
    wait(&c, "a parks the VIP", Duration::from_secs(2), || {
        parked(&c, "a")
    });
    // The old connection's segments now reach b, which hands them to a.
    assert_eq!(
        to_a.ask("2").as_deref(),
        Ok("a 2"),
        "a connection to a survives the handover\n{}",
        c.logs()
    );
    let mut to_b = Conn::open(&c);
    assert_eq!(
        to_b.ask("x").as_deref(),
        Ok("b x"),
        "new connections go to b"
    );

    // End of maintenance: a preempts b; b's connection survives through a's drain.
    move_vip(&c, &a, false, "a");
    wait(&c, "b parks the VIP", Duration::from_secs(2), || {
        parked(&c, "b")
    });
    assert_eq!(
        to_b.ask("y").as_deref(),
        Ok("b y"),
        "a connection to b survives the preemption\n{}",
        c.logs()
    );
    let mut again = Conn::open(&c);
    assert_eq!(again.ask("z").as_deref(), Ok("a z"));

    // After the drain window (2 s) b's connection is gone: a resets it, b dropped the VIP.
    wait(&c, "b drops the parked VIP", Duration::from_secs(4), || {
        !parked(&c, "b")
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = to_b.ask("late");
    assert!(
        after.is_err(),
        "after the drain the connection to b is reset, got {after:?}"
    );
}

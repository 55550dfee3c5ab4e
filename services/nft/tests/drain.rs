//! End-to-end drain test on the host kernel (needs root and network namespaces).
//!
//! Topology, all namespaces private to this test process:
//!
//! ```text
//!   client ns: br0 (.250) ── pn ══ eth0 of "new" (.11, VIP .100/24)
//!                         └─ po ══ eth0 of "old" (.12, VIP .100/32 on lo, arp_ignore=1)
//! ```
//!
//! The client's neighbour entry for the VIP decides which holder gets its segments, the
//! way a gratuitous ARP would after a VRRP move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cairn_nft::{Drain, DrainRuleset, Family, Nft};
use nix::sched::{CloneFlags, setns};

/// Bound for every blocking socket operation in the test.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const PORT: u16 = 8080;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (network namespaces, nf_tables); run it as root"
    );
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ip_output(args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `f` on a fresh thread inside namespace `ns`; sockets it creates stay in `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

fn write_sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_owned();
    in_netns(ns, move || {
        std::fs::write(&path, &value).unwrap_or_else(|e| panic!("write {path}: {e}"))
    });
}

fn read_sysctl(ns: &str, key: &str) -> String {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    in_netns(ns, move || {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {path}: {e}"))
            .trim()
            .to_owned()
    })
}

/// Addresses of one lab, per family.
struct Plan {
    family: Family,
    client: IpAddr,
    new: IpAddr,
    old: IpAddr,
    vip: IpAddr,
    prefix: u8,
    host_prefix: u8,
}

impl Plan {
    fn v4() -> Self {
        let a = |last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
        Plan {
            family: Family::V4,
            client: a(250),
            new: a(11),
            old: a(12),
            vip: a(100),
            prefix: 24,
            host_prefix: 32,
        }
    }

    fn v6() -> Self {
        let a = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
        Plan {
            family: Family::V6,
            client: a(0x250),
            new: a(0x11),
            old: a(0x12),
            vip: a(0x100),
            prefix: 64,
            host_prefix: 128,
        }
    }

    fn v(&self) -> &'static str {
        match self.family {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }
}

/// The three namespaces; deleted (with their links) on drop, in every path.
struct Lab {
    client: String,
    new: String,
    old: String,
    made: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.made {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn link_info(ns: &str, dev: &str) -> (u32, String) {
    let text = ip_output(&["-n", ns, "-o", "link", "show", "dev", dev]);
    let index = text
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index in {text:?}"));
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text:?}"))
        .to_owned();
    (index, mac)
}

impl Lab {
    fn build(tag: &str, plan: &Plan) -> Lab {
        require_root();
        let pid = std::process::id();
        let mut lab = Lab {
            client: format!("nft{pid}{tag}c"),
            new: format!("nft{pid}{tag}n"),
            old: format!("nft{pid}{tag}o"),
            made: Vec::new(),
        };
        for ns in [lab.client.clone(), lab.new.clone(), lab.old.clone()] {
            ip(&["netns", "add", &ns]);
            lab.made.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let (c, n, o) = (lab.client.clone(), lab.new.clone(), lab.old.clone());
        ip(&["-n", &c, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n", &c, "link", "add", "pn", "type", "veth", "peer", "name", "eth0", "netns", &n,
        ]);
        ip(&[
            "-n", &c, "link", "add", "po", "type", "veth", "peer", "name", "eth0", "netns", &o,
        ]);
        for port in ["pn", "po"] {
            ip(&["-n", &c, "link", "set", port, "master", "br0"]);
            ip(&["-n", &c, "link", "set", port, "up"]);
        }
        ip(&["-n", &c, "link", "set", "br0", "up"]);
        let v = plan.v();
        let net = |a: &IpAddr, p: u8| format!("{a}/{p}");
        let nodad: &[&str] = if plan.family == Family::V6 {
            &["nodad"]
        } else {
            &[]
        };
        let add = |ns: &str, addr: String, dev: &str| {
            let mut args = vec![v, "-n", ns, "addr", "add", &addr, "dev", dev];
            args.extend_from_slice(nodad);
            ip(&args);
        };
        add(&c, net(&plan.client, plan.prefix), "br0");
        add(&n, net(&plan.new, plan.prefix), "eth0");
        add(&n, net(&plan.vip, plan.prefix), "eth0");
        add(&o, net(&plan.old, plan.prefix), "eth0");
        add(&o, net(&plan.vip, plan.host_prefix), "lo");
        // The old holder keeps the VIP but must never answer ARP for it (IPv6 does not
        // answer neighbour solicitations for an address on another link anyway).
        write_sysctl(&o, "net.ipv4.conf.eth0.arp_ignore", "1");
        write_sysctl(&o, "net.ipv4.conf.eth0.arp_announce", "2");
        for ns in [&n, &o] {
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    fn point_vip_at(&self, plan: &Plan, holder: &str) {
        let (_, mac) = link_info(holder, "eth0");
        let vip = plan.vip.to_string();
        ip(&[
            plan.v(),
            "-n",
            &self.client,
            "neigh",
            "replace",
            &vip,
            "lladdr",
            &mac,
            "dev",
            "br0",
            "nud",
            "permanent",
        ]);
    }
}

/// A line echo server: answers each line with `<name>: <line>`, and the end of the
/// client's stream with `<name>: eof` before closing.
struct Server {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(ns: &str, name: &'static str, addr: SocketAddr) -> Server {
    let listener = in_netns(ns, move || {
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in {name}: {e}"))
    });
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (stop2, accepted2) = (stop.clone(), accepted.clone());
    let thread = thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    accepted2.fetch_add(1, Ordering::SeqCst);
                    thread::spawn(move || echo(name, stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept in {name}: {e}"),
            }
        }
    });
    Server {
        stop,
        accepted,
        thread: Some(thread),
    }
}

fn echo(name: &str, stream: TcpStream) {
    // Bounded: an idle connection is dropped after a while.
    stream.set_nonblocking(false).ok();
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => {
                let _ = writer.write_all(format!("{name}: eof\n").as_bytes());
                return;
            }
            Ok(_) => {
                let answer = format!("{name}: {}\n", line.trim_end());
                if writer.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A client connection with a line reader.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(ns: &str, addr: SocketAddr) -> Conn {
        let stream = in_netns(ns, move || {
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
        });
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        // One segment per line, so timings show forwarding, not Nagle + delayed ACK.
        stream.set_nodelay(true).expect("nodelay");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Conn {
            writer: stream,
            reader,
        }
    }

    /// Sends one line (one write) and reads the answer line.
    fn exchange(&mut self, line: &str) -> io::Result<String> {
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        self.read_line()
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(answer.trim_end().to_owned())
    }

    /// Half-closes and reads what comes back until the server closes.
    fn finish(&mut self) -> io::Result<String> {
        self.writer.shutdown(Shutdown::Write)?;
        self.read_line()
    }
}

fn expect_answer(conn: &mut Conn, line: &str, from: &str, what: &str) {
    match conn.exchange(line) {
        Ok(answer) => assert_eq!(answer, format!("{from}: {line}"), "{what}"),
        Err(e) => panic!("{what}: expected an answer from {from}, got error {e}"),
    }
}

fn expect_reset(conn: &mut Conn, line: &str, what: &str) {
    match conn.exchange(line) {
        Ok(answer) => panic!("{what}: expected a reset, got answer {answer:?}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{what}: {e}"),
    }
}

fn drain_test(tag: &str, plan: Plan) {
    let lab = Lab::build(tag, &plan);
    let vip = SocketAddr::new(plan.vip, PORT);
    let old_server = serve(&lab.old, "old", vip);
    let new_server = serve(&lab.new, "new", vip);
    let mut nft = in_netns(&lab.new, || {
        Nft::open().expect("open nf_tables socket in new")
    });
    // What vipd does at start: the table with only the conntrack rule.
    nft.apply(&DrainRuleset {
        family: plan.family,
        drains: vec![],
        tracked: vec![plan.vip],
    })
    .expect("install base ruleset");
    assert_eq!(
        read_sysctl(&lab.new, "net.netfilter.nf_conntrack_tcp_loose"),
        "1",
        "mid-stream pickup needs nf_conntrack_tcp_loose=1"
    );

    // Connections established with the old holder.
    lab.point_vip_at(&plan, &lab.old);
    let mut a = Conn::open(&lab.client, vip);
    let mut c = Conn::open(&lab.client, vip);
    let mut d = Conn::open(&lab.client, vip);
    let started = Instant::now();
    expect_answer(&mut a, "one", "old", "before the move");
    eprintln!("{tag}: direct exchange took {:?}", started.elapsed());
    expect_answer(&mut c, "one", "old", "before the move");
    expect_answer(&mut d, "one", "old", "before the move");

    // The VIP moves; the new holder drains to the old one.
    let (ifindex, _) = link_info(&lab.new, "eth0");
    let drain = DrainRuleset {
        family: plan.family,
        drains: vec![Drain {
            vip: plan.vip,
            to: plan.old,
            ifindex,
        }],
        tracked: vec![plan.vip],
    };
    nft.apply(&drain).expect("install drain");
    // Forget the old holder's MAC so the first forwarded segment has to wait for ARP/ND.
    ip(&["-n", &lab.new, "neigh", "flush", "all"]);
    lab.point_vip_at(&plan, &lab.new);

    let started = Instant::now();
    expect_answer(&mut a, "two", "old", "drained connection after the move");
    eprintln!(
        "{tag}: first forwarded exchange (with neighbour resolution) took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    expect_answer(&mut a, "three", "old", "drained connection, second segment");
    eprintln!(
        "{tag}: next forwarded exchange took {:?}",
        started.elapsed()
    );

    let mut b = Conn::open(&lab.client, vip);
    expect_answer(&mut b, "hello", "new", "new connection after the move");
    expect_answer(
        &mut b,
        "again",
        "new",
        "new holder's own connection stays local",
    );
    assert_eq!(new_server.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(old_server.accepted.load(Ordering::SeqCst), 3);

    // Replacing with the same ruleset keeps forwarding.
    nft.apply(&drain).expect("apply the same ruleset again");
    expect_answer(&mut a, "four", "old", "after re-apply");

    // A drained connection closes cleanly at the old holder (FIN carried by the
    // closing rule; conntrack marks it invalid, not new).
    match c.finish() {
        Ok(answer) => assert_eq!(answer, "old: eof", "close of a drained connection"),
        Err(e) => panic!("close of a drained connection: expected old's eof, got {e}"),
    }

    // Replacing with an empty ruleset stops forwarding: the new holder resets.
    nft.apply(&DrainRuleset {
        family: plan.family,
        drains: vec![],
        tracked: vec![plan.vip],
    })
    .expect("apply with no drains");
    expect_reset(
        &mut d,
        "five",
        "drained connection after apply with 0 drains",
    );
    expect_answer(
        &mut b,
        "still",
        "new",
        "new holder's connection after apply 0",
    );

    // Drain again, then remove the table: the remaining old connection resets.
    nft.apply(&drain).expect("install drain again");
    expect_answer(&mut a, "six", "old", "drained connection after re-install");
    nft.remove(plan.family).expect("remove");
    expect_reset(&mut a, "seven", "drained connection after remove");
    expect_answer(
        &mut b,
        "last",
        "new",
        "new holder's connection after remove",
    );
    nft.remove(plan.family)
        .expect("remove again (absent counts as done)");
}

#[test]
fn ipv4_drain_forwards_midstream_segments_to_old_holder() {
    drain_test("4", Plan::v4());
}

#[test]
fn ipv6_drain_forwards_midstream_segments_to_old_holder() {
    drain_test("6", Plan::v6());
}

/// Every request in a large batch is acknowledged; the answers fit the socket's buffer.
#[test]
fn large_batch_is_acknowledged_and_replaced() {
    require_root();
    let ns = format!("nft{}big", std::process::id());
    ip(&["netns", "add", &ns]);
    let lab = Lab {
        client: ns.clone(),
        new: ns.clone(),
        old: ns.clone(),
        made: vec![ns.clone()],
    };
    let mut nft = in_netns(&lab.new, || Nft::open().expect("open nf_tables socket"));
    nft.remove(Family::V6)
        .expect("remove in a fresh namespace (absent counts as done)");
    let drains: Vec<Drain> = (1..=500u16)
        .map(|i| Drain {
            vip: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i)),
            to: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, i)),
            ifindex: 1,
        })
        .collect();
    for round in 0..3 {
        nft.apply(&DrainRuleset {
            family: Family::V6,
            drains: drains.clone(),
            tracked: vec![],
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    // The IPv4 table is independent of the IPv6 one.
    nft.apply(&DrainRuleset {
        family: Family::V4,
        drains: vec![],
        tracked: vec![],
    })
    .expect("ipv4 base ruleset next to the ipv6 one");
    nft.remove(Family::V6).expect("remove ipv6");
    nft.remove(Family::V4).expect("remove ipv4");
}

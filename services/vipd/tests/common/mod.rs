//! Shared scenarios of the privileged cairn-vipd tests: a lab of VRRP nodes on one bridge,
//! the VIP observer and the bridge capture, run with keepalived, cairn-vipd or a mix.
//! Every scenario asserts and reports what it measured on stderr (`--nocapture`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_labnet::frames::Seen;
use cairn_labnet::probe::ProbeSummary;
use cairn_labnet::vrrpd::{self, Daemon, Instance};
use cairn_labnet::{AddrWatch, BridgeCapture, Lab, Spawn, require_root};

/// The advertisement interval every scenario runs with.
pub const ADVERT: Duration = Duration::from_millis(100);
/// The VIP with its prefix, as configured.
pub const VIP_CIDR: &str = "192.0.2.100/24";
/// Allowance on top of protocol timers for scheduling: the daemons, the observer thread
/// and `ip` commands share two cores with the other tests of the file running in
/// parallel; timer wake-ups, netlink and the address change itself take a few ms each,
/// and a busy box delays a thread by tens of ms. 150 ms is 1.5 advert intervals: enough
/// for that, far below any protocol error it must catch (e.g. waiting a whole extra
/// Master_Down_Interval).
pub const MARGIN: Duration = Duration::from_millis(150);

/// The VIP.
pub fn vip() -> IpAddr {
    "192.0.2.100".parse().unwrap()
}

/// The IPv6 VIP with its prefix.
pub const VIP6_CIDR: &str = "2001:db8::100/64";

/// The virtual router MAC of VRID 51 over IPv4 (RFC 5798 7.3).
pub const VMAC: &str = "00:00:5e:00:01:33";

/// How a cluster's instance is set up: address family, unicast peers, virtual MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Net {
    /// IPv6 instance (VIP 2001:db8::100/64, nodes at 2001:db8::11/64, ::12, ...) instead
    /// of IPv4 (192.0.2.100/24, nodes at 192.0.2.11/24, .12, ...).
    pub v6: bool,
    /// Every node lists the other nodes' addresses as unicast peers.
    pub unicast: bool,
    /// `use_vmac`: the VIP lives on the macvlan `vrrp.51` / `vrrp6.51`.
    pub vmac: bool,
}

impl Net {
    /// IPv4, multicast, no virtual MAC: what the original scenarios use.
    pub const V4: Net = Net {
        v6: false,
        unicast: false,
        vmac: false,
    };
    /// IPv6, multicast.
    pub const V6: Net = Net {
        v6: true,
        unicast: false,
        vmac: false,
    };

    /// The VIP.
    pub fn vip(&self) -> IpAddr {
        if self.v6 {
            "2001:db8::100".parse().unwrap()
        } else {
            vip()
        }
    }

    /// The VIP with its prefix.
    pub fn vip_cidr(&self) -> &'static str {
        if self.v6 { VIP6_CIDR } else { VIP_CIDR }
    }

    /// The address of the `i`-th VRRP node (0-based).
    pub fn node_addr(&self, i: usize) -> IpAddr {
        let n = 11 + u8::try_from(i).unwrap();
        if self.v6 {
            IpAddr::V6(format!("2001:db8::{n}").parse::<Ipv6Addr>().unwrap())
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
        }
    }

    /// The prefix length of the lab subnet.
    pub fn prefix(&self) -> u8 {
        if self.v6 { 64 } else { 24 }
    }

    /// The group VRRP adverts go to when multicast.
    pub fn group(&self) -> IpAddr {
        if self.v6 {
            "ff02::12".parse().unwrap()
        } else {
            "224.0.0.18".parse().unwrap()
        }
    }

    /// A plain (client) node's address with prefix: `192.0.2.<n>/24` or `2001:db8::<n>/64`.
    pub fn host(&self, n: u8) -> String {
        if self.v6 {
            format!("2001:db8::{n}/64")
        } else {
            format!("192.0.2.{n}/24")
        }
    }

    /// Short label for reports.
    pub fn label(&self) -> String {
        format!(
            "{}{}{}",
            if self.v6 { "IPv6" } else { "IPv4" },
            if self.unicast { " unicast" } else { "" },
            if self.vmac { " vmac" } else { "" }
        )
    }

    /// The link the VIP lives on.
    pub fn vip_link(&self) -> &'static str {
        match (self.vmac, self.v6) {
            (false, _) => "eth0",
            (true, false) => "vrrp.51",
            (true, true) => "vrrp6.51",
        }
    }
}

/// Skew_Time of RFC 5798 for `priority` at [`ADVERT`]: ((256 - priority) * interval) / 256.
pub fn skew(priority: u8) -> Duration {
    ADVERT * (256 - u32::from(priority)) / 256
}

/// Master_Down_Interval: 3 * interval + Skew_Time.
pub fn master_down(priority: u8) -> Duration {
    ADVERT * 3 + skew(priority)
}

/// cairn-vipd built by cargo for this test.
pub fn vipd() -> Daemon {
    Daemon::CairnVipd(PathBuf::from(env!("CARGO_BIN_EXE_cairn-vipd")))
}

/// keepalived from PATH; panics if missing.
pub fn keepalived() -> Daemon {
    let ok = Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty());
    assert!(
        ok,
        "keepalived is not installed: run `cargo xtask setup` (apt-get install keepalived)"
    );
    Daemon::Keepalived
}

/// Path of the lab's HTTP responder binary (built by cargo as part of cairn-labnet).
fn lab_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_cairn-vipd")).with_file_name(name);
    assert!(
        p.exists(),
        "{} not found: build it with `cargo build -p cairn-labnet` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A VRRP node: name, daemon, priority, preempt.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name (`a`, `b`, ...).
    pub name: &'static str,
    /// Which daemon.
    pub daemon: Daemon,
    /// Its priority.
    pub priority: u8,
    /// Its preempt setting.
    pub preempt: bool,
}

/// `a`(150) and `b`(100), both preempting.
pub fn pair(da: Daemon, db: Daemon) -> Vec<NodeSpec> {
    vec![
        NodeSpec {
            name: "a",
            daemon: da,
            priority: 150,
            preempt: true,
        },
        NodeSpec {
            name: "b",
            daemon: db,
            priority: 100,
            preempt: true,
        },
    ]
}

/// The lab, the VIP observer over the VRRP nodes, and the bridge capture.
pub struct Cluster {
    pub lab: Lab,
    pub watch: AddrWatch,
    pub capture: BridgeCapture,
    pub specs: Vec<NodeSpec>,
    /// Family, unicast, virtual MAC.
    pub net: Net,
    /// keepalived's `unicast_ttl` for every keepalived node started from now on.
    pub keepalived_unicast_ttl: Option<u8>,
    /// Extra lines for every cairn-vipd instance started from now on.
    pub vipd_extra: Vec<String>,
}

impl Cluster {
    /// VRRP nodes at 192.0.2.11, .12, ... and `extra` plain nodes (name, address/prefix);
    /// no daemon started yet.
    pub fn new(specs: Vec<NodeSpec>, extra: &[(&str, &str)]) -> Self {
        Self::with(Net::V4, specs, extra)
    }

    /// Like [`Cluster::new`] for the instance set-up `net` (IPv6 nodes at 2001:db8::11/64,
    /// ::12, ... plus their link-local addresses).
    pub fn with(net: Net, specs: Vec<NodeSpec>, extra: &[(&str, &str)]) -> Self {
        require_root();
        let mut lab = Lab::new("vt").unwrap();
        for (i, s) in specs.iter().enumerate() {
            let addr = format!("{}/{}", net.node_addr(i), net.prefix());
            lab.add_node(s.name, &[&addr]).unwrap();
        }
        for (name, addr) in extra {
            lab.add_node(name, &[addr]).unwrap();
        }
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        let watch = AddrWatch::start(&lab, &names, &[net.vip()]).unwrap();
        let capture = BridgeCapture::start(&lab).unwrap();
        Cluster {
            lab,
            watch,
            capture,
            specs,
            net,
            keepalived_unicast_ttl: None,
            vipd_extra: Vec::new(),
        }
    }

    /// The VIP of this cluster.
    pub fn vip(&self) -> IpAddr {
        self.net.vip()
    }

    /// The node's own (global) address in the cluster's family.
    pub fn node_addr(&self, node: &str) -> IpAddr {
        let i = self.specs.iter().position(|s| s.name == node).unwrap();
        self.net.node_addr(i)
    }

    fn spec(&self, node: &str) -> &NodeSpec {
        self.specs.iter().find(|s| s.name == node).unwrap()
    }

    /// The node's own address.
    pub fn addr(&self, node: &str) -> Ipv4Addr {
        let i = self.specs.iter().position(|s| s.name == node).unwrap();
        Ipv4Addr::new(192, 0, 2, 11 + u8::try_from(i).unwrap())
    }

    /// The instance the node runs.
    pub fn instance(&self, node: &str) -> Instance {
        let s = self.spec(node);
        let mut i = Instance::web(s.priority, self.net.vip_cidr());
        i.preempt = s.preempt;
        i.use_vmac = self.net.vmac;
        if self.net.unicast && self.net.v6 {
            // keepalived binds its IPv6 unicast socket to `unicast_src_ip`, by default the
            // link-local address, and then hears only adverts sent to that address; the
            // peers list global addresses, so it must bind to its global one.
            i.keepalived_extra
                .push(format!("unicast_src_ip {}", self.node_addr(node)));
        }
        i.vipd_extra = self.vipd_extra.clone();
        if let Some(ttl) = self.keepalived_unicast_ttl {
            i.keepalived_extra.push(format!("unicast_ttl {ttl}"));
        }
        if self.net.unicast {
            i.unicast_peers = self
                .names()
                .into_iter()
                .filter(|n| *n != node)
                .map(|n| self.node_addr(n).to_string())
                .collect();
        }
        i
    }

    /// Names of the VRRP nodes.
    pub fn names(&self) -> Vec<&'static str> {
        self.specs.iter().map(|s| s.name).collect()
    }

    /// Starts the node's daemon.
    pub fn start(&mut self, node: &str) {
        let (daemon, inst) = (self.spec(node).daemon.clone(), self.instance(node));
        vrrpd::start(
            &mut self.lab,
            node,
            &daemon,
            &inst,
            &[("CAIRN_LOG", "debug")],
        )
        .unwrap();
    }

    /// Starts `first`, waits until it holds the VIP, then starts the others (a
    /// deterministic first master even with preempt off); returns how long `first` took.
    pub fn start_with_master(&mut self, first: &str) -> Duration {
        let t0 = Instant::now();
        self.start(first);
        self.expect_holders(&[first], Duration::from_secs(5), "first master");
        let took = t0.elapsed();
        for n in self.names() {
            if n != first {
                self.start(n);
            }
        }
        // Let the others come up as backups.
        self.hold_steady(first, Duration::from_millis(600));
        took
    }

    /// Node death: SIGKILL to the daemon's process group.
    pub fn kill9(&mut self, node: &str) {
        vrrpd::kill9(&mut self.lab, node).unwrap();
    }

    /// Graceful stop: SIGTERM.
    pub fn terminate(&self, node: &str) {
        vrrpd::terminate(&self.lab, node).unwrap();
    }

    /// What a rebooted node would look like: the VIP a killed daemon left behind is gone.
    pub fn forget_vip(&self, node: &str) {
        if self.net.vmac {
            let _ = self.lab.ip(node, &["link", "del", self.net.vip_link()]);
        } else {
            let _ = self
                .lab
                .ip(node, &["addr", "del", self.net.vip_cidr(), "dev", "eth0"]);
        }
    }

    /// The last lines of every daemon log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in self.names() {
            if let Ok(p) = self.lab.process(&vrrpd::process_name(n)) {
                let log = p.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(25)..];
                out.push_str(&format!(
                    "--- {} ({}) ---\n{}\n",
                    n,
                    self.spec(n).daemon.label(),
                    tail.join("\n")
                ));
            }
        }
        out
    }

    /// Waits until exactly `holders` hold the VIP; panics with the logs otherwise.
    pub fn expect_holders(&self, holders: &[&str], timeout: Duration, what: &str) {
        if let Err(got) = self.watch.wait_holders(self.vip(), holders, timeout) {
            panic!(
                "{what}: expected VIP on {holders:?} within {timeout:?}, it is on {got:?}\n{}",
                self.logs()
            );
        }
    }

    /// Waits until `node` acquires the VIP at or after `since`; returns when.
    pub fn expect_acquired(
        &self,
        node: &str,
        since: Instant,
        timeout: Duration,
        what: &str,
    ) -> Instant {
        let vip = self.vip();
        let (ok, t) = self
            .watch
            .wait_until(timeout, |t| t.acquired(vip, node, since).is_some());
        if !ok {
            panic!(
                "{what}: {node} did not take the VIP within {timeout:?} (holders {:?})\n{}",
                t.holders(vip),
                self.logs()
            );
        }
        t.acquired(vip, node, since).unwrap()
    }

    /// Asserts the VIP stays on exactly `holder` among the connected `among` nodes for `d`:
    /// no release, no second holder.
    pub fn hold_steady_among(&self, holder: &str, among: &[&str], d: Duration) {
        let from = Instant::now();
        std::thread::sleep(d);
        let to = Instant::now();
        let t = self.watch.timeline();
        let mut h = t.holders_at(self.vip(), from);
        h.retain(|n| among.contains(&n.as_str()));
        assert_eq!(
            h.into_iter().collect::<Vec<_>>(),
            vec![holder],
            "holder at start\n{}",
            self.logs()
        );
        let changes: Vec<_> = t
            .events()
            .iter()
            .filter(|e| e.at > from && e.at <= to && among.contains(&e.node.as_str()))
            .collect();
        assert!(
            changes.is_empty(),
            "VIP moved while it should stay on {holder}: {changes:?}\n{}",
            self.logs()
        );
        assert!(
            self.watch.errors().is_empty(),
            "observer errors: {:?}",
            self.watch.errors()
        );
    }

    /// [`Cluster::hold_steady_among`] over all VRRP nodes.
    pub fn hold_steady(&self, holder: &str, d: Duration) {
        let names = self.names();
        self.hold_steady_among(holder, &names, d);
    }

    /// Waits for a gratuitous ARP (IPv4) or unsolicited NA (IPv6) for the VIP from `node`
    /// at or after `since`; when seen.
    pub fn wait_garp(&self, node: &str, since: Instant, timeout: Duration) -> Option<Instant> {
        self.wait_announcement(node, since, timeout).map(|c| c.at)
    }

    /// The announcements (gratuitous ARPs or unsolicited NAs: destination `ff02::1`,
    /// Solicited clear) for the VIP seen since `since`.
    pub fn announcements(&self, since: Instant) -> Vec<cairn_labnet::Captured> {
        if self.net.v6 {
            let all_nodes: IpAddr = "ff02::1".parse().unwrap();
            self.capture
                .nas(self.vip(), since)
                .into_iter()
                .filter(|c| {
                    matches!(c.seen, Seen::Na { dst, solicited: false, .. } if dst == all_nodes)
                })
                .collect()
        } else {
            self.capture.garps(self.vip(), since)
        }
    }

    /// Waits for an announcement of the VIP from `node` at or after `since`.
    pub fn wait_announcement(
        &self,
        node: &str,
        since: Instant,
        timeout: Duration,
    ) -> Option<cairn_labnet::Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = self
                .announcements(since)
                .into_iter()
                .find(|g| g.from == node)
            {
                return Some(g);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Priority-0 adverts sent by `node` since `since`.
    pub fn resignations(&self, node: &str, since: Instant) -> usize {
        self.capture
            .adverts(51, since)
            .iter()
            .filter(|c| c.from == node && matches!(c.seen, Seen::Vrrp { priority: 0, .. }))
            .count()
    }

    /// Starts the HTTP responder (body = node name) on 0.0.0.0:80 of `node`.
    pub fn start_responder(&mut self, node: &str) {
        let listen = if self.net.v6 { "[::]:80" } else { "0.0.0.0:80" };
        let spec = Spawn::new(
            lab_bin("cairn-lab-responder"),
            &["--listen", listen, "--name", node],
        );
        let name = format!("http-{node}");
        self.lab.spawn(node, &name, &spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self
            .lab
            .process(&name)
            .unwrap()
            .log()
            .contains(&format!("on {listen}"))
        {
            assert!(
                Instant::now() < deadline,
                "responder on {node} did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the probe in `client` against the VIP every 10 ms; returns its output file.
    pub fn start_probe(&mut self, client: &str, tag: &str) -> PathBuf {
        let out = self.lab.dir().join(format!("probe-{tag}.jsonl"));
        let target = std::net::SocketAddr::new(self.vip(), 80).to_string();
        let spec = Spawn::new(
            lab_bin("cairn-lab-probe"),
            &[
                "--target",
                &target,
                "--every-ms",
                "10",
                "--timeout-ms",
                "100",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        self.lab
            .spawn(client, &format!("probe-{tag}"), &spec)
            .unwrap();
        out
    }

    /// Stops the probe with SIGTERM and summarises its file.
    pub fn stop_probe(&mut self, tag: &str, out: &std::path::Path) -> ProbeSummary {
        self.stop_probe_attempts(tag, out).1
    }

    /// Like [`Self::stop_probe`], with the attempts themselves.
    pub fn stop_probe_attempts(
        &mut self,
        tag: &str,
        out: &std::path::Path,
    ) -> (Vec<cairn_labnet::probe::Attempt>, ProbeSummary) {
        let name = format!("probe-{tag}");
        self.lab
            .process(&name)
            .unwrap()
            .signal(nix::sys::signal::Signal::SIGTERM)
            .unwrap();
        let status = self
            .lab
            .process_mut(&name)
            .unwrap()
            .wait_timeout(Duration::from_secs(5))
            .unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "probe did not stop cleanly: {status:?}"
        );
        let (attempts, summary) = ProbeSummary::from_file(out).unwrap();
        for a in attempts.iter().filter(|a| !a.ok) {
            eprintln!(
                "probe {tag}: failed at {:.0} ms: {}",
                a.t_ms,
                a.error.as_deref().unwrap_or("?")
            );
        }
        (attempts, summary)
    }
}

// ----- scenarios -----

/// All nodes start at once; exactly one master (the highest priority, `a`) after settling.
pub fn elect(daemons: &[Daemon]) {
    elect_on(Net::V4, daemons);
}

/// [`elect`] with the instance set-up `net`; returns the cluster (a master).
pub fn elect_on(net: Net, daemons: &[Daemon]) -> Cluster {
    let prios = [150u8, 100, 50];
    let names = ["a", "b", "c"];
    let specs = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| NodeSpec {
            name: names[i],
            daemon: d.clone(),
            priority: prios[i],
            preempt: true,
        })
        .collect();
    let mut c = Cluster::with(net, specs, &[]);
    let t0 = Instant::now();
    for n in c.names() {
        c.start(n);
    }
    c.expect_holders(&["a"], Duration::from_secs(5), "election");
    let elected = t0.elapsed();
    c.hold_steady("a", Duration::from_millis(700));
    let adverts = c.capture.adverts(51, t0);
    assert!(
        adverts.iter().any(|a| a.from == "a"),
        "the master advertises on the bridge"
    );
    eprintln!(
        "elect {} ({}): master a after {:.0} ms (from starting {} daemons)",
        labels(daemons),
        net.label(),
        ms(elected),
        daemons.len()
    );
    c
}

fn labels(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(Daemon::label)
        .collect::<Vec<_>>()
        .join("+")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The master dies (SIGKILL, then the cable is cut; in this order so the daemon cannot
/// react to the carrier loss first, as keepalived does by resigning): the backup (priority 100) owns the VIP
/// within Master_Down_Interval + [`MARGIN`], and not earlier than Master_Down_Interval
/// minus one interval (the last advert may have left just before the cut). Returns the
/// cluster (a dead, b master) and the takeover time.
pub fn node_death(da: Daemon, db: Daemon, preempt: bool) -> (Cluster, Duration) {
    node_death_on(Net::V4, da, db, preempt)
}

/// [`node_death`] with the instance set-up `net`.
pub fn node_death_on(net: Net, da: Daemon, db: Daemon, preempt: bool) -> (Cluster, Duration) {
    let mut specs = pair(da, db);
    for s in &mut specs {
        s.preempt = preempt;
    }
    let mut c = Cluster::with(net, specs, &[]);
    c.start_with_master("a");
    let t0 = Instant::now();
    c.kill9("a");
    c.lab.cut("a").unwrap();
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "node death");
    let took = at - t0;
    let mdi = master_down(100);
    assert!(
        took <= mdi + MARGIN,
        "takeover after {:.0} ms > Master_Down_Interval {:.0} ms + margin {:.0} ms\n{}",
        ms(took),
        ms(mdi),
        ms(MARGIN),
        c.logs()
    );
    assert!(
        took + ADVERT + Duration::from_millis(20) >= mdi,
        "takeover after {:.0} ms: earlier than Master_Down_Interval {:.0} ms allows\n{}",
        ms(took),
        ms(mdi),
        c.logs()
    );
    assert_eq!(
        c.resignations("a", t0),
        0,
        "a dead node sends no priority-0 advert"
    );
    let garp = c.wait_garp("b", t0, Duration::from_secs(2));
    assert!(
        garp.is_some(),
        "the new master announces the VIP (gratuitous ARP / unsolicited NA)\n{}",
        c.logs()
    );
    c.hold_steady_among("b", &["b"], Duration::from_millis(300));
    eprintln!(
        "node death ({}→{}, {}): b took over after {:.0} ms (Master_Down_Interval {:.0} ms)",
        c.spec("a").daemon.label(),
        c.spec("b").daemon.label(),
        c.net.label(),
        ms(took),
        ms(mdi)
    );
    (c, took)
}

/// After node death the old master comes back (cable in, daemon restarted as after a
/// reboot): with preempt it takes the VIP back, without it stays backup.
pub fn comeback(da: Daemon, db: Daemon, preempt: bool) {
    let (mut c, _) = node_death(da, db, preempt);
    c.forget_vip("a");
    c.lab.heal("a").unwrap();
    let t0 = Instant::now();
    c.start("a");
    if preempt {
        c.expect_holders(
            &["a"],
            Duration::from_secs(5),
            "preemption by the returning master",
        );
        let took = t0.elapsed();
        c.hold_steady("a", Duration::from_millis(500));
        eprintln!(
            "comeback with preempt: a master again {:.0} ms after restart",
            ms(took)
        );
    } else {
        c.hold_steady("b", Duration::from_millis(1500));
        assert_eq!(c.watch.timeline().acquired(c.vip(), "a", t0), None);
        eprintln!("comeback without preempt: b kept the VIP for 1.5 s after a restarted");
    }
}

/// SIGTERM on the master: it resigns with priority 0 and the backup takes over after
/// about Skew_Time, far sooner than node death could be detected.
pub fn graceful(da: Daemon, db: Daemon) -> Duration {
    graceful_on(Net::V4, da, db).1
}

/// [`graceful`] with the instance set-up `net`; returns the cluster (a stopped, b master)
/// and the handover time.
pub fn graceful_on(net: Net, da: Daemon, db: Daemon) -> (Cluster, Duration) {
    let mut c = Cluster::with(net, pair(da, db), &[]);
    c.start_with_master("a");
    let t0 = Instant::now();
    c.terminate("a");
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "graceful handover");
    let took = at - t0;
    let status = c
        .lab
        .process_mut(&vrrpd::process_name("a"))
        .unwrap()
        // An orderly stop waits for its successor, then keeps the VIP parked for the
        // drain window (2 s) before the daemon exits.
        .wait_timeout(Duration::from_secs(6))
        .unwrap();
    assert!(
        status.is_some(),
        "a did not exit after SIGTERM\n{}",
        c.logs()
    );
    assert!(
        c.resignations("a", t0) >= 1,
        "a sent a priority-0 advert\n{}",
        c.logs()
    );
    let limit = skew(100) + MARGIN;
    assert!(
        took <= limit,
        "handover after {:.0} ms > Skew_Time {:.0} ms + margin\n{}",
        ms(took),
        ms(skew(100)),
        c.logs()
    );
    assert!(
        took < master_down(100) - ADVERT,
        "handover ({:.0} ms) not faster than the quickest node-death takeover ({:.0} ms)",
        ms(took),
        ms(master_down(100) - ADVERT)
    );
    c.hold_steady_among("b", &["a", "b"], Duration::from_millis(300));
    eprintln!(
        "graceful ({}→{}, {}): b took over {:.0} ms after SIGTERM (Skew_Time {:.0} ms, node death needs ≥ {:.0} ms)",
        c.spec("a").daemon.label(),
        c.spec("b").daemon.label(),
        c.net.label(),
        ms(took),
        ms(skew(100)),
        ms(master_down(100) - ADVERT)
    );
    (c, took)
}

/// Partition at the switch (carrier stays, daemons keep running): both become master;
/// after the heal the overlap ends within one interval + margin, `a` (higher priority)
/// keeps the VIP; outside the partition two connected nodes never both hold it.
pub fn partition(da: Daemon, db: Daemon) {
    let mut c = Cluster::new(pair(da, db), &[]);
    c.start_with_master("a");
    let start = Instant::now();
    c.lab.isolate("a").unwrap();
    let t_cut = Instant::now();
    c.expect_holders(
        &["a", "b"],
        Duration::from_secs(3),
        "both masters while partitioned",
    );
    std::thread::sleep(Duration::from_millis(300));
    let t_heal = Instant::now();
    c.lab.rejoin("a").unwrap();
    c.expect_holders(
        &["a"],
        Duration::from_secs(3),
        "single master after the heal",
    );
    std::thread::sleep(Duration::from_millis(500));
    let end = Instant::now();
    let t = c.watch.timeline();
    let before = t.overlaps(vip(), &["a", "b"], start, t_cut);
    assert!(
        before.is_empty(),
        "overlap before the partition: {before:?}"
    );
    let after = t.overlaps(vip(), &["a", "b"], t_heal, end);
    assert_eq!(
        after.len(),
        1,
        "one overlap (the partition's) reaching past the heal: {after:?}"
    );
    let tail = after[0].end - t_heal;
    assert!(
        tail <= ADVERT + MARGIN,
        "two masters for {:.0} ms after the heal (limit {:.0} ms)\n{}",
        ms(tail),
        ms(ADVERT + MARGIN),
        c.logs()
    );
    assert!(
        t.vacancies(vip(), &["a", "b"], start, end).is_empty(),
        "the VIP was never unowned"
    );
    assert!(c.watch.errors().is_empty());
    eprintln!(
        "partition ({}+{}): both masters during the partition, overlap ended {:.0} ms after the heal",
        c.spec("a").daemon.label(),
        c.spec("b").daemon.label(),
        ms(tail)
    );
}

/// Interop in one VRID: `a` (150, da) and `b` (100, db) elect `a`; killing `a` hands the
/// VIP to `b`.
pub fn interop(da: Daemon, db: Daemon) {
    interop_on(Net::V4, da, db);
}

/// [`interop`] with the instance set-up `net`; returns the cluster (a dead, b master)
/// and the time b took.
pub fn interop_on(net: Net, da: Daemon, db: Daemon) -> (Cluster, Duration) {
    let mut c = Cluster::with(net, pair(da.clone(), db.clone()), &[]);
    c.start_with_master("a");
    // Both speak: b's adverts are not needed, but b must have heard a (it stays backup).
    let t0 = Instant::now();
    c.kill9("a");
    c.lab.cut("a").unwrap();
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "interop failover");
    assert!(
        at - t0 <= master_down(100) + MARGIN,
        "interop takeover after {:.0} ms",
        ms(at - t0)
    );
    eprintln!(
        "interop {}(150) → {}(100), {}: elected a, b took over {:.0} ms after a died",
        da.label(),
        db.label(),
        net.label(),
        ms(at - t0)
    );
    (c, at - t0)
}

/// What a client saw across one handover.
pub struct Across {
    /// The whole probe run.
    pub summary: ProbeSummary,
    /// Failed requests started between the event (SIGTERM / kill) and 500 ms after the VIP
    /// arrived on the new master: the ones the handover is to blame for. Failures outside
    /// that window are the machine's (a starved responder missing the 100 ms timeout).
    pub failed_in_window: usize,
}

fn across(
    attempts: &[cairn_labnet::probe::Attempt],
    summary: ProbeSummary,
    from: f64,
    to: f64,
) -> Across {
    let failed_in_window = attempts
        .iter()
        .filter(|a| !a.ok)
        .filter(|a| a.mono_ms.is_some_and(|t| t >= from && t <= to))
        .count();
    Across {
        summary,
        failed_in_window,
    }
}

/// HTTP clients through the VIP: responders on `a` and `b`, a client `cl` probing every
/// 10 ms. First a graceful SIGTERM handover (a → b), then, with `a` back as master, a
/// node death. Returns (graceful, death, death takeover).
pub fn probing(da: Daemon, db: Daemon) -> (Across, ProbeSummary, Duration) {
    let (_, graceful, death, took) = probing_on(Net::V4, da, db);
    (graceful, death, took)
}

/// [`probing`] with the instance set-up `net` (client `cl` at `.200` / `::200`); also
/// returns the cluster (a dead, b master).
pub fn probing_on(net: Net, da: Daemon, db: Daemon) -> (Cluster, Across, ProbeSummary, Duration) {
    let client = net.host(200);
    let mut c = Cluster::with(net, pair(da, db), &[("cl", &client)]);
    c.start_responder("a");
    c.start_responder("b");
    c.start_with_master("a");

    // Graceful handover.
    let out = c.start_probe("cl", "graceful");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let from = cairn_labnet::probe::monotonic_ms();
    c.terminate("a");
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "graceful handover");
    let to = from + ms(at - t0) + 500.0;
    std::thread::sleep(Duration::from_millis(500));
    let (attempts, graceful) = c.stop_probe_attempts("graceful", &out);
    eprintln!(
        "probe across graceful handover (b after {:.0} ms): {}",
        ms(at - t0),
        graceful.line()
    );
    assert!(
        graceful.per_body.contains_key("a") && graceful.per_body.contains_key("b"),
        "{}",
        graceful.line()
    );

    // a comes back and preempts; then dies.
    c.lab
        .process_mut(&vrrpd::process_name("a"))
        .unwrap()
        .wait_timeout(Duration::from_secs(3))
        .unwrap();
    c.start("a");
    c.expect_holders(&["a"], Duration::from_secs(5), "a preempts back");
    let out = c.start_probe("cl", "death");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    c.kill9("a");
    c.lab.cut("a").unwrap();
    let at = c.expect_acquired("b", t0, Duration::from_secs(3), "node death");
    let takeover = at - t0;
    std::thread::sleep(Duration::from_millis(500));
    let death = c.stop_probe("death", &out);
    eprintln!(
        "probe across node death (b after {:.0} ms): {}",
        ms(takeover),
        death.line()
    );
    // Failures are bounded by the outage: nothing fails before the kill or after b
    // answers; the longest outage is the takeover plus at most one attempt timeout (an
    // attempt started just before b took over) plus the margin.
    let bound = ms(takeover) + 100.0 + ms(MARGIN);
    assert!(
        death.outages.len() <= 1,
        "one outage only: {:?}",
        death.outages
    );
    assert!(
        death.longest_outage_ms() <= bound,
        "outage {:.0} ms > {bound:.0} ms: {}",
        death.longest_outage_ms(),
        death.line()
    );
    assert!(
        death.switches.last().is_some_and(|(_, b)| b == "b"),
        "b serves at the end: {:?}",
        death.switches
    );
    (c, across(&attempts, graceful, from, to), death, takeover)
}

/// Malformed VRRP at the master from a third node: truncated, version 2, TTL 64, bad
/// checksum, foreign VRID, each claiming priority 254 (so accepting one would dethrone
/// `a`). The master stays master the whole time and its daemon keeps running. Returns the
/// cluster for daemon-specific checks (counters).
pub fn bad_packets(da: Daemon, db: Daemon, per_kind: usize) -> Cluster {
    use cairn_labnet::vrrp_wire::RawAdvert;
    let mut c = Cluster::new(pair(da, db), &[("x", "192.0.2.66/24")]);
    c.start_with_master("a");
    let src = Ipv4Addr::new(192, 0, 2, 66);
    let good = RawAdvert::valid(src, 51, 254, 10, &[Ipv4Addr::new(192, 0, 2, 100)]);
    let kinds = [
        RawAdvert {
            truncate_to: Some(6),
            ..good.clone()
        },
        RawAdvert {
            version: 2,
            ..good.clone()
        },
        RawAdvert {
            ttl: 64,
            ..good.clone()
        },
        RawAdvert {
            checksum_delta: 0x1234,
            ..good.clone()
        },
        RawAdvert {
            vrid: 52,
            ..good.clone()
        },
    ];
    let t0 = Instant::now();
    let mut datagrams = Vec::new();
    for _ in 0..per_kind {
        datagrams.extend(kinds.iter().map(RawAdvert::datagram));
    }
    cairn_labnet::raw::send_ipv4(&c.lab, "x", good.dst, &datagrams).unwrap();
    c.hold_steady("a", Duration::from_millis(500));
    assert_eq!(
        c.watch.timeline().released(vip(), "a", t0),
        None,
        "a never let go"
    );
    let bogus = c
        .capture
        .adverts(51, t0)
        .iter()
        .filter(|f| f.from == "x")
        .count()
        + c.capture
            .adverts(52, t0)
            .iter()
            .filter(|f| f.from == "x")
            .count();
    assert_eq!(
        bogus,
        per_kind * kinds.len(),
        "all bad packets crossed the bridge"
    );
    for n in ["a", "b"] {
        let p = c.lab.process_mut(&vrrpd::process_name(n)).unwrap();
        assert!(
            p.try_exit().unwrap().is_none(),
            "{n}'s daemon still runs\n{}",
            p.log()
        );
    }
    c
}

// ----- helpers for the IPv6, unicast and virtual-MAC scenarios -----

/// The MAC address of `link` in `node`, as `ip` prints it (`02:..`).
pub fn link_mac(c: &Cluster, node: &str, link: &str) -> Option<String> {
    let out = c.lab.ip(node, &["-o", "link", "show", "dev", link]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    words.next().map(str::to_owned)
}

/// Formats a MAC the way `ip` does.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The VRRP adverts `node` sent since `since` (VRID 51), as (source, destination,
/// hop limit / TTL, priority).
pub fn adverts_from(c: &Cluster, node: &str, since: Instant) -> Vec<(IpAddr, IpAddr, u8, u8)> {
    c.capture
        .adverts(51, since)
        .into_iter()
        .filter(|a| a.from == node)
        .filter_map(|a| match a.seen {
            Seen::Vrrp {
                src,
                dst,
                ttl,
                priority,
                version: 3,
                ..
            } => Some((src, dst, ttl, priority)),
            _ => None,
        })
        .collect()
}

/// Asserts `node`'s adverts since `since` are well-formed for the cluster's set-up: at
/// least one; hop limit 255; IPv6 from a link-local source (keepalived with unicast
/// peers: its global address), IPv4 from the node's address; to the group, or (unicast) only to the other nodes' addresses, each of them
/// getting some. Returns how many were seen.
pub fn assert_adverts_shape(c: &Cluster, node: &str, since: Instant) -> usize {
    let adverts = adverts_from(c, node, since);
    assert!(
        !adverts.is_empty(),
        "no adverts from {node} on the bridge\n{}",
        c.logs()
    );
    let peers: Vec<IpAddr> = c
        .names()
        .into_iter()
        .filter(|n| *n != node)
        .map(|n| c.node_addr(n))
        .collect();
    for (src, dst, ttl, _) in &adverts {
        assert_eq!(*ttl, 255, "{node}: advert {src} -> {dst} with TTL {ttl}");
        match src {
            // keepalived with IPv6 unicast peers sends from its `unicast_src_ip`.
            IpAddr::V6(s) => assert!(
                c.net.v6
                    && (s.is_unicast_link_local()
                        || (c.net.unicast
                            && c.spec(node).daemon == Daemon::Keepalived
                            && *src == c.node_addr(node))),
                "{node}: IPv6 advert from {s}, want its link-local address"
            ),
            IpAddr::V4(_) => assert!(
                !c.net.v6 && *src == c.node_addr(node),
                "{node}: advert from {src}, want {}",
                c.node_addr(node)
            ),
        }
        if c.net.unicast {
            assert!(
                peers.contains(dst),
                "{node}: unicast advert to {dst}, peers are {peers:?} (no multicast allowed)"
            );
        } else {
            assert_eq!(*dst, c.net.group(), "{node}: advert to {dst}");
        }
    }
    if c.net.unicast {
        for p in &peers {
            assert!(
                adverts.iter().any(|(_, d, _, _)| d == p),
                "{node}: no advert to peer {p}: {adverts:?}"
            );
        }
    }
    adverts.len()
}

/// The `lladdr` of the client's neighbour entry for the VIP (`None` when absent or
/// without one, e.g. INCOMPLETE / FAILED).
pub fn neighbour_mac(c: &Cluster, client: &str) -> Option<String> {
    let vip = c.vip().to_string();
    let out = c
        .lab
        .ip(client, &["neigh", "show", "to", &vip, "dev", "eth0"])
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

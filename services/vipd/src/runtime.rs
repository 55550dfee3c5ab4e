//! The daemon: sets up links, sockets, health workers and the control API, then runs the
//! single-threaded main loop (`poll` on a signalfd, the health waker and the VRRP sockets,
//! with the timeout from the instances' next deadlines) until SIGTERM or SIGINT.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cairn_netlink::{IpNet, Netlink, NetlinkError};
use cairn_vrrp::instance::UNFIT_PRIORITY;
use cairn_vrrp::packet::{decode_ipv4, decode_ipv6};
use cairn_vrrp::{DropReason, Input, Instance, InstanceConfig, PacketError, Received};
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::actions::{Effects, Target, feed};
use crate::arpconf::ArpConf;
use crate::config::{self, Config};
use crate::drain::Drains;
use crate::health::{CheckState, Health, effective_priority};
use crate::probe::{CheckResult, Waker, spawn_workers};
use crate::sock::{ArpSocket, NaSocket, RawPacket, VrrpSocket};
use crate::status::{Snapshot, instance_status};

/// Most packets read from one socket per wake-up, so one busy socket cannot starve the rest.
const MAX_PACKETS_PER_WAKE: usize = 64;
/// Longest poll: the loop wakes at least this often even with nothing to do.
const MAX_POLL: Duration = Duration::from_secs(1);
/// At most this many dropped-packet debug lines per socket per [`LOG_WINDOW`].
const LOG_BURST: u32 = 10;
/// Window of the dropped-packet log limit.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Blocking signals or creating the signalfd failed.
    #[error("cannot set up signal handling: {0}")]
    Signals(nix::Error),
    /// A netlink request failed during setup.
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    /// The configured interface does not exist.
    #[error("instance {instance}: no interface named {interface}")]
    NoInterface {
        /// The instance.
        instance: String,
        /// The interface.
        interface: String,
    },
    /// The interface has no MAC to announce with.
    #[error("instance {instance}: interface {interface} has no MAC address")]
    NoMac {
        /// The instance.
        instance: String,
        /// The interface.
        interface: String,
    },
    /// The interface has no address to send adverts from.
    #[error("instance {instance}: interface {interface} has no {what} to send adverts from")]
    NoPrimary {
        /// The instance.
        instance: String,
        /// The interface.
        interface: String,
        /// `IPv4 address` or `IPv6 link-local address`.
        what: &'static str,
    },
    /// The virtual MAC link did not appear after it was created.
    #[error("instance {instance}: virtual MAC link {link} vanished after it was created")]
    VmacVanished {
        /// The instance.
        instance: String,
        /// The link name.
        link: String,
    },
    /// A socket could not be opened or set up.
    #[error("cannot open {what} socket{}: {source}", on.as_deref().map(|i| format!(" on {i}")).unwrap_or_default())]
    Socket {
        /// Which socket.
        what: &'static str,
        /// The interface, if the socket is bound to one.
        on: Option<String>,
        /// The error.
        source: io::Error,
    },
    /// Health-check threads could not be started.
    #[error("cannot start health-check threads: {0}")]
    Threads(io::Error),
    /// The control socket could not be served.
    #[error("{0}")]
    Control(cairn_control::ServerError),
    /// `poll` failed.
    #[error("poll: {0}")]
    Poll(nix::Error),
}

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to serve `org.cairn.Vip1`.
    pub control_socket: PathBuf,
}

/// One running instance.
struct Slot {
    target: Target,
    interface: String,
    vrrp: Instance,
    checks: Vec<CheckState>,
    socket: usize,
    since: Instant,
    /// Maintenance mode: run at priority 1 whatever the checks say.
    maintenance: bool,
}

/// The I/O side: netlink and sockets; implements [`Effects`].
struct Io {
    nl: Netlink,
    sockets: Vec<VrrpSocket>,
    /// (ifindex, ipv6) -> index into `sockets`.
    socket_index: HashMap<(u32, bool), usize>,
    arp: Option<ArpSocket>,
    na: Option<NaSocket>,
    /// The loopback, where parked VIPs live.
    lo: u32,
    drains: Drains,
}

/// A VIP as a parked host address (`/32`, `/128`).
fn parked(vip: IpNet) -> IpNet {
    let host = if vip.is_ipv6() { 128 } else { 32 };
    IpNet::new(vip.addr(), host).unwrap_or(vip)
}

/// Joins per-address errors.
fn joined(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Effects for Io {
    fn add_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
        let mut errors = Vec::new();
        for &vip in vips {
            if let Err(e) = self.nl.ensure_address_nodad(index, vip) {
                errors.push(e.to_string());
            }
            if let Err(e) = self.nl.ensure_no_address(self.lo, parked(vip)) {
                errors.push(e.to_string());
            }
        }
        joined(errors)
    }

    fn remove_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
        let mut errors = Vec::new();
        for &vip in vips {
            for (link, net) in [(index, vip), (self.lo, parked(vip))] {
                if let Err(e) = self.nl.ensure_no_address(link, net) {
                    errors.push(e.to_string());
                }
            }
        }
        joined(errors)
    }

    fn park_vips(&mut self, index: u32, vips: &[IpNet]) -> Result<(), String> {
        // On the loopback first, so the address never stops being local.
        let mut errors = Vec::new();
        for &vip in vips {
            if let Err(e) = self.nl.ensure_address_nodad(self.lo, parked(vip)) {
                errors.push(e.to_string());
            }
            if let Err(e) = self.nl.ensure_no_address(index, vip) {
                errors.push(e.to_string());
            }
        }
        joined(errors)
    }

    fn start_drain(
        &mut self,
        name: &str,
        ifindex: u32,
        to: IpAddr,
        vips: &[IpNet],
    ) -> Result<(), String> {
        self.drains.start(name, ifindex, to, vips)
    }

    fn stop_drain(&mut self, name: &str) -> Result<(), String> {
        self.drains.stop(name)
    }

    fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), String> {
        let result = if up {
            self.nl.set_up(index)
        } else {
            self.nl.set_down(index)
        };
        result.map_err(|e| e.to_string())
    }

    fn send_advert(
        &mut self,
        ifindex: u32,
        src: IpAddr,
        dst: IpAddr,
        payload: &[u8],
    ) -> Result<(), String> {
        let Some(&i) = self.socket_index.get(&(ifindex, src.is_ipv6())) else {
            return Err(format!("no VRRP socket on link #{ifindex}"));
        };
        self.sockets[i]
            .send(src, dst, payload)
            .map_err(|e| e.to_string())
    }

    fn send_arp(&mut self, ifindex: u32, frame: &[u8]) -> Result<(), String> {
        match &self.arp {
            Some(s) => s.send(ifindex, frame).map_err(|e| e.to_string()),
            None => Err("no ARP socket".into()),
        }
    }

    fn send_na(&mut self, ifindex: u32, src: Ipv6Addr, message: &[u8]) -> Result<(), String> {
        match &self.na {
            Some(s) => s.send(ifindex, src, message).map_err(|e| e.to_string()),
            None => Err("no ICMPv6 socket".into()),
        }
    }
}

/// Limits how often dropped packets are logged.
#[derive(Debug, Clone)]
pub struct LogLimit {
    window_start: Option<Instant>,
    count: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A limiter with an empty window.
    pub fn new() -> Self {
        Self {
            window_start: None,
            count: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now; returns the number suppressed since the last allowed line too.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LOG_WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.count = 0;
        }
        if self.count < LOG_BURST {
            self.count += 1;
            let suppressed = self.suppressed;
            self.suppressed = 0;
            Some(suppressed)
        } else {
            self.suppressed += 1;
            None
        }
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolved facts about one instance's interface.
struct LinkFacts {
    index: u32,
    mac: [u8; 6],
    primary: IpAddr,
    link_local: Option<Ipv6Addr>,
}

/// Looks up the instance's interface: index, MAC, and the address adverts come from (the
/// first IPv4 address that is no instance's VIP; for IPv6 the link-local address).
fn resolve_link(
    nl: &mut Netlink,
    inst: &config::Instance,
    all_vips: &[IpAddr],
) -> Result<LinkFacts, RuntimeError> {
    let link = nl
        .link_by_name(&inst.interface)?
        .ok_or_else(|| RuntimeError::NoInterface {
            instance: inst.name.clone(),
            interface: inst.interface.clone(),
        })?;
    let mac = link.mac.ok_or_else(|| RuntimeError::NoMac {
        instance: inst.name.clone(),
        interface: inst.interface.clone(),
    })?;
    let addresses = nl.addresses(link.index)?;
    let link_local = addresses.iter().find_map(|a| match a.addr() {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
        _ => None,
    });
    let primary = if inst.is_ipv6() {
        link_local.map(IpAddr::V6)
    } else {
        addresses
            .iter()
            .map(|a| a.addr())
            .find(|a| a.is_ipv4() && !all_vips.contains(a))
    };
    let primary = primary.ok_or_else(|| RuntimeError::NoPrimary {
        instance: inst.name.clone(),
        interface: inst.interface.clone(),
        what: if inst.is_ipv6() {
            "IPv6 link-local address"
        } else {
            "IPv4 address"
        },
    })?;
    Ok(LinkFacts {
        index: link.index,
        mac,
        primary,
        link_local,
    })
}

/// Creates the macvlan with the virtual MAC (replacing a stale one) and returns its index.
fn create_vmac(
    nl: &mut Netlink,
    inst: &config::Instance,
    parent: u32,
) -> Result<u32, RuntimeError> {
    let name = inst.vmac_link_name();
    if let Some(stale) = nl.link_by_name(&name)? {
        tracing::info!("removing stale virtual MAC link {name}");
        nl.delete_link(stale.index)?;
    }
    nl.create_macvlan(parent, &name, inst.virtual_mac())?;
    nl.link_by_name(&name)?
        .map(|l| l.index)
        .ok_or_else(|| RuntimeError::VmacVanished {
            instance: inst.name.clone(),
            link: name,
        })
}

/// Runs the daemon until SIGTERM/SIGINT; returns after an orderly shutdown.
pub fn run(config: Config, options: &Options) -> Result<(), RuntimeError> {
    // Block the signals before any thread starts, so every thread inherits the mask and
    // the signalfd is the only receiver.
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(RuntimeError::Signals)?;
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(RuntimeError::Signals)?;

    let mut nl = Netlink::open()?;
    let mut vmac_links: Vec<(String, u32)> = Vec::new();
    let mut arp = ArpConf::system();
    let result = setup_and_loop(
        &config,
        options,
        &mut nl,
        &signals,
        &mut vmac_links,
        &mut arp,
    );
    // Whatever happened, take down the virtual MAC links we created.
    for (name, index) in vmac_links {
        match nl.delete_link(index) {
            Ok(()) => tracing::info!("deleted virtual MAC link {name}"),
            Err(e) => tracing::warn!("cannot delete virtual MAC link {name}: {e}"),
        }
    }
    arp.restore();
    result
}

fn setup_and_loop(
    config: &Config,
    options: &Options,
    nl: &mut Netlink,
    signals: &SignalFd,
    vmac_links: &mut Vec<(String, u32)>,
    arp: &mut ArpConf,
) -> Result<(), RuntimeError> {
    let now = Instant::now();
    let mut slots = Vec::new();
    let mut sockets: Vec<VrrpSocket> = Vec::new();
    let mut socket_index: HashMap<(u32, bool), usize> = HashMap::new();
    let all_vips: Vec<IpAddr> = config
        .instances
        .iter()
        .flat_map(|i| i.vips.iter().map(|v| v.addr()))
        .collect();
    let lo = nl
        .link_by_name("lo")?
        .map(|l| l.index)
        .ok_or_else(|| RuntimeError::NoInterface {
            instance: "(parked virtual IPs)".into(),
            interface: "lo".into(),
        })?;
    for inst in &config.instances {
        let facts = resolve_link(nl, inst, &all_vips)?;
        let vmac_link = if inst.use_vmac {
            let index = create_vmac(nl, inst, facts.index)?;
            vmac_links.push((inst.vmac_link_name(), index));
            if !inst.is_ipv6() {
                // Without these a client can learn the parent's MAC for the VIP (see
                // arpconf); the VIP still moves, so a failure is only a warning.
                if let Err(e) = arp.prepare(&inst.interface, &inst.vmac_link_name()) {
                    tracing::warn!(
                        "instance {}: cannot set ARP sysctls for {}: {e}",
                        inst.name,
                        inst.vmac_link_name()
                    );
                }
            }
            Some(index)
        } else {
            if !inst.is_ipv6() && !inst.drain.is_zero() {
                // Parked VIPs live on the loopback: without these the interface would still
                // answer ARP for them (and name them in its own ARP requests), pulling
                // clients back from the new master (see arpconf).
                if let Err(e) = arp.prepare_parking(&inst.interface) {
                    tracing::warn!(
                        "instance {}: cannot set ARP sysctls for parking on {}: {e}",
                        inst.name,
                        inst.interface
                    );
                }
            }
            None
        };
        // Start as backup: VIPs left over from a crash go now, parked ones too; the master
        // adds them again.
        for &vip in &inst.vips {
            let host = IpNet::new(vip.addr(), if vip.is_ipv6() { 128 } else { 32 }).unwrap_or(vip);
            for (link, vip) in [(Some(facts.index), vip), (vmac_link, vip), (Some(lo), host)]
                .into_iter()
                .filter_map(|(link, vip)| Some((link?, vip)))
            {
                if nl.ensure_no_address(link, vip)? {
                    tracing::info!(
                        "instance {}: removed stale virtual IP {vip} from {}",
                        inst.name,
                        inst.interface
                    );
                }
            }
        }
        let key = (facts.index, inst.is_ipv6());
        let socket = match socket_index.get(&key) {
            Some(&i) => i,
            None => {
                let s = VrrpSocket::open(&inst.interface, facts.index, inst.is_ipv6()).map_err(
                    |source| RuntimeError::Socket {
                        what: if inst.is_ipv6() {
                            "IPv6 VRRP"
                        } else {
                            "IPv4 VRRP"
                        },
                        on: Some(inst.interface.clone()),
                        source,
                    },
                )?;
                sockets.push(s);
                socket_index.insert(key, sockets.len() - 1);
                sockets.len() - 1
            }
        };
        let target = Target {
            name: inst.name.clone(),
            vrid: inst.vrid,
            ifindex: facts.index,
            announce_mac: if inst.use_vmac {
                inst.virtual_mac()
            } else {
                facts.mac
            },
            primary: facts.primary,
            link_local: facts.link_local,
            vips: inst.vips.clone(),
            unicast_peers: inst.unicast_peers.clone(),
            vmac_link,
        };
        let vrrp = Instance::new(InstanceConfig {
            vrid: inst.vrid,
            priority: inst.priority,
            interval_cs: inst.interval_cs,
            preempt: inst.preempt,
            vips: inst.vips.iter().map(|v| v.addr()).collect(),
            primary: facts.primary,
            announce_count: inst.announce_count,
            announce_interval: inst.announce_interval,
            drain: inst.drain,
        });
        let checks = inst
            .tracks
            .iter()
            .map(|t| CheckState::new(&t.name, t.fall, t.rise, t.weight))
            .collect();
        tracing::info!(
            "instance {} vrid {}: on {} (#{}) from {}, priority {}, virtual IPs {}",
            inst.name,
            inst.vrid,
            inst.interface,
            facts.index,
            facts.primary,
            inst.priority,
            inst.vips
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        slots.push(Slot {
            target,
            interface: inst.interface.clone(),
            vrrp,
            checks,
            socket,
            since: now,
            maintenance: false,
        });
    }
    let any_v4 = config.instances.iter().any(|i| !i.is_ipv6());
    let any_v6 = config.instances.iter().any(|i| i.is_ipv6());
    let arp = if any_v4 {
        Some(ArpSocket::open().map_err(|source| RuntimeError::Socket {
            what: "ARP",
            on: None,
            source,
        })?)
    } else {
        None
    };
    let na = if any_v6 {
        Some(NaSocket::open().map_err(|source| RuntimeError::Socket {
            what: "ICMPv6",
            on: None,
            source,
        })?)
    } else {
        None
    };
    let drained: Vec<IpAddr> = config
        .instances
        .iter()
        .filter(|i| !i.drain.is_zero())
        .flat_map(|i| i.vips.iter().map(|v| v.addr()))
        .collect();
    let mut io = Io {
        nl: Netlink::open()?,
        sockets,
        socket_index,
        arp,
        na,
        lo,
        drains: Drains::install(&drained),
    };

    // Health workers.
    let (waker, wake_rx) = Waker::pair().map_err(RuntimeError::Threads)?;
    let (results_tx, results) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let checks: Vec<_> = config
        .instances
        .iter()
        .enumerate()
        .flat_map(|(i, inst)| {
            inst.tracks
                .iter()
                .enumerate()
                .map(move |(k, t)| (i, k, t.clone()))
        })
        .collect();
    spawn_workers(checks, &results_tx, &waker, &stop).map_err(RuntimeError::Threads)?;
    drop(results_tx);

    // Control API; SetMaintenance wakes the loop through the health waker.
    let snapshot = Snapshot::default();
    let maintenance = crate::control::Maintenance::new(waker.clone());
    let _control = crate::control::serve(&options.control_socket, &snapshot, &maintenance)
        .map_err(RuntimeError::Control)?;
    tracing::info!(
        "control API org.cairn.Vip1 on {}",
        options.control_socket.display()
    );

    // Start every instance, then lower priorities for checks that have not passed yet.
    let now = Instant::now();
    for slot in &mut slots {
        if feed(&slot.target, &mut slot.vrrp, Input::Startup, now, &mut io) {
            slot.since = now;
        }
        apply_priority(slot, now, &mut io);
    }
    publish(&snapshot, &slots);
    match crate::notify::notify("READY=1") {
        Ok(true) => tracing::debug!("sent READY=1"),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot notify readiness: {e}"),
    }

    let result = main_loop(
        &mut slots,
        &mut io,
        signals,
        &wake_rx,
        &results,
        &snapshot,
        &maintenance,
    );
    stop.store(true, Ordering::Relaxed);
    // After a signal every instance is already down and released; after an error, resign
    // now and drop the VIPs at once (the second Shutdown ends any release).
    let now = Instant::now();
    for slot in &mut slots {
        feed(&slot.target, &mut slot.vrrp, Input::Shutdown, now, &mut io);
        feed(&slot.target, &mut slot.vrrp, Input::Shutdown, now, &mut io);
    }
    io.drains.remove();
    publish(&snapshot, &slots);
    result
}

/// The priority an instance should run at: 1 in maintenance mode (a master resigns at
/// once, a backup never takes over), else its configured priority less its failing checks.
pub fn wanted_priority(configured: u8, checks: &[CheckState], maintenance: bool) -> u8 {
    if maintenance && configured != 255 {
        UNFIT_PRIORITY
    } else {
        effective_priority(configured, checks)
    }
}

/// Sets the instance's priority from its checks and maintenance mode if it differs.
fn apply_priority(slot: &mut Slot, now: Instant, io: &mut Io) {
    let wanted = wanted_priority(slot.vrrp.config().priority, &slot.checks, slot.maintenance);
    if wanted != slot.vrrp.priority() {
        tracing::info!(
            "instance {} vrid {}: priority {} -> {wanted}",
            slot.target.name,
            slot.target.vrid,
            slot.vrrp.priority()
        );
        if feed(
            &slot.target,
            &mut slot.vrrp,
            Input::SetPriority(wanted),
            now,
            io,
        ) {
            slot.since = now;
        }
    }
}

fn publish(snapshot: &Snapshot, slots: &[Slot]) {
    let now = Instant::now();
    snapshot.publish(
        slots
            .iter()
            .map(|s| {
                (
                    instance_status(
                        &s.target.name,
                        &s.interface,
                        &s.target.vips,
                        &s.vrrp,
                        &s.checks,
                        s.maintenance,
                        s.since,
                        now,
                    ),
                    s.since,
                )
            })
            .collect(),
    );
}

/// What woke the loop up.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Signal,
}

fn main_loop(
    slots: &mut [Slot],
    io: &mut Io,
    signals: &SignalFd,
    wake_rx: &UnixStream,
    results: &Receiver<CheckResult>,
    snapshot: &Snapshot,
    maintenance: &crate::control::Maintenance,
) -> Result<(), RuntimeError> {
    let mut limits: Vec<LogLimit> = vec![LogLimit::new(); io.sockets.len()];
    // Set by the first SIGTERM/SIGINT: masters have resigned and keep their VIPs until their
    // successors speak (cairn_vrrp::Instance::is_releasing); the loop ends when none does.
    let mut stopping = false;
    loop {
        if stopping && !slots.iter().any(|s| s.vrrp.is_releasing()) {
            return Ok(());
        }
        let now = Instant::now();
        run_timers(slots, io, now);
        publish(snapshot, slots);

        let now = Instant::now();
        let timeout = slots
            .iter()
            .filter_map(|s| s.vrrp.next_deadline())
            .min()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(MAX_POLL)
            .min(MAX_POLL);
        // ppoll's nanosecond timeout wakes at the deadline itself: rounding up to poll's whole
        // milliseconds made every takeover ~1 ms later than keepalived's.
        let timeout = nix::sys::time::TimeSpec::from_duration(timeout);

        let (signal_ready, wake_ready, socket_ready) = {
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                io.sockets
                    .iter()
                    .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN)),
            );
            match ppoll(&mut fds, Some(timeout), None) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(RuntimeError::Poll(e)),
            }
            let ready = |fd: &PollFd| {
                fd.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            let sockets: Vec<bool> = fds[2..].iter().map(ready).collect();
            (ready(&fds[0]), ready(&fds[1]), sockets)
        };

        if signal_ready && handle_signals(signals) == Some(Stop::Signal) {
            // Orderly stop: masters resign with priority 0 (a second signal drops the VIPs
            // without waiting for the successor).
            if stopping {
                tracing::info!("second stop signal: releasing the VIPs now");
            }
            stopping = true;
            let now = Instant::now();
            for slot in slots.iter_mut() {
                if feed(&slot.target, &mut slot.vrrp, Input::Shutdown, now, io) {
                    slot.since = now;
                }
            }
            publish(snapshot, slots);
            continue;
        }
        if wake_ready {
            drain(wake_rx);
            let now = Instant::now();
            while let Ok(r) = results.try_recv() {
                record_check(slots, io, r, now);
            }
            let on = maintenance.is_on();
            if !stopping {
                for slot in slots.iter_mut().filter(|s| s.maintenance != on) {
                    tracing::info!(
                        "instance {} vrid {}: maintenance mode {}",
                        slot.target.name,
                        slot.target.vrid,
                        if on { "on" } else { "off" }
                    );
                    slot.maintenance = on;
                    apply_priority(slot, now, io);
                }
            }
        }
        for (i, ready) in socket_ready.into_iter().enumerate() {
            if ready {
                read_socket(slots, io, i, &mut limits[i]);
            }
        }
    }
}

fn run_timers(slots: &mut [Slot], io: &mut Io, now: Instant) {
    for slot in slots.iter_mut() {
        // A handful of rounds at most: a deadline always moves forward after Timer.
        for _ in 0..8 {
            match slot.vrrp.next_deadline() {
                Some(d) if d <= now => {
                    if feed(&slot.target, &mut slot.vrrp, Input::Timer, now, io) {
                        slot.since = now;
                    }
                }
                _ => break,
            }
        }
    }
}

fn handle_signals(signals: &SignalFd) -> Option<Stop> {
    let mut stop = None;
    while let Ok(Some(info)) = signals.read_signal() {
        match Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                tracing::info!("signal {}: shutting down", info.ssi_signo);
                stop = Some(Stop::Signal);
            }
            Ok(Signal::SIGHUP) => {
                tracing::info!("SIGHUP ignored: restart cairn-vipd to apply a new config");
            }
            _ => {}
        }
    }
    stop
}

fn drain(stream: &UnixStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = (&*stream).read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn record_check(slots: &mut [Slot], io: &mut Io, r: CheckResult, now: Instant) {
    let Some(slot) = slots.get_mut(r.instance) else {
        return;
    };
    let Some(check) = slot.checks.get_mut(r.track) else {
        return;
    };
    let before = check.health().clone();
    let changed = check.record(r.outcome);
    let after = check.health().clone();
    if changed || (before == Health::Pending && after != Health::Pending) {
        tracing::info!(
            "instance {}: check {}",
            slot.target.name,
            slot.checks[r.track]
        );
    }
    apply_priority(slot, now, io);
}

fn read_socket(slots: &mut [Slot], io: &mut Io, socket: usize, limit: &mut LogLimit) {
    for _ in 0..MAX_PACKETS_PER_WAKE {
        let packet = match io.sockets[socket].recv() {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                if let Some(suppressed) = limit.allow(Instant::now()) {
                    tracing::warn!("receive on VRRP socket: {e} ({suppressed} similar suppressed)");
                }
                return;
            }
        };
        let now = Instant::now();
        dispatch(slots, io, socket, packet, now, limit);
    }
}

/// Decodes one packet and gives it to the instance with its VRID on that socket; drops are
/// counted on every instance sharing the socket.
fn dispatch(
    slots: &mut [Slot],
    io: &mut Io,
    socket: usize,
    packet: RawPacket,
    now: Instant,
    limit: &mut LogLimit,
) {
    let decoded = match &packet {
        RawPacket::V4(datagram) => decode_ipv4(datagram),
        RawPacket::V6 {
            payload,
            src,
            dst,
            hop_limit,
        } => decode_ipv6(payload, *src, *dst, *hop_limit),
    };
    let from = match &packet {
        RawPacket::V4(d) if d.len() >= 20 => IpAddr::from([d[12], d[13], d[14], d[15]]).to_string(),
        RawPacket::V4(_) => "?".to_owned(),
        RawPacket::V6 { src, .. } => src.to_string(),
    };
    let on_socket: Vec<(usize, u8)> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.socket == socket)
        .map(|(i, s)| (i, s.target.vrid))
        .collect();
    match route(decoded, &on_socket) {
        Route::To(i, rx) => {
            let slot = &mut slots[i];
            if feed(&slot.target, &mut slot.vrrp, Input::Advert(rx), now, io) {
                slot.since = now;
            }
        }
        Route::Drop(reason, why) => {
            for &(i, _) in &on_socket {
                slots[i].vrrp.count_drop(reason);
            }
            if let Some(suppressed) = limit.allow(now) {
                tracing::debug!("dropped packet from {from}: {why} ({suppressed} suppressed)");
            }
        }
    }
}

/// Where a received packet goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To the instance at this index.
    To(usize, Received),
    /// Dropped: count this reason on every instance of the socket; the text says why.
    Drop(DropReason, String),
}

/// Routes a decoded packet among the instances `(index, vrid)` sharing its socket.
pub fn route(decoded: Result<Received, PacketError>, on_socket: &[(usize, u8)]) -> Route {
    match decoded {
        Err(e) => Route::Drop(DropReason::from(&e), e.to_string()),
        Ok(rx) => {
            let vrid = rx.advert.vrid;
            match on_socket.iter().find(|(_, v)| *v == vrid) {
                Some(&(i, _)) => Route::To(i, rx),
                None => Route::Drop(DropReason::ForeignVrid, format!("VRID {vrid} is not ours")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(vrid: u8) -> Received {
        Received {
            src: "192.0.2.12".parse().unwrap(),
            dst: "224.0.0.18".parse().unwrap(),
            advert: cairn_vrrp::Advertisement {
                vrid,
                priority: 100,
                interval_cs: 100,
                addresses: vec!["192.0.2.100".parse().unwrap()],
            },
        }
    }

    #[test]
    fn packets_go_to_their_vrid_or_are_counted() {
        let on_socket = [(0, 51), (3, 52)];
        assert_eq!(
            route(Ok(received(52)), &on_socket),
            Route::To(3, received(52))
        );
        assert_eq!(
            route(Ok(received(51)), &on_socket),
            Route::To(0, received(51))
        );
        assert_eq!(
            route(Ok(received(9)), &on_socket),
            Route::Drop(DropReason::ForeignVrid, "VRID 9 is not ours".into())
        );
        assert_eq!(
            route(
                Err(PacketError::BadChecksum {
                    got: 1,
                    expected: 2
                }),
                &on_socket
            ),
            Route::Drop(
                DropReason::BadChecksum,
                "checksum 0x0001, expected 0x0002".into()
            )
        );
        assert_eq!(
            route(Err(PacketError::WrongTtl(64)), &[]),
            Route::Drop(DropReason::WrongTtl, "TTL/hop limit 64, must be 255".into())
        );
    }

    #[test]
    fn real_datagrams_route_through_the_decoder() {
        use cairn_vrrp::packet::{decode_ipv4, ipv4_datagram};
        let rx = received(51);
        let (src, dst) = ("192.0.2.12".parse().unwrap(), "224.0.0.18".parse().unwrap());
        let payload = rx
            .advert
            .encode(std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst));
        let good = ipv4_datagram(src, dst, 255, &payload);
        assert_eq!(route(decode_ipv4(&good), &[(1, 51)]), Route::To(1, rx));
        let hop = ipv4_datagram(src, dst, 254, &payload);
        assert!(matches!(
            route(decode_ipv4(&hop), &[(1, 51)]),
            Route::Drop(DropReason::WrongTtl, _)
        ));
        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(matches!(
            route(decode_ipv4(&corrupt), &[(1, 51)]),
            Route::Drop(DropReason::BadChecksum, _)
        ));
        assert!(matches!(
            route(decode_ipv4(&good[..10]), &[(1, 51)]),
            Route::Drop(DropReason::Truncated, _)
        ));
    }

    #[test]
    fn log_limit_allows_a_burst_per_window() {
        let mut l = LogLimit::new();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(l.allow(t0), Some(0));
        }
        assert_eq!(l.allow(t0), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        // A new window reports what was suppressed.
        assert_eq!(l.allow(t0 + LOG_WINDOW), Some(2));
        assert_eq!(l.allow(t0 + LOG_WINDOW), Some(0));
    }

    #[test]
    fn maintenance_runs_at_priority_one_except_for_an_owner() {
        let mut ok = CheckState::new("haproxy", 1, 1, 255);
        ok.record(Ok(()));
        let checks = vec![ok];
        assert_eq!(wanted_priority(150, &checks, false), 150);
        assert_eq!(wanted_priority(150, &checks, true), UNFIT_PRIORITY);
        assert_eq!(wanted_priority(150, &[], true), UNFIT_PRIORITY);
        // An address owner cannot step down by priority (RFC 5798 keeps it at 255).
        assert_eq!(wanted_priority(255, &checks, true), 255);
        let failing = vec![CheckState::new("haproxy", 1, 1, 100)];
        assert_eq!(wanted_priority(150, &failing, false), 50);
    }
}

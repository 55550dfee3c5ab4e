//! The address observer: one rtnetlink socket per node namespace, subscribed to IPv4 and
//! IPv6 address changes, each read by its own thread that entered the namespace.
//!
//! Why netlink sockets and not `ip monitor` children: the kernel multicasts each change to
//! the socket as it happens, the reader thread timestamps it when `recv` returns, and the
//! initial state comes from a dump taken after subscribing (so nothing falls between the
//! two); a child process adds pipe buffering, start-up time and text parsing. A socket
//! overflow (`ENOBUFS`) is recorded as an error so tests can refuse a timeline with holes.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::Lab;
use crate::ifaddr::{self, AddrMessage};
use crate::netns;
use crate::timeline::{AddrEvent, Timeline};

/// The observer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A reader thread failed before its first dump completed.
    #[error("address watch in {netns}: {reason}")]
    Start {
        /// The namespace.
        netns: String,
        /// What failed.
        reason: String,
    },
    /// The thread could not be spawned.
    #[error("spawn address watch thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Default)]
struct Shared {
    timeline: Mutex<Timeline>,
    changed: Condvar,
    errors: Mutex<Vec<String>>,
}

/// Watches which nodes hold the given addresses, continuously, until dropped.
pub struct AddrWatch {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl AddrWatch {
    /// Starts one reader per node of `lab` in `nodes`, recording changes of `addrs`;
    /// returns once every reader has its initial dump.
    pub fn start(lab: &Lab, nodes: &[&str], addrs: &[IpAddr]) -> Result<Self, WatchError> {
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut readies = Vec::new();
        for node in nodes {
            let (tx, rx) = mpsc::channel();
            let ns = lab.netns(node);
            let node = (*node).to_owned();
            let addrs = addrs.to_vec();
            let (shared2, stop2) = (shared.clone(), stop.clone());
            let ns2 = ns.clone();
            let handle = std::thread::Builder::new()
                .name(format!("addrwatch-{node}"))
                .spawn(move || {
                    if let Err(reason) = reader(&ns2, &node, &addrs, &shared2, &stop2, &tx) {
                        let _ = tx.send(Err(reason.clone()));
                        if let Ok(mut e) = shared2.errors.lock() {
                            e.push(format!("{ns2}: {reason}"));
                        }
                        shared2.changed.notify_all();
                    }
                })
                .map_err(WatchError::Thread)?;
            threads.push(handle);
            readies.push((ns, rx));
        }
        let watch = AddrWatch {
            shared,
            stop,
            threads,
            started: Instant::now(),
        };
        for (ns, rx) in readies {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(WatchError::Start { netns: ns, reason }),
                Err(_) => {
                    return Err(WatchError::Start {
                        netns: ns,
                        reason: "no initial dump within 5 s".into(),
                    });
                }
            }
        }
        Ok(watch)
    }

    /// When the watch started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// A copy of everything recorded so far.
    pub fn timeline(&self) -> Timeline {
        self.shared
            .timeline
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Reader errors so far (socket overflow, namespace gone); a sound run has none.
    pub fn errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// The nodes holding `addr` now.
    pub fn holders(&self, addr: IpAddr) -> BTreeSet<String> {
        self.timeline().holders(addr)
    }

    /// Waits up to `timeout` until `pred` holds for the timeline; returns the timeline
    /// either way and whether `pred` held.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&Timeline) -> bool,
    ) -> (bool, Timeline) {
        let deadline = Instant::now() + timeout;
        let Ok(mut guard) = self.shared.timeline.lock() else {
            return (false, Timeline::default());
        };
        loop {
            if pred(&guard) {
                return (true, guard.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return (false, guard.clone());
            }
            guard = match self.shared.changed.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return (false, Timeline::default()),
            };
        }
    }

    /// Waits until `addr` is held by exactly `holders` (node names); returns the holders
    /// at the end either way.
    pub fn wait_holders(
        &self,
        addr: IpAddr,
        holders: &[&str],
        timeout: Duration,
    ) -> Result<(), BTreeSet<String>> {
        let want: BTreeSet<String> = holders.iter().map(|s| (*s).to_owned()).collect();
        let (ok, t) = self.wait_until(timeout, |t| t.holders(addr) == want);
        if ok { Ok(()) } else { Err(t.holders(addr)) }
    }

    /// Waits until exactly one node holds `addr` and returns it, or the holders at timeout.
    pub fn wait_single_holder(
        &self,
        addr: IpAddr,
        timeout: Duration,
    ) -> Result<String, BTreeSet<String>> {
        let (ok, t) = self.wait_until(timeout, |t| t.holders(addr).len() == 1);
        let h = t.holders(addr);
        match (ok, h.iter().next()) {
            (true, Some(n)) => Ok(n.clone()),
            _ => Err(h),
        }
    }
}

impl Drop for AddrWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The loopback's interface index, the same in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

fn reader(
    ns: &str,
    node: &str,
    addrs: &[IpAddr],
    shared: &Shared,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    netns::enter(ns).map_err(|e| e.to_string())?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    setsockopt(&fd, sockopt::RcvBuf, &(1 << 20)).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, ifaddr::RTMGRP_IPV4_IFADDR | ifaddr::RTMGRP_IPV6_IFADDR),
    )
    .map_err(|e| format!("bind netlink groups: {e}"))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    // Subscribed first, dump second: a change racing the dump shows up in one or both,
    // and the per-address state below makes duplicates harmless.
    send(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &ifaddr::dump_request(1),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("send dump request: {e}"))?;
    // Which links hold each watched address. The loopback (ifindex 1 in every namespace)
    // does not count: an address parked there (vipd's drain, docs/vipd.md) is local but
    // never answers ARP/ND on the LAN, so the node does not hold it in the VRRP sense.
    let mut state: HashMap<IpAddr, std::collections::BTreeSet<u32>> = HashMap::new();
    let mut dumped = false;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match recv(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut buf,
            MsgFlags::empty(),
        ) {
            Ok(n) => n,
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => continue,
            Err(nix::Error::ENOBUFS) => {
                if let Ok(mut e) = shared.errors.lock() {
                    e.push(format!("{ns}: netlink overflow (ENOBUFS): events lost"));
                }
                continue;
            }
            Err(e) => return Err(format!("recv: {e}")),
        };
        let at = Instant::now();
        for m in ifaddr::parse(&buf[..n]) {
            let (addr, index, added) = match m {
                AddrMessage::New { addr, index } => (addr, index, true),
                AddrMessage::Del { addr, index } => (addr, index, false),
                AddrMessage::Done => {
                    if !dumped {
                        dumped = true;
                        let _ = ready.send(Ok(()));
                    }
                    continue;
                }
                AddrMessage::Error(0) => continue,
                AddrMessage::Error(e) => return Err(format!("dump refused: errno {e}")),
            };
            if !addrs.contains(&addr) || index == LOOPBACK_INDEX {
                continue;
            }
            let links = state.entry(addr).or_default();
            let before = !links.is_empty();
            if added {
                links.insert(index);
            } else {
                links.remove(&index);
            }
            let present = !links.is_empty();
            if present == before {
                continue;
            }
            if let Ok(mut t) = shared.timeline.lock() {
                t.push(AddrEvent {
                    at,
                    node: node.to_owned(),
                    addr,
                    present,
                });
            }
            shared.changed.notify_all();
        }
    }
    Ok(())
}

//! The bridge capture: an `AF_PACKET` socket in the switch namespace that sees every frame
//! entering the bridge from a port, so each frame is counted once and attributed to the
//! node (or tap) that sent it. Keeps gratuitous ARPs, VRRP adverts and IPv6 neighbour
//! advertisements (see [`Seen`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

use crate::Lab;
use crate::frames::{self, Seen};
use crate::netns;

/// `PACKET_OUTGOING`: a frame the namespace sent (we count frames where they enter).
const PACKET_OUTGOING: u8 = 4;

/// The capture could not start.
#[derive(Debug, thiserror::Error)]
#[error("bridge capture in {netns}: {reason}")]
pub struct CaptureError {
    /// The switch namespace.
    pub netns: String,
    /// What failed.
    pub reason: String,
}

/// One kept frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When the capture read it.
    pub at: Instant,
    /// The sending node or tap (the port name without its `v-` / `t-` prefix).
    pub from: String,
    /// What it was.
    pub seen: Seen,
}

/// Records gratuitous ARPs, VRRP adverts and neighbour advertisements entering the lab's
/// bridge, until dropped.
pub struct BridgeCapture {
    frames: Arc<Mutex<Vec<Captured>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BridgeCapture {
    /// Starts capturing in `lab`'s switch namespace; returns once the socket is open.
    pub fn start(lab: &Lab) -> Result<Self, CaptureError> {
        let ns = lab.switch_netns();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (f2, s2, ns2) = (frames.clone(), stop.clone(), ns.clone());
        let thread = std::thread::Builder::new()
            .name("bridge-capture".into())
            .spawn(move || {
                if let Err(reason) = run(&ns2, &f2, &s2, &tx) {
                    tracing::warn!(netns = %ns2, %reason, "bridge capture stopped");
                    let _ = tx.send(Err(reason));
                }
            })
            .map_err(|e| CaptureError {
                netns: ns.clone(),
                reason: e.to_string(),
            })?;
        let capture = BridgeCapture {
            frames,
            stop,
            thread: Some(thread),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(capture),
            Ok(Err(reason)) => Err(CaptureError { netns: ns, reason }),
            Err(_) => Err(CaptureError {
                netns: ns,
                reason: "socket not open within 5 s".into(),
            }),
        }
    }

    /// Everything kept so far.
    pub fn frames(&self) -> Vec<Captured> {
        self.frames.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Gratuitous ARPs for `ip` seen at or after `since`.
    pub fn garps(&self, ip: IpAddr, since: Instant) -> Vec<Captured> {
        self.frames()
            .into_iter()
            .filter(|c| c.at >= since && matches!(c.seen, Seen::Garp { ip: i, .. } if i == ip))
            .collect()
    }

    /// IPv6 neighbour advertisements for `target` seen at or after `since`.
    pub fn nas(&self, target: IpAddr, since: Instant) -> Vec<Captured> {
        self.frames()
            .into_iter()
            .filter(|c| {
                c.at >= since && matches!(c.seen, Seen::Na { target: t, .. } if t == target)
            })
            .collect()
    }

    /// VRRP adverts (IPv4 and IPv6) for `vrid` seen at or after `since`.
    pub fn adverts(&self, vrid: u8, since: Instant) -> Vec<Captured> {
        self.frames()
            .into_iter()
            .filter(|c| c.at >= since && matches!(c.seen, Seen::Vrrp { vrid: v, .. } if v == vrid))
            .collect()
    }
}

impl Drop for BridgeCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn port_names() -> HashMap<usize, String> {
    nix::net::if_::if_nameindex()
        .map(|list| {
            list.iter()
                .map(|i| (i.index() as usize, i.name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn run(
    ns: &str,
    frames: &Mutex<Vec<Captured>>,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    netns::enter(ns).map_err(|e| e.to_string())?;
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .map_err(|e| format!("packet socket: {e}"))?;
    setsockopt(&fd, sockopt::RcvBuf, &(4 << 20)).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let _ = ready.send(Ok(()));
    let mut names = port_names();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => continue,
            Err(e) => return Err(format!("recvfrom: {e}")),
        };
        let at = Instant::now();
        let Some(from) = from else { continue };
        if from.pkttype() == PACKET_OUTGOING {
            continue;
        }
        let Some(seen) = frames::classify(&buf[..n]) else {
            continue;
        };
        if !names.contains_key(&from.ifindex()) {
            names = port_names();
        }
        let Some(port) = names.get(&from.ifindex()) else {
            continue;
        };
        // Frames also reach the bridge device itself; count them at the port only.
        let Some(node) = port.strip_prefix("v-").or_else(|| port.strip_prefix("t-")) else {
            continue;
        };
        if let Ok(mut f) = frames.lock() {
            f.push(Captured {
                at,
                from: node.to_owned(),
                seen,
            });
        }
    }
    Ok(())
}

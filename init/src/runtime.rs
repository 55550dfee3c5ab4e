//! The event loop: one thread that owns every child process, reads their
//! output, reaps them, runs probes, answers control requests and drives the
//! [`Supervisor`]. It never exits on an error: it logs and carries on.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use cairn_control::{BackendError, InitBackend, LogLine, PowerAction, ServiceStatus};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid};
use tracing::{error, info, warn};

use crate::bless::{Blesser, Decision, Timing};
use crate::cgroup::Cgroups;
use crate::config::{Readiness, Service};
use crate::logring::{LineSplitter, LogRing};
use crate::notify;
use crate::spawn;
use crate::supervisor::{Action, Exit, Ms, Supervisor};
use crate::watchdog::Watchdog;

/// Longest a readiness exec probe may run.
const PROBE_TIMEOUT_MS: Ms = 5_000;
/// Timeout of one TCP readiness probe connect.
const TCP_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a control request waits for the main loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The signals PID 1 handles through its signalfd.
pub fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPWR,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

/// What the signal means to an init: SIGINT is ctrl-alt-del (reboot),
/// SIGTERM reboots (as busybox init does), SIGPWR/SIGUSR1/SIGUSR2 power off.
pub fn power_action_for(sig: Signal) -> Option<PowerAction> {
    match sig {
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => Some(PowerAction::Reboot),
        Signal::SIGPWR | Signal::SIGUSR1 | Signal::SIGUSR2 => Some(PowerAction::Poweroff),
        _ => None,
    }
}

/// Where the runtime puts its sockets and what it watches.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Control API socket.
    pub control_socket: PathBuf,
    /// The cairnctl that serves the control API for PID 1 (`serve-init-api`).
    pub control_server: PathBuf,
    /// sd_notify socket handed to services.
    pub notify_socket: PathBuf,
    /// Hardware watchdog device to arm, if any.
    pub watchdog: Option<PathBuf>,
    /// Line printed on the console when every service is ready; `{t_ms}` is
    /// replaced by milliseconds since boot (CLOCK_MONOTONIC).
    pub ready_line: Option<String>,
    /// Blessing a boot-counted entry on the ESP, when this boot may be one.
    pub bless: Option<BlessSetup>,
}

/// What blessing needs: where the ESP is, which version runs, the times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlessSetup {
    /// Where the ESP is mounted (`/efi`; a temp directory in tests).
    pub esp: PathBuf,
    /// The running image version (the booted entry is `cairn-<version>+…`).
    pub version: String,
    /// `bless_after_s` and `boot_deadline_s`.
    pub timing: Timing,
    /// Why the box cannot run its services, when it cannot: a counted boot
    /// then reboots at once.
    pub fatal: Option<String>,
}

/// The blessing of this boot, as the runtime drives it.
struct Blessing {
    machine: Blesser,
    setup: BlessSetup,
    healthy: bool,
}

enum Request {
    List(mpsc::Sender<Vec<ServiceStatus>>),
    Start(String, mpsc::Sender<Result<(), BackendError>>),
    Stop(String, mpsc::Sender<Result<(), BackendError>>),
    Restart(String, mpsc::Sender<Result<(), BackendError>>),
    Logs(
        String,
        u64,
        u32,
        mpsc::Sender<Result<Vec<LogLine>, BackendError>>,
    ),
    Power(PowerAction, mpsc::Sender<Result<(), BackendError>>),
}

/// The control API's view of the runtime: requests go over a channel and a
/// wake-up pipe to the main loop, which answers within one iteration.
struct Backend {
    tx: Mutex<mpsc::Sender<Request>>,
    wake: File,
}

impl Backend {
    fn call<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Request) -> Result<T, BackendError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        {
            let tx = self
                .tx
                .lock()
                .map_err(|_| BackendError::Internal("control channel poisoned".into()))?;
            tx.send(make(reply_tx))
                .map_err(|_| BackendError::Internal("init main loop is gone".into()))?;
        }
        // A full pipe already guarantees a wake-up, so the error is irrelevant.
        let _ = (&self.wake).write(&[1]);
        reply_rx
            .recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| BackendError::Internal("init main loop did not answer".into()))
    }
}

impl InitBackend for Backend {
    fn list_services(&self) -> Vec<ServiceStatus> {
        self.call(Request::List).unwrap_or_default()
    }
    fn start(&self, name: &str) -> Result<(), BackendError> {
        self.call(|r| Request::Start(name.to_owned(), r))?
    }
    fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.call(|r| Request::Stop(name.to_owned(), r))?
    }
    fn restart(&self, name: &str) -> Result<(), BackendError> {
        self.call(|r| Request::Restart(name.to_owned(), r))?
    }
    fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
        self.call(|r| Request::Logs(name.to_owned(), after_seq, max, r))?
    }
    fn power(&self, action: PowerAction) -> Result<(), BackendError> {
        self.call(|r| Request::Power(action, r))?
    }
}

struct OutPipe {
    service: usize,
    stream: &'static str,
    fd: OwnedFd,
    split: LineSplitter,
}

struct Probe {
    service: usize,
    deadline: Ms,
}

/// The running init: supervisor plus everything that touches the system.
pub struct Runtime {
    sup: Supervisor,
    settings: Settings,
    started: Instant,
    signals: SignalFd,
    wake_rx: File,
    requests: mpsc::Receiver<Request>,
    notify: Option<UnixDatagram>,
    pipes: Vec<OutPipe>,
    rings: Vec<LogRing>,
    probes: HashMap<u32, Probe>,
    cgroups: Option<Cgroups>,
    watchdog: Option<Watchdog>,
    next_ping: Ms,
    finished: Option<PowerAction>,
    orphans_reaped: u64,
    blessing: Option<Blessing>,
}

impl Runtime {
    /// Sets up signals, sockets, cgroups and the control API. The caller must
    /// have blocked [`handled_signals`] in this thread before any other thread
    /// was started. Problems with optional parts are logged, not fatal.
    pub fn new(services: Vec<Service>, settings: Settings, signals: SignalFd) -> io::Result<Self> {
        let (wake_rx, wake_tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(io::Error::from)?;
        let (tx, requests) = mpsc::channel();
        let backend = Backend {
            tx: Mutex::new(tx),
            wake: File::from(wake_tx),
        };
        if let Err(e) =
            crate::control_api::start(&settings.control_socket, &settings.control_server, backend)
        {
            error!(error = %e, "control API unavailable");
        } else {
            info!(socket = %settings.control_socket.display(), "control API socket bound; its server process starts");
        }
        let notify = match bind_notify(&settings.notify_socket) {
            Ok(s) => Some(s),
            Err(e) => {
                error!(socket = %settings.notify_socket.display(), error = %e, "notify socket unavailable");
                None
            }
        };
        let cgroups = Cgroups::detect(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
        );
        match &cgroups {
            Some(c) => {
                info!(base = %c.path("x").parent().unwrap_or(Path::new("/")).display(), "service cgroups")
            }
            None => info!("no cgroup2 mounted: services get process groups only"),
        }
        let watchdog = settings.watchdog.as_deref().and_then(|p| match Watchdog::open(p) {
            Ok(w) => {
                info!(device = %p.display(), interval_ms = w.interval_ms, "hardware watchdog armed");
                Some(w)
            }
            Err(e) => {
                warn!(error = %e, "hardware watchdog not used");
                None
            }
        });
        let rings = services.iter().map(|s| LogRing::new(s.log_lines)).collect();
        let blessing = settings.bless.clone().map(start_blessing);
        Ok(Self {
            sup: Supervisor::new(services),
            settings,
            started: Instant::now(),
            signals,
            wake_rx: File::from(wake_rx),
            requests,
            notify,
            pipes: Vec::new(),
            rings,
            probes: HashMap::new(),
            cgroups,
            watchdog,
            next_ping: 0,
            finished: None,
            orphans_reaped: 0,
            blessing,
        })
    }

    fn now(&self) -> Ms {
        self.started.elapsed().as_millis() as Ms
    }

    /// Runs until an orderly shutdown has stopped every service; returns what
    /// to do with the machine then. Also hands back the watchdog, which must
    /// stay armed until the very end.
    pub fn run(&mut self) -> (PowerAction, Option<Watchdog>) {
        loop {
            let now = self.now();
            self.drive(now);
            if let Some(action) = self.finished {
                self.drain_pipes();
                info!(
                    orphans = self.orphans_reaped,
                    "orphaned processes reaped while running"
                );
                return (action, self.watchdog.take());
            }
            self.ping_watchdog(now);
            let timeout = self.poll_timeout(now);
            self.wait(timeout);
        }
    }

    fn drive(&mut self, now: Ms) {
        self.expire_probes(now);
        // Spawning one service can make the next one startable at once.
        for _ in 0..1000 {
            let actions = self.sup.step(now);
            if actions.is_empty() {
                break;
            }
            for a in actions {
                self.execute(a, now);
            }
        }
        self.drive_blessing(now);
    }

    /// Feeds the blessing machine the services' health and the clock, and
    /// carries out what it decides.
    fn drive_blessing(&mut self, now: Ms) {
        let Some(b) = &mut self.blessing else { return };
        let mut decisions = Vec::new();
        if let Some(why) = b.setup.fatal.take() {
            decisions.extend(b.machine.on_fatal(&why));
        }
        let healthy = self.sup.all_healthy();
        if healthy != b.healthy {
            b.healthy = healthy;
            decisions.extend(b.machine.on_health(healthy, now));
        }
        decisions.extend(b.machine.tick(now));
        for d in decisions {
            self.decide(d, now);
        }
    }

    fn decide(&mut self, decision: Decision, now: Ms) {
        let Some(b) = &mut self.blessing else { return };
        match decision {
            Decision::Bless => {
                let version = b.setup.version.clone();
                match crate::esp::bless(&b.setup.esp, &version) {
                    Ok((from, to)) => {
                        info!(from = %from, to = %to, "boot blessed");
                        console_line(&format!("bless: blessed {version}"));
                        b.machine.blessing_done(true, now);
                    }
                    Err(e) => {
                        error!(error = %e, "cannot bless this boot; trying again");
                        console_line(&format!("bless: cannot bless {version}: {e}"));
                        b.machine.blessing_done(false, now);
                    }
                }
            }
            Decision::Reboot(reason) => {
                let not_ready = self.sup.not_ready();
                let line = if not_ready.is_empty() {
                    format!("bless: rebooting: {reason}")
                } else {
                    format!(
                        "bless: rebooting: {reason}; not ready: {}",
                        not_ready.join(", ")
                    )
                };
                error!("{line}");
                console_line(&line);
                self.sup.shutdown(PowerAction::Reboot, now);
            }
        }
    }

    fn poll_timeout(&self, now: Ms) -> Ms {
        let mut next = self.sup.next_deadline();
        let mut consider = |t: Ms| next = Some(next.map_or(t, |n| n.min(t)));
        for p in self.probes.values() {
            consider(p.deadline);
        }
        if self.watchdog.is_some() {
            consider(self.next_ping);
        }
        if let Some(t) = self
            .blessing
            .as_ref()
            .and_then(|b| b.machine.next_deadline())
        {
            consider(t);
        }
        next.map_or(60_000, |t| t.saturating_sub(now).min(60_000))
    }

    fn execute(&mut self, action: Action, now: Ms) {
        match action {
            Action::Spawn(i) => self.spawn(i, now),
            Action::Probe(i) => self.probe(i, now),
            Action::Signal {
                service,
                pid,
                signal,
            } => {
                self.signal_group(service, pid, signal);
            }
            Action::Kill { service, pid } => {
                self.signal_group(service, pid, Signal::SIGKILL);
                self.kill_cgroup(service);
            }
            Action::Note {
                service,
                text,
                warn,
            } => {
                let name = &self.sup.services()[service].name;
                if warn {
                    warn!("{name}: {text}");
                } else {
                    info!("{name}: {text}");
                }
                self.rings[service].push(now, "init", text);
            }
            Action::GaveUp { service, reason } => {
                if let Some(b) = &mut self.blessing {
                    let name = self.sup.services()[service].name.clone();
                    if let Some(d) = b.machine.on_gave_up(&name, &reason) {
                        self.decide(d, now);
                    }
                }
            }
            Action::AllReady => {
                let t_ms = monotonic_ms();
                info!(
                    t_ms,
                    services = self.sup.services().len(),
                    "all services ready"
                );
                if let Some(line) = &self.settings.ready_line {
                    console_line(&line.replace("{t_ms}", &t_ms.to_string()));
                }
            }
            Action::ShutdownComplete(power) => {
                info!(action = power.as_str(), "all services stopped");
                self.finished = Some(power);
            }
        }
    }

    fn spawn(&mut self, i: usize, now: Ms) {
        let svc = &self.sup.services()[i];
        let cg_file = match &self.cgroups {
            Some(cg) => match cg.prepare(&svc.name) {
                Ok(f) => Some(f),
                Err(e) => {
                    warn!(service = %svc.name, error = %e, "no cgroup for service");
                    None
                }
            },
            None => None,
        };
        let notify = self
            .notify
            .as_ref()
            .map(|_| self.settings.notify_socket.as_path());
        if let Err(e) = spawn::prepare_dirs(svc) {
            let reason = format!("{}: {e}", svc.name);
            self.sup.on_spawn_failed(i, &reason, now);
            return;
        }
        match spawn::service(svc, notify, cg_file.as_ref()) {
            Ok(sp) => {
                self.pipes.push(OutPipe {
                    service: i,
                    stream: "stdout",
                    fd: sp.stdout,
                    split: LineSplitter::default(),
                });
                self.pipes.push(OutPipe {
                    service: i,
                    stream: "stderr",
                    fd: sp.stderr,
                    split: LineSplitter::default(),
                });
                self.sup.on_spawned(i, sp.pid, now);
            }
            Err(e) => {
                let reason = format!("{}: {e}", svc.exec[0]);
                self.sup.on_spawn_failed(i, &reason, now);
            }
        }
    }

    fn probe(&mut self, i: usize, now: Ms) {
        match self.sup.services()[i].ready.clone() {
            Readiness::Tcp(addr) => {
                let ok = TcpStream::connect_timeout(&addr, TCP_PROBE_TIMEOUT).is_ok();
                self.sup.on_probe(i, ok, self.now());
            }
            Readiness::Exec(argv) => match spawn::probe(&argv) {
                Ok(pid) => {
                    self.probes.insert(
                        pid,
                        Probe {
                            service: i,
                            deadline: now + PROBE_TIMEOUT_MS,
                        },
                    );
                }
                Err(e) => {
                    warn!(service = %self.sup.services()[i].name, error = %e, "readiness probe cannot start");
                    self.sup.on_probe(i, false, now);
                }
            },
            Readiness::Started | Readiness::Notify | Readiness::Exit => {
                self.sup.on_probe(i, true, now)
            }
        }
    }

    fn expire_probes(&mut self, now: Ms) {
        for (&pid, p) in self.probes.iter_mut() {
            if now >= p.deadline {
                p.deadline = Ms::MAX;
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }

    fn signal_group(&self, i: usize, pid: u32, signal: Signal) {
        if let Err(e) = killpg(Pid::from_raw(pid as i32), signal) {
            if e != Errno::ESRCH {
                warn!(service = %self.sup.services()[i].name, error = %e, signal = signal.as_str(), "cannot signal");
            }
        }
    }

    fn kill_cgroup(&self, i: usize) {
        if let Some(cg) = &self.cgroups {
            if let Err(e) = cg.kill(&self.sup.services()[i].name) {
                warn!(error = %e, "cgroup.kill failed");
            }
        }
    }

    fn ping_watchdog(&mut self, now: Ms) {
        if let Some(w) = &mut self.watchdog {
            if now >= self.next_ping {
                if let Err(e) = w.ping() {
                    warn!(error = %e, "watchdog ping failed");
                }
                self.next_ping = now + w.interval_ms;
            }
        }
    }

    fn wait(&mut self, timeout_ms: Ms) {
        const SIGNALS: usize = 0;
        const WAKE: usize = 1;
        const NOTIFY: usize = 2;
        const PIPES: usize = 3;
        let never = PollFlags::empty();
        let ready: Vec<bool> = {
            let notify_fd: Option<BorrowedFd<'_>> = self.notify.as_ref().map(|s| s.as_fd());
            let mut fds = vec![
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
                match notify_fd {
                    Some(fd) => PollFd::new(fd, PollFlags::POLLIN),
                    None => PollFd::new(self.wake_rx.as_fd(), never),
                },
            ];
            for p in &self.pipes {
                fds.push(PollFd::new(p.fd.as_fd(), PollFlags::POLLIN));
            }
            let t =
                PollTimeout::try_from(timeout_ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, t) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(Errno::EINTR) => return,
                Err(e) => {
                    error!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
        };
        if ready[SIGNALS] {
            self.handle_signals();
        }
        if ready[WAKE] {
            let mut buf = [0u8; 64];
            while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
        }
        // Requests are cheap to check; do it every iteration.
        self.handle_requests();
        if ready[NOTIFY] {
            self.handle_notify();
        }
        let mut closed = Vec::new();
        for (k, is_ready) in ready.iter().enumerate().skip(PIPES) {
            if *is_ready && !self.read_pipe(k - PIPES) {
                closed.push(k - PIPES);
            }
        }
        for k in closed.into_iter().rev() {
            let mut p = self.pipes.swap_remove(k);
            if let Some(line) = p.split.finish() {
                self.log_line(p.service, p.stream, line);
            }
        }
    }

    /// Reads what is available; false once the pipe is closed.
    fn read_pipe(&mut self, k: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        // Bounded so a chatty service cannot starve the loop.
        for _ in 0..4 {
            match nix::unistd::read(&self.pipes[k].fd, &mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let lines = self.pipes[k].split.feed(&buf[..n]);
                    let (service, stream) = (self.pipes[k].service, self.pipes[k].stream);
                    for line in lines {
                        self.log_line(service, stream, line);
                    }
                }
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
        true
    }

    fn drain_pipes(&mut self) {
        for k in 0..self.pipes.len() {
            self.read_pipe(k);
        }
    }

    fn log_line(&mut self, i: usize, stream: &'static str, line: String) {
        let svc = &self.sup.services()[i];
        if svc.console {
            console_line(&format!("[{}] {line}", svc.name));
        }
        let now = self.now();
        self.rings[i].push(now, stream, line);
    }

    fn handle_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    if sig == Signal::SIGCHLD {
                        self.reap();
                    } else if let Some(action) = power_action_for(sig) {
                        info!(
                            signal = sig.as_str(),
                            action = action.as_str(),
                            "shutdown requested"
                        );
                        self.sup.shutdown(action, self.now());
                    } else {
                        info!(signal = sig.as_str(), "ignored");
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!(error = %e, "reading signalfd failed");
                    break;
                }
            }
        }
        // Signals coalesce: reap even if no SIGCHLD was read this time.
        self.reap();
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!(error = %e, "waitpid failed");
                    break;
                }
            };
            let (pid, exit) = match status {
                WaitStatus::Exited(pid, code) => (pid, Exit::Code(code)),
                WaitStatus::Signaled(pid, sig, _) => (pid, Exit::Signal(sig as i32)),
                _ => continue,
            };
            let pid = pid.as_raw() as u32;
            let now = self.now();
            if let Some(p) = self.probes.remove(&pid) {
                self.sup.on_probe(p.service, exit == Exit::Code(0), now);
            } else if let Some(i) = self.sup.on_exit(pid, exit, now) {
                // Whatever the main process left behind goes with it.
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                self.kill_cgroup(i);
                if let Some(cg) = &self.cgroups {
                    cg.remove(&self.sup.services()[i].name);
                }
            } else {
                self.orphans_reaped += 1;
            }
        }
    }

    fn handle_notify(&mut self) {
        let Some(sock) = &self.notify else { return };
        let fd = sock.as_raw_fd();
        for _ in 0..64 {
            let mut buf = [0u8; notify::MAX_DATAGRAM];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let (bytes, pid) = {
                let mut iov = [io::IoSliceMut::new(&mut buf)];
                match recvmsg::<()>(
                    fd,
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
                ) {
                    Ok(msg) => {
                        let pid = msg.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|m| match m {
                                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                                _ => None,
                            })
                        });
                        (msg.bytes, pid)
                    }
                    Err(Errno::EAGAIN) => return,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        warn!(error = %e, "notify socket receive failed");
                        return;
                    }
                }
            };
            if bytes > buf.len() {
                warn!(bytes, "oversized notify datagram ignored");
                continue;
            }
            let Some(pid) = pid else { continue };
            let Some(i) = self.service_of_pid(pid as u32) else {
                warn!(
                    pid,
                    "notify message from a process that belongs to no service"
                );
                continue;
            };
            let n = notify::parse(&buf[..bytes]);
            let now = self.now();
            self.sup.on_notify(i, n.ready, n.status, now);
        }
    }

    /// The service a process belongs to: its main process, its process group,
    /// or its cgroup.
    fn service_of_pid(&self, pid: u32) -> Option<usize> {
        if let Some(i) = self.sup.service_by_pid(pid) {
            return Some(i);
        }
        if let Ok(pgid) = getpgid(Some(Pid::from_raw(pid as i32))) {
            if let Some(i) = self.sup.service_by_pid(pgid.as_raw() as u32) {
                return Some(i);
            }
        }
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
        let leaf = path.rsplit('/').next()?.strip_suffix(".service")?;
        let i = self.sup.index_of(leaf)?;
        self.sup.pid(i).map(|_| i)
    }

    fn handle_requests(&mut self) {
        while let Ok(req) = self.requests.try_recv() {
            let now = self.now();
            let map = |r: Result<(), crate::supervisor::RequestError>| {
                r.map_err(|e| match e {
                    crate::supervisor::RequestError::UnknownService(n) => {
                        BackendError::UnknownService(n)
                    }
                    crate::supervisor::RequestError::ShuttingDown => BackendError::ShuttingDown,
                })
            };
            // A requester that gave up is not an error.
            match req {
                Request::List(tx) => {
                    let _ = tx.send(self.sup.status(now));
                }
                Request::Start(n, tx) => {
                    let _ = tx.send(map(self.sup.start(&n)));
                }
                Request::Stop(n, tx) => {
                    let _ = tx.send(map(self.sup.stop(&n, now)));
                }
                Request::Restart(n, tx) => {
                    let _ = tx.send(map(self.sup.restart(&n, now)));
                }
                Request::Logs(n, after, max, tx) => {
                    let r = match self.sup.index_of(&n) {
                        Some(i) => Ok(self.rings[i].read(after, max as usize)),
                        None => Err(BackendError::UnknownService(n)),
                    };
                    let _ = tx.send(r);
                }
                Request::Power(action, tx) => {
                    let r = if self.sup.shutting_down() {
                        Err(BackendError::ShuttingDown)
                    } else {
                        info!(
                            action = action.as_str(),
                            "shutdown requested over the control API"
                        );
                        self.sup.shutdown(action, now);
                        Ok(())
                    };
                    let _ = tx.send(r);
                }
            }
        }
    }
}

/// Looks on the ESP for this boot's counted entry and starts the machine.
fn start_blessing(setup: BlessSetup) -> Blessing {
    let counted = match crate::esp::booted_counted_entry(&setup.esp, &setup.version) {
        Ok(Some(entry)) => {
            info!(
                entry = %entry.file_name(),
                bless_after_ms = setup.timing.bless_after_ms,
                deadline_ms = setup.timing.deadline_ms,
                "boot-counted entry: blessing it once every service is ready long enough"
            );
            true
        }
        Ok(None) => {
            info!(version = %setup.version, "not a boot-counted entry: nothing to bless");
            false
        }
        Err(e) => {
            warn!(error = %e, "cannot tell whether this boot is counted; not blessing");
            false
        }
    };
    Blessing {
        machine: Blesser::new(counted, setup.timing, 0),
        setup,
        healthy: false,
    }
}

fn bind_notify(path: &Path) -> io::Result<UnixDatagram> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let sock = UnixDatagram::bind(path)?;
    setsockopt(&sock, sockopt::PassCred, &true).map_err(io::Error::from)?;
    sock.set_nonblocking(true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(sock)
}

/// Writes one line to the console (our stderr), ignoring errors.
pub fn console_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Milliseconds since boot on CLOCK_MONOTONIC (what `t_ms` reports).
pub fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Blocks the handled signals in this thread and opens a signalfd for them.
pub fn signal_fd() -> io::Result<SignalFd> {
    let set = handled_signals();
    set.thread_block().map_err(io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_signal_conventions() {
        assert_eq!(power_action_for(Signal::SIGINT), Some(PowerAction::Reboot));
        assert_eq!(power_action_for(Signal::SIGTERM), Some(PowerAction::Reboot));
        assert_eq!(
            power_action_for(Signal::SIGPWR),
            Some(PowerAction::Poweroff)
        );
        assert_eq!(
            power_action_for(Signal::SIGUSR2),
            Some(PowerAction::Poweroff)
        );
        assert_eq!(power_action_for(Signal::SIGHUP), None);
        assert!(handled_signals().contains(Signal::SIGCHLD));
    }
}

//! The running agent: a worker thread that checks on a timer and on `Upgrade` calls,
//! installs, and then waits for the reboot gate; and the `org.cairn.Update1` backend that
//! answers from the shared status.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_control::{
    BackendError, InitClient, PowerAction, SlotStatus, UpdateBackend, UpdateStatus, VipClient,
};
use cairn_site::RebootPolicy;
use cairn_update::entries::{self, Entry};

use crate::apply::{self, CheckError, Outcome, Setup};
use crate::console;
use crate::gate::{self, Step};
use crate::slots::Slot;
use crate::state::{self, State};

/// How soon a check deferred because the running version is not blessed yet runs again.
const DEFER_RETRY: Duration = Duration::from_secs(10);
/// How often the reboot gate looks again while waiting.
const GATE_RETRY: Duration = Duration::from_secs(5);
/// How often the gate looks while a handover is under way.
const HANDOVER_POLL: Duration = Duration::from_millis(500);
/// Bound on each probe of a peer's frontend port.
const PEER_CONNECT: Duration = Duration::from_secs(1);
/// Bound on control calls to cairn-vipd and cairn-init.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// Other nodes of the role and the ports they must serve before a master hands over.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// This node's name, when known.
    pub me: Option<String>,
    /// (name, addresses) of the role's nodes.
    pub nodes: Vec<(String, Vec<IpAddr>)>,
    /// The lb frontend ports.
    pub ports: Vec<u16>,
}

impl Peers {
    /// The first other node that accepts a TCP connection on every port at one of its own
    /// addresses, or why there is none.
    pub fn serving(&self) -> Result<String, String> {
        let Some(me) = &self.me else {
            return Err("this node's name is unknown (set CAIRN_NODE)".into());
        };
        for (name, addrs) in self.nodes.iter().filter(|(n, _)| n != me) {
            let serves = addrs.iter().any(|a| {
                self.ports.iter().all(|p| {
                    TcpStream::connect_timeout(&SocketAddr::new(*a, *p), PEER_CONNECT).is_ok()
                })
            });
            if serves {
                return Ok(name.clone());
            }
        }
        let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        Err(format!(
            "no peer serves port {} on its own address",
            ports.join(", ")
        ))
    }
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// What checks need; `Err(reason)` when the agent is disabled.
    pub setup: Result<Setup, String>,
    /// The running version (shown even when disabled).
    pub running_version: String,
    /// Repository URL (empty without `[update]`).
    pub url: String,
    /// The site's reboot policy for this role.
    pub policy: RebootPolicy,
    /// Poll interval; `None` = only on request.
    pub interval: Option<Duration>,
    /// cairn-init's control socket (for the reboot).
    pub init_socket: PathBuf,
    /// cairn-vipd's control socket (for the gate).
    pub vip_socket: PathBuf,
    /// Peers for the gate.
    pub peers: Peers,
}

#[derive(Debug, Default)]
struct Inner {
    state: String,
    last_check: u64,
    last_result: String,
    last_error: String,
    requested: u64,
    done: u64,
    now: bool,
    remembered: State,
}

/// The status shared by the worker and the control thread.
#[derive(Debug)]
pub struct Agent {
    config: Config,
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Agent {
    /// A new agent; `remembered` is the state read at start.
    pub fn new(config: Config, remembered: State) -> Arc<Self> {
        let state = match &config.setup {
            Ok(_) => "idle".to_owned(),
            Err(reason) => format!("disabled: {reason}"),
        };
        Arc::new(Agent {
            config,
            inner: Mutex::new(Inner {
                state,
                remembered,
                ..Inner::default()
            }),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn set_state(&self, state: &str) {
        self.lock().state = state.to_owned();
    }

    /// Runs the worker until the process ends (returns at once when disabled).
    pub fn run(self: &Arc<Self>) {
        let Ok(setup) = self.config.setup.clone() else {
            return;
        };
        {
            let mut remembered = self.lock().remembered.clone();
            match apply::detect_rollback(&setup, &mut remembered) {
                Ok(_) => {}
                Err(e) => tracing::warn!("rollback detection: {e}"),
            }
            self.lock().remembered = remembered;
        }
        let mut next_timer = self.config.interval.map(|_| Instant::now());
        let mut retry_at: Option<Instant> = None;
        loop {
            let (target, now) = self.wait_for_work(&mut next_timer, &mut retry_at);
            let mut remembered = self.lock().remembered.clone();
            let report = |s: &str| self.set_state(s);
            let result = apply::check(&setup, &mut remembered, &report);
            let installed = {
                let mut inner = self.lock();
                inner.remembered = remembered;
                inner.last_check = apply::unix_now();
                inner.state = "idle".into();
                let installed = match &result {
                    Ok(Outcome::UpToDate) => {
                        inner.last_result = "up to date".into();
                        None
                    }
                    Ok(Outcome::Deferred(reason)) => {
                        inner.last_result = format!("deferred: {reason}");
                        retry_at = Some(Instant::now() + DEFER_RETRY);
                        None
                    }
                    Ok(Outcome::Installed { version, entry }) => {
                        inner.last_result = format!("installed {version} as {entry}");
                        inner.last_error.clear();
                        Some(version.clone())
                    }
                    Ok(Outcome::Downgrading { from, to, entry }) => {
                        inner.last_result =
                            format!("downgrading {from} -> {to}: installed {to} as {entry}");
                        inner.last_error.clear();
                        Some(to.clone())
                    }
                    Err(e) => {
                        inner.last_result = e.to_string();
                        inner.last_error = e.to_string();
                        None
                    }
                };
                if installed.is_none() {
                    inner.done = target;
                }
                installed
            };
            if let Err(e) = &result {
                match e {
                    CheckError::Check(_) => tracing::warn!("{e}"),
                    _ => console::line(&e.console_line()),
                }
            }
            if let Some(interval) = self.config.interval {
                next_timer = Some(Instant::now() + interval);
            }
            if let Some(version) = installed {
                self.reboot_when_allowed(&version, now, target);
                return;
            }
        }
    }

    /// Blocks until a check is due; returns its number and whether `now` was asked for.
    fn wait_for_work(
        &self,
        next_timer: &mut Option<Instant>,
        retry_at: &mut Option<Instant>,
    ) -> (u64, bool) {
        let mut inner = self.lock();
        loop {
            let now = Instant::now();
            let due_timer = next_timer.is_some_and(|t| t <= now);
            let due_retry = retry_at.is_some_and(|t| t <= now);
            if due_timer || due_retry {
                *next_timer = next_timer.filter(|_| !due_timer);
                *retry_at = None;
                if inner.requested == inner.done {
                    inner.requested += 1;
                }
            }
            if inner.requested > inner.done {
                let now = std::mem::take(&mut inner.now);
                return (inner.requested, now);
            }
            let deadline = [*next_timer, *retry_at].into_iter().flatten().min();
            let wait = deadline
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            inner = match self.wake.wait_timeout(inner, wait) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// After an install: waits for the reboot gate, then asks cairn-init to reboot.
    fn reboot_when_allowed(&self, version: &str, mut now: bool, target: u64) {
        self.lock().done = target;
        let mut maintenance_since: Option<Instant> = None;
        loop {
            let instances = if self.config.policy == RebootPolicy::PeerHoldsVip && !now {
                VipClient::connect_with_timeout(&self.config.vip_socket, CONTROL_TIMEOUT)
                    .and_then(|c| c.instances())
                    .map_err(|e| e.to_string())
            } else {
                Ok(Vec::new())
            };
            let input = gate::Input {
                policy: self.config.policy,
                now,
                vip: instances.as_deref().map_err(|e| e.as_str()),
                maintenance_for: maintenance_since.map(|t| t.elapsed()),
            };
            let step = gate::decide(&input, || self.config.peers.serving());
            let pause = match step {
                Step::Reboot => {
                    console::line(&format!("update: rebooting into {version}"));
                    self.set_state("rebooting");
                    match InitClient::connect_with_timeout(
                        &self.config.init_socket,
                        CONTROL_TIMEOUT,
                    )
                    .and_then(|c| c.power(PowerAction::Reboot))
                    {
                        Ok(()) => {
                            self.idle_forever();
                            return;
                        }
                        Err(e) => {
                            let mut inner = self.lock();
                            inner.last_error = format!("cannot ask cairn-init to reboot: {e}");
                            inner.state = format!("waiting to reboot: {}", inner.last_error);
                            GATE_RETRY
                        }
                    }
                }
                Step::RequestMaintenance { peer } => {
                    match VipClient::connect_with_timeout(&self.config.vip_socket, CONTROL_TIMEOUT)
                        .and_then(|c| c.set_maintenance(true))
                    {
                        Ok(()) => {
                            maintenance_since = Some(Instant::now());
                            self.set_state(&format!(
                                "waiting to reboot: handing the virtual IPs to {peer}"
                            ));
                            HANDOVER_POLL
                        }
                        Err(e) => {
                            self.set_state(&format!(
                                "waiting to reboot: cannot ask cairn-vipd for maintenance mode: {e}"
                            ));
                            GATE_RETRY
                        }
                    }
                }
                Step::EndMaintenance(reason) => {
                    maintenance_since = None;
                    if let Err(e) =
                        VipClient::connect_with_timeout(&self.config.vip_socket, CONTROL_TIMEOUT)
                            .and_then(|c| c.set_maintenance(false))
                    {
                        tracing::warn!("cannot end maintenance mode: {e}");
                    }
                    self.set_state(&format!("waiting to reboot: {reason}"));
                    GATE_RETRY
                }
                Step::Wait(reason) => {
                    self.set_state(&format!("waiting to reboot: {reason}"));
                    if maintenance_since.is_some() {
                        HANDOVER_POLL
                    } else {
                        GATE_RETRY
                    }
                }
            };
            now |= self.pause_for_upgrade(pause);
        }
    }

    /// Sleeps up to `pause`; answers `Upgrade` calls meanwhile (an update is already
    /// installed, so they only mark their checks done); returns whether one asked for `now`.
    fn pause_for_upgrade(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut inner = self.lock();
        loop {
            if inner.requested > inner.done {
                inner.done = inner.requested;
            }
            if std::mem::take(&mut inner.now) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inner = match self.wake.wait_timeout(inner, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// After the reboot request: keep answering until cairn-init stops us.
    fn idle_forever(&self) {
        loop {
            let _ = self.pause_for_upgrade(Duration::from_secs(3600));
        }
    }

    /// The slot table: each slot's version (the booted one runs; the other holds what was
    /// last written to it), its entry, and systemd-boot's default.
    fn slots(&self, inner: &Inner) -> Vec<SlotStatus> {
        let Ok(setup) = &self.config.setup else {
            return Vec::new();
        };
        let files = setup.esp.entries().unwrap_or_default();
        let all: Vec<Entry> = files.iter().map(|f| f.entry.clone()).collect();
        let default = entries::default_entry(&all).cloned();
        Slot::ALL
            .iter()
            .map(|&slot| {
                let booted = slot == setup.booted;
                // Every entry but the booted one points at the other slot: the agent deletes
                // all others before it writes that slot. The factory image's version is known
                // only that way.
                let version = if booted {
                    Some(setup.image.version.clone())
                } else {
                    inner.remembered.slot(slot).map(str::to_owned).or_else(|| {
                        all.iter()
                            .find(|e| e.version != setup.image.version)
                            .map(|e| e.version.clone())
                    })
                };
                let file = version
                    .as_ref()
                    .and_then(|v| files.iter().find(|f| &f.entry.version == v));
                SlotStatus {
                    slot: slot.as_str().to_owned(),
                    version: version.clone().unwrap_or_default(),
                    entry: file.map(|f| f.name.clone()).unwrap_or_default(),
                    booted,
                    default: file.is_some_and(|f| Some(&f.entry) == default.as_ref()),
                    blessed: file.is_some_and(|f| f.entry.tries.is_none()),
                    tries_left: file
                        .and_then(|f| f.entry.tries)
                        .map(|t| t.left)
                        .unwrap_or(0),
                }
            })
            .collect()
    }

    /// Persists nothing itself: exposed for tests that want the remembered state.
    pub fn remembered(&self) -> State {
        self.lock().remembered.clone()
    }
}

impl UpdateBackend for Agent {
    fn status(&self) -> UpdateStatus {
        let inner = self.lock();
        UpdateStatus {
            state: inner.state.clone(),
            running_version: self.config.running_version.clone(),
            booted_slot: self
                .config
                .setup
                .as_ref()
                .map(|s| s.booted.as_str().to_owned())
                .unwrap_or_default(),
            slots: self.slots(&inner),
            last_check: inner.last_check,
            last_result: last_result(&inner),
            last_error: inner.last_error.clone(),
            failed: inner
                .remembered
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.version, f.reason))
                .collect(),
            url: self.config.url.clone(),
            requested: inner.requested,
            done: inner.done,
        }
    }

    fn upgrade(&self, now: bool) -> Result<u64, BackendError> {
        if let Err(reason) = &self.config.setup {
            return Err(BackendError::Internal(format!(
                "updates are disabled: {reason}"
            )));
        }
        let mut inner = self.lock();
        inner.requested += 1;
        inner.now |= now;
        if inner.state == "idle" {
            inner.state = "checking".into();
        }
        self.wake.notify_all();
        Ok(inner.requested)
    }
}

/// The last check's result, followed by the last downgrade's outcome when there is one
/// (`up to date; downgraded 0.5.0 -> 0.4.0`), except after a check that ended in an error
/// (clients tell an error by `last_result` == `last_error`).
fn last_result(inner: &Inner) -> String {
    let result = inner.last_result.as_str();
    match &inner.remembered.last_downgrade {
        Some(d) if result.contains(d.as_str()) => result.to_owned(),
        Some(d) if result.is_empty() => d.clone(),
        Some(d) if result != inner.last_error => format!("{result}; {d}"),
        _ => result.to_owned(),
    }
}

/// Saves `state` to `dir`, logging failures (used at start).
pub fn save_state(dir: &std::path::Path, s: &State) {
    if let Err(e) = state::save(dir, s) {
        tracing::warn!("{e}");
    }
}

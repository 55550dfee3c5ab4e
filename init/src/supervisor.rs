//! The supervision state machine, free of I/O.
//!
//! The runtime feeds it events (a process was spawned, exited, passed its
//! readiness probe, an operator asked for something) with the current
//! monotonic time in milliseconds, and calls [`Supervisor::step`] to learn
//! what to do next: spawn, probe, signal, kill. Nothing here touches a
//! process, a file or a clock, so every rule (dependency order, readiness,
//! backoff, start limits, ordered shutdown) is unit-tested directly.

use std::collections::VecDeque;
use std::fmt;

use cairn_control::{PowerAction, ServiceStatus};
use nix::sys::signal::Signal;

use crate::config::{Readiness, RestartPolicy, Service};

/// Milliseconds on a monotonic clock.
pub type Ms = u64;

/// A run that lasted at least this long resets the backoff.
pub const STABLE_RUN_MS: Ms = 10_000;
/// First delay between readiness probes; doubles up to [`PROBE_INTERVAL_MAX_MS`].
pub const PROBE_INTERVAL_MIN_MS: Ms = 10;
/// Longest delay between readiness probes.
pub const PROBE_INTERVAL_MAX_MS: Ms = 500;
/// Extra time on top of the longest grace period before a shutdown stops waiting.
pub const SHUTDOWN_SLACK_MS: Ms = 5_000;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl Exit {
    fn clean(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// What the runtime must do; produced by [`Supervisor::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the service's main process, then report `on_spawned` or `on_spawn_failed`.
    Spawn(usize),
    /// Run the service's readiness check once, then report `on_probe`.
    Probe(usize),
    /// Send `signal` to the service's process group.
    Signal {
        /// Service index.
        service: usize,
        /// Main process id (also its process group id).
        pid: u32,
        /// Signal to send.
        signal: Signal,
    },
    /// SIGKILL the service's process group and cgroup.
    Kill {
        /// Service index.
        service: usize,
        /// Main process id.
        pid: u32,
    },
    /// A message about a service for the log and its ring.
    Note {
        /// Service index.
        service: usize,
        /// Text.
        text: String,
        /// Whether this is an error or warning.
        warn: bool,
    },
    /// Every wanted service is ready (or done), for the first time.
    AllReady,
    /// A wanted service stopped trying on its own: its start limit was hit
    /// (cool-down or for good) or it failed with `restart = "never"`. A
    /// boot-counted system takes this as the new version failing.
    GaveUp {
        /// Service index.
        service: usize,
        /// Why, as noted in its log.
        reason: String,
    },
    /// Orderly shutdown finished: every service has stopped.
    ShutdownComplete(PowerAction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Stay stopped.
    Down,
    /// Start again at once (operator restart).
    Restart,
    /// Count as a failure (readiness timeout) and back off.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Waiting,
    Starting {
        pid: u32,
        probe_at: Ms,
        probe_interval: Ms,
        probing: bool,
    },
    Ready {
        pid: u32,
    },
    Stopping {
        pid: u32,
        kill_at: Ms,
        killed: bool,
        then: Then,
    },
    Backoff {
        until: Ms,
    },
    Stopped,
    Done,
    Failed {
        retry_at: Option<Ms>,
    },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Starting { .. } => "starting",
            Phase::Ready { .. } => "ready",
            Phase::Stopping { .. } => "stopping",
            Phase::Backoff { .. } => "backoff",
            Phase::Stopped => "stopped",
            Phase::Done => "done",
            Phase::Failed { .. } => "failed",
        }
    }

    fn pid(&self) -> Option<u32> {
        match *self {
            Phase::Starting { pid, .. } | Phase::Ready { pid } | Phase::Stopping { pid, .. } => {
                Some(pid)
            }
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Run {
    phase: Phase,
    want_up: bool,
    restarts: u32,
    restart_pending: bool,
    quick_failures: u32,
    starts: VecDeque<Ms>,
    started_at: Ms,
    last_exit: Option<String>,
    status_text: Option<String>,
}

/// Why an operator request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No service with that name.
    #[error("no such service \"{0}\"")]
    UnknownService(String),
    /// The system is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// The supervisor: services, their run state, and the shutdown in progress.
#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    dependents: Vec<Vec<usize>>,
    runs: Vec<Run>,
    shutdown: Option<(PowerAction, Ms)>,
    shutdown_done: bool,
    all_ready_sent: bool,
    actions: Vec<Action>,
}

impl Supervisor {
    /// Takes validated services; all of them are wanted up.
    pub fn new(services: Vec<Service>) -> Self {
        // At shutdown a service waits for its dependents and its `stop_after`.
        let dependents = crate::config::stop_waits(&services);
        let runs = services
            .iter()
            .map(|_| Run {
                phase: Phase::Waiting,
                want_up: true,
                restarts: 0,
                restart_pending: false,
                quick_failures: 0,
                starts: VecDeque::new(),
                started_at: 0,
                last_exit: None,
                status_text: None,
            })
            .collect();
        Self {
            services,
            dependents,
            runs,
            shutdown: None,
            shutdown_done: false,
            all_ready_sent: false,
            actions: Vec::new(),
        }
    }

    /// The service definitions.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Index of a service by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    /// Main pid of a running service.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.runs.get(i).and_then(|r| r.phase.pid())
    }

    /// Lifecycle state name of a service.
    pub fn state(&self, i: usize) -> &'static str {
        self.runs
            .get(i)
            .map(|r| r.phase.name())
            .unwrap_or("unknown")
    }

    /// Whether an orderly shutdown is in progress.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Service whose main process is `pid`.
    pub fn service_by_pid(&self, pid: u32) -> Option<usize> {
        self.runs.iter().position(|r| r.phase.pid() == Some(pid))
    }

    fn note(&mut self, service: usize, warn: bool, text: String) {
        self.actions.push(Action::Note {
            service,
            text,
            warn,
        });
    }

    fn running(&self, i: usize) -> bool {
        self.runs[i].phase.pid().is_some()
    }

    fn satisfied(&self, i: usize) -> bool {
        matches!(self.runs[i].phase, Phase::Ready { .. } | Phase::Done)
    }

    /// The main process of service `i` was started as `pid`.
    pub fn on_spawned(&mut self, i: usize, pid: u32, now: Ms) {
        let svc = &self.services[i];
        let run = &mut self.runs[i];
        run.started_at = now;
        run.starts.push_back(now);
        run.status_text = None;
        run.phase = match svc.ready {
            Readiness::Started => Phase::Ready { pid },
            Readiness::Notify | Readiness::Exit => Phase::Starting {
                pid,
                probe_at: Ms::MAX,
                probe_interval: 0,
                probing: false,
            },
            Readiness::Tcp(_) | Readiness::Exec(_) => Phase::Starting {
                pid,
                probe_at: now,
                probe_interval: PROBE_INTERVAL_MIN_MS,
                probing: false,
            },
        };
        let ready = matches!(run.phase, Phase::Ready { .. });
        self.note(i, false, format!("started, pid {pid}"));
        if ready {
            self.note(i, false, "ready".into());
        }
    }

    /// The main process of service `i` could not be started.
    pub fn on_spawn_failed(&mut self, i: usize, reason: &str, now: Ms) {
        let run = &mut self.runs[i];
        run.started_at = now;
        run.starts.push_back(now);
        self.fail_and_maybe_restart(i, format!("cannot start: {reason}"), false, now);
    }

    /// A process exited; returns the service it belonged to, if any.
    pub fn on_exit(&mut self, pid: u32, exit: Exit, now: Ms) -> Option<usize> {
        let i = self.service_by_pid(pid)?;
        let svc = &self.services[i];
        let run = &mut self.runs[i];
        run.last_exit = Some(exit.to_string());
        match run.phase.clone() {
            Phase::Stopping { then, .. } => match then {
                Then::Down => {
                    run.phase = Phase::Stopped;
                    self.note(i, false, format!("stopped ({exit})"));
                }
                Then::Restart => {
                    run.phase = Phase::Waiting;
                    self.note(i, false, format!("stopped ({exit}), restarting"));
                }
                Then::Fail => {
                    self.fail_and_maybe_restart(i, format!("stopped ({exit})"), false, now);
                }
            },
            _ => {
                let clean = exit.clean();
                let policy = svc.restart;
                if self.shutdown.is_some() || !run.want_up {
                    run.phase = Phase::Stopped;
                    self.note(i, false, format!("{exit}"));
                } else if clean && policy != RestartPolicy::Always {
                    run.phase = Phase::Done;
                    self.note(i, false, format!("{exit}, done"));
                } else {
                    self.fail_and_maybe_restart(i, exit.to_string(), clean, now);
                }
            }
        }
        Some(i)
    }

    fn fail_and_maybe_restart(&mut self, i: usize, why: String, clean: bool, now: Ms) {
        let svc = &self.services[i];
        let run = &mut self.runs[i];
        run.last_exit = Some(why.clone());
        if svc.restart == RestartPolicy::Never || self.shutdown.is_some() || !run.want_up {
            run.phase = Phase::Failed { retry_at: None };
            let gave_up = self.shutdown.is_none() && run.want_up;
            let text = format!("{why}; not restarting");
            if gave_up {
                self.actions.push(Action::GaveUp {
                    service: i,
                    reason: text.clone(),
                });
            }
            self.note(i, true, text);
            return;
        }
        if now.saturating_sub(run.started_at) >= STABLE_RUN_MS.max(svc.restart_delay_max_ms) {
            run.quick_failures = 0;
        }
        run.quick_failures = run.quick_failures.saturating_add(1);
        let shift = (run.quick_failures - 1).min(32);
        let delay = svc
            .restart_delay_ms
            .saturating_mul(1u64 << shift)
            .min(svc.restart_delay_max_ms);
        run.phase = Phase::Backoff { until: now + delay };
        self.note(i, !clean, format!("{why}; restarting in {delay} ms"));
    }

    /// Result of one readiness probe of service `i`.
    pub fn on_probe(&mut self, i: usize, ok: bool, now: Ms) {
        let run = &mut self.runs[i];
        if let Phase::Starting {
            pid,
            probe_interval,
            ..
        } = run.phase
        {
            if ok {
                run.phase = Phase::Ready { pid };
                let took = now.saturating_sub(run.started_at);
                self.note(i, false, format!("ready after {took} ms"));
            } else {
                let next = (probe_interval * 2).clamp(PROBE_INTERVAL_MIN_MS, PROBE_INTERVAL_MAX_MS);
                run.phase = Phase::Starting {
                    pid,
                    probe_at: now + probe_interval,
                    probe_interval: next,
                    probing: false,
                };
            }
        }
    }

    /// An sd_notify message from service `i`.
    pub fn on_notify(&mut self, i: usize, ready: bool, status: Option<String>, now: Ms) {
        if let Some(s) = status {
            self.runs[i].status_text = Some(s);
        }
        if ready && self.services[i].ready == Readiness::Notify {
            if let Phase::Starting { pid, .. } = self.runs[i].phase {
                self.runs[i].phase = Phase::Ready { pid };
                let took = now.saturating_sub(self.runs[i].started_at);
                self.note(i, false, format!("ready (notify) after {took} ms"));
            }
        }
    }

    fn lookup(&self, name: &str) -> Result<usize, RequestError> {
        if self.shutdown.is_some() {
            return Err(RequestError::ShuttingDown);
        }
        self.index_of(name)
            .ok_or_else(|| RequestError::UnknownService(name.to_owned()))
    }

    /// Operator: start a service (clears a failure and its start history).
    pub fn start(&mut self, name: &str) -> Result<(), RequestError> {
        let i = self.lookup(name)?;
        let run = &mut self.runs[i];
        run.want_up = true;
        match run.phase {
            Phase::Stopped | Phase::Done | Phase::Failed { .. } | Phase::Backoff { .. } => {
                run.phase = Phase::Waiting;
                run.starts.clear();
                run.quick_failures = 0;
                run.restart_pending = false;
                self.note(i, false, "start requested".into());
            }
            Phase::Stopping { .. } => {
                if let Phase::Stopping { then, .. } = &mut run.phase {
                    *then = Then::Restart;
                }
            }
            Phase::Waiting | Phase::Starting { .. } | Phase::Ready { .. } => {}
        }
        Ok(())
    }

    /// Operator: stop a service and keep it stopped.
    pub fn stop(&mut self, name: &str, now: Ms) -> Result<(), RequestError> {
        let i = self.lookup(name)?;
        self.runs[i].want_up = false;
        self.note(i, false, "stop requested".into());
        self.begin_stop(i, Then::Down, now);
        Ok(())
    }

    /// Operator: stop a service if it runs, then start it again.
    pub fn restart(&mut self, name: &str, now: Ms) -> Result<(), RequestError> {
        let i = self.lookup(name)?;
        if self.running(i) {
            self.runs[i].want_up = true;
            self.note(i, false, "restart requested".into());
            self.begin_stop(i, Then::Restart, now);
            Ok(())
        } else {
            self.start(name)
        }
    }

    fn begin_stop(&mut self, i: usize, then: Then, now: Ms) {
        let grace = self.services[i].stop_grace_ms;
        let signal = self.services[i].stop_signal;
        let run = &mut self.runs[i];
        match run.phase {
            Phase::Starting { pid, .. } | Phase::Ready { pid } => {
                run.phase = Phase::Stopping {
                    pid,
                    kill_at: now + grace,
                    killed: false,
                    then,
                };
                self.actions.push(Action::Signal {
                    service: i,
                    pid,
                    signal,
                });
            }
            Phase::Stopping {
                then: ref mut t, ..
            } => *t = then,
            Phase::Waiting | Phase::Backoff { .. } | Phase::Failed { .. } => {
                if then == Then::Down {
                    run.phase = Phase::Stopped;
                }
            }
            Phase::Stopped | Phase::Done => {}
        }
    }

    /// Begin an orderly shutdown: stop services in reverse dependency order.
    pub fn shutdown(&mut self, action: PowerAction, now: Ms) {
        if self.shutdown.is_some() {
            return;
        }
        let max_grace = self
            .services
            .iter()
            .map(|s| s.stop_grace_ms)
            .max()
            .unwrap_or(0);
        self.shutdown = Some((action, now + 2 * max_grace + SHUTDOWN_SLACK_MS));
        for run in &mut self.runs {
            run.want_up = false;
            if matches!(
                run.phase,
                Phase::Waiting | Phase::Backoff { .. } | Phase::Failed { .. }
            ) {
                run.phase = Phase::Stopped;
            }
        }
    }

    /// Whether every wanted service is ready (or done) right now, and no
    /// shutdown is under way: what blessing a boot waits for.
    pub fn all_healthy(&self) -> bool {
        self.shutdown.is_none()
            && (0..self.runs.len()).all(|i| !self.runs[i].want_up || self.satisfied(i))
    }

    /// Names of the wanted services that are not ready (or done) now.
    pub fn not_ready(&self) -> Vec<&str> {
        (0..self.runs.len())
            .filter(|&i| self.runs[i].want_up && !self.satisfied(i))
            .map(|i| self.services[i].name.as_str())
            .collect()
    }

    /// Runs timers and scheduling; returns what the runtime must do now.
    pub fn step(&mut self, now: Ms) -> Vec<Action> {
        for i in 0..self.services.len() {
            self.step_timers(i, now);
        }
        if let Some((action, force_at)) = self.shutdown {
            self.step_shutdown(action, force_at, now);
        } else {
            for i in 0..self.services.len() {
                self.maybe_spawn(i, now);
            }
            let all_ready =
                (0..self.runs.len()).all(|i| !self.runs[i].want_up || self.satisfied(i));
            if all_ready && !self.all_ready_sent {
                self.all_ready_sent = true;
                self.actions.push(Action::AllReady);
            }
        }
        std::mem::take(&mut self.actions)
    }

    fn step_timers(&mut self, i: usize, now: Ms) {
        let svc = &self.services[i];
        let run = &mut self.runs[i];
        match run.phase {
            Phase::Stopping {
                pid,
                kill_at,
                killed: false,
                then,
            } if now >= kill_at => {
                run.phase = Phase::Stopping {
                    pid,
                    kill_at,
                    killed: true,
                    then,
                };
                self.actions.push(Action::Kill { service: i, pid });
                self.note(
                    i,
                    true,
                    format!(
                        "did not stop within {} ms, sending SIGKILL",
                        svc.stop_grace_ms
                    ),
                );
            }
            Phase::Backoff { until } if now >= until => {
                run.phase = Phase::Waiting;
                run.restart_pending = true;
            }
            Phase::Failed { retry_at: Some(at) } if now >= at && run.want_up => {
                run.phase = Phase::Waiting;
                run.starts.clear();
                run.quick_failures = 0;
                self.note(i, false, "start limit cool-down over, trying again".into());
            }
            Phase::Starting {
                pid,
                probe_at,
                probe_interval,
                probing,
            } => {
                if now.saturating_sub(run.started_at) >= svc.ready_timeout_ms {
                    self.note(
                        i,
                        true,
                        format!("not ready after {} ms", svc.ready_timeout_ms),
                    );
                    self.begin_stop(i, Then::Fail, now);
                } else if !probing && now >= probe_at {
                    run.phase = Phase::Starting {
                        pid,
                        probe_at,
                        probe_interval,
                        probing: true,
                    };
                    self.actions.push(Action::Probe(i));
                }
            }
            _ => {}
        }
    }

    fn maybe_spawn(&mut self, i: usize, now: Ms) {
        if self.runs[i].phase != Phase::Waiting || !self.runs[i].want_up {
            return;
        }
        if !self.services[i].after.iter().all(|&d| self.satisfied(d)) {
            return;
        }
        let limit = self.services[i].start_limit;
        let run = &mut self.runs[i];
        while run
            .starts
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= limit.interval_ms)
        {
            run.starts.pop_front();
        }
        if run.starts.len() >= limit.burst as usize {
            let retry_at = (limit.cooldown_ms > 0).then_some(now + limit.cooldown_ms);
            run.phase = Phase::Failed { retry_at };
            let msg = format!(
                "start limit hit: {} starts within {} ms; {}",
                run.starts.len(),
                limit.interval_ms,
                match retry_at {
                    Some(_) => format!("trying again in {} ms", limit.cooldown_ms),
                    None => "giving up until started by an operator".into(),
                }
            );
            run.last_exit = Some(msg.clone());
            run.restart_pending = false;
            self.actions.push(Action::GaveUp {
                service: i,
                reason: msg.clone(),
            });
            self.note(i, true, msg);
            return;
        }
        if std::mem::take(&mut run.restart_pending) {
            run.restarts = run.restarts.saturating_add(1);
        }
        self.actions.push(Action::Spawn(i));
    }

    fn step_shutdown(&mut self, action: PowerAction, force_at: Ms, now: Ms) {
        if self.shutdown_done {
            return;
        }
        let forced = now >= force_at;
        for i in 0..self.services.len() {
            if !matches!(
                self.runs[i].phase,
                Phase::Starting { .. } | Phase::Ready { .. }
            ) {
                continue;
            }
            let dependents_running = self.dependents[i].iter().any(|&d| self.running(d));
            if !dependents_running {
                self.begin_stop(i, Then::Down, now);
            }
        }
        if forced {
            for i in 0..self.services.len() {
                if let Some(pid) = self.runs[i].phase.pid() {
                    self.actions.push(Action::Kill { service: i, pid });
                    self.runs[i].phase = Phase::Stopped;
                    self.note(i, true, "shutdown timed out, killed".into());
                }
            }
        }
        if (0..self.services.len()).all(|i| !self.running(i)) {
            self.shutdown_done = true;
            self.actions.push(Action::ShutdownComplete(action));
        }
    }

    /// The earliest time at which `step` has timer work to do.
    pub fn next_deadline(&self) -> Option<Ms> {
        let mut next: Option<Ms> = self.shutdown.filter(|_| !self.shutdown_done).map(|s| s.1);
        let mut consider = |t: Ms| next = Some(next.map_or(t, |n| n.min(t)));
        for (svc, run) in self.services.iter().zip(&self.runs) {
            match run.phase {
                Phase::Stopping {
                    kill_at,
                    killed: false,
                    ..
                } => consider(kill_at),
                Phase::Backoff { until } => consider(until),
                Phase::Failed { retry_at: Some(at) } if run.want_up => consider(at),
                Phase::Starting {
                    probe_at, probing, ..
                } => {
                    consider(run.started_at.saturating_add(svc.ready_timeout_ms));
                    if !probing {
                        consider(probe_at);
                    }
                }
                _ => {}
            }
        }
        next
    }

    /// Status of every service, for the control API.
    pub fn status(&self, now: Ms) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .zip(&self.runs)
            .map(|(svc, run)| ServiceStatus {
                name: svc.name.clone(),
                state: run.phase.name().to_owned(),
                pid: run.phase.pid().unwrap_or(0),
                restarts: run.restarts,
                ready: matches!(run.phase, Phase::Ready { .. }),
                detail: self.detail(svc, run, now),
            })
            .collect()
    }

    fn detail(&self, svc: &Service, run: &Run, now: Ms) -> String {
        let last = run.last_exit.clone().unwrap_or_default();
        match &run.phase {
            Phase::Waiting if !run.want_up => String::new(),
            Phase::Waiting => {
                let waiting: Vec<&str> = svc
                    .after
                    .iter()
                    .filter(|&&d| !self.satisfied(d))
                    .map(|&d| self.services[d].name.as_str())
                    .collect();
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!("waiting for {}", waiting.join(", "))
                }
            }
            Phase::Starting { .. } | Phase::Ready { .. } => {
                run.status_text.clone().unwrap_or_default()
            }
            Phase::Stopping { .. } => String::new(),
            Phase::Backoff { until } => {
                format!("{last}; restart in {} ms", until.saturating_sub(now))
            }
            Phase::Stopped | Phase::Done | Phase::Failed { .. } => last,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::StartLimit;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn svc(name: &str, after: &[usize]) -> Service {
        Service {
            name: name.into(),
            exec: vec!["/bin/true".into()],
            after: after.to_vec(),
            stop_after: Vec::new(),
            restart: RestartPolicy::Always,
            ready: Readiness::Started,
            ready_timeout_ms: 1000,
            env: BTreeMap::new(),
            workdir: PathBuf::from("/"),
            dirs: Vec::new(),
            uid: None,
            gid: None,
            stop_signal: Signal::SIGTERM,
            stop_grace_ms: 500,
            restart_delay_ms: 100,
            restart_delay_max_ms: 1000,
            start_limit: StartLimit {
                burst: 5,
                interval_ms: 10_000,
                cooldown_ms: 60_000,
            },
            log_lines: 10,
            console: false,
            nice: 0,
        }
    }

    /// Drops notes so tests can compare the actions that matter.
    fn acts(sup: &mut Supervisor, now: Ms) -> Vec<Action> {
        sup.step(now)
            .into_iter()
            .filter(|a| !matches!(a, Action::Note { .. }))
            .collect()
    }

    #[test]
    fn dependency_order_waits_for_readiness() {
        let mut a = svc("a", &[]);
        a.ready = Readiness::Tcp("127.0.0.1:1".parse().unwrap());
        let b = svc("b", &[0]);
        let mut sup = Supervisor::new(vec![a, b]);
        assert_eq!(acts(&mut sup, 0), vec![Action::Spawn(0)]);
        sup.on_spawned(0, 100, 0);
        // a is starting: b must not start, a gets probed.
        assert_eq!(acts(&mut sup, 0), vec![Action::Probe(0)]);
        assert_eq!(sup.status(0)[1].detail, "waiting for a");
        sup.on_probe(0, false, 5);
        assert_eq!(acts(&mut sup, 5), vec![]);
        assert_eq!(sup.next_deadline(), Some(15));
        assert_eq!(acts(&mut sup, 15), vec![Action::Probe(0)]);
        sup.on_probe(0, true, 16);
        assert_eq!(acts(&mut sup, 16), vec![Action::Spawn(1)]);
        sup.on_spawned(1, 101, 16);
        assert_eq!(acts(&mut sup, 16), vec![Action::AllReady]);
        assert!(acts(&mut sup, 17).is_empty(), "AllReady is sent once");
    }

    #[test]
    fn crash_loop_backs_off_exponentially_then_hits_start_limit() {
        let mut s = svc("crash", &[]);
        s.start_limit.burst = 4;
        let mut sup = Supervisor::new(vec![s]);
        let mut now = 0;
        let mut delays = Vec::new();
        for pid in 1..=4 {
            assert_eq!(acts(&mut sup, now), vec![Action::Spawn(0)], "start {pid}");
            sup.on_spawned(0, pid, now);
            now += 1;
            sup.on_exit(pid, Exit::Code(1), now);
            assert_eq!(sup.state(0), "backoff");
            let until = sup.next_deadline().unwrap();
            delays.push(until - now);
            now = until;
        }
        assert_eq!(delays, vec![100, 200, 400, 800]);
        // Fifth start within the interval: start limit; the service gave up.
        assert!(!sup.all_healthy());
        let gave_up = acts(&mut sup, now);
        let [Action::GaveUp { service: 0, reason }] = &gave_up[..] else {
            panic!("expected GaveUp, got {gave_up:?}")
        };
        assert!(reason.starts_with("start limit hit: 4 starts"), "{reason}");
        assert_eq!(sup.state(0), "failed");
        assert_eq!(sup.not_ready(), vec!["crash"]);
        assert!(sup.status(now)[0].detail.contains("start limit hit"));
        assert_eq!(
            sup.status(now)[0].restarts,
            3,
            "three respawns; the fourth was refused"
        );
        // Cool-down: tried again later.
        assert_eq!(sup.next_deadline(), Some(now + 60_000));
        let later = now + 60_000;
        assert_eq!(acts(&mut sup, later), vec![Action::Spawn(0)]);
    }

    #[test]
    fn backoff_is_capped_and_resets_after_a_stable_run() {
        let mut s = svc("x", &[]);
        s.start_limit.burst = 100;
        let mut sup = Supervisor::new(vec![s]);
        let mut now = 0;
        let mut last = 0;
        for pid in 1..=6 {
            acts(&mut sup, now);
            sup.on_spawned(0, pid, now);
            sup.on_exit(pid, Exit::Signal(9), now + 1);
            last = sup.next_deadline().unwrap() - (now + 1);
            now = sup.next_deadline().unwrap();
        }
        assert_eq!(last, 1000, "capped at restart_delay_max_ms");
        acts(&mut sup, now);
        sup.on_spawned(0, 7, now);
        sup.on_exit(7, Exit::Code(3), now + STABLE_RUN_MS);
        assert_eq!(sup.next_deadline(), Some(now + STABLE_RUN_MS + 100));
    }

    #[test]
    fn restart_policies_on_clean_and_failed_exit() {
        let mut never = svc("never", &[]);
        never.restart = RestartPolicy::Never;
        let mut onf = svc("onf", &[]);
        onf.restart = RestartPolicy::OnFailure;
        let mut never_fail = svc("nf", &[]);
        never_fail.restart = RestartPolicy::Never;
        let mut sup = Supervisor::new(vec![never, onf, never_fail]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        sup.on_spawned(1, 11, 0);
        sup.on_spawned(2, 12, 0);
        sup.on_exit(10, Exit::Code(0), 5);
        sup.on_exit(11, Exit::Code(0), 5);
        sup.on_exit(12, Exit::Code(2), 5);
        // Only the failed never-restart service gave up; clean exits are done.
        let gave_up: Vec<usize> = sup
            .step(5)
            .into_iter()
            .filter_map(|a| match a {
                Action::GaveUp { service, .. } => Some(service),
                _ => None,
            })
            .collect();
        assert_eq!(gave_up, vec![2]);
        assert!(!sup.all_healthy());
        let st = sup.status(5);
        assert_eq!(st[0].state, "done");
        assert_eq!(st[1].state, "done");
        assert_eq!(st[2].state, "failed");
        assert!(
            st[2].detail.contains("exited with status 2"),
            "{}",
            st[2].detail
        );
    }

    #[test]
    fn dependents_of_a_oneshot_wait_for_its_clean_exit() {
        let mut setup = svc("setup", &[]);
        setup.restart = RestartPolicy::OnFailure;
        setup.ready = Readiness::Exit;
        let mut sup = Supervisor::new(vec![setup, svc("app", &[0])]);
        assert_eq!(acts(&mut sup, 0), vec![Action::Spawn(0)]);
        sup.on_spawned(0, 10, 0);
        assert!(acts(&mut sup, 1).is_empty(), "app waits while setup runs");
        // A failing oneshot is retried; app still waits.
        sup.on_exit(10, Exit::Code(1), 2);
        assert_eq!(sup.state(0), "backoff");
        assert_eq!(acts(&mut sup, 102), vec![Action::Spawn(0)]);
        sup.on_spawned(0, 12, 102);
        sup.on_exit(12, Exit::Code(0), 105);
        assert_eq!(sup.state(0), "done");
        assert_eq!(acts(&mut sup, 105), vec![Action::Spawn(1)]);
        sup.on_spawned(1, 11, 105);
        assert_eq!(acts(&mut sup, 105), vec![Action::AllReady]);
        assert!(sup.all_healthy(), "a done oneshot and a ready service");
        assert!(sup.not_ready().is_empty());
        // A crash makes the set unhealthy without giving up.
        sup.on_exit(11, Exit::Code(1), 200);
        assert!(!sup.all_healthy());
        assert!(acts(&mut sup, 200).is_empty());
        // A shutdown is never healthy, and stopping services is not giving up.
        sup.on_spawned(1, 13, 300);
        assert!(sup.all_healthy());
        sup.shutdown(PowerAction::Reboot, 301);
        assert!(!sup.all_healthy());
        sup.on_exit(13, Exit::Code(1), 302);
        assert!(
            !sup.step(302)
                .iter()
                .any(|a| matches!(a, Action::GaveUp { .. })),
            "no GaveUp while shutting down"
        );
    }

    #[test]
    fn shutdown_stops_in_reverse_dependency_order_with_grace_and_kill() {
        let mut sup = Supervisor::new(vec![svc("a", &[]), svc("b", &[0]), svc("c", &[1])]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        acts(&mut sup, 0);
        sup.on_spawned(1, 11, 0);
        acts(&mut sup, 0);
        sup.on_spawned(2, 12, 0);
        acts(&mut sup, 0);
        sup.shutdown(PowerAction::Poweroff, 100);
        let sig = |service, pid| Action::Signal {
            service,
            pid,
            signal: Signal::SIGTERM,
        };
        assert_eq!(acts(&mut sup, 100), vec![sig(2, 12)]);
        sup.on_exit(12, Exit::Signal(15), 110);
        assert_eq!(acts(&mut sup, 110), vec![sig(1, 11)]);
        // b ignores SIGTERM: killed after its grace period.
        assert_eq!(sup.next_deadline(), Some(610));
        assert_eq!(
            acts(&mut sup, 610),
            vec![Action::Kill {
                service: 1,
                pid: 11
            }]
        );
        sup.on_exit(11, Exit::Signal(9), 611);
        assert_eq!(acts(&mut sup, 611), vec![sig(0, 10)]);
        sup.on_exit(10, Exit::Code(0), 620);
        assert_eq!(
            acts(&mut sup, 620),
            vec![Action::ShutdownComplete(PowerAction::Poweroff)]
        );
        assert!(sup.status(620).iter().all(|s| s.state == "stopped"));
        assert!(acts(&mut sup, 700).is_empty());
        assert_eq!(sup.start("a"), Err(RequestError::ShuttingDown));
    }

    #[test]
    fn stop_after_makes_a_service_outlive_another_at_shutdown() {
        // proxy and vip start independently; at shutdown vip goes first.
        let mut proxy = svc("proxy", &[]);
        proxy.stop_after = vec![1];
        let mut sup = Supervisor::new(vec![proxy, svc("vip", &[])]);
        let started = acts(&mut sup, 0);
        assert_eq!(
            started
                .iter()
                .filter(|a| matches!(a, Action::Spawn { .. }))
                .count(),
            2,
            "no start dependency: {started:?}"
        );
        sup.on_spawned(0, 10, 0);
        sup.on_spawned(1, 11, 0);
        acts(&mut sup, 0);
        sup.shutdown(PowerAction::Reboot, 100);
        let sig = |service, pid| Action::Signal {
            service,
            pid,
            signal: Signal::SIGTERM,
        };
        assert_eq!(acts(&mut sup, 100), vec![sig(1, 11)]);
        sup.on_exit(11, Exit::Code(0), 150);
        assert_eq!(acts(&mut sup, 150), vec![sig(0, 10)]);
    }

    #[test]
    fn shutdown_is_forced_when_a_process_never_dies() {
        let mut sup = Supervisor::new(vec![svc("stuck", &[])]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        acts(&mut sup, 0);
        sup.shutdown(PowerAction::Reboot, 0);
        acts(&mut sup, 0);
        assert_eq!(
            acts(&mut sup, 500),
            vec![Action::Kill {
                service: 0,
                pid: 10
            }]
        );
        // SIGKILL did not reap it (uninterruptible sleep): forced at 2*grace + slack.
        let force = 2 * 500 + SHUTDOWN_SLACK_MS;
        assert!(acts(&mut sup, force - 1).is_empty());
        let a = acts(&mut sup, force);
        assert_eq!(
            a,
            vec![
                Action::Kill {
                    service: 0,
                    pid: 10
                },
                Action::ShutdownComplete(PowerAction::Reboot)
            ]
        );
    }

    #[test]
    fn operator_stop_start_restart() {
        let mut sup = Supervisor::new(vec![svc("a", &[])]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        acts(&mut sup, 0);
        assert_eq!(
            sup.stop("nope", 1),
            Err(RequestError::UnknownService("nope".into()))
        );
        sup.stop("a", 1).unwrap();
        let a = acts(&mut sup, 1);
        assert_eq!(
            a,
            vec![Action::Signal {
                service: 0,
                pid: 10,
                signal: Signal::SIGTERM
            }]
        );
        sup.on_exit(10, Exit::Signal(15), 2);
        assert_eq!(sup.state(0), "stopped");
        assert!(
            acts(&mut sup, 1000).is_empty(),
            "a stopped service stays stopped"
        );
        sup.start("a").unwrap();
        assert_eq!(acts(&mut sup, 1001), vec![Action::Spawn(0)]);
        sup.on_spawned(0, 11, 1001);
        sup.restart("a", 1002).unwrap();
        assert!(matches!(
            acts(&mut sup, 1002)[0],
            Action::Signal { pid: 11, .. }
        ));
        sup.on_exit(11, Exit::Signal(15), 1003);
        assert_eq!(acts(&mut sup, 1003), vec![Action::Spawn(0)]);
        assert_eq!(
            sup.status(1003)[0].restarts,
            0,
            "operator restarts are not counted"
        );
    }

    #[test]
    fn readiness_timeout_kills_and_backs_off() {
        let mut s = svc("slow", &[]);
        s.ready = Readiness::Notify;
        let mut sup = Supervisor::new(vec![s]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        assert!(
            acts(&mut sup, 999).is_empty(),
            "notify services are not probed"
        );
        assert!(matches!(
            acts(&mut sup, 1000)[0],
            Action::Signal { pid: 10, .. }
        ));
        sup.on_exit(10, Exit::Signal(15), 1001);
        assert_eq!(sup.state(0), "backoff");
    }

    #[test]
    fn notify_makes_ready_and_sets_status() {
        let mut s = svc("n", &[]);
        s.ready = Readiness::Notify;
        let mut sup = Supervisor::new(vec![s]);
        acts(&mut sup, 0);
        sup.on_spawned(0, 10, 0);
        sup.on_notify(0, false, Some("warming up".into()), 1);
        assert_eq!(sup.status(1)[0].detail, "warming up");
        assert!(!sup.status(1)[0].ready);
        sup.on_notify(0, true, None, 2);
        assert!(sup.status(2)[0].ready);
        assert_eq!(acts(&mut sup, 2), vec![Action::AllReady]);
    }

    #[test]
    fn spawn_failure_backs_off_like_a_crash() {
        let mut sup = Supervisor::new(vec![svc("a", &[])]);
        acts(&mut sup, 0);
        sup.on_spawn_failed(0, "permission denied", 0);
        let st = sup.status(0);
        assert_eq!(st[0].state, "backoff");
        assert!(st[0].detail.contains("cannot start: permission denied"));
    }

    #[test]
    fn unknown_pid_is_not_a_service() {
        let mut sup = Supervisor::new(vec![svc("a", &[])]);
        assert_eq!(sup.on_exit(4242, Exit::Code(0), 0), None);
    }
}

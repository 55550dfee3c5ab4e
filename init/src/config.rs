//! The services file: its TOML schema, parsing and validation.
//!
//! Parsing happens in two passes so that every error can name the service it
//! belongs to: the file is first read as a list of raw tables, then each table
//! is deserialized on its own (unknown keys rejected) and validated. All errors
//! are collected and reported together; a file with any error yields no
//! services at all, so nothing ever starts half-configured.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::users::{UserDb, UserDbError};

/// One problem found in a services file, located by file, service and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The services file.
    pub file: PathBuf,
    /// The service's name (or `#index` when it has none), if the error is inside one.
    pub service: Option<String>,
    /// The field (dotted path), if the error is about one.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(s) = &self.service {
            write!(f, ": service \"{s}\"")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found in a services file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in services file",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// When a service is started again after its main process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any exit, clean or not.
    Always,
    /// Restart only after a non-zero exit or a signal; a clean exit is `done`.
    OnFailure,
    /// Never restart: a clean exit is `done`, anything else `failed`.
    Never,
}

/// How the supervisor learns that a started service is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as the process has been started.
    Started,
    /// Ready once a TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// Ready once this command exits 0.
    Exec(Vec<String>),
    /// Ready once the service sends `READY=1` to `NOTIFY_SOCKET`.
    Notify,
    /// A oneshot: ready (`done`) once it exits 0.
    Exit,
}

/// Limits on how often a crashing service is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    /// At most this many starts ...
    pub burst: u32,
    /// ... within this window; one more start marks the service `failed`.
    pub interval_ms: u64,
    /// A failed service is tried again after this long (0: stays failed until an operator starts it).
    pub cooldown_ms: u64,
}

/// A validated service definition: everything the supervisor needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unique name.
    pub name: String,
    /// Program (absolute path) and arguments.
    pub exec: Vec<String>,
    /// Services that must be ready (or done) before this one starts, by index.
    pub after: Vec<usize>,
    /// Services that must have stopped before this one is stopped at shutdown, by index,
    /// without making its start wait for them (e.g. the VIP daemon hands the address over
    /// before HAProxy closes its listeners).
    pub stop_after: Vec<usize>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Readiness check.
    pub ready: Readiness,
    /// Give up on readiness after this long and treat the start as failed.
    pub ready_timeout_ms: u64,
    /// Extra environment on top of a minimal `PATH`.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub workdir: PathBuf,
    /// Directories created before every start (on tmpfs `/run` or a fresh data partition
    /// they may not exist yet), owned by the service's user; like systemd's
    /// `RuntimeDirectory=` / `StateDirectory=`.
    pub dirs: Vec<PathBuf>,
    /// User id to run as (None: stay root).
    pub uid: Option<u32>,
    /// Group id to run as.
    pub gid: Option<u32>,
    /// Signal sent to the process group to ask it to stop.
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace_ms: u64,
    /// First restart delay; doubles with each quick failure.
    pub restart_delay_ms: u64,
    /// Cap on the restart delay.
    pub restart_delay_max_ms: u64,
    /// Crash-loop limit.
    pub start_limit: StartLimit,
    /// Lines kept in the service's log ring.
    pub log_lines: usize,
    /// Echo output lines to the console, prefixed with the service name.
    pub console: bool,
    /// CPU scheduling niceness (-20..=19, 0 as PID 1's): a positive value lets the role's
    /// serving services have the CPU first when both want it (housekeeping such as updates).
    pub nice: i32,
}

/// The whole, validated services file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicesFile {
    /// Services in file order.
    pub services: Vec<Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    service: Vec<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    exec: Vec<String>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    stop_after: Vec<String>,
    #[serde(default)]
    oneshot: bool,
    restart: Option<RestartPolicy>,
    ready: Option<RawReady>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    workdir: Option<PathBuf>,
    #[serde(default)]
    dirs: Vec<PathBuf>,
    user: Option<String>,
    group: Option<String>,
    stop_signal: Option<String>,
    stop_grace_ms: Option<u64>,
    restart_delay_ms: Option<u64>,
    restart_delay_max_ms: Option<u64>,
    start_limit: Option<RawStartLimit>,
    log_lines: Option<usize>,
    console: Option<bool>,
    nice: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    tcp: Option<String>,
    exec: Option<Vec<String>>,
    notify: Option<bool>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStartLimit {
    burst: Option<u32>,
    interval_ms: Option<u64>,
    cooldown_ms: Option<u64>,
}

/// Default time between the stop signal and SIGKILL.
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;
/// Default readiness timeout.
pub const DEFAULT_READY_TIMEOUT_MS: u64 = 60_000;
/// Default first restart delay.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 100;
/// Default restart delay cap.
pub const DEFAULT_RESTART_DELAY_MAX_MS: u64 = 30_000;
/// Default log ring size in lines.
pub const DEFAULT_LOG_LINES: usize = 500;
const MAX_LOG_LINES: usize = 100_000;

/// Reads and validates a services file. Executables, working directories and
/// user names are looked up under `root` (`/` on a running system).
pub fn load(path: &Path, root: &Path) -> Result<ServicesFile, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            service: None,
            field: None,
            reason: format!("cannot read: {e}"),
        }])
    })?;
    parse(&text, path, root)
}

/// Parses and validates services-file text; `file` is only used in errors.
pub fn parse(text: &str, file: &Path, root: &Path) -> Result<ServicesFile, ConfigErrors> {
    let mut errors = Vec::new();
    let err = |service: Option<&str>, field: Option<&str>, reason: String| ConfigError {
        file: file.to_owned(),
        service: service.map(str::to_owned),
        field: field.map(str::to_owned),
        reason,
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let reason = e.message().to_owned();
            let at = e
                .span()
                .map(|s| line_of(text, s.start))
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            return Err(ConfigErrors(vec![err(None, None, format!("{reason}{at}"))]));
        }
    };
    // An empty file is valid: a `base` box runs no services, only the network.

    // Pass 1: shape of each table.
    let mut parsed: Vec<(String, RawService)> = Vec::new();
    for (i, value) in raw.service.into_iter().enumerate() {
        let label = value
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("#{}", i + 1));
        match serde_path_to_error::deserialize::<_, RawService>(value) {
            Ok(s) => parsed.push((label, s)),
            Err(e) => {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                let msg = e.into_inner().to_string();
                let msg = msg.lines().next().unwrap_or_default().to_owned();
                errors.push(err(Some(&label), field.as_deref(), msg));
            }
        }
    }

    // Pass 2: names, then everything that refers to names.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, (label, s)) in parsed.iter().enumerate() {
        if let Err(reason) = check_name(&s.name) {
            errors.push(err(Some(label), Some("name"), reason));
        } else if index.insert(s.name.clone(), i).is_some() {
            errors.push(err(
                Some(label),
                Some("name"),
                "duplicate service name".into(),
            ));
        }
    }

    let users = UserDb::load(root);
    let mut services = Vec::new();
    for (label, raw) in &parsed {
        let mut e =
            |field: &str, reason: String| errors.push(err(Some(label), Some(field), reason));
        let mut stop_after = Vec::new();
        for other in &raw.stop_after {
            if other == &raw.name {
                e("stop_after", "a service cannot wait for itself".into());
                continue;
            }
            match index.get(other) {
                Some(&i) => stop_after.push(i),
                None => e("stop_after", format!("no service named \"{other}\"")),
            }
        }
        let mut after = Vec::new();
        for dep in &raw.after {
            if dep == &raw.name {
                e("after", "a service cannot wait for itself".into());
                continue;
            }
            match index.get(dep) {
                Some(&i) => after.push(i),
                None => e("after", format!("no service named \"{dep}\"")),
            }
        }
        if let Err(reason) = check_exec(&raw.exec, root) {
            e("exec", reason);
        }
        let restart = match (raw.oneshot, raw.restart) {
            (false, r) => r.unwrap_or(RestartPolicy::Always),
            (true, None) => RestartPolicy::OnFailure,
            (true, Some(RestartPolicy::Always)) => {
                e(
                    "restart",
                    "a oneshot cannot restart always; use on-failure or never".into(),
                );
                RestartPolicy::OnFailure
            }
            (true, Some(r)) => r,
        };
        let (ready, ready_timeout_ms) = match &raw.ready {
            None if raw.oneshot => (Readiness::Exit, DEFAULT_READY_TIMEOUT_MS),
            Some(_) if raw.oneshot => {
                e(
                    "ready",
                    "a oneshot is ready when it exits 0; `ready` does not apply".into(),
                );
                (Readiness::Exit, DEFAULT_READY_TIMEOUT_MS)
            }
            None => (Readiness::Started, DEFAULT_READY_TIMEOUT_MS),
            Some(r) => {
                let timeout = r.timeout_ms.unwrap_or(DEFAULT_READY_TIMEOUT_MS);
                if timeout == 0 {
                    e("ready.timeout_ms", "must be greater than 0".into());
                }
                let kinds =
                    r.tcp.is_some() as u8 + r.exec.is_some() as u8 + r.notify.is_some() as u8;
                let ready = if kinds != 1 {
                    e(
                        "ready",
                        "give exactly one of `tcp`, `exec` or `notify`".into(),
                    );
                    Readiness::Started
                } else if let Some(addr) = &r.tcp {
                    match resolve_addr(addr) {
                        Ok(a) => Readiness::Tcp(a),
                        Err(reason) => {
                            e("ready.tcp", reason);
                            Readiness::Started
                        }
                    }
                } else if let Some(cmd) = &r.exec {
                    if let Err(reason) = check_exec(cmd, root) {
                        e("ready.exec", reason);
                    }
                    Readiness::Exec(cmd.clone())
                } else if r.notify == Some(true) {
                    Readiness::Notify
                } else {
                    e("ready.notify", "only `notify = true` is meaningful".into());
                    Readiness::Started
                };
                (ready, timeout)
            }
        };
        for key in raw.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                e("env", format!("invalid variable name {key:?}"));
            }
        }
        for (key, value) in &raw.env {
            if value.contains('\0') {
                e("env", format!("value of {key} contains a NUL byte"));
            }
        }
        let workdir = raw.workdir.clone().unwrap_or_else(|| PathBuf::from("/"));
        if !workdir.is_absolute() {
            e("workdir", "must be an absolute path".into());
        } else if !under(root, &workdir).is_dir() {
            e(
                "workdir",
                format!("{} is not a directory", workdir.display()),
            );
        }
        for (k, dir) in raw.dirs.iter().enumerate() {
            if let Err(reason) = check_dir(dir) {
                e(&format!("dirs[{k}]"), reason);
            }
        }
        let (uid, gid) = match resolve_ids(&users, raw.user.as_deref(), raw.group.as_deref()) {
            Ok(ids) => ids,
            Err((field, reason)) => {
                e(field, reason);
                (None, None)
            }
        };
        let stop_signal = match raw.stop_signal.as_deref() {
            None => Signal::SIGTERM,
            Some(s) => match parse_signal(s) {
                Some(sig) => sig,
                None => {
                    e("stop_signal", format!("unknown signal {s:?}"));
                    Signal::SIGTERM
                }
            },
        };
        let restart_delay_ms = raw.restart_delay_ms.unwrap_or(DEFAULT_RESTART_DELAY_MS);
        let restart_delay_max_ms = raw
            .restart_delay_max_ms
            .unwrap_or(DEFAULT_RESTART_DELAY_MAX_MS.max(restart_delay_ms));
        if restart_delay_max_ms < restart_delay_ms {
            e(
                "restart_delay_max_ms",
                "must not be less than restart_delay_ms".into(),
            );
        }
        let sl = raw.start_limit.as_ref();
        let start_limit = StartLimit {
            burst: sl.and_then(|s| s.burst).unwrap_or(5),
            interval_ms: sl.and_then(|s| s.interval_ms).unwrap_or(30_000),
            cooldown_ms: sl.and_then(|s| s.cooldown_ms).unwrap_or(300_000),
        };
        if start_limit.burst == 0 {
            e("start_limit.burst", "must be at least 1".into());
        }
        let log_lines = raw.log_lines.unwrap_or(DEFAULT_LOG_LINES);
        if log_lines == 0 || log_lines > MAX_LOG_LINES {
            e(
                "log_lines",
                format!("must be between 1 and {MAX_LOG_LINES}"),
            );
        }
        let nice = raw.nice.unwrap_or(0);
        if !(-20..=19).contains(&nice) {
            e("nice", format!("{nice} is not between -20 and 19"));
        } else if nice < 0 && uid.is_some_and(|u| u != 0) {
            // The niceness is set after the switch to the service's user.
            e(
                "nice",
                format!("{nice}: only a service running as root may have a negative nice"),
            );
        }
        services.push(Service {
            name: raw.name.clone(),
            exec: raw.exec.clone(),
            after,
            stop_after,
            restart,
            ready,
            ready_timeout_ms,
            env: raw.env.clone(),
            workdir,
            dirs: raw.dirs.clone(),
            uid,
            gid,
            stop_signal,
            stop_grace_ms: raw.stop_grace_ms.unwrap_or(DEFAULT_STOP_GRACE_MS),
            restart_delay_ms,
            restart_delay_max_ms,
            start_limit,
            log_lines,
            console: raw.console.unwrap_or(true),
            nice,
        });
    }

    if errors.is_empty() {
        if let Some(cycle) = find_cycle(&services) {
            let names: Vec<&str> = cycle.iter().map(|&i| services[i].name.as_str()).collect();
            errors.push(err(
                Some(names[0]),
                Some("after"),
                format!("dependency cycle: {}", names.join(" -> ")),
            ));
        } else if let Some(cycle) = find_stop_cycle(&services) {
            let names: Vec<&str> = cycle.iter().map(|&i| services[i].name.as_str()).collect();
            errors.push(err(
                Some(names[0]),
                Some("stop_after"),
                format!(
                    "shutdown order cycle: {} (each waits for the next to stop)",
                    names.join(" -> ")
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(ServicesFile { services })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|t| t.lines().count().max(1))
        .unwrap_or(1)
}

/// A `dirs` entry: absolute, normal components only, under `/run`, `/var` or `/tmp` (the
/// writable places of an immutable box).
fn check_dir(dir: &Path) -> Result<(), String> {
    use std::path::Component;
    if !dir.is_absolute() {
        return Err(format!("{} must be an absolute path", dir.display()));
    }
    let parts: Vec<_> = dir.components().skip(1).collect();
    if parts.iter().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{} must not contain `.` or `..`", dir.display()));
    }
    let writable = ["run", "var", "tmp"];
    match parts.first() {
        Some(Component::Normal(top)) if parts.len() >= 2 && writable.iter().any(|w| top == w) => {
            Ok(())
        }
        _ => Err(format!(
            "{} is not below /run, /var or /tmp (the root filesystem is read-only)",
            dir.display()
        )),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 64 || !ok_first || !ok_rest {
        return Err(format!(
            "invalid name {name:?}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        ));
    }
    Ok(())
}

/// Joins an absolute path onto `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(path),
    }
}

fn check_exec(argv: &[String], root: &Path) -> Result<(), String> {
    let Some(prog) = argv.first() else {
        return Err("must name a program".into());
    };
    if argv.iter().any(|a| a.contains('\0')) {
        return Err("arguments must not contain NUL bytes".into());
    }
    let p = Path::new(prog);
    if !p.is_absolute() {
        return Err(format!(
            "{prog:?} is not an absolute path (there is no PATH search)"
        ));
    }
    let full = under(root, p);
    match std::fs::metadata(&full) {
        Err(e) => Err(format!("{prog}: {e}")),
        Ok(m) if !m.is_file() => Err(format!("{prog} is not a regular file")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!("{prog} is not executable")),
        Ok(_) => Ok(()),
    }
}

fn resolve_addr(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    // Allow "localhost:port" without consulting DNS.
    if let Some(port) = addr.strip_prefix("localhost:") {
        if let Ok(p) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
        }
    }
    // A name and a port: said plainly, without resolving it (PID 1 never
    // waits on a resolver).
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Err(format!(
            "{addr:?} must be an IP address and port (no name lookups at boot)"
        )),
        _ => Err(format!("{addr:?} is not an address:port")),
    }
}

/// A problem with one field: (field name, reason).
type FieldError = (&'static str, String);

fn resolve_ids(
    users: &Result<UserDb, UserDbError>,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<u32>, Option<u32>), FieldError> {
    let db = |field: &'static str| -> Result<&UserDb, FieldError> {
        users.as_ref().map_err(|e| (field, e.to_string()))
    };
    let mut uid = None;
    let mut gid = None;
    if let Some(u) = user {
        if let Ok(n) = u.parse::<u32>() {
            uid = Some(n);
        } else {
            let entry = db("user")?
                .user(u)
                .ok_or(("user", format!("no user named {u:?} in /etc/passwd")))?;
            uid = Some(entry.0);
            gid = Some(entry.1);
        }
    }
    if let Some(g) = group {
        if let Ok(n) = g.parse::<u32>() {
            gid = Some(n);
        } else {
            gid = Some(
                db("group")?
                    .group(g)
                    .ok_or(("group", format!("no group named {g:?} in /etc/group")))?,
            );
        }
    }
    Ok((uid, gid))
}

/// Parses `SIGTERM`, `TERM` or a signal number.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().ok()
}

/// Returns one dependency cycle (first element repeated at the end), if any.
/// Which services `i` waits for at shutdown: its `stop_after`, and everything that started
/// `after` it (dependents stop first).
pub fn stop_waits(services: &[Service]) -> Vec<Vec<usize>> {
    let mut waits: Vec<Vec<usize>> = services.iter().map(|s| s.stop_after.clone()).collect();
    for (i, s) in services.iter().enumerate() {
        for &d in &s.after {
            waits[d].push(i);
        }
    }
    waits
}

/// A cycle in the shutdown order (which would leave every service in it waiting until the
/// shutdown deadline), as service indices with the first repeated at the end.
fn find_stop_cycle(services: &[Service]) -> Option<Vec<usize>> {
    let waits = stop_waits(services);
    let mut state = vec![0u8; services.len()]; // 0 new, 1 on the stack, 2 done
    let mut stack = Vec::new();
    fn visit(
        i: usize,
        waits: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for &d in &waits[i] {
            if state[d] == 1 {
                let pos = stack.iter().position(|&s| s == d).unwrap_or(0);
                let mut cycle = stack[pos..].to_vec();
                cycle.push(d);
                return Some(cycle);
            }
            if state[d] == 0
                && let Some(c) = visit(d, waits, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    (0..services.len()).find_map(|i| {
        if state[i] == 0 {
            visit(i, &waits, &mut state, &mut stack)
        } else {
            None
        }
    })
}

fn find_cycle(services: &[Service]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; services.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        services: &[Service],
        mark: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[i] = Mark::Active;
        stack.push(i);
        for &d in &services[i].after {
            match mark[d] {
                Mark::Active => {
                    let pos = stack.iter().position(|&s| s == d).unwrap_or(0);
                    let mut cycle = stack[pos..].to_vec();
                    cycle.push(d);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, services, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark[i] = Mark::Done;
        None
    }
    for i in 0..services.len() {
        if mark[i] == Mark::New {
            if let Some(c) = visit(i, services, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["daemon", "probe"] {
            let p = bin.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(bin.join("data"), "").unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nhaproxy:x:108:113::/var/lib/haproxy:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nhaproxy:x:113:\nnet:x:200:\n").unwrap();
        dir
    }

    fn parse_ok(text: &str) -> ServicesFile {
        let r = root();
        parse(text, Path::new("svc.toml"), r.path()).unwrap()
    }

    fn parse_err(text: &str) -> Vec<String> {
        let r = root();
        parse(text, Path::new("svc.toml"), r.path())
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn ready_addresses_are_never_resolved() {
        assert_eq!(
            resolve_addr("192.0.2.5:80").unwrap(),
            SocketAddr::from(([192, 0, 2, 5], 80))
        );
        assert_eq!(
            resolve_addr("localhost:8080").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 8080))
        );
        assert_eq!(
            resolve_addr("[2001:db8::1]:443").unwrap().port(),
            443,
            "IPv6 in brackets"
        );
        let named = resolve_addr("web1.example:80").unwrap_err();
        assert!(named.contains("must be an IP address and port"), "{named}");
        for bad in ["web1", "web1:http", ":80", "192.0.2.5:99999"] {
            let e = resolve_addr(bad).unwrap_err();
            assert!(e.contains("is not an address:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn full_service_parses_with_all_fields() {
        let f = parse_ok(
            r#"
            [[service]]
            name = "net"
            exec = ["/bin/daemon"]
            restart = "never"

            [[service]]
            name = "web"
            exec = ["/bin/daemon", "-f", "x"]
            after = ["net"]
            restart = "on-failure"
            ready = { tcp = "127.0.0.1:80", timeout_ms = 5000 }
            env = { A = "1" }
            workdir = "/etc"
            dirs = ["/run/web", "/var/lib/web"]
            user = "haproxy"
            stop_signal = "USR1"
            stop_grace_ms = 2000
            restart_delay_ms = 50
            restart_delay_max_ms = 800
            start_limit = { burst = 3, interval_ms = 1000, cooldown_ms = 0 }
            log_lines = 10
            console = false
            nice = 5
            "#,
        );
        let web = &f.services[1];
        assert_eq!(web.after, vec![0]);
        assert_eq!(web.restart, RestartPolicy::OnFailure);
        assert_eq!(web.ready, Readiness::Tcp("127.0.0.1:80".parse().unwrap()));
        assert_eq!(web.ready_timeout_ms, 5000);
        assert_eq!(web.uid, Some(108));
        assert_eq!(
            web.dirs,
            vec![PathBuf::from("/run/web"), PathBuf::from("/var/lib/web")]
        );
        assert_eq!(web.gid, Some(113));
        assert_eq!(web.stop_signal, Signal::SIGUSR1);
        assert_eq!(web.start_limit.burst, 3);
        assert_eq!(web.workdir, PathBuf::from("/etc"));
        assert!(!web.console);
        assert_eq!(web.nice, 5);
        let net = &f.services[0];
        assert_eq!(net.restart, RestartPolicy::Never);
        assert_eq!(net.ready, Readiness::Started);
        assert_eq!(net.stop_grace_ms, DEFAULT_STOP_GRACE_MS);
        assert_eq!(net.nice, 0);
    }

    #[test]
    fn nice_out_of_range_is_refused() {
        for (v, what) in [(20, "20"), (-21, "-21")] {
            let e = parse_err(&format!(
                "[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nnice = {v}\n"
            ));
            assert!(
                e[0].contains("nice")
                    && e[0].contains(&format!("{what} is not between -20 and 19")),
                "{e:?}"
            );
        }
        let e = parse_err(
            "[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nuser = \"haproxy\"\nnice = -5\n",
        );
        assert!(e[0].contains("only a service running as root"), "{e:?}");
        let root = parse_ok("[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nnice = -5\n");
        assert_eq!(root.services[0].nice, -5);
    }

    #[test]
    fn oneshot_is_ready_on_exit_and_restarts_on_failure() {
        let f = parse_ok("[[service]]\nname = \"net\"\nexec = [\"/bin/daemon\"]\noneshot = true\n");
        assert_eq!(f.services[0].ready, Readiness::Exit);
        assert_eq!(f.services[0].restart, RestartPolicy::OnFailure);
        let e = parse_err(
            "[[service]]\nname = \"net\"\nexec = [\"/bin/daemon\"]\noneshot = true\nrestart = \"always\"\nready = { notify = true }\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("field `restart`: a oneshot cannot restart always")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("field `ready`: a oneshot is ready when it exits 0")),
            "{e:?}"
        );
    }

    #[test]
    fn defaults_are_always_restart_and_started_readiness() {
        let f = parse_ok("[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\n");
        assert_eq!(f.services[0].restart, RestartPolicy::Always);
        assert_eq!(f.services[0].uid, None);
    }

    #[test]
    fn unknown_key_names_service_and_field() {
        let e = parse_err("[[service]]\nname = \"web\"\nexec = [\"/bin/daemon\"]\nexce = 1\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("svc.toml: service \"web\""), "{e:?}");
        assert!(e[0].contains("unknown field `exce`"), "{e:?}");
    }

    #[test]
    fn unknown_key_inside_ready_names_the_path() {
        let e = parse_err(
            "[[service]]\nname = \"web\"\nexec = [\"/bin/daemon\"]\nready = { tcpp = \"1.2.3.4:5\" }\n",
        );
        assert!(e[0].contains("field `ready.tcpp`"), "{e:?}");
        assert!(!e[0].contains('\n'), "{e:?}");
        assert!(e[0].contains("unknown field `tcpp`"), "{e:?}");
    }

    #[test]
    fn wrong_type_names_field() {
        let e = parse_err("[[service]]\nname = \"web\"\nexec = \"/bin/daemon\"\n");
        assert!(e[0].contains("service \"web\": field `exec`"), "{e:?}");
    }

    #[test]
    fn stop_after_orders_shutdown_without_start_dependency() {
        let f = parse_ok(
            r#"
            [[service]]
            name = "proxy"
            exec = ["/bin/daemon"]
            stop_after = ["vip"]
            [[service]]
            name = "vip"
            exec = ["/bin/daemon"]
            "#,
        );
        assert_eq!(f.services[0].stop_after, vec![1]);
        assert!(f.services[0].after.is_empty() && f.services[1].after.is_empty());
        assert_eq!(stop_waits(&f.services), vec![vec![1], vec![]]);
    }

    #[test]
    fn stop_after_errors_name_the_field() {
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            stop_after = ["a", "ghost"]
            "#,
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("field `stop_after`: a service cannot wait for itself"),
            "{e:?}"
        );
        assert!(
            e[1].contains("field `stop_after`: no service named \"ghost\""),
            "{e:?}"
        );
        // a starts after b, so b stops after a; a also waiting for b would never stop.
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            after = ["b"]
            stop_after = ["b"]
            [[service]]
            name = "b"
            exec = ["/bin/daemon"]
            "#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("field `stop_after`: shutdown order cycle: a -> b -> a"),
            "{e:?}"
        );
    }

    #[test]
    fn dirs_must_be_below_the_writable_trees() {
        let e = parse_err(
            r#"
            [[service]]
            name = "web"
            exec = ["/bin/daemon"]
            dirs = ["/etc/web", "run/x", "/run/../etc", "/var", "/tmp/ok"]
            "#,
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].contains("field `dirs[0]`: /etc/web is not below /run, /var or /tmp"),
            "{e:?}"
        );
        assert!(
            e[1].contains("field `dirs[1]`: run/x must be an absolute path"),
            "{e:?}"
        );
        assert!(
            e[2].contains("field `dirs[2]`: /run/../etc must not contain"),
            "{e:?}"
        );
        assert!(e[3].contains("field `dirs[3]`: /var is not below"), "{e:?}");
    }

    #[test]
    fn duplicate_names_and_missing_deps_are_all_reported() {
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            after = ["ghost"]
            [[service]]
            name = "a"
            exec = ["/bin/missing"]
            "#,
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("field `name`: duplicate service name"))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("field `after`: no service named \"ghost\""))
        );
        assert!(e.iter().any(|m| m.contains("field `exec`: /bin/missing")));
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            after = ["c"]
            [[service]]
            name = "b"
            exec = ["/bin/daemon"]
            after = ["a"]
            [[service]]
            name = "c"
            exec = ["/bin/daemon"]
            after = ["b"]
            "#,
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("dependency cycle: a -> c -> b -> a"), "{e:?}");
    }

    #[test]
    fn self_dependency_is_refused() {
        let e = parse_err("[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nafter = [\"a\"]\n");
        assert!(e[0].contains("cannot wait for itself"), "{e:?}");
    }

    #[test]
    fn exec_must_be_absolute_existing_and_executable() {
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["daemon"]
            [[service]]
            name = "b"
            exec = ["/bin/data"]
            [[service]]
            name = "c"
            exec = []
            "#,
        );
        assert!(
            e.iter()
                .any(|m| m.contains("\"a\"") && m.contains("not an absolute path"))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("\"b\"") && m.contains("not executable"))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("\"c\"") && m.contains("must name a program"))
        );
    }

    #[test]
    fn readiness_variants_and_errors() {
        let f = parse_ok(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            ready = { exec = ["/bin/probe", "x"] }
            [[service]]
            name = "b"
            exec = ["/bin/daemon"]
            ready = { notify = true }
            "#,
        );
        assert_eq!(
            f.services[0].ready,
            Readiness::Exec(vec!["/bin/probe".into(), "x".into()])
        );
        assert_eq!(f.services[1].ready, Readiness::Notify);
        let e = parse_err(
            r#"
            [[service]]
            name = "a"
            exec = ["/bin/daemon"]
            ready = { tcp = "127.0.0.1:80", notify = true }
            [[service]]
            name = "b"
            exec = ["/bin/daemon"]
            ready = { tcp = "nonsense" }
            "#,
        );
        assert!(
            e.iter()
                .any(|m| m.contains("\"a\": field `ready`: give exactly one"))
        );
        assert!(e.iter().any(|m| m.contains("\"b\": field `ready.tcp`")));
    }

    #[test]
    fn unknown_user_group_and_signal() {
        let e = parse_err(
            "[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nuser = \"nobody2\"\nstop_signal = \"SIGFOO\"\n",
        );
        assert!(
            e.iter()
                .any(|m| m.contains("field `user`: no user named \"nobody2\""))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("field `stop_signal`: unknown signal"))
        );
        let f = parse_ok(
            "[[service]]\nname = \"a\"\nexec = [\"/bin/daemon\"]\nuser = \"1000\"\ngroup = \"net\"\n",
        );
        assert_eq!(
            (f.services[0].uid, f.services[0].gid),
            (Some(1000), Some(200))
        );
    }

    #[test]
    fn syntax_error_gives_line() {
        let e = parse_err("[[service]]\nname = \"a\"\nexec = [\n");
        assert!(e[0].starts_with("svc.toml: "), "{e:?}");
        assert!(e[0].contains("line"), "{e:?}");
    }

    #[test]
    fn empty_file_and_unknown_top_level_key() {
        assert!(
            parse_ok("").services.is_empty(),
            "a box may run no services"
        );
        assert!(parse_err("[[servce]]\nname = \"a\"\n")[0].contains("unknown field `servce`"));
    }

    #[test]
    fn unreadable_file_names_path() {
        let r = root();
        let e = load(Path::new("/nonexistent/cairn.toml"), r.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/cairn.toml: cannot read")
        );
    }

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGUSR1"), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("term"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }
}

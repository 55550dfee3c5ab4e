//! A running QEMU: start it, read its serial console, control it over QMP,
//! and make sure it and its files are gone when the `Vm` is dropped.
//!
//! Three helper threads per VM: one reads the serial console (QEMU's stdout),
//! one collects stderr, one waits for the process to exit (`waitid` with
//! `WNOWAIT`, then the `Child` is reaped under its lock, so a signal can never
//! reach a recycled pid). They share one state behind a mutex and condvar.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::accel::{Accel, detect_accel};
use crate::args::{self, ArgsError, Prepared, PreparedDisk, UefiFiles};
use crate::config::{Boot, DiskWrites, Firmware, VmConfig};
use crate::console::{ConsoleLine, LineSplitter};
use crate::disk::{DiskError, DiskFormat};
use crate::host::HostError;
use crate::qmp::{Qmp, QmpError};

/// How long `start` waits for QEMU's QMP socket.
const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one QMP command may take.
const QMP_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kill` and `Drop` wait for QEMU to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long `quit` waits for QEMU to exit.
const QUIT_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the console pipe to drain after QEMU exited.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// Stderr kept for error messages.
const STDERR_LIMIT: usize = 64 * 1024;
/// Console lines quoted in errors.
const TAIL_LINES: usize = 25;

/// Errors starting or driving a VM. Each names the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU or a firmware file is missing.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The configuration is invalid.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// The boot disk could not be prepared.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The VM's runtime directory could not be created.
    #[error("VM {vm}: cannot create a runtime directory: {source}")]
    RuntimeDir {
        /// The VM.
        vm: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The UEFI variable store could not be copied from its template.
    #[error("VM {vm}: cannot copy UEFI variables {from} to {to}: {source}")]
    OvmfVars {
        /// The VM.
        vm: String,
        /// The template.
        from: PathBuf,
        /// The copy.
        to: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("VM {vm}: cannot start {program}: {source}")]
    Spawn {
        /// The VM.
        vm: String,
        /// The QEMU binary.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU exited while starting up (bad arguments, missing file, KVM error…).
    #[error("VM {vm}: QEMU exited early ({status}): {stderr}\ncommand: {command}")]
    ExitedEarly {
        /// The VM.
        vm: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// What QEMU wrote to stderr.
        stderr: String,
        /// The command line, for reproducing by hand.
        command: String,
    },
    /// A QMP command failed.
    #[error("VM {vm}: {source}")]
    Qmp {
        /// The VM.
        vm: String,
        /// What went wrong.
        source: QmpError,
    },
    /// Something did not happen in time.
    #[error("VM {vm}: no {what} after {after:?}; console ends with:\n{console_tail}")]
    Timeout {
        /// The VM.
        vm: String,
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: Duration,
        /// The last console lines.
        console_tail: String,
    },
    /// QEMU exited while a console line was awaited.
    #[error(
        "VM {vm}: QEMU exited ({status}) before {what}; stderr: {stderr}\nconsole ends with:\n{console_tail}"
    )]
    Exited {
        /// The VM.
        vm: String,
        /// What was awaited.
        what: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// What QEMU wrote to stderr.
        stderr: String,
        /// The last console lines.
        console_tail: String,
    },
    /// A helper thread (console, stderr or exit watcher) could not be started.
    #[error("VM {vm}: cannot start a helper thread: {source}")]
    Thread {
        /// The VM.
        vm: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The QEMU process could not be killed.
    #[error("VM {vm}: cannot kill QEMU (pid {pid}): {source}")]
    Kill {
        /// The VM.
        vm: String,
        /// QEMU's pid.
        pid: u32,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Copying the console to a writer failed.
    #[error("VM {vm}: cannot write the console: {source}")]
    ConsoleWrite {
        /// The VM.
        vm: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How [`Vm::pump_console_to`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// QEMU exited (the guest powered off, or QEMU was killed or quit).
    Exited(ExitStatus),
    /// The timeout passed; the VM is still running.
    TimedOut,
}

/// A running QEMU. Dropping it kills QEMU (SIGKILL, bounded wait) and removes
/// its runtime directory (QMP socket, UEFI variables copy, snapshot files).
pub struct Vm {
    name: String,
    pid: u32,
    accel: Accel,
    command_line: String,
    started: Instant,
    child: Arc<Mutex<Child>>,
    shared: Arc<Shared>,
    qmp: Mutex<Option<Qmp>>,
    cursor: Mutex<usize>,
    threads: Vec<JoinHandle<()>>,
    runtime: tempfile::TempDir,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("accel", &self.accel)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    started: Instant,
}

#[derive(Default)]
struct State {
    raw: Vec<u8>,
    lines: Vec<ConsoleLine>,
    /// The console's unfinished last line, cleaned.
    pending: String,
    console_closed: bool,
    stderr: Vec<u8>,
    stderr_closed: bool,
    status: Option<ExitStatus>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `done` holds or `deadline` passes; returns the guard and
    /// whether `done` held.
    fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'_, State>, bool) {
        let mut state = self.lock();
        loop {
            if done(&state) {
                return (state, true);
            }
            let now = Instant::now();
            if now >= deadline {
                return (state, false);
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl State {
    /// The last console lines, plus the unfinished one while QEMU runs.
    fn console_tail(&self) -> String {
        let start = self.lines.len().saturating_sub(TAIL_LINES);
        let mut tail: Vec<String> = self.lines[start..].iter().map(|l| l.text.clone()).collect();
        if !self.pending.is_empty() {
            tail.push(self.pending.clone());
        }
        tail.join("\n")
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Vm {
    /// Starts QEMU for `config` and connects to its QMP socket. Returns once
    /// QEMU runs; the guest boots meanwhile. Uses [`detect_accel`] unless the
    /// config names an accelerator.
    pub fn start(config: &VmConfig) -> Result<Vm, VmError> {
        args::validate(config)?;
        let qemu = config.host.resolve_qemu()?;
        let uefi = args::needs_uefi(&config.boot);
        if uefi {
            config.host.check_ovmf()?;
        }
        if matches!(config.boot, Boot::Pxe { .. }) {
            config.host.check_ipxe_rom()?;
        }
        let accel = config.accel.unwrap_or_else(|| detect_accel().accel);
        let vm = config.name.clone();

        let runtime = tempfile::Builder::new()
            .prefix(&format!("cairn-qemu-{}-", short_name(&config.name)))
            .tempdir()
            .map_err(|source| VmError::RuntimeDir {
                vm: vm.clone(),
                source,
            })?;
        let uefi = if uefi {
            Some(prepare_uefi_vars(config, runtime.path())?)
        } else {
            None
        };
        let disk = prepare_disk(config)?;
        let prepared = Prepared {
            qmp_socket: runtime.path().join("qmp.sock"),
            uefi,
            disk,
        };
        let qemu_args = args::qemu_args(config, accel, &prepared)?;
        let command_line = args::render(&qemu, &qemu_args);
        tracing::info!(vm = %vm, %accel, command = %command_line, "starting QEMU");

        let started = Instant::now();
        let mut child = Command::new(&qemu)
            .args(&qemu_args)
            // QEMU's snapshot=on files go to TMPDIR: keep them in the runtime
            // directory so they go away even when QEMU is killed.
            .env("TMPDIR", runtime.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| VmError::Spawn {
                vm: vm.clone(),
                program: qemu.clone(),
                source,
            })?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let child = Arc::new(Mutex::new(child));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            started,
        });

        let mut threads = Vec::new();
        let mut thread_error = None;
        let mut spawn =
            |what: &str, body: Box<dyn FnOnce() + Send>| match std::thread::Builder::new()
                .name(format!("qemu-{what}-{pid}"))
                .spawn(body)
            {
                Ok(handle) => threads.push(handle),
                Err(source) => thread_error = Some(source),
            };
        {
            let shared = Arc::clone(&shared);
            let child = Arc::clone(&child);
            spawn("exit", Box::new(move || watch_exit(pid, &child, &shared)));
        }
        if let Some(stdout) = stdout {
            let shared = Arc::clone(&shared);
            spawn("console", Box::new(move || read_console(stdout, &shared)));
        }
        if let Some(stderr) = stderr {
            let shared = Arc::clone(&shared);
            spawn("stderr", Box::new(move || read_stderr(stderr, &shared)));
        }
        if let Some(source) = thread_error {
            // Without its threads the VM cannot be watched or reaped: undo.
            let mut child = lock(&child);
            let _ = child.kill();
            let _ = child.wait();
            return Err(VmError::Thread { vm, source });
        }

        let vm = Vm {
            name: vm,
            pid,
            accel,
            command_line,
            started,
            child,
            shared,
            qmp: Mutex::new(None),
            cursor: Mutex::new(0),
            threads,
            runtime,
        };
        // On error, dropping `vm` kills QEMU and removes the runtime directory.
        let qmp = vm.connect_qmp(&prepared.qmp_socket)?;
        *lock(&vm.qmp) = Some(qmp);
        Ok(vm)
    }

    fn connect_qmp(&self, socket: &Path) -> Result<Qmp, VmError> {
        let deadline = Instant::now() + QMP_CONNECT_TIMEOUT;
        loop {
            let status = self.shared.lock().status;
            if let Some(status) = status {
                return Err(self.exited_early(status));
            }
            match Qmp::connect(socket, QMP_REPLY_TIMEOUT) {
                Ok(qmp) => return Ok(qmp),
                Err(QmpError::Connect { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    let status = self.shared.lock().status;
                    if let Some(status) = status {
                        return Err(self.exited_early(status));
                    }
                    return Err(VmError::Qmp {
                        vm: self.name.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn exited_early(&self, status: ExitStatus) -> VmError {
        let (state, _) = self
            .shared
            .wait_until(Instant::now() + DRAIN_WAIT, |s| s.stderr_closed);
        VmError::ExitedEarly {
            vm: self.name.clone(),
            status,
            stderr: state.stderr_text(),
            command: self.command_line.clone(),
        }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The accelerator QEMU runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The QEMU command line, shell-quoted, for logs and reproducing by hand.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// When QEMU was spawned; console line times count from here.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// The directory holding this VM's QMP socket and temporary files;
    /// removed when the `Vm` is dropped.
    pub fn runtime_dir(&self) -> &Path {
        self.runtime.path()
    }

    /// Everything the serial console printed so far, as received (with
    /// terminal escapes), decoded lossily as UTF-8.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().raw).into_owned()
    }

    /// The complete console lines so far, cleaned of terminal escapes.
    pub fn console_lines(&self) -> Vec<ConsoleLine> {
        self.shared.lock().lines.clone()
    }

    /// Waits for a console line matching `matches`, like `expect`: the search
    /// starts after the line the previous successful wait returned, so waiting
    /// twice for the same text finds two different lines. Fails when the
    /// timeout passes or QEMU exits first (with the console's last lines).
    pub fn wait_for_line(
        &self,
        mut matches: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Result<ConsoleLine, VmError> {
        let mut cursor = lock(&self.cursor);
        let mut scanned = *cursor;
        let mut found = None;
        let (state, _) = self.shared.wait_until(Instant::now() + timeout, |state| {
            if let Some(offset) = state.lines[scanned..].iter().position(|l| matches(&l.text)) {
                found = Some(scanned + offset);
                return true;
            }
            scanned = state.lines.len();
            state.console_closed && state.status.is_some()
        });
        if let Some(index) = found {
            *cursor = index + 1;
            return Ok(state.lines[index].clone());
        }
        let what = "matching console line".to_string();
        match state.status {
            Some(status) if state.console_closed => Err(VmError::Exited {
                vm: self.name.clone(),
                what,
                status,
                stderr: state.stderr_text(),
                console_tail: state.console_tail(),
            }),
            _ => Err(VmError::Timeout {
                vm: self.name.clone(),
                what,
                after: timeout,
                console_tail: state.console_tail(),
            }),
        }
    }

    /// [`Vm::wait_for_line`] for a line containing `needle`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> Result<ConsoleLine, VmError> {
        self.wait_for_line(|line| line.contains(needle), timeout)
            .map_err(|err| match err {
                VmError::Timeout {
                    vm,
                    after,
                    console_tail,
                    ..
                } => VmError::Timeout {
                    vm,
                    what: format!("console line containing {needle:?}"),
                    after,
                    console_tail,
                },
                VmError::Exited {
                    vm,
                    status,
                    stderr,
                    console_tail,
                    ..
                } => VmError::Exited {
                    vm,
                    what: format!("a console line containing {needle:?}"),
                    status,
                    stderr,
                    console_tail,
                },
                other => other,
            })
    }

    /// Copies the console to `out` as it arrives (everything from the start,
    /// escapes included, so a terminal shows it as QEMU would), until QEMU
    /// exits or `timeout` passes. This is `cairn run`'s main loop.
    pub fn pump_console_to(
        &self,
        out: &mut dyn Write,
        timeout: Option<Duration>,
    ) -> Result<PumpEnd, VmError> {
        // `None` waits "forever": a century is far enough.
        let deadline = Instant::now() + timeout.unwrap_or(Duration::from_secs(100 * 365 * 86_400));
        let mut offset = 0;
        loop {
            let (chunk, closed, timed_out) = {
                let (state, _) = self
                    .shared
                    .wait_until(deadline, |s| s.raw.len() > offset || s.console_closed);
                let chunk = state.raw[offset..].to_vec();
                offset = state.raw.len();
                (chunk, state.console_closed, Instant::now() >= deadline)
            };
            if !chunk.is_empty() {
                out.write_all(&chunk)
                    .and_then(|()| out.flush())
                    .map_err(|source| VmError::ConsoleWrite {
                        vm: self.name.clone(),
                        source,
                    })?;
            }
            if closed {
                // The console closes when QEMU exits; its status follows at once.
                let (state, _) = self
                    .shared
                    .wait_until(Instant::now() + KILL_WAIT, |s| s.status.is_some());
                if let Some(status) = state.status {
                    return Ok(PumpEnd::Exited(status));
                }
                drop(state);
                return self.wait_exit(KILL_WAIT).map(PumpEnd::Exited);
            }
            if timed_out {
                return Ok(PumpEnd::TimedOut);
            }
        }
    }

    /// QEMU's exit status if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.lock().status
    }

    /// Waits for QEMU to exit (guest power-off, `quit`, `kill`) and for its
    /// console to be read to the end.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let (state, exited) = self
            .shared
            .wait_until(Instant::now() + timeout, |s| s.status.is_some());
        let status = match (exited, state.status) {
            (true, Some(status)) => status,
            _ => {
                return Err(VmError::Timeout {
                    vm: self.name.clone(),
                    what: "exit of QEMU".into(),
                    after: timeout,
                    console_tail: state.console_tail(),
                });
            }
        };
        drop(state);
        // The console pipe closes with QEMU; give the reader a moment to finish.
        let _ = self
            .shared
            .wait_until(Instant::now() + DRAIN_WAIT, |s| s.console_closed);
        Ok(status)
    }

    /// Hard power-off: SIGKILL to QEMU, then wait for it to go.
    pub fn kill(&self) -> Result<ExitStatus, VmError> {
        self.send_kill()?;
        self.wait_exit(KILL_WAIT)
    }

    fn send_kill(&self) -> Result<(), VmError> {
        let mut child = lock(&self.child);
        if self.shared.lock().status.is_some() {
            return Ok(());
        }
        // `Child` remembers a reaped status, so this never hits a recycled pid.
        match child.kill() {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            Err(source) => Err(VmError::Kill {
                vm: self.name.clone(),
                pid: self.pid,
                source,
            }),
        }
    }

    /// Presses the ACPI power button (QMP `system_powerdown`). Returns at
    /// once; the guest decides whether and when to power off.
    pub fn powerdown(&self) -> Result<(), VmError> {
        self.qmp("system_powerdown", None).map(drop)
    }

    /// Presses the reset button (QMP `system_reset`). With `no_reboot` set,
    /// QEMU exits instead.
    pub fn reset(&self) -> Result<(), VmError> {
        self.qmp("system_reset", None).map(drop)
    }

    /// Ends QEMU cleanly (QMP `quit`) and waits for it to exit.
    pub fn quit(&self) -> Result<ExitStatus, VmError> {
        self.qmp("quit", None)?;
        self.wait_exit(QUIT_WAIT)
    }

    /// Plugs or pulls the cable of NIC number `index` (QMP `set_link`).
    pub fn set_link(&self, index: usize, up: bool) -> Result<(), VmError> {
        self.qmp(
            "set_link",
            Some(json!({ "name": format!("nic{index}"), "up": up })),
        )
        .map(drop)
    }

    /// Runs any QMP command and returns its `return` value.
    pub fn qmp(&self, command: &str, arguments: Option<Value>) -> Result<Value, VmError> {
        let mut qmp = lock(&self.qmp);
        let qmp = qmp.as_mut().ok_or_else(|| VmError::Qmp {
            vm: self.name.clone(),
            source: QmpError::Closed {
                command: command.into(),
                socket: self.runtime.path().join("qmp.sock"),
            },
        })?;
        qmp.execute(command, arguments)
            .map_err(|source| VmError::Qmp {
                vm: self.name.clone(),
                source,
            })
    }

    /// QMP events (`RESET`, `SHUTDOWN`, `WATCHDOG`, …) that arrived while
    /// commands were running; the list is emptied.
    pub fn take_qmp_events(&self) -> Vec<Value> {
        lock(&self.qmp)
            .as_mut()
            .map(Qmp::take_events)
            .unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Err(err) = self.send_kill() {
            tracing::warn!(vm = %self.name, %err, "cannot kill QEMU");
        }
        if let Err(err) = self.wait_exit(KILL_WAIT) {
            tracing::warn!(vm = %self.name, pid = self.pid, %err, "QEMU did not exit after SIGKILL");
        }
        // Drop the QMP connection before the socket's directory goes.
        lock(&self.qmp).take();
        // QEMU is gone, so the pipes are closed and the threads end promptly.
        let deadline = Instant::now() + DRAIN_WAIT;
        for thread in self.threads.drain(..) {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        // `runtime` (a TempDir) is removed when the fields drop, after this.
    }
}

/// Waits (without reaping) for QEMU to exit, then reaps it under the child
/// lock and publishes the status.
fn watch_exit(pid: u32, child: &Mutex<Child>, shared: &Shared) {
    use nix::errno::Errno;
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let raw_pid = i32::try_from(pid).unwrap_or(i32::MAX);
    // Any other outcome (exited, or ECHILD) means there is nothing to wait for.
    while let Err(Errno::EINTR) = waitid(
        Id::Pid(nix::unistd::Pid::from_raw(raw_pid)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    ) {}
    let status = {
        let mut child = lock(child);
        match child.wait() {
            Ok(status) => status,
            Err(err) => {
                // Someone else reaped it (a process-wide SIGCHLD handler?).
                tracing::warn!(pid, %err, "cannot get QEMU's exit status");
                std::os::unix::process::ExitStatusExt::from_raw(255 << 8)
            }
        }
    };
    tracing::debug!(pid, %status, "QEMU exited");
    shared.lock().status = Some(status);
    shared.changed.notify_all();
}

fn read_console(mut stdout: ChildStdout, shared: &Shared) {
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let lines = splitter.push(&buf[..n]);
        let at = shared.started.elapsed();
        let mut state = shared.lock();
        state.raw.extend_from_slice(&buf[..n]);
        state
            .lines
            .extend(lines.into_iter().map(|text| ConsoleLine { text, at }));
        state.pending = splitter.pending();
        drop(state);
        shared.changed.notify_all();
    }
    let at = shared.started.elapsed();
    let mut state = shared.lock();
    if let Some(text) = splitter.finish() {
        state.lines.push(ConsoleLine { text, at });
    }
    state.pending.clear();
    state.console_closed = true;
    drop(state);
    shared.changed.notify_all();
}

fn read_stderr(mut stderr: ChildStderr, shared: &Shared) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut state = shared.lock();
        let room = STDERR_LIMIT.saturating_sub(state.stderr.len());
        state.stderr.extend_from_slice(&buf[..n.min(room)]);
        drop(state);
        shared.changed.notify_all();
    }
    shared.lock().stderr_closed = true;
    shared.changed.notify_all();
}

/// The UEFI variable store for this VM: the caller's (created from the
/// template when missing) or a fresh copy in the runtime directory.
fn prepare_uefi_vars(config: &VmConfig, runtime: &Path) -> Result<UefiFiles, VmError> {
    let keep = match &config.boot {
        Boot::UefiDisk { ovmf_vars, .. } => ovmf_vars.clone(),
        Boot::Pxe {
            firmware: Firmware::Uefi { vars },
            ..
        } => vars.clone(),
        _ => None,
    };
    let vars = match keep {
        Some(path) if path.exists() => path,
        Some(path) => copy_vars(config, &path)?,
        None => copy_vars(config, &runtime.join("OVMF_VARS.fd"))?,
    };
    Ok(UefiFiles {
        code: config.host.ovmf_code.clone(),
        vars,
    })
}

fn copy_vars(config: &VmConfig, to: &Path) -> Result<PathBuf, VmError> {
    let from = &config.host.ovmf_vars_template;
    std::fs::copy(from, to).map_err(|source| VmError::OvmfVars {
        vm: config.name.clone(),
        from: from.clone(),
        to: to.to_path_buf(),
        source,
    })?;
    // The template is read-only in Debian; the copy must be writable.
    let writable: std::fs::Permissions = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(to, writable).map_err(|source| VmError::OvmfVars {
        vm: config.name.clone(),
        from: from.clone(),
        to: to.to_path_buf(),
        source,
    })?;
    Ok(to.to_path_buf())
}

/// The boot disk as QEMU should open it, creating an overlay if asked.
fn prepare_disk(config: &VmConfig) -> Result<Option<PreparedDisk>, VmError> {
    let Boot::UefiDisk { disk, writes, .. } = &config.boot else {
        return Ok(None);
    };
    let format = DiskFormat::of_file(disk)?;
    let prepared = match writes {
        DiskWrites::Snapshot => PreparedDisk {
            path: disk.clone(),
            format,
            snapshot: true,
        },
        DiskWrites::InPlace => PreparedDisk {
            path: disk.clone(),
            format,
            snapshot: false,
        },
        DiskWrites::Overlay(overlay) => {
            if !overlay.exists() {
                let qemu_img = config.host.resolve_qemu_img()?;
                crate::disk::create_overlay(&qemu_img, disk, format, overlay)?;
            }
            PreparedDisk {
                path: overlay.clone(),
                format: DiskFormat::Qcow2,
                snapshot: false,
            }
        }
    };
    Ok(Some(prepared))
}

/// A file-name-safe, short form of a VM name for temp-dir prefixes (unix
/// socket paths must stay under 108 bytes).
fn short_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if safe.is_empty() { "vm".into() } else { safe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_can_be_shared_between_threads() {
        fn check<T: Send + Sync>() {}
        check::<Vm>();
    }

    #[test]
    fn short_names_are_safe_and_bounded() {
        assert_eq!(short_name("lb-1"), "lb-1");
        assert_eq!(short_name("a/b c,d"), "a_b_c_d");
        assert_eq!(short_name(""), "vm");
        assert_eq!(short_name(&"x".repeat(100)).len(), 24);
    }

    #[test]
    fn console_tail_keeps_the_last_lines_and_the_partial_one() {
        let mut state = State::default();
        for i in 0..40 {
            state.lines.push(ConsoleLine {
                text: format!("line {i}"),
                at: Duration::ZERO,
            });
        }
        state.pending = "login: ".into();
        let tail = state.console_tail();
        assert!(tail.starts_with("line 15\n"), "{tail}");
        assert!(tail.ends_with("line 39\nlogin: "), "{tail}");
        assert!(!tail.contains("line 14\n"), "{tail}");
    }
}

//! Processes started inside a lab namespace: `ip netns exec <ns> <program>`, in their own
//! process group, stdout and stderr appended to one log file.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Starting, signalling or waiting for a lab process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be created.
    #[error("create log {path}: {source}")]
    Log {
        /// The log path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("spawn {name} ({program}) in {netns}: {source}")]
    Spawn {
        /// The process name in the lab.
        name: String,
        /// The program.
        program: String,
        /// The namespace.
        netns: String,
        /// Why.
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("send {signal} to {name} (pid {pid}): {source}")]
    Signal {
        /// The process name.
        name: String,
        /// Its pid.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// Why.
        source: nix::Error,
    },
    /// Waiting failed.
    #[error("wait for {name}: {source}")]
    Wait {
        /// The process name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// No process of that name in the lab.
    #[error("no process named {0:?} in the lab")]
    Unknown(String),
}

/// What to run: program, arguments, extra environment.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Program path or name.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Spawn {
    /// `program` with `args` and no extra environment.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Spawn {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One running (or exited) process of a lab.
#[derive(Debug)]
pub struct LabProcess {
    name: String,
    netns: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl LabProcess {
    /// Starts `spec` in namespace `netns`, in a new process group, logging to `log`.
    pub fn start(name: &str, netns: &str, spec: &Spawn, log: &Path) -> Result<Self, ProcessError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ProcessError::Log {
                path: log.to_owned(),
                source,
            })?;
        let err = file.try_clone().map_err(|source| ProcessError::Log {
            path: log.to_owned(),
            source,
        })?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(&spec.program)
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            name: name.to_owned(),
            program: spec.program.display().to_string(),
            netns: netns.to_owned(),
            source,
        })?;
        tracing::debug!(name, netns, pid = child.id(), "started");
        Ok(LabProcess {
            name: name.to_owned(),
            netns: netns.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace it runs in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its pid (`ip netns exec` execs the program, so this is the program's pid).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// Path of its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        kill(Pid::from_raw(self.pid()), signal).map_err(|source| ProcessError::Signal {
            name: self.name.clone(),
            pid: self.pid(),
            signal,
            source,
        })
    }

    /// Sends `signal` to its whole process group (the program and everything it forked).
    pub fn signal_group(&self, signal: Signal) -> Result<(), ProcessError> {
        match killpg(Pid::from_raw(self.pid()), signal) {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(source) => Err(ProcessError::Signal {
                name: self.name.clone(),
                pid: self.pid(),
                signal,
                source,
            }),
        }
    }

    /// Whether it has exited (reaps it if so).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| ProcessError::Wait {
                name: self.name.clone(),
                source,
            })?;
        }
        Ok(self.exited)
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the whole process group and reaps the process.
    pub fn kill_and_wait(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(status) = self.try_exit()? {
            // The leader is gone; children it left in the group may remain.
            self.signal_group(Signal::SIGKILL)?;
            return Ok(status);
        }
        self.signal_group(Signal::SIGKILL)?;
        let status = self.child.wait().map_err(|source| ProcessError::Wait {
            name: self.name.clone(),
            source,
        })?;
        self.exited = Some(status);
        Ok(status)
    }
}

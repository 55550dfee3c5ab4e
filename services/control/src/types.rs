//! Wire types of the `org.cairn.Init1` interface, shared by cairn-init and cairnctl.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// One supervised service as `ListServices` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ServiceStatus {
    /// Service name from the services file.
    pub name: String,
    /// Lifecycle state: `waiting`, `starting`, `ready`, `stopping`, `stopped`,
    /// `backoff`, `done` or `failed`.
    pub state: String,
    /// Main process id, 0 when not running.
    pub pid: u32,
    /// How many times the supervisor restarted it after an exit.
    pub restarts: u32,
    /// Whether its readiness check has passed for the current run.
    pub ready: bool,
    /// Human-readable detail: last exit status, why it failed, what it waits for.
    pub detail: String,
}

/// One line of a service's log ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LogLine {
    /// Monotonic sequence number within the service's ring; used to follow.
    pub seq: u64,
    /// Milliseconds since cairn-init started.
    pub t_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line without its trailing newline.
    pub text: String,
}

/// What `Power` asks the machine to do after an orderly shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Stop everything and reboot.
    Reboot,
    /// Stop everything and power off.
    Poweroff,
}

impl PowerAction {
    /// The string used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::Poweroff => "poweroff",
        }
    }

    /// Parses the wire string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reboot" => Some(PowerAction::Reboot),
            "poweroff" => Some(PowerAction::Poweroff),
            _ => None,
        }
    }
}

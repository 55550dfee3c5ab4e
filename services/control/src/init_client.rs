//! A blocking client for `org.cairn.Init1`, used by cairnctl and tests.

use std::path::Path;
use std::time::Duration;

use crate::client::{BlockingConnection, ClientError, DEFAULT_TIMEOUT, Target};
use crate::types::{LogLine, PowerAction, ServiceStatus};
use crate::{INIT_INTERFACE, INIT_PATH};

const TARGET: Target = Target {
    server: "cairn-init",
    path: INIT_PATH,
    interface: INIT_INTERFACE,
};

/// A blocking connection to cairn-init's control socket.
///
/// Each instance owns a small current-thread runtime that only runs inside its own calls;
/// no threads are started. Every call is bounded by the client's timeout.
pub struct InitClient {
    connection: BlockingConnection,
}

impl std::fmt::Debug for InitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitClient")
            .field("timeout", &self.connection.timeout())
            .finish_non_exhaustive()
    }
}

impl InitClient {
    /// Connects to the control socket at `socket` with [`DEFAULT_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects to the control socket at `socket`; `timeout` bounds the connection and each
    /// later call.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        Ok(InitClient {
            connection: BlockingConnection::connect(socket, timeout, TARGET)?,
        })
    }

    /// Every supervised service (`ListServices`).
    pub fn list_services(&self) -> Result<Vec<ServiceStatus>, ClientError> {
        self.connection.call("ListServices", &(), None)
    }

    /// Starts a service (`Start`, uid 0 only).
    pub fn start(&self, name: &str) -> Result<(), ClientError> {
        self.connection.call("Start", &(name,), Some(name))
    }

    /// Stops a service (`Stop`, uid 0 only).
    pub fn stop(&self, name: &str) -> Result<(), ClientError> {
        self.connection.call("Stop", &(name,), Some(name))
    }

    /// Restarts a service (`Restart`, uid 0 only).
    pub fn restart(&self, name: &str) -> Result<(), ClientError> {
        self.connection.call("Restart", &(name,), Some(name))
    }

    /// Log lines of `name` with seq > `after_seq`, oldest first, at most `max` (and at most
    /// [`MAX_LOG_LINES_PER_CALL`](crate::MAX_LOG_LINES_PER_CALL)) (`Logs`).
    pub fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, ClientError> {
        self.connection
            .call("Logs", &(name, after_seq, max), Some(name))
    }

    /// Reboots or powers off the machine after an orderly shutdown (`Power`, uid 0 only).
    pub fn power(&self, action: PowerAction) -> Result<(), ClientError> {
        self.connection.call("Power", &(action.as_str(),), None)
    }
}

//! A blocking client for `org.cairn.Update1`, used by `cairnctl upgrade` and `cairnctl status`.

use std::path::Path;
use std::time::Duration;

use crate::client::{BlockingConnection, ClientError, DEFAULT_TIMEOUT, Target};
use crate::update::{UPDATE_INTERFACE, UPDATE_PATH, UpdateStatus};

const TARGET: Target = Target {
    server: "cairn-updated",
    path: UPDATE_PATH,
    interface: UPDATE_INTERFACE,
};

/// A blocking connection to cairn-updated's control socket; like [`crate::InitClient`].
pub struct UpdateClient {
    connection: BlockingConnection,
}

impl std::fmt::Debug for UpdateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateClient")
            .field("timeout", &self.connection.timeout())
            .finish_non_exhaustive()
    }
}

impl UpdateClient {
    /// Connects to cairn-updated's socket at `socket` with [`DEFAULT_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects to cairn-updated's socket at `socket`; `timeout` bounds the connection and
    /// each later call.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        Ok(UpdateClient {
            connection: BlockingConnection::connect(socket, timeout, TARGET)?,
        })
    }

    /// The agent's status (`Status`).
    pub fn status(&self) -> Result<UpdateStatus, ClientError> {
        self.connection.call("Status", &(), None)
    }

    /// Asks for a check now (`Upgrade`, uid 0 only); returns the check's number, finished
    /// once [`UpdateStatus::done`] reaches it.
    pub fn upgrade(&self, now: bool) -> Result<u64, ClientError> {
        self.connection.call("Upgrade", &(now,), None)
    }
}

//! A blocking client for `org.cairn.Vip1`, used by `cairnctl vip` and tests.

use std::path::Path;
use std::time::Duration;

use crate::client::{BlockingConnection, ClientError, DEFAULT_TIMEOUT, Target};
use crate::vip::{VIP_INTERFACE, VIP_PATH, VipInstanceStatus};

const TARGET: Target = Target {
    server: "cairn-vipd",
    path: VIP_PATH,
    interface: VIP_INTERFACE,
};

/// A blocking connection to cairn-vipd's control socket.
///
/// Like [`InitClient`](crate::InitClient): a private current-thread runtime, no threads,
/// every call bounded by the client's timeout.
pub struct VipClient {
    connection: BlockingConnection,
}

impl std::fmt::Debug for VipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VipClient")
            .field("timeout", &self.connection.timeout())
            .finish_non_exhaustive()
    }
}

impl VipClient {
    /// Connects to cairn-vipd's socket at `socket` with [`DEFAULT_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects to cairn-vipd's socket at `socket`; `timeout` bounds the connection and each
    /// later call.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        Ok(VipClient {
            connection: BlockingConnection::connect(socket, timeout, TARGET)?,
        })
    }

    /// Every virtual router instance, in config order (`Instances`).
    pub fn instances(&self) -> Result<Vec<VipInstanceStatus>, ClientError> {
        self.connection.call("Instances", &(), None)
    }

    /// Turns maintenance mode on or off (`SetMaintenance`, uid 0 only): while on, every
    /// instance runs at priority 1, so a master hands its VIPs to a peer.
    pub fn set_maintenance(&self, on: bool) -> Result<(), ClientError> {
        self.connection.call("SetMaintenance", &(on,), None)
    }
}

//! The `org.cairn.Vip1` interface that cairn-vipd serves: its instances' state and counters,
//! and the maintenance switch cairn-updated uses to hand the VIPs to a peer before a reboot.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

use crate::backend::BackendError;

/// D-Bus interface name of cairn-vipd's control API.
pub const VIP_INTERFACE: &str = "org.cairn.Vip1";

/// Object path at which cairn-vipd serves [`VIP_INTERFACE`].
pub const VIP_PATH: &str = "/org/cairn/Vip1";

/// Where cairn-vipd binds its control socket unless told otherwise.
pub const DEFAULT_VIP_SOCKET: &str = "/run/cairn/vipd.sock";

/// One virtual router as `Instances` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct VipInstanceStatus {
    /// Instance name from the config.
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface the instance runs on.
    pub interface: String,
    /// `initialize`, `backup` or `master`.
    pub state: String,
    /// Configured priority.
    pub priority: u8,
    /// Priority after health tracking.
    pub effective_priority: u8,
    /// Address of the current master, empty when unknown.
    pub master: String,
    /// The virtual addresses, `addr/prefix`.
    pub vips: Vec<String>,
    /// Health checks: `name=ok` / `name=failing (reason)`.
    pub checks: Vec<String>,
    /// Counters as (name, value), e.g. `adverts_rx`, `dropped_bad_checksum`.
    pub counters: Vec<(String, u64)>,
    /// Milliseconds since the last state change.
    pub in_state_ms: u64,
    /// Whether maintenance mode holds the instance at priority 1 (`SetMaintenance`).
    pub maintenance: bool,
}

impl VipInstanceStatus {
    /// Whether another router is master: a backup that knows its master's address.
    pub fn peer_is_master(&self) -> bool {
        self.state == "backup" && !self.master.is_empty()
    }
}

/// What cairn-vipd implements so the server can answer calls; called on the control thread,
/// must answer promptly.
pub trait VipBackend: Send + Sync + 'static {
    /// Every instance, in config order.
    fn instances(&self) -> Vec<VipInstanceStatus>;
    /// Turns maintenance mode on or off: while on, every instance runs at priority 1, so a
    /// master resigns at once and a backup never takes over. Returns once the request is
    /// queued for the daemon's main loop.
    fn set_maintenance(&self, on: bool) -> Result<(), BackendError>;
}

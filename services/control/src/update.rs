//! The `org.cairn.Update1` interface that cairn-updated serves: the A/B slots, what the
//! update agent is doing, and a way to ask it to check for an update now.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

use crate::backend::BackendError;

/// D-Bus interface name of cairn-updated's control API.
pub const UPDATE_INTERFACE: &str = "org.cairn.Update1";

/// Object path at which cairn-updated serves [`UPDATE_INTERFACE`].
pub const UPDATE_PATH: &str = "/org/cairn/Update1";

/// Where cairn-updated binds its control socket unless told otherwise.
pub const DEFAULT_UPDATE_SOCKET: &str = "/run/cairn/updated.sock";

/// One root slot (`a` or `b`) as `Status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SlotStatus {
    /// `a` or `b`.
    pub slot: String,
    /// The version in the slot, empty when unknown.
    pub version: String,
    /// The boot entry for it under `EFI/Linux`, empty when there is none.
    pub entry: String,
    /// Whether the running system booted from this slot.
    pub booted: bool,
    /// Whether systemd-boot boots this slot's entry next (no default configured).
    pub default: bool,
    /// Whether the entry is blessed (no boot counter).
    pub blessed: bool,
    /// Boot tries left on a counted entry; 0 when blessed, bad or without entry.
    pub tries_left: u32,
}

/// What `Status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct UpdateStatus {
    /// What the agent is doing: `idle`, `disabled: <why>`, `checking`, `writing <n>/<m> MiB`,
    /// `verifying`, `installing`, `waiting to reboot: <why>`, `rebooting`.
    pub state: String,
    /// The version the box runs.
    pub running_version: String,
    /// `a` or `b`, empty when the box did not boot from disk.
    pub booted_slot: String,
    /// Both slots, `a` first; empty when the box did not boot from disk.
    pub slots: Vec<SlotStatus>,
    /// Unix time of the end of the last check, 0 before the first.
    pub last_check: u64,
    /// What the last check ended with, e.g. `up to date` or `installed 0.2.0`.
    pub last_result: String,
    /// The last refusal or failure, empty when none.
    pub last_error: String,
    /// Versions recorded as failed, with their reasons (`<version>: <reason>`).
    pub failed: Vec<String>,
    /// The repository URL, empty when updates are not configured.
    pub url: String,
    /// Number of the last check requested (by the timer or `Upgrade`).
    pub requested: u64,
    /// Number of the last check finished; a check asked for with `Upgrade` is over once
    /// `done` reaches the number `Upgrade` returned.
    pub done: u64,
}

/// What cairn-updated implements so the server can answer calls; called on the control
/// thread, must answer promptly.
pub trait UpdateBackend: Send + Sync + 'static {
    /// The agent's current status.
    fn status(&self) -> UpdateStatus;
    /// Asks for a check now; with `now`, an installed update reboots without waiting for the
    /// site's reboot policy. Returns the check's number (see [`UpdateStatus::done`]).
    fn upgrade(&self, now: bool) -> Result<u64, BackendError>;
}

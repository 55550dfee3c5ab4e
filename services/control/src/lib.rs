//! cairn's control API: the `org.cairn.Init1` D-Bus interface that cairn-init (PID 1) serves on
//! a private unix socket, the `org.cairn.Vip1` interface that cairn-vipd serves on its own, and
//! the blocking clients that `cairnctl` uses.
//!
//! The connection is peer-to-peer D-Bus (no bus daemon), so the control socket keeps working
//! when nothing else on the box does. Both interfaces share one hardened server (handshake,
//! frame guard, connection limits, one thread). The pieces:
//!
//! - [`types`]: the wire types of Init1 ([`ServiceStatus`], [`LogLine`], [`PowerAction`]).
//! - [`InitBackend`]: what cairn-init implements; the server forwards every call to it.
//! - [`serve_init`]: binds the socket and serves Init1 on one background thread;
//!   [`bind_socket`] + [`serve_init_on`] do the same in two steps, across processes.
//! - [`relay`]: how cairn-init's control-API server process forwards Init1 calls to PID 1.
//! - [`InitClient`]: a blocking Init1 client with timeouts.
//! - [`vip`]: Vip1's names, wire type ([`VipInstanceStatus`]) and [`VipBackend`];
//!   [`serve_vip`] and [`VipClient`] are its server and client.
//! - [`update`]: Update1's names, wire types ([`UpdateStatus`], [`SlotStatus`]) and
//!   [`UpdateBackend`]; [`serve_update`] and [`UpdateClient`] are its server and client.
//!
//! Mutating calls (`Start`, `Stop`, `Restart`, `Power`, `Vip1.SetMaintenance`,
//! `Update1.Upgrade`) are allowed only to peers whose uid, read with `SO_PEERCRED` when the
//! connection is accepted, is 0. Read-only calls are open to every local user.

#![forbid(unsafe_code)]

mod backend;
mod client;
mod dispatch;
mod frame;
mod init_client;
mod init_service;
pub mod relay;
mod sasl;
mod server;
pub mod types;
pub mod update;
mod update_client;
mod update_service;
pub mod vip;
mod vip_client;
mod vip_service;

pub use backend::{BackendError, InitBackend};
pub use client::{ClientError, DEFAULT_TIMEOUT};
pub use init_client::InitClient;
pub use server::{
    ControlServer, MAX_LOG_LINES_PER_CALL, MAX_NON_ROOT_CONNECTIONS, MAX_ROOT_CONNECTIONS,
    ServerError, bind_socket, serve_init, serve_init_on, serve_update, serve_vip,
};
pub use types::{LogLine, PowerAction, ServiceStatus};
pub use update::{
    DEFAULT_UPDATE_SOCKET, SlotStatus, UPDATE_INTERFACE, UPDATE_PATH, UpdateBackend, UpdateStatus,
};
pub use update_client::UpdateClient;
pub use vip::{DEFAULT_VIP_SOCKET, VIP_INTERFACE, VIP_PATH, VipBackend, VipInstanceStatus};
pub use vip_client::VipClient;

/// D-Bus interface name of cairn-init's control API.
pub const INIT_INTERFACE: &str = "org.cairn.Init1";

/// Object path at which cairn-init serves [`INIT_INTERFACE`].
pub const INIT_PATH: &str = "/org/cairn/Init1";

/// Where cairn-init binds its control socket unless told otherwise (`/run` is a tmpfs, so a
/// stale socket never survives a reboot).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/cairn/control.sock";

/// D-Bus error names returned by `org.cairn.Init1`; clients match on these.
pub mod error_names {
    /// The named service does not exist.
    pub const UNKNOWN_SERVICE: &str = "org.cairn.Error.UnknownService";
    /// The caller's uid may not make this call (mutating calls need uid 0).
    pub const ACCESS_DENIED: &str = "org.cairn.Error.AccessDenied";
    /// cairn-init is shutting down and accepts no more changes.
    pub const SHUTTING_DOWN: &str = "org.cairn.Error.ShuttingDown";
    /// An argument could not be parsed (e.g. an unknown power action).
    pub const INVALID_ARGUMENT: &str = "org.cairn.Error.InvalidArgument";
    /// Anything else went wrong inside cairn-init.
    pub const FAILED: &str = "org.cairn.Error.Failed";
}

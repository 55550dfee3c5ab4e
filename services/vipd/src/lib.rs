//! cairn-vipd: moves a cluster's virtual IPs between boxes with VRRPv3 (RFC 5798),
//! interoperating with keepalived.
//!
//! The protocol (packets, state machine, announcement frames) is the I/O-free crate
//! cairn-vrrp; this crate owns everything around it:
//!
//! - [`config`]: the TOML config file, its validation and errors naming file and field;
//! - [`site`]: the config derived from the site file for a load balancer node;
//! - [`health`]: fall/rise counting of health checks and the effective priority;
//! - [`probe`]: the checks themselves (TCP, command, cairn-init service) on worker threads;
//! - [`actions`]: feeding inputs to an instance and carrying out its actions through the
//!   [`actions::Effects`] trait (faked in tests);
//! - [`arpconf`]: ARP sysctls around IPv4 virtual-MAC links;
//! - [`sock`]: raw VRRP, ARP and ICMPv6 sockets (the only `unsafe` in the crate);
//! - [`runtime`]: setup and the single-threaded poll loop;
//! - [`status`], [`control`]: the snapshot behind `org.cairn.Vip1`;
//! - [`notify`]: `READY=1` for the supervisor.

pub mod actions;
pub mod arpconf;
pub mod config;
pub mod control;
pub mod drain;
pub mod health;
pub mod notify;
pub mod probe;
pub mod runtime;
pub mod site;
pub mod sock;
pub mod status;

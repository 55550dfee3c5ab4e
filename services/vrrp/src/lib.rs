//! VRRP version 3 (RFC 5798) as pure logic: no sockets, no clocks, no threads.
//!
//! cairn-vipd owns the I/O; this crate decides. Everything here is tested without root and
//! the packet parser is fuzzed (`services/vrrp/fuzz`).
//!
//! - [`packet`]: encoding and validating advertisements (IPv4 datagrams with their IP header
//!   as a raw socket delivers them, IPv6 payloads with the hop limit from ancillary data),
//!   including the v3 checksum over the pseudo-header.
//! - [`announce`]: the frames a new master sends so neighbours move the VIP to it: gratuitous
//!   ARP (IPv4) and unsolicited neighbour advertisements (IPv6).
//! - [`instance`]: one virtual router's Initialize / Backup / Master state machine, driven by
//!   [`instance::Input`]s with an explicit `now`, answering with [`instance::Action`]s.
//! - [`counters`]: what an instance counts (received, sent, dropped by reason).
//! - [`checksum`]: the Internet checksum and the IPv4 / IPv6 pseudo-headers both of the
//!   above use.
//!
//! The wire formats are checked against packets captured from keepalived 2.2.7
//! (`tests/keepalived_fixtures.rs`); `docs/vrrp.md` describes the choices.

#![forbid(unsafe_code)]

pub mod announce;
pub mod checksum;
pub mod counters;
pub mod instance;
pub mod packet;

pub use counters::{Counters, DropReason};
pub use instance::{Action, Input, Instance, InstanceConfig, State};
pub use packet::{Advertisement, PacketError, Received};

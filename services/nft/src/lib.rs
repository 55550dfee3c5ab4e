//! VIP drain forwarding rules, installed through nf_tables netlink in pure Rust.
//!
//! # Why
//!
//! When cairn-vipd moves a virtual IP while the old holder is alive (planned handover,
//! preemption), clients' established TCP connections would break: once a client's ARP
//! entry points to the new holder, that holder has no socket for the connection and
//! answers RST. To make planned moves lossless (like IPVS-DR/Maglev connection draining),
//! for a drain window
//!
//! - the OLD holder keeps the VIP on `lo` (`/32`, `/128`) with `arp_ignore=1` /
//!   `arp_announce=2`, so it still accepts the connection's segments but never answers
//!   ARP for the VIP (cairn-vipd does that part);
//! - the NEW holder copies, at layer 2, every TCP segment for the VIP that is not a SYN
//!   and belongs to no connection it knows, to the old holder, and drops the original.
//!   That is this crate.
//!
//! # The ruleset
//!
//! One table `cairn_vipd` per family (`ip`, `ip6`), in nft syntax (the `untracked_*`
//! chains only when [`DrainRuleset::tracked`] names the VIPs: everything else goes
//! untracked, so an LB's backend connections and health checks never fill conntrack's
//! table, whose overflow drops new connections):
//!
//! ```text
//! table ip cairn_vipd {
//!   chain untracked_in { type filter hook prerouting priority -300; ip daddr != 192.0.2.100 notrack }
//!   chain untracked_out { type filter hook output priority -300; ip saddr != 192.0.2.100 notrack }
//!   chain drain {
//!     type filter hook prerouting priority -150; policy accept;
//!     # always present: a rule using ct makes the kernel track connections in this
//!     # namespace, so the ones this box accepts are known when a drain starts
//!     meta l4proto tcp ct state new
//!     # per drain (vip, old holder's address, link):
//!     ip daddr 192.0.2.100 meta l4proto tcp tcp flags & syn == 0 ct state new
//!         dup to 192.0.2.12 device "eth0" drop
//!     ip daddr 192.0.2.100 meta l4proto tcp tcp flags & (fin|rst) != 0
//!         tcp flags & syn == 0 ct state invalid dup to 192.0.2.12 device "eth0" drop
//!   }
//! }
//! ```
//!
//! - Priority -150 runs after conntrack (-200). With `nf_conntrack_tcp_loose=1` (the
//!   default) a mid-stream segment of an unknown connection is picked up as `new`; since
//!   it is dropped, the picked-up entry is never confirmed and the next segment is `new`
//!   again. Segments of connections this box accepted are `established` and pass; SYNs
//!   pass, so new connections land here.
//! - Conntrack refuses to pick up a connection from a FIN or RST (they are `invalid`), so
//!   the second rule carries the close of a drained connection to the old holder; without
//!   it this box would answer the client's FIN with a RST.
//! - `dup to <addr> device <link>` in prerouting routes the copy with `<addr>` as the
//!   known next hop: the copy keeps destination = VIP and source = client, goes out with
//!   the old holder's MAC (ARP for its own address, queued if unresolved), TTL / hop limit
//!   decreased by one and untracked. `drop` then discards the original.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), cairn_nft::NftError> {
//! use cairn_nft::{Drain, DrainRuleset, Family, Nft};
//!
//! let mut nft = Nft::open()?;
//! nft.apply(&DrainRuleset {
//!     family: Family::V4,
//!     drains: vec![Drain {
//!         vip: "192.0.2.100".parse().expect("valid literal"),
//!         to: "192.0.2.12".parse().expect("valid literal"),
//!         ifindex: 2,
//!     }],
//!     tracked: vec!["192.0.2.100".parse().expect("valid literal")],
//! })?;
//! // … drain window …
//! nft.apply(&DrainRuleset {
//!     family: Family::V4,
//!     drains: vec![],
//!     tracked: vec!["192.0.2.100".parse().expect("valid literal")],
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules: `message` (netlink/nfnetlink framing, I/O-free), `expr` (nf_tables
//! expressions), `ruleset` (a [`DrainRuleset`] as a batch), `ack` (matching the kernel's
//! answers), `client` ([`Nft`], the only part doing I/O).
//!
//! Kernel (Debian 6.1 module names): `nfnetlink`, `nf_tables` (payload, cmp, bitwise,
//! meta, immediate and the `ip`/`ip6` families are built into it), `nft_ct`,
//! `nf_conntrack` (with `nf_defrag_ipv4`, `nf_defrag_ipv6`, `libcrc32c` → `crc32c`),
//! `nft_dup_ipv4` + `nf_dup_ipv4`, `nft_dup_ipv6` + `nf_dup_ipv6`.

#![forbid(unsafe_code)]

mod ack;
mod client;
mod expr;
mod message;
mod ruleset;

pub use client::{Nft, NftError, Operation, REPLY_TIMEOUT};
pub use message::DecodeError;
/// The errno type of [`NftError::errno`], re-exported so callers need not name `nix`.
pub use nix::errno::Errno;
pub use ruleset::{CHAIN, Drain, DrainRuleset, Family, PRIORITY, RulesetError, TABLE};

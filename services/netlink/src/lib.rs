//! A small synchronous rtnetlink client: links, addresses, routes.
//!
//! cairn-init uses it at boot to bring links up and give the node its addresses and default
//! route; cairn-vipd uses it to add and remove virtual IPs. Both are single-threaded, so the
//! client is blocking: one request at a time, each with its own sequence number, read until
//! the kernel's ACK, error or end of dump. No async runtime, no background thread.
//!
//! - [`Netlink`]: the socket and the operations.
//! - [`Link`], [`Address`], [`Route`]: what the kernel reports, trimmed to what cairn needs.
//! - [`IpNet`]: an address with its prefix length (`192.0.2.10/24`, `2001:db8::1/64`).
//! - [`NetlinkError`]: every failure names the operation, the link and the kernel's reason,
//!   e.g. `add address 192.0.2.10/24 on eth0: File exists`; [`NetlinkError::errno`] gives the
//!   errno for callers that treat some refusals as success (see [`Netlink::ensure_address`]).
//!
//! Message building and reply parsing (modules `frame`, `link`, `address`, `route`) do no
//! I/O and are unit-tested as bytes; only [`Netlink`] touches the socket.
//!
//! ```no_run
//! # fn main() -> Result<(), cairn_netlink::NetlinkError> {
//! use cairn_netlink::{IpNet, Netlink};
//!
//! let mut nl = Netlink::open()?;
//! if let Some(eth) = nl.link_by_mac(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56])? {
//!     nl.set_up(eth.index)?;
//!     let addr: IpNet = "192.0.2.10/24".parse().expect("valid literal");
//!     nl.ensure_address(eth.index, addr)?;
//!     nl.ensure_route(None, Some("192.0.2.1".parse().expect("valid literal")), eth.index)?;
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod address;
mod client;
#[cfg(test)]
mod fixtures;
mod frame;
mod ipnet;
mod link;
mod route;

pub use address::{Address, AddressError};
pub use client::{LinkLabel, Netlink, NetlinkError, Operation, REPLY_TIMEOUT};
pub use frame::FrameError;
pub use ipnet::{IpNet, IpNetError};
pub use link::{Link, LinkError, MAX_NAME_LEN, validate_name};
/// The errno type of [`NetlinkError::errno`], re-exported so callers need not name `nix`.
pub use nix::errno::Errno;
pub use route::{Route, RouteError};

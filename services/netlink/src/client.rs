//! [`Netlink`]: the blocking rtnetlink socket and the operations on links, addresses and
//! routes. Each call sends one request with a fresh sequence number and reads until the
//! kernel's ACK, error or end of dump; errors name the operation, the link and the errno.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::address::{self, Address, AddressError};
use crate::frame::{Exchange, Expect, FrameError, Reply};
use crate::ipnet::IpNet;
use crate::link::{self, Link, LinkError};
use crate::route::{self, Route, RouteError, RouteSpec};

/// How long to wait for the kernel's answer before giving up (it normally answers at once;
/// this only keeps PID 1 from hanging on a wedged kernel).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Receive buffer size; the kernel packs dumps into datagrams of at most 32 KiB.
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// How often a dump is repeated when the kernel reports it was interrupted by a change.
const DUMP_ATTEMPTS: usize = 5;

/// A link in an error message: its name when known, else its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLabel {
    /// The link's index.
    pub index: u32,
    /// The link's name, looked up when the operation failed (`None` if no such link).
    pub name: Option<String>,
}

impl LinkLabel {
    fn new(index: u32) -> Self {
        Self { index, name: None }
    }
}

impl fmt::Display for LinkLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => write!(f, "link #{}", self.index),
        }
    }
}

/// What the client was doing when an error happened; the start of every error message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Opening the socket.
    Open,
    /// Dumping links.
    ListLinks,
    /// Setting a link administratively up.
    SetUp {
        /// The link.
        link: LinkLabel,
    },
    /// Setting a link administratively down.
    SetDown {
        /// The link.
        link: LinkLabel,
    },
    /// Renaming a link.
    Rename {
        /// The link.
        link: LinkLabel,
        /// The new name.
        name: String,
    },
    /// Creating a macvlan link.
    CreateMacvlan {
        /// The new link's name.
        name: String,
        /// The link it sits on.
        parent: LinkLabel,
    },
    /// Deleting a link.
    DeleteLink {
        /// The link.
        link: LinkLabel,
    },
    /// Dumping addresses.
    ListAddresses,
    /// Adding an address.
    AddAddress {
        /// The address.
        net: IpNet,
        /// The link.
        link: LinkLabel,
    },
    /// Removing an address.
    DelAddress {
        /// The address.
        net: IpNet,
        /// The link.
        link: LinkLabel,
    },
    /// Adding a route.
    AddRoute {
        /// Destination; `None` for the default route.
        destination: Option<IpNet>,
        /// Next hop.
        gateway: Option<IpAddr>,
        /// Outgoing link.
        link: LinkLabel,
    },
    /// Removing a route.
    DelRoute {
        /// Destination; `None` for the default route.
        destination: Option<IpNet>,
        /// Next hop.
        gateway: Option<IpAddr>,
        /// Outgoing link.
        link: LinkLabel,
    },
    /// Dumping routes.
    ListRoutes,
}

impl Operation {
    fn link_mut(&mut self) -> Option<&mut LinkLabel> {
        match self {
            Operation::SetUp { link }
            | Operation::SetDown { link }
            | Operation::Rename { link, .. }
            | Operation::CreateMacvlan { parent: link, .. }
            | Operation::DeleteLink { link }
            | Operation::AddAddress { link, .. }
            | Operation::DelAddress { link, .. }
            | Operation::AddRoute { link, .. }
            | Operation::DelRoute { link, .. } => Some(link),
            Operation::Open
            | Operation::ListLinks
            | Operation::ListAddresses
            | Operation::ListRoutes => None,
        }
    }
}

fn write_route(
    f: &mut fmt::Formatter<'_>,
    verb: &str,
    destination: &Option<IpNet>,
    gateway: &Option<IpAddr>,
    link: &LinkLabel,
) -> fmt::Result {
    match destination {
        Some(d) => write!(f, "{verb} route {d}")?,
        None => write!(f, "{verb} default route")?,
    }
    if let Some(g) = gateway {
        write!(f, " via {g}")?;
    }
    write!(f, " on {link}")
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Open => f.write_str("open rtnetlink socket"),
            Operation::ListLinks => f.write_str("list links"),
            Operation::SetUp { link } => write!(f, "set {link} up"),
            Operation::SetDown { link } => write!(f, "set {link} down"),
            Operation::Rename { link, name } => write!(f, "rename {link} to {name}"),
            Operation::CreateMacvlan { name, parent } => {
                write!(f, "create macvlan {name} on {parent}")
            }
            Operation::DeleteLink { link } => match &link.name {
                Some(name) => write!(f, "delete link {name}"),
                None => write!(f, "delete link #{}", link.index),
            },
            Operation::ListAddresses => f.write_str("list addresses"),
            Operation::AddAddress { net, link } => write!(f, "add address {net} on {link}"),
            Operation::DelAddress { net, link } => write!(f, "delete address {net} on {link}"),
            Operation::AddRoute {
                destination,
                gateway,
                link,
            } => write_route(f, "add", destination, gateway, link),
            Operation::DelRoute {
                destination,
                gateway,
                link,
            } => write_route(f, "delete", destination, gateway, link),
            Operation::ListRoutes => f.write_str("list routes"),
        }
    }
}

/// An rtnetlink operation that failed; the message reads like
/// `add address 192.0.2.10/24 on eth0: File exists`.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be created or configured.
    #[error("{op}: {source}")]
    Socket {
        /// Always [`Operation::Open`].
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// Sending the request failed.
    #[error("{op}: send: {source}")]
    Send {
        /// The operation.
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// Receiving the reply failed.
    #[error("{op}: receive: {source}")]
    Receive {
        /// The operation.
        op: Operation,
        /// The system call's error.
        source: io::Error,
    },
    /// The kernel did not answer within [`REPLY_TIMEOUT`].
    #[error("{op}: no reply from the kernel within {:?}", REPLY_TIMEOUT)]
    Timeout {
        /// The operation.
        op: Operation,
    },
    /// A datagram was larger than the receive buffer.
    #[error("{op}: reply of {length} bytes was truncated")]
    Truncated {
        /// The operation.
        op: Operation,
        /// The datagram's real length.
        length: usize,
    },
    /// The kernel refused the request or its reply could not be decoded.
    #[error("{op}: {source}")]
    Reply {
        /// The operation.
        op: Operation,
        /// What the kernel said, or what was wrong with its reply.
        source: FrameError,
    },
    /// A link request was invalid, or a dumped link was malformed.
    #[error("{op}: {source}")]
    Link {
        /// The operation.
        op: Operation,
        /// The problem.
        source: LinkError,
    },
    /// A dumped address was malformed.
    #[error("{op}: {source}")]
    Address {
        /// The operation.
        op: Operation,
        /// The problem.
        source: AddressError,
    },
    /// A route request was invalid, or a dumped route was malformed.
    #[error("{op}: {source}")]
    Route {
        /// The operation.
        op: Operation,
        /// The problem.
        source: RouteError,
    },
}

impl NetlinkError {
    /// The operation that failed.
    pub fn operation(&self) -> &Operation {
        match self {
            NetlinkError::Socket { op, .. }
            | NetlinkError::Send { op, .. }
            | NetlinkError::Receive { op, .. }
            | NetlinkError::Timeout { op }
            | NetlinkError::Truncated { op, .. }
            | NetlinkError::Reply { op, .. }
            | NetlinkError::Link { op, .. }
            | NetlinkError::Address { op, .. }
            | NetlinkError::Route { op, .. } => op,
        }
    }

    fn operation_mut(&mut self) -> &mut Operation {
        match self {
            NetlinkError::Socket { op, .. }
            | NetlinkError::Send { op, .. }
            | NetlinkError::Receive { op, .. }
            | NetlinkError::Timeout { op }
            | NetlinkError::Truncated { op, .. }
            | NetlinkError::Reply { op, .. }
            | NetlinkError::Link { op, .. }
            | NetlinkError::Address { op, .. }
            | NetlinkError::Route { op, .. } => op,
        }
    }

    /// The errno the kernel answered with, if this is a refusal by the kernel
    /// (e.g. `EEXIST`, `ENODEV`, `EBUSY`).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Reply {
                source: FrameError::Kernel { errno, .. },
                ..
            } => Some(*errno),
            _ => None,
        }
    }
}

/// A blocking rtnetlink (`NETLINK_ROUTE`) client.
///
/// Calls take `&mut self` because each one owns the socket until its reply is complete.
/// Safe to use from PID 1: no threads, no async runtime, `EINTR` is retried, and every
/// receive is bounded by [`REPLY_TIMEOUT`].
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence_number: u32,
    buffer: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let socket_error = |source: io::Error| NetlinkError::Socket {
            op: Operation::Open,
            source,
        };
        let socket = Socket::new(NETLINK_ROUTE).map_err(socket_error)?;
        // Ask for the kernel's reason text and for errors that echo only our header.
        socket.set_ext_ack(true).map_err(socket_error)?;
        socket.set_cap_ack(true).map_err(socket_error)?;
        let timeout = TimeVal::new(REPLY_TIMEOUT.as_secs().try_into().unwrap_or(i64::MAX), 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| socket_error(e.into()))?;
        Ok(Self {
            socket,
            sequence_number: 0,
            buffer: Vec::with_capacity(RECV_BUFFER_LEN),
        })
    }

    /// Lists every link in the namespace, in index order.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let op = Operation::ListLinks;
        let messages = self.dump(&op, link::dump_request)?;
        let mut links = messages
            .iter()
            .filter_map(link::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| NetlinkError::Link { op, source })?;
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// The link called `name`, if there is one.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// The link with hardware address `mac`, if there is one. VLANs and bonds share their
    /// parent's MAC; the link with the lowest index (normally the physical one) wins.
    pub fn link_by_mac(&mut self, mac: &[u8; 6]) -> Result<Option<Link>, NetlinkError> {
        Ok(self
            .links()?
            .into_iter()
            .find(|l| l.mac.as_ref() == Some(mac)))
    }

    /// Sets link `index` administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let op = Operation::SetUp {
            link: LinkLabel::new(index),
        };
        self.ack(op, link::set_up_request(index, true), 0)
    }

    /// Sets link `index` administratively down.
    pub fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        let op = Operation::SetDown {
            link: LinkLabel::new(index),
        };
        self.ack(op, link::set_up_request(index, false), 0)
    }

    /// Renames link `index` to `name`. Set the link down first: kernels before 6.2 (Debian
    /// bookworm's 6.1) refuse to rename a link that is up (`EBUSY`).
    pub fn rename(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let op = Operation::Rename {
            link: LinkLabel::new(index),
            name: name.to_owned(),
        };
        match link::rename_request(index, name) {
            Ok(request) => self.ack(op, request, 0),
            Err(source) => Err(NetlinkError::Link { op, source }),
        }
    }

    /// Creates a macvlan link `name` in private mode with hardware address `mac` on link
    /// `parent`, left down (cairn-vipd's VRRP virtual MAC links). Fails with `EEXIST` if a
    /// link of that name exists.
    pub fn create_macvlan(
        &mut self,
        parent: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        let op = Operation::CreateMacvlan {
            name: name.to_owned(),
            parent: LinkLabel::new(parent),
        };
        match link::macvlan_request(parent, name, mac) {
            Ok(request) => self.ack(op, request, NLM_F_CREATE | NLM_F_EXCL),
            Err(source) => Err(NetlinkError::Link { op, source }),
        }
    }

    /// Deletes link `index` (its addresses and routes go with it). Fails with `ENODEV` if
    /// there is no such link.
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let op = Operation::DeleteLink {
            link: LinkLabel::new(index),
        };
        self.ack(op, link::delete_request(index), 0)
    }

    /// Lists the addresses of every link.
    pub fn all_addresses(&mut self) -> Result<Vec<Address>, NetlinkError> {
        let op = Operation::ListAddresses;
        let messages = self.dump(&op, address::dump_request)?;
        messages
            .iter()
            .filter_map(address::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| NetlinkError::Address { op, source })
    }

    /// Lists the addresses of link `index` (IPv4 and IPv6, including link-local ones).
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        Ok(self
            .all_addresses()?
            .into_iter()
            .filter(|a| a.index == index)
            .map(|a| a.net)
            .collect())
    }

    /// Adds `net` (e.g. `192.0.2.10/24`) to link `index`; IPv4 gets its broadcast address.
    /// Fails with `EEXIST` if the address is already there.
    pub fn add_address(&mut self, index: u32, net: IpNet) -> Result<(), NetlinkError> {
        let op = Operation::AddAddress {
            net,
            link: LinkLabel::new(index),
        };
        self.ack(
            op,
            address::add_request(index, net),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Removes `net` from link `index`. Fails with `EADDRNOTAVAIL` if it is not there.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<(), NetlinkError> {
        let op = Operation::DelAddress {
            net,
            link: LinkLabel::new(index),
        };
        self.ack(op, address::del_request(index, net), 0)
    }

    /// Adds `net` to link `index` unless exactly that address and prefix is already there.
    /// Returns whether it was added.
    pub fn ensure_address(&mut self, index: u32, net: IpNet) -> Result<bool, NetlinkError> {
        match self.add_address(index, net) {
            Ok(()) => Ok(true),
            // IPv6 says EEXIST for the same address with another prefix: only the exact
            // address counts as done.
            Err(e) if e.errno() == Some(Errno::EEXIST) => {
                if self.addresses(index)?.contains(&net) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`Netlink::ensure_address`], but an IPv6 address skips duplicate address
    /// detection (`IFA_F_NODAD`), so it is usable (bindable, announceable) at once: what a
    /// virtual IP moving to a new master needs. IPv4 is the same as `ensure_address`.
    pub fn ensure_address_nodad(&mut self, index: u32, net: IpNet) -> Result<bool, NetlinkError> {
        let op = Operation::AddAddress {
            net,
            link: LinkLabel::new(index),
        };
        match self.ack(
            op,
            address::add_nodad_request(index, net),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(Errno::EEXIST) => {
                if self.addresses(index)?.contains(&net) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `net` from link `index` if it is there. Returns whether it was removed.
    pub fn ensure_no_address(&mut self, index: u32, net: IpNet) -> Result<bool, NetlinkError> {
        match self.del_address(index, net) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(Errno::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds a static route in the main table: to `destination` (`None`: the default route of
    /// the gateway's family) via `gateway` (`None`: on-link) out of link `index`.
    /// Fails with `EEXIST` if the route is already there.
    pub fn add_route(
        &mut self,
        destination: Option<IpNet>,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let op = Operation::AddRoute {
            destination,
            gateway,
            link: LinkLabel::new(index),
        };
        match RouteSpec::new(destination, gateway, index) {
            Ok(spec) => self.ack(op, route::add_request(&spec), NLM_F_CREATE | NLM_F_EXCL),
            Err(source) => Err(NetlinkError::Route { op, source }),
        }
    }

    /// Deletes the route [`Netlink::add_route`] would add with the same arguments.
    /// Fails with `ESRCH` if there is no such route.
    pub fn del_route(
        &mut self,
        destination: Option<IpNet>,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let op = Operation::DelRoute {
            destination,
            gateway,
            link: LinkLabel::new(index),
        };
        match RouteSpec::new(destination, gateway, index) {
            Ok(spec) => self.ack(op, route::del_request(&spec), 0),
            Err(source) => Err(NetlinkError::Route { op, source }),
        }
    }

    /// Like [`Netlink::add_route`], but a route already there counts as success.
    /// Returns whether it was added.
    pub fn ensure_route(
        &mut self,
        destination: Option<IpNet>,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<bool, NetlinkError> {
        match self.add_route(destination, gateway, index) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lists the unicast IPv4 and IPv6 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let op = Operation::ListRoutes;
        let messages = self.dump(&op, route::dump_request)?;
        messages
            .iter()
            .filter_map(route::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| NetlinkError::Route { op, source })
    }

    /// Sends a request that expects an ACK; on failure, names the link in the error.
    fn ack(
        &mut self,
        op: Operation,
        request: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<(), NetlinkError> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        match self.exchange(&op, request, flags, Expect::Ack) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.with_link_name(e)),
        }
    }

    /// Runs a dump, repeating it if the kernel says a change interrupted it.
    fn dump(
        &mut self,
        op: &Operation,
        request: fn() -> RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut attempt = 1;
        loop {
            match self.exchange(op, request(), flags, Expect::Dump) {
                Ok(Reply::Dump(messages)) => return Ok(messages),
                Ok(Reply::Ack) => return Ok(Vec::new()),
                Err(NetlinkError::Reply {
                    source: FrameError::DumpInterrupted,
                    ..
                }) if attempt < DUMP_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills in the link's name for the error message, when the link exists.
    fn with_link_name(&mut self, mut error: NetlinkError) -> NetlinkError {
        let Some(index) = error.operation_mut().link_mut().map(|l| l.index) else {
            return error;
        };
        let name = self
            .links()
            .ok()
            .and_then(|links| links.into_iter().find(|l| l.index == index))
            .map(|l| l.name);
        if let Some(label) = error.operation_mut().link_mut() {
            label.name = name;
        }
        error
    }

    /// Sends one request and reads datagrams until its exchange completes.
    fn exchange(
        &mut self,
        op: &Operation,
        request: RouteNetlinkMessage,
        flags: u16,
        expect: Expect,
    ) -> Result<Reply, NetlinkError> {
        self.sequence_number = self.sequence_number.wrapping_add(1);
        let bytes = crate::frame::encode(request, flags, self.sequence_number);
        self.send(op, &bytes)?;
        let mut exchange = Exchange::new(self.sequence_number, expect);
        loop {
            self.receive(op)?;
            let fed = exchange.feed(&self.buffer);
            match fed {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(source) => {
                    return Err(NetlinkError::Reply {
                        op: op.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn send(&self, op: &Operation, bytes: &[u8]) -> Result<(), NetlinkError> {
        let kernel = SocketAddr::new(0, 0);
        loop {
            match self.socket.send_to(bytes, &kernel, 0) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => {
                    return Err(NetlinkError::Send {
                        op: op.clone(),
                        source: io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("sent {n} of {} bytes", bytes.len()),
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(NetlinkError::Send {
                        op: op.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// Receives one datagram into `self.buffer`.
    fn receive(&mut self, op: &Operation) -> Result<(), NetlinkError> {
        loop {
            self.buffer.clear();
            // MSG_TRUNC makes the kernel return the datagram's full length, so a datagram
            // larger than the buffer is detected instead of silently cut.
            match self.socket.recv(&mut self.buffer, libc::MSG_TRUNC) {
                Ok(length) if length > self.buffer.len() => {
                    return Err(NetlinkError::Truncated {
                        op: op.clone(),
                        length,
                    });
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(NetlinkError::Timeout { op: op.clone() });
                }
                Err(source) => {
                    return Err(NetlinkError::Receive {
                        op: op.clone(),
                        source,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(index: u32, name: Option<&str>) -> LinkLabel {
        LinkLabel {
            index,
            name: name.map(str::to_owned),
        }
    }

    fn kernel(errno: Errno) -> FrameError {
        FrameError::Kernel {
            errno,
            reason: None,
        }
    }

    #[test]
    fn error_text_names_operation_link_and_errno() {
        let e = NetlinkError::Reply {
            op: Operation::AddAddress {
                net: "192.0.2.10/24".parse().unwrap(),
                link: label(2, Some("eth0")),
            },
            source: kernel(Errno::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            "add address 192.0.2.10/24 on eth0: File exists"
        );
        assert_eq!(e.errno(), Some(Errno::EEXIST));

        let e = NetlinkError::Reply {
            op: Operation::AddAddress {
                net: "192.0.2.10/24".parse().unwrap(),
                link: label(9999, None),
            },
            source: kernel(Errno::ENODEV),
        };
        assert_eq!(
            e.to_string(),
            "add address 192.0.2.10/24 on link #9999: No such device"
        );
    }

    #[test]
    fn operation_texts() {
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        let cases = [
            (Operation::ListLinks, "list links"),
            (
                Operation::SetUp {
                    link: label(2, Some("eth0")),
                },
                "set eth0 up",
            ),
            (
                Operation::SetDown {
                    link: label(2, None),
                },
                "set link #2 down",
            ),
            (
                Operation::Rename {
                    link: label(2, Some("eth0")),
                    name: "lan0".into(),
                },
                "rename eth0 to lan0",
            ),
            (
                Operation::CreateMacvlan {
                    name: "vrrp.51".into(),
                    parent: label(2, Some("eth0")),
                },
                "create macvlan vrrp.51 on eth0",
            ),
            (
                Operation::DeleteLink {
                    link: label(7, None),
                },
                "delete link #7",
            ),
            (
                Operation::DeleteLink {
                    link: label(7, Some("vrrp.51")),
                },
                "delete link vrrp.51",
            ),
            (
                Operation::DelAddress {
                    net: "2001:db8::1/64".parse().unwrap(),
                    link: label(2, Some("eth0")),
                },
                "delete address 2001:db8::1/64 on eth0",
            ),
            (
                Operation::AddRoute {
                    destination: None,
                    gateway: Some(gw),
                    link: label(2, Some("eth0")),
                },
                "add default route via 192.0.2.1 on eth0",
            ),
            (
                Operation::DelRoute {
                    destination: Some("198.51.100.0/24".parse().unwrap()),
                    gateway: None,
                    link: label(2, Some("eth0")),
                },
                "delete route 198.51.100.0/24 on eth0",
            ),
        ];
        for (op, text) in cases {
            assert_eq!(op.to_string(), text);
        }
    }

    #[test]
    fn only_kernel_refusals_have_an_errno() {
        let e = NetlinkError::Reply {
            op: Operation::ListLinks,
            source: FrameError::Overrun,
        };
        assert_eq!(e.errno(), None);
        let e = NetlinkError::Timeout {
            op: Operation::ListRoutes,
        };
        assert_eq!(e.errno(), None);
        assert_eq!(e.operation(), &Operation::ListRoutes);
        assert_eq!(
            e.to_string(),
            "list routes: no reply from the kernel within 5s"
        );
    }
}

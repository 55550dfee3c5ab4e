//! Interface addresses: the `RTM_NEWADDR`/`RTM_DELADDR`/`RTM_GETADDR` requests and parsing
//! the dumped `RTM_NEWADDR` messages into ([`u32`] index, [`IpNet`]) pairs.

use std::net::IpAddr;

use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ipnet::{IpNet, IpNetError};

/// Why a dumped address message is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The message has neither `IFA_LOCAL` nor `IFA_ADDRESS`.
    #[error("address on link {index}: reply has no IFA_LOCAL or IFA_ADDRESS attribute")]
    MissingAddress {
        /// The link's index.
        index: u32,
    },
    /// The header's prefix length does not fit the address.
    #[error("address on link {index}: {source}")]
    BadPrefix {
        /// The link's index.
        index: u32,
        /// The check that failed.
        source: IpNetError,
    },
}

/// An address assigned to a link, as dumped by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Index of the link that holds the address.
    pub index: u32,
    /// The address and its prefix length.
    pub net: IpNet,
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn header_for(index: u32, net: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(net.addr());
    message.header.prefix_len = net.prefix_len();
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    message
}

/// Builds `RTM_NEWADDR` for `net` on link `index`, as `ip addr add` does: `IFA_LOCAL` and
/// `IFA_ADDRESS` both set to the address, plus `IFA_BROADCAST` for IPv4 prefixes up to /30.
pub(crate) fn add_request(index: u32, net: IpNet) -> RouteNetlinkMessage {
    let mut message = header_for(index, net);
    message.attributes.push(AddressAttribute::Local(net.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(net.addr()));
    if let Some(broadcast) = net.broadcast() {
        message
            .attributes
            .push(AddressAttribute::Broadcast(broadcast));
    }
    RouteNetlinkMessage::NewAddress(message)
}

/// Builds `RTM_NEWADDR` like [`add_request`], but an IPv6 address skips duplicate address
/// detection (`IFA_F_NODAD`) and is usable at once, as a moving virtual IP must be; IPv4
/// has no DAD and gets the same request as [`add_request`].
pub(crate) fn add_nodad_request(index: u32, net: IpNet) -> RouteNetlinkMessage {
    let mut request = add_request(index, net);
    if net.addr().is_ipv6() {
        if let RouteNetlinkMessage::NewAddress(message) = &mut request {
            message.header.flags |= AddressHeaderFlags::Nodad;
        }
    }
    request
}

/// Builds `RTM_DELADDR` for `net` on link `index` (`IFA_LOCAL` identifies the address).
pub(crate) fn del_request(index: u32, net: IpNet) -> RouteNetlinkMessage {
    let mut message = header_for(index, net);
    message.attributes.push(AddressAttribute::Local(net.addr()));
    RouteNetlinkMessage::DelAddress(message)
}

/// Builds the `RTM_GETADDR` dump request for every family and link (filtered afterwards:
/// without strict checking the kernel ignores the index in a dump request).
pub(crate) fn dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetAddress(AddressMessage::default())
}

/// Extracts an [`Address`] from a dumped message; other message kinds give `None`.
pub(crate) fn parse(message: &RouteNetlinkMessage) -> Option<Result<Address, AddressError>> {
    match message {
        RouteNetlinkMessage::NewAddress(address) => Some(parse_address(address)),
        _ => None,
    }
}

fn parse_address(message: &AddressMessage) -> Result<Address, AddressError> {
    let index = message.header.index;
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    // links and equal to IFA_LOCAL otherwise. IPv6 sends only IFA_ADDRESS unless there is a peer.
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    let addr = local
        .or(address)
        .ok_or(AddressError::MissingAddress { index })?;
    let net = IpNet::new(addr, message.header.prefix_len)
        .map_err(|source| AddressError::BadPrefix { index, source })?;
    Ok(Address { index, net })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn bytes(message: &RouteNetlinkMessage) -> Vec<u8> {
        let mut out = vec![0; message.buffer_len()];
        message.emit(&mut out);
        out
    }

    #[test]
    fn ipv4_add_has_local_address_and_broadcast() {
        let m = add_request(3, net("192.0.2.10/24"));
        let b = bytes(&m);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        assert_eq!(&b[0..4], &[2, 24, 0, 0]); // AF_INET, /24, no flags, universe scope
        assert_eq!(&b[4..8], &3u32.to_ne_bytes());
        // IFA_LOCAL (2), IFA_ADDRESS (1), IFA_BROADCAST (4), each 8 bytes.
        assert_eq!(&b[8..16], &[8, 0, 2, 0, 192, 0, 2, 10]);
        assert_eq!(&b[16..24], &[8, 0, 1, 0, 192, 0, 2, 10]);
        assert_eq!(&b[24..32], &[8, 0, 4, 0, 192, 0, 2, 255]);
        assert_eq!(b.len(), 32);
    }

    #[test]
    fn ipv4_host_route_address_has_no_broadcast() {
        let RouteNetlinkMessage::NewAddress(m) = add_request(3, net("198.51.100.7/32")) else {
            panic!("not NewAddress");
        };
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Broadcast(_)))
        );
    }

    #[test]
    fn ipv6_add_has_no_broadcast() {
        let m = add_request(4, net("2001:db8::1/64"));
        let b = bytes(&m);
        assert_eq!(&b[0..4], &[10, 64, 0, 0]); // AF_INET6, /64
        // IFA_LOCAL and IFA_ADDRESS, each 4 + 16 bytes.
        assert_eq!(b.len(), 8 + 20 + 20);
        assert_eq!(&b[8..12], &[20, 0, 2, 0]);
        assert_eq!(
            &b[12..28],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&b[28..32], &[20, 0, 1, 0]);
    }

    #[test]
    fn nodad_flag_only_for_ipv6() {
        let b = bytes(&add_nodad_request(4, net("2001:db8::1/64")));
        assert_eq!(&b[0..4], &[10, 64, 2, 0]); // IFA_F_NODAD in the header flags
        let b = bytes(&add_nodad_request(3, net("192.0.2.10/24")));
        assert_eq!(b, bytes(&add_request(3, net("192.0.2.10/24"))));
    }

    #[test]
    fn delete_names_only_the_local_address() {
        let RouteNetlinkMessage::DelAddress(m) = del_request(5, net("192.0.2.10/24")) else {
            panic!("not DelAddress");
        };
        assert_eq!(m.header.index, 5);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(
            m.attributes,
            vec![AddressAttribute::Local("192.0.2.10".parse().unwrap())]
        );
    }

    #[test]
    fn parse_prefers_local_over_peer() {
        let mut m = AddressMessage::default();
        m.header.index = 2;
        m.header.prefix_len = 32;
        m.attributes = vec![
            AddressAttribute::Address("203.0.113.1".parse().unwrap()),
            AddressAttribute::Local("203.0.113.2".parse().unwrap()),
        ];
        let a = parse(&RouteNetlinkMessage::NewAddress(m)).unwrap().unwrap();
        assert_eq!(
            a,
            Address {
                index: 2,
                net: net("203.0.113.2/32")
            }
        );
    }

    #[test]
    fn parse_ipv6_address_only() {
        let mut m = AddressMessage::default();
        m.header.index = 2;
        m.header.prefix_len = 64;
        m.attributes = vec![AddressAttribute::Address("2001:db8::5".parse().unwrap())];
        let a = parse(&RouteNetlinkMessage::NewAddress(m)).unwrap().unwrap();
        assert_eq!(a.net, net("2001:db8::5/64"));
    }

    #[test]
    fn parse_errors() {
        let mut empty = AddressMessage::default();
        empty.header.index = 9;
        assert_eq!(
            parse(&RouteNetlinkMessage::NewAddress(empty)),
            Some(Err(AddressError::MissingAddress { index: 9 }))
        );
        let mut too_long = AddressMessage::default();
        too_long.header.index = 9;
        too_long.header.prefix_len = 33;
        too_long.attributes = vec![AddressAttribute::Local("192.0.2.1".parse().unwrap())];
        assert!(matches!(
            parse(&RouteNetlinkMessage::NewAddress(too_long)),
            Some(Err(AddressError::BadPrefix { index: 9, .. }))
        ));
        assert_eq!(parse(&dump_request()), None);
    }
}

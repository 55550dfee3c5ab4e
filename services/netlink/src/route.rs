//! Routes in the main table: the [`Route`] summary parsed from `RTM_NEWROUTE`, and the
//! requests that add, delete and list unicast routes.

use std::net::IpAddr;

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::ipnet::IpNet;

/// Why a route request or a dumped route is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A default route without a gateway does not say which family it is for.
    #[error("a default route needs a gateway (or an explicit 0.0.0.0/0 or ::/0 destination)")]
    NoFamily,
    /// The destination and the gateway are of different families.
    #[error("gateway {gateway} is not of the same family as destination {destination}")]
    FamilyMismatch {
        /// The destination.
        destination: IpNet,
        /// The gateway.
        gateway: IpAddr,
    },
    /// The destination has host bits set, which the kernel refuses.
    #[error("route destination {destination} has host bits set (did you mean {}?)", .destination.network())]
    HostBits {
        /// The destination as given.
        destination: IpNet,
    },
    /// A dumped route's destination does not fit its prefix length or family.
    #[error("route in the kernel's dump has a malformed destination: {detail}")]
    Malformed {
        /// What is wrong with it.
        detail: String,
    },
}

/// A unicast route in the main table, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpNet,
    /// Next-hop router, `None` for on-link routes.
    pub gateway: Option<IpAddr>,
    /// Outgoing link index (`None` for multipath routes, which this client does not unpack).
    pub index: Option<u32>,
}

impl Route {
    /// Whether this is a default route (`/0`).
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

/// What a route request names: the checked destination, gateway and link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteSpec {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub index: u32,
}

impl RouteSpec {
    /// Checks the parts of a route request: `None` destination means the default route of
    /// the gateway's family; the destination must be a network address.
    pub(crate) fn new(
        destination: Option<IpNet>,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> Result<Self, RouteError> {
        let destination = match (destination, gateway) {
            (Some(d), _) => d,
            (None, Some(g)) => IpNet::default_for(g.is_ipv6()),
            (None, None) => return Err(RouteError::NoFamily),
        };
        if let Some(g) = gateway.filter(|g| g.is_ipv6() != destination.is_ipv6()) {
            return Err(RouteError::FamilyMismatch {
                destination,
                gateway: g,
            });
        }
        if !destination.is_network() {
            return Err(RouteError::HostBits { destination });
        }
        Ok(Self {
            destination,
            gateway,
            index,
        })
    }
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.destination.prefix_len() == 0 {
            let family = if self.destination.is_ipv6() {
                "IPv6"
            } else {
                "IPv4"
            };
            write!(f, "{family} default")?;
        } else {
            write!(f, "{}", self.destination)?;
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        Ok(())
    }
}

fn message_for(spec: &RouteSpec) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = if spec.destination.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    message.header.destination_prefix_length = spec.destination.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    if spec.destination.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(spec.destination.addr().into()));
    }
    if let Some(g) = spec.gateway {
        message.attributes.push(RouteAttribute::Gateway(g.into()));
    }
    message.attributes.push(RouteAttribute::Oif(spec.index));
    message
}

/// Builds `RTM_NEWROUTE`: a static unicast route in the main table, link scope when there is
/// no gateway (the destination is on the link), universe scope otherwise.
pub(crate) fn add_request(spec: &RouteSpec) -> RouteNetlinkMessage {
    let mut message = message_for(spec);
    message.header.protocol = RouteProtocol::Static;
    message.header.kind = RouteType::Unicast;
    message.header.scope = if spec.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    RouteNetlinkMessage::NewRoute(message)
}

/// Builds `RTM_DELROUTE`: protocol and type unspecified and scope "nowhere" match any
/// route with this destination, gateway and link, as `ip route del` does.
pub(crate) fn del_request(spec: &RouteSpec) -> RouteNetlinkMessage {
    let mut message = message_for(spec);
    message.header.scope = RouteScope::NoWhere;
    RouteNetlinkMessage::DelRoute(message)
}

/// Builds the `RTM_GETROUTE` dump request for all families.
pub(crate) fn dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetRoute(RouteMessage::default())
}

/// Extracts a main-table unicast IPv4/IPv6 [`Route`] from a dumped message; every other
/// message (local and broadcast routes, other tables and families) gives `None`.
pub(crate) fn parse(message: &RouteNetlinkMessage) -> Option<Result<Route, RouteError>> {
    let RouteNetlinkMessage::NewRoute(route) = message else {
        return None;
    };
    let ipv6 = match route.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut table = u32::from(route.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut index = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => destination = Some(d),
            RouteAttribute::Gateway(g) => gateway = Some(g),
            RouteAttribute::Oif(i) => index = Some(*i),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || route.header.kind != RouteType::Unicast {
        return None;
    }
    Some(build(
        ipv6,
        route.header.destination_prefix_length,
        destination,
        gateway,
        index,
    ))
}

fn ip_of(address: &RouteAddress, ipv6: bool, what: &str) -> Result<IpAddr, RouteError> {
    match (address, ipv6) {
        (RouteAddress::Inet(a), false) => Ok(IpAddr::V4(*a)),
        (RouteAddress::Inet6(a), true) => Ok(IpAddr::V6(*a)),
        (other, _) => Err(RouteError::Malformed {
            detail: format!("{what} {other:?} does not match the route's family"),
        }),
    }
}

fn build(
    ipv6: bool,
    prefix_len: u8,
    destination: Option<&RouteAddress>,
    gateway: Option<&RouteAddress>,
    index: Option<u32>,
) -> Result<Route, RouteError> {
    let addr = match destination {
        Some(d) => ip_of(d, ipv6, "destination")?,
        None => IpNet::default_for(ipv6).addr(),
    };
    let destination = IpNet::new(addr, prefix_len).map_err(|e| RouteError::Malformed {
        detail: e.to_string(),
    })?;
    let gateway = gateway.map(|g| ip_of(g, ipv6, "gateway")).transpose()?;
    Ok(Route {
        destination,
        gateway,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn spec_defaults_to_the_gateway_family() {
        let s = RouteSpec::new(None, Some(ip("192.0.2.1")), 2).unwrap();
        assert_eq!(s.destination, net("0.0.0.0/0"));
        assert_eq!(s.to_string(), "IPv4 default via 192.0.2.1");
        let s = RouteSpec::new(None, Some(ip("2001:db8::1")), 2).unwrap();
        assert_eq!(s.destination, net("::/0"));
        let s = RouteSpec::new(Some(net("198.51.100.0/24")), None, 2).unwrap();
        assert_eq!(s.to_string(), "198.51.100.0/24");
    }

    #[test]
    fn spec_rejects_bad_combinations() {
        assert_eq!(RouteSpec::new(None, None, 2), Err(RouteError::NoFamily));
        assert!(matches!(
            RouteSpec::new(Some(net("198.51.100.0/24")), Some(ip("2001:db8::1")), 2),
            Err(RouteError::FamilyMismatch { .. })
        ));
        let e = RouteSpec::new(Some(net("198.51.100.9/24")), None, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "route destination 198.51.100.9/24 has host bits set (did you mean 198.51.100.0/24?)"
        );
    }

    #[test]
    fn default_route_request_bytes() {
        let spec = RouteSpec::new(None, Some(ip("192.0.2.1")), 3).unwrap();
        let m = add_request(&spec);
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags u32.
        assert_eq!(&b[0..8], &[2, 0, 0, 0, 254, 4, 0, 1]);
        assert_eq!(&b[8..12], &0u32.to_ne_bytes());
        // No RTA_DST for a default route; RTA_GATEWAY (5) then RTA_OIF (4).
        assert_eq!(&b[12..20], &[8, 0, 5, 0, 192, 0, 2, 1]);
        assert_eq!(&b[20..24], &[8, 0, 4, 0]);
        assert_eq!(&b[24..28], &3u32.to_ne_bytes());
        assert_eq!(b.len(), 28);
    }

    #[test]
    fn on_link_route_has_link_scope_and_destination() {
        let spec = RouteSpec::new(Some(net("198.51.100.0/24")), None, 3).unwrap();
        let RouteNetlinkMessage::NewRoute(m) = add_request(&spec) else {
            panic!("not NewRoute");
        };
        assert_eq!(m.header.scope, RouteScope::Link);
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(
            m.attributes,
            vec![
                RouteAttribute::Destination(RouteAddress::Inet("198.51.100.0".parse().unwrap())),
                RouteAttribute::Oif(3)
            ]
        );
    }

    #[test]
    fn delete_matches_any_protocol_and_scope() {
        let spec = RouteSpec::new(None, Some(ip("2001:db8::1")), 3).unwrap();
        let RouteNetlinkMessage::DelRoute(m) = del_request(&spec) else {
            panic!("not DelRoute");
        };
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.scope, RouteScope::NoWhere);
        assert_eq!(m.header.protocol, RouteProtocol::Unspec);
        assert_eq!(m.header.kind, RouteType::Unspec);
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_MAIN);
    }

    fn dumped(family: AddressFamily, table: u8, kind: RouteType) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        m.header.table = table;
        m.header.kind = kind;
        m
    }

    #[test]
    fn parse_main_table_routes() {
        let mut m = dumped(AddressFamily::Inet, 254, RouteType::Unicast);
        m.attributes = vec![
            RouteAttribute::Table(254),
            RouteAttribute::Gateway(RouteAddress::Inet("192.0.2.1".parse().unwrap())),
            RouteAttribute::Oif(2),
        ];
        let r = parse(&RouteNetlinkMessage::NewRoute(m)).unwrap().unwrap();
        assert!(r.is_default());
        assert_eq!(
            r,
            Route {
                destination: net("0.0.0.0/0"),
                gateway: Some(ip("192.0.2.1")),
                index: Some(2)
            }
        );

        let mut m = dumped(AddressFamily::Inet6, 254, RouteType::Unicast);
        m.header.destination_prefix_length = 64;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6("2001:db8::".parse().unwrap())),
            RouteAttribute::Oif(2),
        ];
        let r = parse(&RouteNetlinkMessage::NewRoute(m)).unwrap().unwrap();
        assert!(!r.is_default());
        assert_eq!(r.destination, net("2001:db8::/64"));
        assert_eq!(r.gateway, None);
    }

    #[test]
    fn parse_skips_other_tables_types_and_families() {
        let local = dumped(AddressFamily::Inet, 255, RouteType::Local);
        assert_eq!(parse(&RouteNetlinkMessage::NewRoute(local)), None);
        // A table number above 255 travels in RTA_TABLE with 252 (RT_TABLE_COMPAT) in the header.
        let mut high = dumped(AddressFamily::Inet, 252, RouteType::Unicast);
        high.attributes = vec![RouteAttribute::Table(1000)];
        assert_eq!(parse(&RouteNetlinkMessage::NewRoute(high)), None);
        let mpls = dumped(AddressFamily::Mpls, 254, RouteType::Unicast);
        assert_eq!(parse(&RouteNetlinkMessage::NewRoute(mpls)), None);
        assert_eq!(parse(&dump_request()), None);
    }

    #[test]
    fn parse_rejects_mixed_families_and_long_prefixes() {
        let mut m = dumped(AddressFamily::Inet, 254, RouteType::Unicast);
        m.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet6(
            "2001:db8::1".parse().unwrap(),
        ))];
        assert!(matches!(
            parse(&RouteNetlinkMessage::NewRoute(m)),
            Some(Err(RouteError::Malformed { .. }))
        ));
        let mut m = dumped(AddressFamily::Inet, 254, RouteType::Unicast);
        m.header.destination_prefix_length = 40;
        assert!(matches!(
            parse(&RouteNetlinkMessage::NewRoute(m)),
            Some(Err(RouteError::Malformed { .. }))
        ));
    }
}

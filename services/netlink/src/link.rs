//! Links (network interfaces): the [`Link`] summary parsed from `RTM_NEWLINK`, and the
//! requests that list, bring up/down and rename them.

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
pub const MAX_NAME_LEN: usize = 15;

/// Why a link message or a link name is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The kernel described a link without the named attribute.
    #[error("link {index}: reply has no {attribute} attribute")]
    MissingAttribute {
        /// The link's index.
        index: u32,
        /// Which attribute is missing (`IFLA_IFNAME`, `IFLA_MTU`).
        attribute: &'static str,
    },
    /// The kernel described a link with index 0, which no link has.
    #[error("link message has index 0")]
    ZeroIndex,
    /// A name the kernel would refuse (empty, longer than 15 bytes, `.`/`..`, or with `/`,
    /// `:`, whitespace or control characters), or a `%` pattern (`eth%d`), which the kernel
    /// would expand to the first free number.
    #[error("{name:?} is not a valid interface name (1-15 bytes, no '/', ':', '%' or whitespace)")]
    InvalidName {
        /// The name as given.
        name: String,
    },
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Kernel interface index (stable while the link exists; names can change).
    pub index: u32,
    /// Interface name (`eth0`, `enp1s0`).
    pub name: String,
    /// Hardware address, for links with a 6-byte non-zero one (Ethernet, veth);
    /// `None` for loopback, tunnels and the like.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`): the cable is in, or the veth peer is up.
    pub carrier: bool,
    /// Maximum transmission unit in bytes.
    pub mtu: u32,
}

/// Builds the `RTM_GETLINK` dump request.
pub(crate) fn dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetLink(LinkMessage::default())
}

/// Builds the `RTM_SETLINK` request that sets or clears `IFF_UP` on link `index`.
pub(crate) fn set_up_request(index: u32, up: bool) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    message.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::SetLink(message)
}

/// Builds the `RTM_SETLINK` request that renames link `index` after checking the name.
pub(crate) fn rename_request(index: u32, name: &str) -> Result<RouteNetlinkMessage, LinkError> {
    validate_name(name)?;
    let mut message = LinkMessage::default();
    message.header.index = index;
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    Ok(RouteNetlinkMessage::SetLink(message))
}

/// Builds the `RTM_NEWLINK` request that creates a macvlan link `name` in private mode
/// (its frames never reach sibling macvlans) with hardware address `mac` on top of link
/// `parent`, created down. cairn-vipd puts VRRP virtual MACs on such links.
pub(crate) fn macvlan_request(
    parent: u32,
    name: &str,
    mac: [u8; 6],
) -> Result<RouteNetlinkMessage, LinkError> {
    validate_name(name)?;
    let mut message = LinkMessage::default();
    message.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Link(parent),
        LinkAttribute::Address(mac.to_vec()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Private,
            )])),
        ]),
    ];
    Ok(RouteNetlinkMessage::NewLink(message))
}

/// Builds the `RTM_DELLINK` request that deletes link `index`.
pub(crate) fn delete_request(index: u32) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    RouteNetlinkMessage::DelLink(message)
}

/// Checks a name against the kernel's rules (`dev_valid_name`), so a bad name fails before
/// anything is sent; `%` patterns are refused too, so a rename is never a guess.
pub fn validate_name(name: &str) -> Result<(), LinkError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| !matches!(c, '/' | ':' | '%') && !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(LinkError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Extracts a [`Link`] from a dumped message; other message kinds give `None`.
pub(crate) fn parse(message: &RouteNetlinkMessage) -> Option<Result<Link, LinkError>> {
    match message {
        RouteNetlinkMessage::NewLink(link) => Some(parse_link(link)),
        _ => None,
    }
}

fn parse_link(message: &LinkMessage) -> Result<Link, LinkError> {
    let index = message.header.index;
    if index == 0 {
        return Err(LinkError::ZeroIndex);
    }
    let mut name = None;
    let mut mtu = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = Some(*m),
            LinkAttribute::Address(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice())
                    .ok()
                    .filter(|m| m.iter().any(|&b| b != 0));
            }
            _ => {}
        }
    }
    let flags = message.header.flags;
    Ok(Link {
        index,
        name: name.ok_or(LinkError::MissingAttribute {
            index,
            attribute: "IFLA_IFNAME",
        })?,
        mac,
        up: flags.contains(LinkFlags::Up),
        carrier: flags.contains(LinkFlags::LowerUp),
        mtu: mtu.ok_or(LinkError::MissingAttribute {
            index,
            attribute: "IFLA_MTU",
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn message(index: u32, attributes: Vec<LinkAttribute>, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes = attributes;
        m
    }

    #[test]
    fn parses_name_mac_flags_and_mtu() {
        let m = message(
            3,
            vec![
                LinkAttribute::IfName("eth0".into()),
                LinkAttribute::Mtu(1500),
                LinkAttribute::Address(vec![0x52, 0x54, 0, 0xab, 0xcd, 1]),
            ],
            LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running,
        );
        let link = parse(&RouteNetlinkMessage::NewLink(m)).unwrap().unwrap();
        assert_eq!(
            link,
            Link {
                index: 3,
                name: "eth0".into(),
                mac: Some([0x52, 0x54, 0, 0xab, 0xcd, 1]),
                up: true,
                carrier: true,
                mtu: 1500,
            }
        );
    }

    #[test]
    fn loopback_and_odd_addresses_have_no_mac() {
        for address in [vec![0; 6], vec![1, 2, 3, 4], vec![]] {
            let m = message(
                1,
                vec![
                    LinkAttribute::IfName("lo".into()),
                    LinkAttribute::Mtu(65536),
                    LinkAttribute::Address(address.clone()),
                ],
                LinkFlags::empty(),
            );
            let link = parse(&RouteNetlinkMessage::NewLink(m)).unwrap().unwrap();
            assert_eq!(link.mac, None, "{address:?}");
            assert!(!link.up);
            assert!(!link.carrier);
        }
    }

    #[test]
    fn missing_attributes_are_errors() {
        let no_name = message(4, vec![LinkAttribute::Mtu(1500)], LinkFlags::Up);
        assert_eq!(
            parse(&RouteNetlinkMessage::NewLink(no_name)),
            Some(Err(LinkError::MissingAttribute {
                index: 4,
                attribute: "IFLA_IFNAME"
            }))
        );
        let no_mtu = message(4, vec![LinkAttribute::IfName("x".into())], LinkFlags::Up);
        assert!(matches!(
            parse(&RouteNetlinkMessage::NewLink(no_mtu)),
            Some(Err(LinkError::MissingAttribute {
                attribute: "IFLA_MTU",
                ..
            }))
        ));
        let zero = message(0, vec![], LinkFlags::Up);
        assert_eq!(
            parse(&RouteNetlinkMessage::NewLink(zero)),
            Some(Err(LinkError::ZeroIndex))
        );
    }

    #[test]
    fn other_messages_are_skipped() {
        assert_eq!(parse(&dump_request()), None);
    }

    #[test]
    fn set_up_request_bytes() {
        let RouteNetlinkMessage::SetLink(up) = set_up_request(7, true) else {
            panic!("not a SetLink");
        };
        let mut bytes = vec![0; up.buffer_len()];
        up.emit(&mut bytes);
        // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32.
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[4..8], &7i32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &1u32.to_ne_bytes()); // IFF_UP
        assert_eq!(&bytes[12..16], &1u32.to_ne_bytes()); // change mask IFF_UP

        let RouteNetlinkMessage::SetLink(down) = set_up_request(7, false) else {
            panic!("not a SetLink");
        };
        let mut bytes = vec![0; down.buffer_len()];
        down.emit(&mut bytes);
        assert_eq!(&bytes[8..12], &0u32.to_ne_bytes());
        assert_eq!(&bytes[12..16], &1u32.to_ne_bytes());
    }

    #[test]
    fn rename_request_carries_the_name() {
        let Ok(RouteNetlinkMessage::SetLink(m)) = rename_request(2, "lan0") else {
            panic!("rename to lan0 should build");
        };
        assert_eq!(m.header.index, 2);
        assert_eq!(m.attributes, vec![LinkAttribute::IfName("lan0".into())]);
        let mut bytes = vec![0; m.buffer_len()];
        m.emit(&mut bytes);
        // ifinfomsg, then IFLA_IFNAME (3): len 9 ("lan0\0" + 4), padded to 12.
        assert_eq!(bytes.len(), 16 + 12);
        assert_eq!(&bytes[16..20], &[9, 0, 3, 0]);
        assert_eq!(&bytes[20..25], b"lan0\0");
    }

    #[test]
    fn macvlan_request_bytes() {
        let Ok(RouteNetlinkMessage::NewLink(m)) =
            macvlan_request(2, "vrrp.51", [0, 0, 0x5e, 0, 1, 51])
        else {
            panic!("macvlan request should build");
        };
        assert_eq!(m.header.index, 0);
        let mut bytes = vec![0; m.buffer_len()];
        m.emit(&mut bytes);
        let attrs = &bytes[16..];
        // IFLA_IFNAME (3): "vrrp.51\0" = 4 + 8.
        assert_eq!(&attrs[0..4], &[12, 0, 3, 0]);
        assert_eq!(&attrs[4..12], b"vrrp.51\0");
        // IFLA_LINK (5): parent index.
        assert_eq!(&attrs[12..16], &[8, 0, 5, 0]);
        assert_eq!(&attrs[16..20], &2u32.to_ne_bytes());
        // IFLA_ADDRESS (1): 4 + 6, padded to 12.
        assert_eq!(&attrs[20..24], &[10, 0, 1, 0]);
        assert_eq!(&attrs[24..30], &[0, 0, 0x5e, 0, 1, 51]);
        // IFLA_LINKINFO (18) { IFLA_INFO_KIND (1) "macvlan\0", IFLA_INFO_DATA (2)
        // { IFLA_MACVLAN_MODE (1) = MACVLAN_MODE_PRIVATE (1) } }.
        let info = &attrs[32..];
        assert_eq!(&info[0..4], &[28, 0, 18, 0]);
        assert_eq!(&info[4..8], &[12, 0, 1, 0]);
        assert_eq!(&info[8..16], b"macvlan\0");
        assert_eq!(&info[16..20], &[12, 0, 2, 0]);
        assert_eq!(&info[20..24], &[8, 0, 1, 0]);
        assert_eq!(&info[24..28], &1u32.to_ne_bytes());
        assert_eq!(bytes.len(), 16 + 32 + 28);
        assert!(macvlan_request(2, "bad/name", [0; 6]).is_err());
    }

    #[test]
    fn delete_request_names_the_index() {
        let RouteNetlinkMessage::DelLink(m) = delete_request(9) else {
            panic!("not a DelLink");
        };
        assert_eq!(m.header.index, 9);
        assert!(m.attributes.is_empty());
    }

    #[test]
    fn names_are_validated() {
        for good in ["eth0", "a", "enp1s0f1np1", "vip-lb.100", "123456789012345"] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:1",
            "eth%d",
            "a b",
            "tab\t",
            "1234567890123456",
        ] {
            assert!(rename_request(1, bad).is_err(), "{bad:?}");
        }
    }
}

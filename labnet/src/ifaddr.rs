//! rtnetlink address messages as bytes (no I/O): the dump request and the parser of
//! `RTM_NEWADDR` / `RTM_DELADDR` notifications and dump replies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `RTMGRP_IPV4_IFADDR`: multicast group of IPv4 address changes.
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// `RTMGRP_IPV6_IFADDR`: multicast group of IPv6 address changes.
pub const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One thing a netlink datagram said about addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrMessage {
    /// An address exists (notification or dump entry).
    New {
        /// Interface index.
        index: u32,
        /// The address.
        addr: IpAddr,
    },
    /// An address was removed.
    Del {
        /// Interface index.
        index: u32,
        /// The address.
        addr: IpAddr,
    },
    /// End of a dump.
    Done,
    /// The kernel answered a request with this errno (0 is an ACK).
    Error(i32),
}

/// The request for a dump of all addresses of all families, with sequence number `seq`.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let len: u32 = 24;
    let mut b = Vec::with_capacity(24);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifaddrmsg: family AF_UNSPEC, prefixlen, flags, scope, index.
    b.extend_from_slice(&[0u8; 8]);
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses every message of one netlink datagram; malformed tails are ignored.
pub fn parse(datagram: &[u8]) -> Vec<AddrMessage> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let Some(len) = u32_at(datagram, at).map(|l| l as usize) else {
            break;
        };
        let Some(kind) = u16_at(datagram, at + 4) else {
            break;
        };
        if len < NLMSG_HDRLEN || at + len > datagram.len() {
            break;
        }
        let body = &datagram[at + NLMSG_HDRLEN..at + len];
        match kind {
            NLMSG_DONE => out.push(AddrMessage::Done),
            NLMSG_ERROR => {
                if let Some(e) = u32_at(body, 0) {
                    out.push(AddrMessage::Error(e as i32));
                }
            }
            RTM_NEWADDR | RTM_DELADDR => {
                if let Some((index, addr)) = parse_ifaddr(body) {
                    out.push(if kind == RTM_NEWADDR {
                        AddrMessage::New { index, addr }
                    } else {
                        AddrMessage::Del { index, addr }
                    });
                }
            }
            _ => {}
        }
        at += align4(len);
    }
    out
}

fn parse_ifaddr(body: &[u8]) -> Option<(u32, IpAddr)> {
    let family = *body.first()?;
    let index = u32_at(body, 4)?;
    let mut at = 8;
    let mut address = None;
    let mut local = None;
    while at + 4 <= body.len() {
        let len = usize::from(u16_at(body, at)?);
        let kind = u16_at(body, at + 2)?;
        if len < 4 || at + len > body.len() {
            break;
        }
        let value = &body[at + 4..at + len];
        let ip = match (family, value.len()) {
            (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?))),
            (AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(value).ok()?,
            ))),
            _ => None,
        };
        match kind {
            IFA_ADDRESS => address = ip,
            IFA_LOCAL => local = ip,
            _ => {}
        }
        at += align4(len);
    }
    Some((index, local.or(address)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(body);
        b
    }

    fn ifaddr(family: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![family, 24, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        for a in attrs {
            b.extend_from_slice(a);
        }
        b
    }

    #[test]
    fn parses_new_and_del_of_both_families_in_one_datagram() {
        let v4 = ifaddr(
            AF_INET,
            2,
            &[
                attr(IFA_ADDRESS, &[192, 0, 2, 100]),
                attr(IFA_LOCAL, &[192, 0, 2, 100]),
                attr(3, b"eth0\0"),
            ],
        );
        let v6addr: Ipv6Addr = "2001:db8::64".parse().unwrap();
        let v6 = ifaddr(AF_INET6, 3, &[attr(IFA_ADDRESS, &v6addr.octets())]);
        let mut d = msg(RTM_NEWADDR, &v4);
        d.extend(msg(RTM_DELADDR, &v6));
        d.extend(msg(NLMSG_DONE, &0u32.to_ne_bytes()));
        assert_eq!(
            parse(&d),
            vec![
                AddrMessage::New {
                    index: 2,
                    addr: "192.0.2.100".parse().unwrap()
                },
                AddrMessage::Del {
                    index: 3,
                    addr: IpAddr::V6(v6addr)
                },
                AddrMessage::Done,
            ]
        );
    }

    #[test]
    fn prefers_the_local_address_of_a_point_to_point_link() {
        let body = ifaddr(
            AF_INET,
            7,
            &[
                attr(IFA_ADDRESS, &[198, 51, 100, 2]),
                attr(IFA_LOCAL, &[198, 51, 100, 1]),
            ],
        );
        assert_eq!(
            parse(&msg(RTM_NEWADDR, &body)),
            vec![AddrMessage::New {
                index: 7,
                addr: "198.51.100.1".parse().unwrap()
            }]
        );
    }

    #[test]
    fn stops_at_a_truncated_message_and_reports_errors() {
        let mut err = msg(NLMSG_ERROR, &(-105i32).to_ne_bytes());
        let good = msg(
            RTM_NEWADDR,
            &ifaddr(AF_INET, 1, &[attr(IFA_ADDRESS, &[203, 0, 113, 5])]),
        );
        err.extend_from_slice(&good[..good.len() - 3]);
        assert_eq!(parse(&err), vec![AddrMessage::Error(-105)]);
        assert!(parse(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn dump_request_is_a_24_byte_getaddr_dump() {
        let r = dump_request(9);
        assert_eq!(r.len(), 24);
        assert_eq!(u32_at(&r, 0), Some(24));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETADDR));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&r, 8), Some(9));
    }
}

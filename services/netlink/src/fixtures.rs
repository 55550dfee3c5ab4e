//! Replays of real kernel dumps (`tests/fixtures/*.bin`, captured as described in the README
//! there): they must parse to the expected links, addresses and routes, and every one-byte
//! corruption or truncation must give an error or a value, never a panic.

use std::net::IpAddr;

use netlink_packet_route::RouteNetlinkMessage;

use crate::frame::{Exchange, Expect, Reply, split};
use crate::ipnet::IpNet;
use crate::{address, link, route};

const LINKS: &[u8] = include_bytes!("../tests/fixtures/links.bin");
const ADDRESSES: &[u8] = include_bytes!("../tests/fixtures/addresses.bin");
const ROUTES: &[u8] = include_bytes!("../tests/fixtures/routes.bin");

/// Splits a fixture file into its length-prefixed datagrams.
fn datagrams(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    out
}

/// Feeds a fixture through an exchange for sequence number 1 and returns the dump.
fn replay(file: &[u8]) -> Vec<RouteNetlinkMessage> {
    let mut exchange = Exchange::new(1, Expect::Dump);
    for d in datagrams(file) {
        if let Some(reply) = exchange.feed(d).unwrap() {
            let Reply::Dump(items) = reply else {
                panic!("dump ended with an ACK");
            };
            return items;
        }
    }
    panic!("fixture ends before NLMSG_DONE");
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn real_link_dump() {
    let links: Vec<_> = replay(LINKS)
        .iter()
        .filter_map(link::parse)
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo", "cn1", "cn0"]);
    let lo = &links[0];
    assert_eq!((lo.index, lo.mac, lo.up, lo.mtu), (1, None, true, 65536));
    let cn0 = &links[2];
    assert_eq!(cn0.mac, Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
    assert!(cn0.up && cn0.carrier);
    assert_eq!(cn0.mtu, 1500);
}

#[test]
fn real_address_dump() {
    let addresses: Vec<_> = replay(ADDRESSES)
        .iter()
        .filter_map(address::parse)
        .collect::<Result<_, _>>()
        .unwrap();
    let cn0 = addresses
        .iter()
        .find(|a| a.net == net("192.0.2.10/24"))
        .expect("192.0.2.10/24 in the dump")
        .index;
    let on = |index: u32| -> Vec<IpNet> {
        addresses
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.net)
            .collect()
    };
    assert_eq!(on(1), [net("127.0.0.1/8"), net("::1/128")]);
    let cn0_addrs = on(cn0);
    assert!(cn0_addrs.contains(&net("2001:db8::10/64")), "{cn0_addrs:?}");
    assert!(
        cn0_addrs
            .iter()
            .any(|a| a.prefix_len() == 64 && a.addr().to_string().starts_with("fe80::")),
        "link-local address missing: {cn0_addrs:?}"
    );
}

#[test]
fn real_route_dump() {
    let routes: Vec<_> = replay(ROUTES)
        .iter()
        .filter_map(route::parse)
        .collect::<Result<_, _>>()
        .unwrap();
    let gw = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let find = |dst: &str| {
        routes
            .iter()
            .find(|r| r.destination == net(dst))
            .unwrap_or_else(|| panic!("{dst} not in {routes:?}"))
    };
    assert_eq!(find("0.0.0.0/0").gateway, gw("192.0.2.1"));
    assert_eq!(find("198.51.100.0/24").gateway, gw("192.0.2.254"));
    assert_eq!(find("192.0.2.0/24").gateway, None);
    assert_eq!(find("::/0").gateway, gw("2001:db8::1"));
    assert_eq!(find("2001:db8::/64").gateway, None);
    // Local-table routes (127.0.0.0/8 local, broadcast, ::1) are not listed.
    assert!(
        routes.iter().all(|r| !r.destination.addr().is_loopback()),
        "{routes:?}"
    );
}

/// Runs the whole parse path on one datagram; panics only if a parser panics.
/// Returns whether the framing and message decoding accepted it.
fn parse_everything(datagram: &[u8]) -> bool {
    let mut exchange = Exchange::new(1, Expect::Dump);
    let _ = exchange.feed(datagram);
    let Ok(messages) = split(datagram) else {
        return false;
    };
    for m in messages {
        if let netlink_packet_core::NetlinkPayload::InnerMessage(inner) = m.payload {
            let _ = link::parse(&inner);
            let _ = address::parse(&inner);
            let _ = route::parse(&inner);
        }
    }
    true
}

#[test]
fn corrupted_replies_never_panic() {
    let (mut accepted, mut rejected) = (0, 0);
    let mut count = |ok: bool| if ok { accepted += 1 } else { rejected += 1 };
    for file in [LINKS, ADDRESSES, ROUTES] {
        for datagram in datagrams(file) {
            // Every byte replaced by 0x00, 0xff and its own value with the top bit flipped.
            for i in 0..datagram.len() {
                for value in [0x00, 0xff, datagram[i] ^ 0x80] {
                    let mut bytes = datagram.to_vec();
                    bytes[i] = value;
                    count(parse_everything(&bytes));
                }
            }
            // The first message cut at every length, with its length field agreeing, so the
            // truncation reaches the inner decoders instead of the framing check.
            let first_len = u32::from_ne_bytes(datagram[..4].try_into().unwrap()) as usize;
            for cut in 16..first_len {
                let mut bytes = datagram[..cut].to_vec();
                bytes[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                count(parse_everything(&bytes));
            }
        }
    }
    // Both outcomes occur, so the corruptions reach past the first check.
    assert!(
        accepted > 1000 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}

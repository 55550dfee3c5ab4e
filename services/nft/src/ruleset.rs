//! The drain ruleset as nf_tables batch messages. No I/O.
//!
//! [`apply_batch`] gives `[BATCH_BEGIN, NEWTABLE, DELTABLE, NEWTABLE, NEWCHAIN, NEWRULE…,
//! BATCH_END]`: creating the table first makes the delete succeed whether or not it
//! existed, and the kernel commits the batch as one transaction, so packets see either the
//! old ruleset or the new one. [`remove_batch`] is the same without the second half.

use std::fmt;
use std::net::IpAddr;

use crate::expr::{self, Base, CmpOp};
use crate::message::{
    AF_UNSPEC, Attrs, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END, NFNL_SUBSYS_NFTABLES, NLM_F_ACK,
    NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, Request,
};

/// The table every family's drain rules live in.
pub const TABLE: &str = "cairn_vipd";
/// The base chain in [`TABLE`].
pub const CHAIN: &str = "drain";
/// The chain's priority: after conntrack (-200) so `ct state` is known, before
/// everything else in prerouting (mangle is -150 as well; order among equals is
/// registration order).
pub const PRIORITY: i32 = -150;
/// The chains that keep conntrack to the VIPs' traffic: `raw` priority, before conntrack.
pub const UNTRACKED_IN: &str = "untracked_in";
/// See [`UNTRACKED_IN`]; on the output hook.
pub const UNTRACKED_OUT: &str = "untracked_out";
/// Priority of the `untracked_*` chains (`raw`: before conntrack at -200).
pub const RAW_PRIORITY: i32 = -300;

/// `NFT_MSG_*` message types.
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

/// `NFTA_TABLE_*`.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
/// `NFTA_CHAIN_*`.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
/// `NFTA_HOOK_*`.
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
/// `NF_INET_PRE_ROUTING`.
const NF_INET_PRE_ROUTING: u32 = 0;
/// `NF_INET_LOCAL_OUT`.
const NF_INET_LOCAL_OUT: u32 = 3;
/// `NFTA_RULE_*`.
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
/// `NFTA_LIST_ELEM`.
const NFTA_LIST_ELEM: u16 = 1;

/// `IPPROTO_TCP`.
const IPPROTO_TCP: u8 = 6;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: u32 = 13;
/// TCP flag bits in that byte.
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// An address family: which nf_tables table family the rules go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 VIPs: table family `ip`.
    V4,
    /// IPv6 VIPs: table family `ip6`.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `NFPROTO_IPV4` / `NFPROTO_IPV6`.
    fn nfproto(self) -> u8 {
        match self {
            Family::V4 => 2,
            Family::V6 => 10,
        }
    }

    /// nft's name of the family (`ip`, `ip6`).
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The kernel module that provides `dup` for this family.
    pub fn dup_module(self) -> &'static str {
        match self {
            Family::V4 => "nft_dup_ipv4",
            Family::V6 => "nft_dup_ipv6",
        }
    }

    /// Offset and length of the destination address in the network header.
    fn daddr_field(self) -> (u32, u32) {
        match self {
            Family::V4 => (16, 4),
            Family::V6 => (24, 16),
        }
    }

    /// Offset and length of the source address in the network header.
    fn saddr_field(self) -> (u32, u32) {
        match self {
            Family::V4 => (12, 4),
            Family::V6 => (8, 16),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One VIP whose stray segments go to the previous holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// The virtual IP this box now holds.
    pub vip: IpAddr,
    /// The previous holder's own address on the link (the L2 next hop for the copies).
    pub to: IpAddr,
    /// The interface index to send the copies out of.
    pub ifindex: u32,
}

impl fmt::Display for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {} via link #{}", self.vip, self.to, self.ifindex)
    }
}

/// The whole desired state for one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRuleset {
    /// Which table (`ip` or `ip6`).
    pub family: Family,
    /// The active drains; may be empty (then only the conntrack rule is installed).
    pub drains: Vec<Drain>,
    /// The VIPs whose TCP connections conntrack follows (every VIP that may be drained);
    /// all other traffic of the family is `notrack`: conntrack costs memory per connection
    /// and drops packets when its table is full, and only the VIPs' connections matter
    /// here (an LB's backend connections and health checks would fill it).
    pub tracked: Vec<IpAddr>,
}

/// A ruleset that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    /// A drain's VIP is not of the ruleset's family.
    #[error("drain {drain}: VIP is not an {family} address")]
    VipFamily {
        /// The drain.
        drain: Drain,
        /// The ruleset's family.
        family: Family,
    },
    /// A drain's target is not of the ruleset's family.
    #[error("drain {drain}: target is not an {family} address")]
    TargetFamily {
        /// The drain.
        drain: Drain,
        /// The ruleset's family.
        family: Family,
    },
    /// A drain has interface index 0.
    #[error("drain {drain}: interface index 0 is not a link")]
    NoLink {
        /// The drain.
        drain: Drain,
    },
    /// A tracked address is not of the ruleset's family.
    #[error("tracked address {addr} is not an {family} address")]
    TrackedFamily {
        /// The address.
        addr: IpAddr,
        /// The ruleset's family.
        family: Family,
    },
    /// A drained VIP is not tracked: the box's own connections to it would look foreign.
    #[error("drain {drain}: the VIP is not among the tracked addresses")]
    Untracked {
        /// The drain.
        drain: Drain,
    },
    /// The same VIP appears twice (its segments can go to one place only).
    #[error("drain {drain}: VIP {vip} is drained twice", vip = drain.vip)]
    Duplicate {
        /// The second drain for that VIP.
        drain: Drain,
    },
}

impl DrainRuleset {
    /// Checks that every drain fits the family, has a link, and drains a distinct VIP.
    pub fn validate(&self) -> Result<(), RulesetError> {
        for (i, drain) in self.drains.iter().enumerate() {
            if Family::of(&drain.vip) != self.family {
                return Err(RulesetError::VipFamily {
                    drain: drain.clone(),
                    family: self.family,
                });
            }
            if Family::of(&drain.to) != self.family {
                return Err(RulesetError::TargetFamily {
                    drain: drain.clone(),
                    family: self.family,
                });
            }
            if drain.ifindex == 0 {
                return Err(RulesetError::NoLink {
                    drain: drain.clone(),
                });
            }
            if self.drains[..i].iter().any(|d| d.vip == drain.vip) {
                return Err(RulesetError::Duplicate {
                    drain: drain.clone(),
                });
            }
            if !self.tracked.is_empty() && !self.tracked.contains(&drain.vip) {
                return Err(RulesetError::Untracked {
                    drain: drain.clone(),
                });
            }
        }
        if let Some(&addr) = self.tracked.iter().find(|a| Family::of(a) != self.family) {
            return Err(RulesetError::TrackedFamily {
                addr,
                family: self.family,
            });
        }
        Ok(())
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn nft_type(message: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | message
}

fn batch_delimiter(kind: u16, label: &str) -> Request {
    Request {
        kind,
        flags: NLM_F_REQUEST,
        family: AF_UNSPEC,
        res_id: NFNL_SUBSYS_NFTABLES,
        attrs: Attrs::new(),
        label: label.to_owned(),
    }
}

fn table_request(family: Family, message: u16, flags: u16, label: &str) -> Request {
    let mut attrs = Attrs::new();
    attrs.string(NFTA_TABLE_NAME, TABLE);
    if message == NFT_MSG_NEWTABLE {
        attrs.be32(NFTA_TABLE_FLAGS, 0);
    }
    Request {
        kind: nft_type(message),
        flags: NLM_F_REQUEST | NLM_F_ACK | flags,
        family: family.nfproto(),
        res_id: 0,
        attrs,
        label: label.to_owned(),
    }
}

fn chain_request(family: Family) -> Request {
    base_chain_request(family, CHAIN, NF_INET_PRE_ROUTING, PRIORITY)
}

fn base_chain_request(family: Family, chain: &str, hooknum: u32, priority: i32) -> Request {
    let mut hook = Attrs::new();
    hook.be32(NFTA_HOOK_HOOKNUM, hooknum)
        .be32(NFTA_HOOK_PRIORITY, priority as u32);
    let mut attrs = Attrs::new();
    attrs
        .string(NFTA_CHAIN_TABLE, TABLE)
        .string(NFTA_CHAIN_NAME, chain)
        .nest(NFTA_CHAIN_HOOK, &hook)
        .be32(NFTA_CHAIN_POLICY, expr::NF_ACCEPT)
        .string(NFTA_CHAIN_TYPE, "filter");
    Request {
        kind: nft_type(NFT_MSG_NEWCHAIN),
        flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        family: family.nfproto(),
        res_id: 0,
        attrs,
        label: format!("create chain {chain}"),
    }
}

fn rule_request(family: Family, expressions: &[Attrs], label: String) -> Request {
    chain_rule_request(family, CHAIN, expressions, label)
}

fn chain_rule_request(
    family: Family,
    chain: &str,
    expressions: &[Attrs],
    label: String,
) -> Request {
    let mut list = Attrs::new();
    for e in expressions {
        list.nest(NFTA_LIST_ELEM, e);
    }
    let mut attrs = Attrs::new();
    attrs
        .string(NFTA_RULE_TABLE, TABLE)
        .string(NFTA_RULE_CHAIN, chain)
        .nest(NFTA_RULE_EXPRESSIONS, &list);
    Request {
        kind: nft_type(NFT_MSG_NEWRULE),
        flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
        family: family.nfproto(),
        res_id: 0,
        attrs,
        label,
    }
}

/// `meta l4proto tcp`.
fn is_tcp() -> [Attrs; 2] {
    [
        expr::meta(expr::REG_1, expr::META_L4PROTO),
        expr::cmp(expr::REG_1, CmpOp::Eq, &[IPPROTO_TCP]),
    ]
}

/// `ct state & <bits> != 0` (the register holds the state bits in host byte order).
fn ct_state_any(bits: u32) -> [Attrs; 3] {
    [
        expr::ct(expr::REG_1, expr::CT_STATE),
        expr::and_mask(expr::REG_1, &bits.to_ne_bytes()),
        expr::cmp(expr::REG_1, CmpOp::Neq, &0u32.to_ne_bytes()),
    ]
}

/// `tcp flags & <mask> <op> 0`.
fn tcp_flags(mask: u8, op: CmpOp) -> [Attrs; 3] {
    [
        expr::payload(expr::REG_1, Base::Transport, TCP_FLAGS_OFFSET, 1),
        expr::and_mask(expr::REG_1, &[mask]),
        expr::cmp(expr::REG_1, op, &[0]),
    ]
}

/// `ip daddr <vip>` / `ip6 daddr <vip>`.
fn daddr_is(family: Family, vip: &IpAddr) -> [Attrs; 2] {
    let (offset, len) = family.daddr_field();
    [
        expr::payload(expr::REG_1, Base::Network, offset, len),
        expr::cmp(expr::REG_1, CmpOp::Eq, &addr_bytes(vip)),
    ]
}

/// `<family> <field> != a <family> <field> != b ... notrack`: everything but the VIPs'
/// traffic goes untracked.
fn untracked_rule(field: (u32, u32), tracked: &[IpAddr]) -> Vec<Attrs> {
    let (offset, len) = field;
    let mut e = Vec::new();
    for vip in tracked {
        e.push(expr::payload(expr::REG_1, Base::Network, offset, len));
        e.push(expr::cmp(expr::REG_1, CmpOp::Neq, &addr_bytes(vip)));
    }
    e.push(expr::notrack());
    e
}

/// `dup to <to> device <ifindex> drop`.
fn dup_and_drop(drain: &Drain) -> [Attrs; 4] {
    [
        expr::immediate(expr::REG_1, &addr_bytes(&drain.to)),
        expr::immediate(expr::REG_2, &drain.ifindex.to_ne_bytes()),
        expr::dup(expr::REG_1, expr::REG_2),
        expr::verdict(expr::NF_DROP),
    ]
}

/// The always-present rule `meta l4proto tcp ct state new` (no verdict): a rule using
/// `ct` makes the kernel register conntrack's hooks for the family in this namespace, so
/// connections this box accepts are tracked before any drain starts.
pub fn conntrack_rule() -> Vec<Attrs> {
    let mut e = Vec::new();
    e.extend(is_tcp());
    e.extend(ct_state_any(expr::CT_STATE_NEW));
    e
}

/// The mid-stream rule of a drain:
/// `<family> daddr <vip> meta l4proto tcp tcp flags & syn == 0 ct state new
///  dup to <to> device <ifindex> drop`.
///
/// With `nf_conntrack_tcp_loose=1` (the default) a non-SYN segment of a connection
/// conntrack does not know is picked up as `new`; segments of connections this box
/// accepted itself are `established` and pass.
pub fn midstream_rule(family: Family, drain: &Drain) -> Vec<Attrs> {
    let mut e = Vec::new();
    e.extend(daddr_is(family, &drain.vip));
    e.extend(is_tcp());
    e.extend(tcp_flags(TCP_SYN, CmpOp::Eq));
    e.extend(ct_state_any(expr::CT_STATE_NEW));
    e.extend(dup_and_drop(drain));
    e
}

/// The closing rule of a drain:
/// `<family> daddr <vip> meta l4proto tcp tcp flags & (fin|rst) != 0
///  tcp flags & syn == 0 ct state invalid dup to <to> device <ifindex> drop`.
///
/// Conntrack cannot pick up a connection from a FIN or RST (`tcp_new` refuses them), so
/// those segments of a drained connection are `invalid`, not `new`; without this rule
/// they would reach this box's TCP stack, which answers a FIN with a RST and the old
/// holder would never see the close.
pub fn closing_rule(family: Family, drain: &Drain) -> Vec<Attrs> {
    let mut e = Vec::new();
    e.extend(daddr_is(family, &drain.vip));
    e.extend(is_tcp());
    e.extend(tcp_flags(TCP_FIN | TCP_RST, CmpOp::Neq));
    e.extend(tcp_flags(TCP_SYN, CmpOp::Eq));
    e.extend(ct_state_any(expr::CT_STATE_INVALID));
    e.extend(dup_and_drop(drain));
    e
}

/// The batch that replaces the family's table with exactly `ruleset`.
pub fn apply_batch(ruleset: &DrainRuleset) -> Result<Vec<Request>, RulesetError> {
    ruleset.validate()?;
    let family = ruleset.family;
    let mut batch = remove_requests(family);
    let end = batch.pop();
    batch.push(table_request(
        family,
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        &format!("create table {family} {TABLE}"),
    ));
    if !ruleset.tracked.is_empty() {
        let addrs = ruleset
            .tracked
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for (chain, hook, field, dir) in [
            (
                UNTRACKED_IN,
                NF_INET_PRE_ROUTING,
                family.daddr_field(),
                "to",
            ),
            (
                UNTRACKED_OUT,
                NF_INET_LOCAL_OUT,
                family.saddr_field(),
                "from",
            ),
        ] {
            batch.push(base_chain_request(family, chain, hook, RAW_PRIORITY));
            batch.push(chain_rule_request(
                family,
                chain,
                &untracked_rule(field, &ruleset.tracked),
                format!("add notrack rule for traffic not {dir} {addrs}"),
            ));
        }
    }
    batch.push(chain_request(family));
    batch.push(rule_request(
        family,
        &conntrack_rule(),
        "add conntrack rule".to_owned(),
    ));
    for drain in &ruleset.drains {
        batch.push(rule_request(
            family,
            &midstream_rule(family, drain),
            format!("add mid-stream rule for {drain}"),
        ));
        batch.push(rule_request(
            family,
            &closing_rule(family, drain),
            format!("add closing rule for {drain}"),
        ));
    }
    batch.extend(end);
    Ok(batch)
}

fn remove_requests(family: Family) -> Vec<Request> {
    vec![
        batch_delimiter(NFNL_MSG_BATCH_BEGIN, "begin batch"),
        table_request(
            family,
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            &format!("ensure table {family} {TABLE}"),
        ),
        table_request(
            family,
            NFT_MSG_DELTABLE,
            0,
            &format!("delete table {family} {TABLE}"),
        ),
        batch_delimiter(NFNL_MSG_BATCH_END, "end batch"),
    ]
}

/// The batch that deletes the family's table; it succeeds whether or not the table exists.
pub fn remove_batch(family: Family) -> Vec<Request> {
    remove_requests(family)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        Attr, NFGENMSG_LEN, NLA_F_NESTED, NLMSG_HDRLEN, encode_batch, split_attrs, split_messages,
    };
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().expect("valid literal"))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().expect("valid literal"))
    }

    fn drain4() -> Drain {
        Drain {
            vip: v4("192.0.2.100"),
            to: v4("192.0.2.12"),
            ifindex: 3,
        }
    }

    /// Decoded view of an expression: its name and its data attributes.
    #[derive(Debug, PartialEq, Eq)]
    enum Value {
        U32(u32),
        Bytes(Vec<u8>),
        Nest(Vec<(u16, Value)>),
    }

    /// Decodes a whole attribute tree, checking every nest recursively. Nested attributes
    /// must carry NLA_F_NESTED; 4-byte payloads are shown as big-endian numbers.
    fn tree(bytes: &[u8]) -> Vec<(u16, Value)> {
        split_attrs(bytes)
            .expect("attributes parse")
            .into_iter()
            .map(
                |Attr {
                     kind,
                     nested,
                     payload,
                 }| {
                    let value = if nested {
                        Value::Nest(tree(payload))
                    } else if payload.len() == 4 {
                        Value::U32(u32::from_be_bytes(payload.try_into().expect("4 bytes")))
                    } else {
                        Value::Bytes(payload.to_vec())
                    };
                    (kind, value)
                },
            )
            .collect()
    }

    fn name(value: &Value) -> String {
        match value {
            Value::Bytes(b) => {
                String::from_utf8(b.split(|c| *c == 0).next().expect("some").to_vec())
                    .expect("utf8")
            }
            Value::U32(n) => String::from_utf8(
                n.to_be_bytes()
                    .split(|c| *c == 0)
                    .next()
                    .expect("some")
                    .to_vec(),
            )
            .expect("utf8"),
            Value::Nest(_) => panic!("a name is not a nest"),
        }
    }

    /// `nft --debug=netlink`-style summary of one rule's expressions.
    fn summary(expressions: &[Attrs]) -> Vec<String> {
        expressions
            .iter()
            .map(|e| {
                let t = tree(e.as_bytes());
                assert_eq!(t.len(), 2, "NAME and DATA");
                assert_eq!(t[0].0, 1);
                assert_eq!(t[1].0, 2);
                let Value::Nest(data) = &t[1].1 else {
                    panic!("DATA is nested")
                };
                format!("{} {:?}", name(&t[0].1), data)
            })
            .collect()
    }

    fn data(bytes: &[u8]) -> Value {
        Value::Nest(vec![(1, Value::Bytes(bytes.to_vec()))])
    }

    #[test]
    fn midstream_rule_matches_nft_layout() {
        let rule = summary(&midstream_rule(Family::V4, &drain4()));
        let s = |name: &str, v: Vec<(u16, Value)>| format!("{name} {v:?}");
        let u = Value::U32;
        let expected = vec![
            // [ payload load 4b @ network header + 16 => reg 1 ]
            s("payload", vec![(1, u(1)), (2, u(1)), (3, u(16)), (4, u(4))]),
            // [ cmp eq reg 1 0x640200c0 ] (192.0.2.100)
            s(
                "cmp",
                vec![
                    (1, u(1)),
                    (2, u(0)),
                    (3, Value::Nest(vec![(1, u(0xc000_0264))])),
                ],
            ),
            // [ meta load l4proto => reg 1 ]
            s("meta", vec![(1, u(1)), (2, u(16))]),
            // [ cmp eq reg 1 0x00000006 ]
            s("cmp", vec![(1, u(1)), (2, u(0)), (3, data(&[6]))]),
            // [ payload load 1b @ transport header + 13 => reg 1 ]
            s("payload", vec![(1, u(1)), (2, u(2)), (3, u(13)), (4, u(1))]),
            // [ bitwise reg 1 = ( reg 1 & 0x02 ) ^ 0x00 ]
            s(
                "bitwise",
                vec![
                    (1, u(1)),
                    (2, u(1)),
                    (3, u(1)),
                    (4, data(&[2])),
                    (5, data(&[0])),
                ],
            ),
            // [ cmp eq reg 1 0x00 ]
            s("cmp", vec![(1, u(1)), (2, u(0)), (3, data(&[0]))]),
            // [ ct load state => reg 1 ]
            s("ct", vec![(1, u(1)), (2, u(0))]),
            // [ bitwise reg 1 = ( reg 1 & 0x00000008 ) ^ 0x00000000 ] (host order)
            s(
                "bitwise",
                vec![
                    (1, u(1)),
                    (2, u(1)),
                    (3, u(4)),
                    (
                        4,
                        Value::Nest(vec![(1, u(u32::from_be_bytes(8u32.to_ne_bytes())))]),
                    ),
                    (5, Value::Nest(vec![(1, u(0))])),
                ],
            ),
            // [ cmp neq reg 1 0x00000000 ]
            s(
                "cmp",
                vec![(1, u(1)), (2, u(1)), (3, Value::Nest(vec![(1, u(0))]))],
            ),
            // [ immediate reg 1 0x0c0200c0 ] (192.0.2.12)
            s(
                "immediate",
                vec![(1, u(1)), (2, Value::Nest(vec![(1, u(0xc000_020c))]))],
            ),
            // [ immediate reg 2 0x00000003 ] (ifindex, host order)
            s(
                "immediate",
                vec![
                    (1, u(2)),
                    (
                        2,
                        Value::Nest(vec![(1, u(u32::from_be_bytes(3u32.to_ne_bytes())))]),
                    ),
                ],
            ),
            // [ dup sreg_addr 1 sreg_dev 2 ]
            s("dup", vec![(1, u(1)), (2, u(2))]),
            // [ immediate reg 0 drop ]
            s(
                "immediate",
                vec![
                    (1, u(0)),
                    (2, Value::Nest(vec![(2, Value::Nest(vec![(1, u(0))]))])),
                ],
            ),
        ];
        assert_eq!(rule, expected);
    }

    #[test]
    fn ipv6_rule_loads_16_bytes_at_24() {
        let drain = Drain {
            vip: v6("2001:db8::100"),
            to: v6("2001:db8::12"),
            ifindex: 7,
        };
        let rule = summary(&midstream_rule(Family::V6, &drain));
        assert_eq!(
            rule[0],
            format!(
                "payload {:?}",
                vec![
                    (1, Value::U32(1)),
                    (2, Value::U32(1)),
                    (3, Value::U32(24)),
                    (4, Value::U32(16))
                ]
            )
        );
        let vip = v6("2001:db8::100");
        assert_eq!(
            rule[1],
            format!(
                "cmp {:?}",
                vec![
                    (1, Value::U32(1)),
                    (2, Value::U32(0)),
                    (3, data(&addr_bytes(&vip)))
                ]
            )
        );
        assert!(rule[10].contains(&format!("{:?}", addr_bytes(&v6("2001:db8::12")))));
    }

    #[test]
    fn closing_rule_checks_fin_rst_and_invalid() {
        let rule = summary(&closing_rule(Family::V4, &drain4()));
        assert_eq!(rule.len(), 17);
        assert!(
            rule[5].contains(&format!("{:?}", data(&[0x05]))),
            "{}",
            rule[5]
        );
        assert!(
            rule[6].starts_with("cmp [(1, U32(1)), (2, U32(1))"),
            "{}",
            rule[6]
        );
        let invalid = u32::from_be_bytes(1u32.to_ne_bytes());
        assert!(
            rule[11].contains(&format!("U32({invalid})")),
            "{}",
            rule[11]
        );
    }

    #[test]
    fn batch_shape_and_framing() {
        let ruleset = DrainRuleset {
            family: Family::V4,
            drains: vec![drain4()],
            tracked: vec![],
        };
        let batch = apply_batch(&ruleset).expect("valid");
        let bytes = encode_batch(&batch, 100);
        let messages = split_messages(&bytes).expect("framing parses");
        let kinds: Vec<u16> = messages.iter().map(|(h, _)| h.kind).collect();
        assert_eq!(
            kinds,
            vec![
                0x10, 0x0a00, 0x0a02, 0x0a00, 0x0a03, 0x0a06, 0x0a06, 0x0a06, 0x11
            ]
        );
        let seqs: Vec<u32> = messages.iter().map(|(h, _)| h.seq).collect();
        assert_eq!(seqs, (100..109).collect::<Vec<_>>());
        for (i, (header, payload)) in messages.iter().enumerate() {
            // nfgenmsg: family, version 0, res_id.
            let delimiter = i == 0 || i == messages.len() - 1;
            let expected_family = if delimiter { 0 } else { 2 };
            let expected_res = if delimiter { [0, 10] } else { [0, 0] };
            assert_eq!(payload[0], expected_family, "message {i}");
            assert_eq!(payload[1], 0);
            assert_eq!(&payload[2..4], &expected_res);
            assert_eq!(header.len as usize, NLMSG_HDRLEN + payload.len());
            let ack = header.flags & NLM_F_ACK != 0;
            assert_eq!(ack, !delimiter, "message {i} asks for an ACK");
            // Every attribute tree decodes to the end.
            tree(&payload[NFGENMSG_LEN..]);
        }
        assert_eq!(
            messages[3].0.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        );
        assert_eq!(
            messages[5].0.flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        );
    }

    #[test]
    fn chain_attributes() {
        let request = chain_request(Family::V6);
        assert_eq!(request.family, 10);
        let t = tree(request.attrs.as_bytes());
        assert_eq!(
            t,
            vec![
                (1, Value::Bytes(b"cairn_vipd\0".to_vec())),
                (3, Value::Bytes(b"drain\0".to_vec())),
                (
                    4,
                    Value::Nest(vec![(1, Value::U32(0)), (2, Value::U32(0xffff_ff6a))])
                ),
                (5, Value::U32(1)),
                (7, Value::Bytes(b"filter\0".to_vec())),
            ]
        );
        // The hook nest is flagged nested on the wire.
        let raw = request.attrs.as_bytes();
        let hook = split_attrs(raw).expect("parses")[2];
        assert!(hook.nested);
        assert_eq!(
            // TABLE "cairn_vipd\0" takes 16 bytes, NAME "drain\0" 12: HOOK starts at 28.
            u16::from_ne_bytes([raw[28 + 2], raw[28 + 3]]) & NLA_F_NESTED,
            NLA_F_NESTED
        );
    }

    #[test]
    fn table_and_rule_attributes() {
        let batch = remove_batch(Family::V4);
        assert_eq!(batch.len(), 4);
        assert_eq!(
            tree(batch[1].attrs.as_bytes()),
            vec![
                (1, Value::Bytes(b"cairn_vipd\0".to_vec())),
                (2, Value::U32(0))
            ]
        );
        assert_eq!(
            tree(batch[2].attrs.as_bytes()),
            vec![(1, Value::Bytes(b"cairn_vipd\0".to_vec()))]
        );
        let rule = rule_request(Family::V4, &conntrack_rule(), "x".into());
        let t = tree(rule.attrs.as_bytes());
        assert_eq!(t[0], (1, Value::Bytes(b"cairn_vipd\0".to_vec())));
        assert_eq!(t[1], (2, Value::Bytes(b"drain\0".to_vec())));
        let Value::Nest(list) = &t[2].1 else {
            panic!("expressions are nested")
        };
        assert_eq!(t[2].0, 4);
        assert_eq!(list.len(), 5);
        assert!(list.iter().all(|(kind, _)| *kind == 1));
    }

    #[test]
    fn empty_ruleset_has_only_conntrack_rule() {
        let batch = apply_batch(&DrainRuleset {
            family: Family::V6,
            drains: vec![],
            tracked: vec![],
        })
        .expect("valid");
        assert_eq!(batch.len(), 7);
        assert_eq!(batch[5].label, "add conntrack rule");
    }

    #[test]
    fn validation_rejects_mixed_families_zero_link_and_duplicates() {
        let mut ruleset = DrainRuleset {
            family: Family::V6,
            drains: vec![drain4()],
            tracked: vec![],
        };
        assert!(matches!(
            apply_batch(&ruleset),
            Err(RulesetError::VipFamily { .. })
        ));
        ruleset.family = Family::V4;
        ruleset.drains[0].to = v6("2001:db8::1");
        assert!(matches!(
            ruleset.validate(),
            Err(RulesetError::TargetFamily { .. })
        ));
        ruleset.drains[0] = Drain {
            ifindex: 0,
            ..drain4()
        };
        assert!(matches!(
            ruleset.validate(),
            Err(RulesetError::NoLink { .. })
        ));
        ruleset.drains = vec![drain4(), drain4()];
        let err = ruleset.validate().expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "drain 192.0.2.100 to 192.0.2.12 via link #3: VIP 192.0.2.100 is drained twice"
        );
    }

    #[test]
    fn tracked_vips_get_notrack_chains_for_everything_else() {
        let vip = drain4().vip;
        let batch = apply_batch(&DrainRuleset {
            family: Family::V4,
            drains: vec![drain4()],
            tracked: vec![vip],
        })
        .expect("valid");
        let labels: Vec<&str> = batch.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels[4..8],
            [
                "create chain untracked_in",
                "add notrack rule for traffic not to 192.0.2.100",
                "create chain untracked_out",
                "add notrack rule for traffic not from 192.0.2.100",
            ]
        );
        // raw priority on prerouting and output.
        let hook = |r: &Request| {
            let t = tree(r.attrs.as_bytes());
            t.into_iter().find(|(k, _)| *k == 4).map(|(_, v)| v)
        };
        assert_eq!(
            hook(&batch[4]),
            Some(Value::Nest(vec![
                (1, Value::U32(0)),
                (2, Value::U32(0xffff_fed4))
            ]))
        );
        assert_eq!(
            hook(&batch[6]),
            Some(Value::Nest(vec![
                (1, Value::U32(3)),
                (2, Value::U32(0xffff_fed4))
            ]))
        );
        // A drained VIP must be tracked; tracked addresses must fit the family.
        let mut bad = DrainRuleset {
            family: Family::V4,
            drains: vec![drain4()],
            tracked: vec!["192.0.2.101".parse().expect("literal")],
        };
        assert!(matches!(
            bad.validate(),
            Err(RulesetError::Untracked { .. })
        ));
        bad.tracked = vec![vip, v6("2001:db8::1")];
        assert!(matches!(
            bad.validate(),
            Err(RulesetError::TrackedFamily { .. })
        ));
    }
}

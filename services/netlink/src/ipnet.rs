//! [`IpNet`]: an interface address with its prefix length (`192.0.2.10/24`, `2001:db8::1/64`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a string or an address/prefix pair is not a valid [`IpNet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// The text has no `/prefix` part.
    #[error("{text:?} needs a prefix length, like 192.0.2.10/24 or 2001:db8::1/64")]
    MissingPrefix {
        /// The text as given.
        text: String,
    },
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{text:?} is not an IP address")]
    BadAddress {
        /// The address part as given.
        text: String,
    },
    /// The part after `/` is not a decimal number.
    #[error("{text:?} is not a prefix length")]
    BadPrefix {
        /// The prefix part as given.
        text: String,
    },
    /// The prefix is longer than the address (32 bits for IPv4, 128 for IPv6).
    #[error("prefix /{prefix_len} is longer than {max} bits for {addr}")]
    PrefixTooLong {
        /// The address.
        addr: IpAddr,
        /// The prefix length given.
        prefix_len: u8,
        /// The longest prefix for this address family.
        max: u8,
    },
}

/// An IP address with a prefix length, as an interface address or a route destination.
///
/// The address may have host bits set (`192.0.2.10/24` is an interface address);
/// [`IpNet::network`] clears them. The prefix length is checked against the family, so a
/// value of this type can always be sent to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// Makes an `IpNet`, refusing prefixes longer than the address family allows.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, IpNetError> {
        let max = max_prefix_len(addr);
        if prefix_len > max {
            return Err(IpNetError::PrefixTooLong {
                addr,
                prefix_len,
                max,
            });
        }
        Ok(Self { addr, prefix_len })
    }

    /// The whole address space of one family (`0.0.0.0/0` or `::/0`): the default route.
    pub fn default_for(ipv6: bool) -> Self {
        let addr = if ipv6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Self {
            addr,
            prefix_len: 0,
        }
    }

    /// The address as given, host bits included.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is an IPv6 network.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// The same prefix with the host bits cleared (`192.0.2.10/24` → `192.0.2.0/24`).
    pub fn network(&self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(self.prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(self.prefix_len))),
        };
        Self {
            addr,
            prefix_len: self.prefix_len,
        }
    }

    /// Whether the address has no host bits set, as the kernel requires of a route destination.
    pub fn is_network(&self) -> bool {
        self.network().addr == self.addr
    }

    /// Whether `ip` lies inside this prefix (always false across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = v4_mask(self.prefix_len);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = v6_mask(self.prefix_len);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// The IPv4 directed broadcast address (all host bits set), for prefixes up to /30;
    /// `None` for /31, /32 (RFC 3021 point-to-point and host addresses) and for IPv6.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix_len <= 30 => {
                Some(Ipv4Addr::from(u32::from(a) | !v4_mask(self.prefix_len)))
            }
            _ => None,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(text: &str) -> Result<Self, IpNetError> {
        let (addr_text, prefix_text) =
            text.split_once('/')
                .ok_or_else(|| IpNetError::MissingPrefix {
                    text: text.to_owned(),
                })?;
        let addr: IpAddr = addr_text.parse().map_err(|_| IpNetError::BadAddress {
            text: addr_text.to_owned(),
        })?;
        // `u8::from_str` accepts a leading `+`; a prefix is plain digits only.
        let digits_only = !prefix_text.is_empty()
            && prefix_text.len() <= 3
            && prefix_text.bytes().all(|b| b.is_ascii_digit());
        let prefix_len = digits_only
            .then(|| prefix_text.parse::<u8>().ok())
            .flatten()
            .ok_or_else(|| IpNetError::BadPrefix {
                text: prefix_text.to_owned(),
            })?;
        Self::new(addr, prefix_len)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// 32 for IPv4, 128 for IPv6.
pub(crate) fn max_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv6() { 128 } else { 32 }
}

fn v4_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

fn v6_mask(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints_both_families() {
        let v4 = net("192.0.2.10/24");
        assert_eq!(v4.addr(), "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(v4.prefix_len(), 24);
        assert!(!v4.is_ipv6());
        assert_eq!(v4.to_string(), "192.0.2.10/24");

        let v6 = net("2001:db8::1/64");
        assert!(v6.is_ipv6());
        assert_eq!(v6.prefix_len(), 64);
        assert_eq!(v6.to_string(), "2001:db8::1/64");
        assert_eq!(net("2001:DB8:0::1/128").to_string(), "2001:db8::1/128");
    }

    #[test]
    fn rejects_malformed_text() {
        assert!(matches!(
            "192.0.2.10".parse::<IpNet>(),
            Err(IpNetError::MissingPrefix { .. })
        ));
        assert!(matches!(
            "192.0.2.300/24".parse::<IpNet>(),
            Err(IpNetError::BadAddress { .. })
        ));
        assert!(matches!(
            "eth0/24".parse::<IpNet>(),
            Err(IpNetError::BadAddress { .. })
        ));
        for prefix in ["", "+24", "-1", " 24", "24 ", "0x10", "0024", "256"] {
            let text = format!("192.0.2.10/{prefix}");
            assert!(
                matches!(text.parse::<IpNet>(), Err(IpNetError::BadPrefix { .. })),
                "{text:?} should be a bad prefix"
            );
        }
        assert_eq!(
            "192.0.2.10/33".parse::<IpNet>(),
            Err(IpNetError::PrefixTooLong {
                addr: "192.0.2.10".parse().unwrap(),
                prefix_len: 33,
                max: 32
            })
        );
        assert!(matches!(
            "2001:db8::1/129".parse::<IpNet>(),
            Err(IpNetError::PrefixTooLong { max: 128, .. })
        ));
        assert!("2001:db8::1/128".parse::<IpNet>().is_ok());
        assert!("0.0.0.0/0".parse::<IpNet>().is_ok());
    }

    #[test]
    fn error_text_names_the_input() {
        let e = "192.0.2.10".parse::<IpNet>().unwrap_err();
        assert!(e.to_string().contains("\"192.0.2.10\""), "{e}");
        let e = "192.0.2.10/40".parse::<IpNet>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "prefix /40 is longer than 32 bits for 192.0.2.10"
        );
    }

    #[test]
    fn network_clears_host_bits() {
        assert_eq!(net("192.0.2.10/24").network(), net("192.0.2.0/24"));
        assert_eq!(net("192.0.2.10/32").network(), net("192.0.2.10/32"));
        assert_eq!(net("192.0.2.10/0").network(), net("0.0.0.0/0"));
        assert_eq!(net("2001:db8::1/64").network(), net("2001:db8::/64"));
        assert_eq!(net("2001:db8:1:2::1/32").network(), net("2001:db8::/32"));
        assert!(net("198.51.100.0/24").is_network());
        assert!(!net("198.51.100.1/24").is_network());
    }

    #[test]
    fn contains_respects_prefix_and_family() {
        let n = net("192.0.2.10/24");
        assert!(n.contains("192.0.2.255".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(!n.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("203.0.113.9".parse().unwrap()));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn broadcast_only_for_short_ipv4_prefixes() {
        assert_eq!(
            net("192.0.2.10/24").broadcast(),
            Some(Ipv4Addr::new(192, 0, 2, 255))
        );
        assert_eq!(
            net("198.51.100.5/30").broadcast(),
            Some(Ipv4Addr::new(198, 51, 100, 7))
        );
        assert_eq!(net("198.51.100.5/31").broadcast(), None);
        assert_eq!(net("198.51.100.5/32").broadcast(), None);
        assert_eq!(net("2001:db8::1/64").broadcast(), None);
    }

    #[test]
    fn new_checks_the_family_limit() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(IpNet::new(v4, 32).is_ok());
        assert!(IpNet::new(v4, 33).is_err());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(IpNet::new(v6, 128).is_ok());
        assert!(IpNet::new(v6, 129).is_err());
        assert_eq!(IpNet::default_for(false), net("0.0.0.0/0"));
        assert_eq!(IpNet::default_for(true), net("::/0"));
    }
}

//! The node's network, from its site-file entry, through rtnetlink: loopback
//! up, the interface with the node's MAC up with its addresses, and the
//! default route.

use std::net::IpAddr;

use cairn_netlink::{IpNet, Netlink, NetlinkError};
use cairn_site::{Node, Site};

/// Why the network could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// No interface has the node's MAC.
    #[error("node {node:?}: no interface has MAC {mac}")]
    NoInterface {
        /// Node name.
        node: String,
        /// Its MAC.
        mac: String,
    },
    /// An address from the site file is not valid for netlink.
    #[error("node {node:?}: address {addr}: {reason}")]
    Address {
        /// Node name.
        node: String,
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// What was configured, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// Interface name.
    pub interface: String,
    /// Addresses now on it.
    pub addresses: Vec<String>,
    /// Default gateway, if one was set.
    pub gateway: Option<IpAddr>,
}

/// Configures `node`'s interface (idempotent: safe to run again).
pub fn configure(nl: &mut Netlink, site: &Site, node: &Node) -> Result<Configured, NetworkError> {
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_up(lo.index)?;
    }
    let Some(mac) = node.mac else {
        return Err(NetworkError::NoInterface {
            node: node.name.clone(),
            mac: "(none in the site file)".into(),
        });
    };
    let link = nl
        .link_by_mac(&mac.0)?
        .ok_or_else(|| NetworkError::NoInterface {
            node: node.name.clone(),
            mac: mac.to_string(),
        })?;
    nl.set_up(link.index)?;
    let mut addresses = Vec::new();
    for a in &node.addresses {
        let net = IpNet::new(a.addr, a.prefix).map_err(|e| NetworkError::Address {
            node: node.name.clone(),
            addr: a.to_string(),
            reason: e.to_string(),
        })?;
        nl.ensure_address(link.index, net)?;
        addresses.push(a.to_string());
    }
    let gateway = site
        .network
        .gateway
        .filter(|gw| node.addresses.iter().any(|a| a.contains(*gw)));
    if let Some(gw) = gateway {
        nl.ensure_route(Some(IpNet::default_for(gw.is_ipv6())), Some(gw), link.index)?;
    }
    Ok(Configured {
        interface: link.name,
        addresses,
        gateway,
    })
}

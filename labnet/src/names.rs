//! Names of the namespaces and links a lab creates, and their validation (no I/O).
//!
//! Namespace names are `<lab>-<node>` (files under `/run/netns`, no length limit that
//! matters); link names live inside the lab's own namespaces, so they only have to be
//! unique per lab and fit `IFNAMSIZ` (15 bytes).

use std::sync::atomic::{AtomicU32, Ordering};

/// Longest link name the kernel accepts (`IFNAMSIZ` minus the NUL).
pub const IFNAME_MAX: usize = 15;
/// Longest node or tap name: the bridge-side link is `v-<node>` and must fit [`IFNAME_MAX`].
pub const NODE_NAME_MAX: usize = IFNAME_MAX - 2;
/// Name of the bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";
/// Name of the node's end of its veth pair, inside the node namespace.
pub const NODE_IFACE: &str = "eth0";
/// Suffix of the switch namespace: `<lab>-sw`.
pub const SWITCH_SUFFIX: &str = "sw";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than allowed.
    #[error("{what} name {name:?}: must be 1..={max} characters")]
    Length {
        /// What the name is for (node, tap, lab).
        what: &'static str,
        /// The refused name.
        name: String,
        /// Longest allowed.
        max: usize,
    },
    /// Contains something other than `a-z`, `0-9` and `-`, or starts with `-`.
    #[error("{what} name {name:?}: only a-z, 0-9 and '-' (not first) are allowed")]
    Charset {
        /// What the name is for.
        what: &'static str,
        /// The refused name.
        name: String,
    },
    /// `sw` is the switch namespace's suffix.
    #[error("node name {0:?} is reserved for the switch namespace")]
    Reserved(String),
}

/// Checks a node, tap or lab name: short, lowercase ASCII, digits and `-`.
pub fn validate(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() || name.len() > max {
        return Err(NameError::Length {
            what,
            name: name.to_owned(),
            max,
        });
    }
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !ok {
        return Err(NameError::Charset {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Checks a node name (also refuses the switch suffix).
pub fn validate_node(name: &str) -> Result<(), NameError> {
    validate("node", name, NODE_NAME_MAX)?;
    if name == SWITCH_SUFFIX {
        return Err(NameError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// A lab name unique in this process and across processes: `<tag><pid>x<seq>`.
pub fn unique_lab_name(tag: &str, pid: u32) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{pid}x{seq}")
}

/// The namespace of `node` in lab `lab`.
pub fn netns(lab: &str, node: &str) -> String {
    format!("{lab}-{node}")
}

/// The bridge-side link of `node` (in the switch namespace).
pub fn port(node: &str) -> String {
    format!("v-{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_fit_ifnamsiz_through_the_port_name() {
        let longest = "a".repeat(NODE_NAME_MAX);
        validate_node(&longest).unwrap();
        assert_eq!(port(&longest).len(), IFNAME_MAX);
        assert!(matches!(
            validate_node(&"a".repeat(NODE_NAME_MAX + 1)),
            Err(NameError::Length { .. })
        ));
    }

    #[test]
    fn refuses_odd_characters_and_the_switch_name() {
        assert!(matches!(
            validate_node("Node"),
            Err(NameError::Charset { .. })
        ));
        assert!(matches!(
            validate_node("-a"),
            Err(NameError::Charset { .. })
        ));
        assert!(matches!(
            validate_node("a b"),
            Err(NameError::Charset { .. })
        ));
        assert!(matches!(validate_node(""), Err(NameError::Length { .. })));
        assert_eq!(validate_node("sw"), Err(NameError::Reserved("sw".into())));
        validate_node("node-1").unwrap();
    }

    #[test]
    fn lab_names_differ_per_call() {
        let a = unique_lab_name("cl", 42);
        let b = unique_lab_name("cl", 42);
        assert_ne!(a, b);
        assert!(a.starts_with("cl42x"));
        assert_eq!(netns("lab", "a"), "lab-a");
    }
}

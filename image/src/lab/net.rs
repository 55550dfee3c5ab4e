//! The lab's network, made with iproute2 (`ip`, `bridge`): named namespaces
//! (so later commands and `down` find them again), a bridge with taps in the
//! switch namespace, veth pairs to the client and external nodes, and reads of
//! neighbour and bridge tables. Output parsers are pure and unit-tested.

use std::net::IpAddr;
use std::process::Command;

/// An iproute2 command failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The program could not be run at all.
    #[error("cannot run {program}: {source} (is iproute2 installed?)")]
    Spawn {
        /// `ip` or `bridge`.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Runs `program args…` and returns its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n <ns> args…`.
fn ip_in(ns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Names of all named network namespaces.
pub fn list_netns() -> Result<Vec<String>, NetError> {
    Ok(parse_netns_list(&run("ip", &["netns", "list"])?))
}

/// Parses `ip netns list` (`name (id: 3)` or `name` per line).
pub fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Creates a namespace with its loopback up.
pub fn add_netns(ns: &str) -> Result<(), NetError> {
    run("ip", &["netns", "add", ns])?;
    ip_in(ns, &["link", "set", "lo", "up"]).map(drop)
}

/// Deletes a namespace (its links go with it).
pub fn del_netns(ns: &str) -> Result<(), NetError> {
    run("ip", &["netns", "del", ns]).map(drop)
}

/// Pids of the processes inside a namespace.
pub fn netns_pids(ns: &str) -> Result<Vec<u32>, NetError> {
    Ok(run("ip", &["netns", "pids", ns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// A bridge named `bridge`, up, in `ns`. No STP and no forwarding delay, so
/// ports forward at once.
pub fn add_bridge(ns: &str, bridge: &str) -> Result<(), NetError> {
    ip_in(
        ns,
        &[
            "link",
            "add",
            bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ],
    )?;
    ip_in(ns, &["link", "set", bridge, "up"]).map(drop)
}

/// A persistent tap device on the bridge, up, for a QEMU NIC in the same namespace.
pub fn add_tap(ns: &str, bridge: &str, tap: &str) -> Result<(), NetError> {
    ip_in(ns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    ip_in(ns, &["link", "set", tap, "master", bridge])?;
    ip_in(ns, &["link", "set", tap, "up"]).map(drop)
}

/// A veth pair: `port` on the bridge in `switch`, `iface` in `node_ns` with
/// `addresses`; both up.
pub fn add_veth(
    switch: &str,
    bridge: &str,
    port: &str,
    node_ns: &str,
    iface: &str,
    addresses: &[String],
) -> Result<(), NetError> {
    ip_in(
        switch,
        &[
            "link", "add", port, "type", "veth", "peer", "name", iface, "netns", node_ns,
        ],
    )?;
    ip_in(switch, &["link", "set", port, "master", bridge])?;
    ip_in(switch, &["link", "set", port, "up"])?;
    for a in addresses {
        ip_in(node_ns, &["addr", "add", a, "dev", iface])?;
    }
    ip_in(node_ns, &["link", "set", iface, "up"]).map(drop)
}

/// Sets a link in `ns` up or down (cut/heal of an external node's cable).
pub fn set_link(ns: &str, dev: &str, up: bool) -> Result<(), NetError> {
    ip_in(ns, &["link", "set", dev, if up { "up" } else { "down" }]).map(drop)
}

/// A neighbour table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Link-layer address, lower case.
    pub mac: String,
    /// `REACHABLE`, `STALE`, `DELAY`, …
    pub state: String,
}

/// The neighbour entry for `ip` in `ns`, if one with a link-layer address exists.
pub fn neighbour(ns: &str, ip: IpAddr) -> Result<Option<Neighbour>, NetError> {
    let text = ip_in(ns, &["neigh", "show", "to", &ip.to_string()])?;
    Ok(parse_neighbour(&text))
}

/// Parses `ip neigh show to <ip>`: `192.0.2.100 dev eth0 lladdr 52:54:00:c0:00:11 REACHABLE`.
pub fn parse_neighbour(text: &str) -> Option<Neighbour> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "lladdr")?;
        let mac = words.get(i + 1)?.to_ascii_lowercase();
        let state = words.last().map(|s| s.to_string()).unwrap_or_default();
        Some(Neighbour { mac, state })
    })
}

/// The bridge port on which `mac` was learnt, in `ns`.
pub fn fdb_port(ns: &str, bridge: &str, mac: &str) -> Result<Option<String>, NetError> {
    let text = run("bridge", &["-n", ns, "fdb", "show", "br", bridge])?;
    Ok(parse_fdb_port(&text, mac))
}

/// Parses `bridge fdb show`: `52:54:00:c0:00:11 dev tap0 master br0` → `tap0`
/// (learnt entries only, not the ports' own `permanent` ones).
pub fn parse_fdb_port(text: &str, mac: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.first()?.eq_ignore_ascii_case(mac) || words.contains(&"permanent") {
            return None;
        }
        let i = words.iter().position(|w| *w == "dev")?;
        words.get(i + 1).map(|s| s.to_string())
    })
}

/// Whether a host program can be found on `PATH` (or is an existing path).
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_with_and_without_ids() {
        assert_eq!(
            parse_netns_list("cl1-sw (id: 3)\ncl1-client\n\n"),
            ["cl1-sw", "cl1-client"]
        );
    }

    #[test]
    fn neighbour_entries() {
        let n = parse_neighbour("192.0.2.100 dev eth0 lladdr 52:54:00:C0:00:11 REACHABLE\n");
        assert_eq!(
            n,
            Some(Neighbour {
                mac: "52:54:00:c0:00:11".into(),
                state: "REACHABLE".into()
            })
        );
        assert_eq!(parse_neighbour("192.0.2.100 dev eth0 FAILED\n"), None);
        assert_eq!(parse_neighbour(""), None);
    }

    #[test]
    fn fdb_ports_skip_permanent_entries() {
        let text = "33:33:00:00:00:01 dev tap0 self permanent\n\
                    52:54:00:c0:00:11 dev tap0 master br0 permanent\n\
                    52:54:00:c0:00:11 dev tap1 master br0\n\
                    00:00:5e:00:01:33 dev tap2 master br0\n";
        assert_eq!(
            parse_fdb_port(text, "52:54:00:C0:00:11"),
            Some("tap1".into())
        );
        assert_eq!(
            parse_fdb_port(text, "00:00:5e:00:01:33"),
            Some("tap2".into())
        );
        assert_eq!(parse_fdb_port(text, "52:54:00:00:00:99"), None);
    }

    #[test]
    fn programs_on_path() {
        assert!(have_program("sh"));
        assert!(!have_program("no-such-program-cairn-lab"));
        assert!(!have_program("/no/such/file"));
    }
}

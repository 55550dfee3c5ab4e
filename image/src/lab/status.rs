//! `cairn lab status`: the node table, and who holds each VIP as the client
//! sees it (its neighbour entry for the VIP → MAC → node; the bridge's
//! forwarding table when the MAC is a VRRP virtual MAC). Formatting is pure.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::net;
use super::plan::{BRIDGE, LabPlan};
use super::protocol::{NodeKind, NodeStatus};

/// Who holds a VIP, as seen from the client namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipHolder {
    /// The VIP.
    pub vip: IpAddr,
    /// The MAC the client would send to, with the neighbour state.
    pub neighbour: Option<net::Neighbour>,
    /// The node owning that MAC (or the bridge port it was learnt on).
    pub node: Option<String>,
}

/// Looks up every VIP of the plan from the client namespace. First pokes the
/// VIP (one UDP datagram from inside the client namespace) so the client has
/// a neighbour entry, then reads it.
pub fn vip_holders(plan: &LabPlan, cairn: &std::path::Path) -> Vec<VipHolder> {
    let mut out = Vec::new();
    for vip in &plan.vips {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &plan.client.netns])
            .arg(cairn)
            .args(["lab", "poke", &vip.to_string()])
            .output();
        let mut neighbour = None;
        // Resolution takes one ARP round trip; allow a second for a slow bridge.
        for _ in 0..20 {
            neighbour = net::neighbour(&plan.client.netns, *vip).ok().flatten();
            if neighbour.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let node = neighbour.as_ref().and_then(|n| holder_of(plan, &n.mac));
        out.push(VipHolder {
            vip: *vip,
            neighbour,
            node,
        });
    }
    out
}

/// The node behind `mac`: a VM with that MAC, else whichever VM's tap the
/// bridge learnt the MAC on (a VRRP virtual MAC `00:00:5e:00:01:xx`).
fn holder_of(plan: &LabPlan, mac: &str) -> Option<String> {
    if let Some(vm) = plan.node_by_mac(mac) {
        return Some(vm.name.clone());
    }
    let port = net::fdb_port(&plan.switch_netns, BRIDGE, mac)
        .ok()
        .flatten()?;
    plan.vms
        .iter()
        .find(|v| v.tap == port)
        .map(|v| v.name.clone())
        .or_else(|| {
            plan.externals
                .iter()
                .find(|e| e.port == port)
                .map(|e| e.name.clone())
        })
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(unix_ms: u64) -> String {
    let s = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The status table.
pub fn table(plan: &LabPlan, nodes: &[NodeStatus]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "NODE".into(),
        "ROLE".into(),
        "STATE".into(),
        "CAIRN-READY".into(),
        "LINK".into(),
        "MAC".into(),
        "ADDRESSES".into(),
    ]];
    for n in nodes {
        let (mac, addrs) = match n.kind {
            NodeKind::Vm => plan
                .vm(&n.name)
                .map(|v| (v.mac.clone(), v.addresses.join(",")))
                .unwrap_or_default(),
            NodeKind::External => (
                "-".into(),
                plan.external(&n.name)
                    .map(|e| e.addresses.join(","))
                    .unwrap_or_default(),
            ),
        };
        let state = match (n.running, n.kind) {
            (true, NodeKind::Vm) => format!("running (boot {})", n.boots),
            (true, NodeKind::External) => "responding".into(),
            (false, _) => match &n.exit {
                Some(e) => format!("stopped ({e})"),
                None => "stopped".into(),
            },
        };
        let ready = match (&n.ready, n.kind) {
            (_, NodeKind::External) => "-".into(),
            (Some(r), _) => format!(
                "{:.1} s, {} UTC",
                Duration::from_millis(r.after_ms).as_secs_f64(),
                clock(r.unix_ms)
            ),
            (None, _) => "not yet".into(),
        };
        rows.push([
            n.name.clone(),
            n.role.clone(),
            state,
            ready,
            if n.link_up { "up" } else { "cut" }.into(),
            mac,
            addrs,
        ]);
    }
    rows.push([
        super::plan::CLIENT.into(),
        "client".into(),
        "namespace".into(),
        "-".into(),
        "up".into(),
        "-".into(),
        plan.client.address.clone(),
    ]);
    render(&rows)
}

fn render(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (w, c)) in widths.iter().zip(r).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per VIP: `VIP 192.0.2.100: lb1 (52:54:00:c0:00:11, REACHABLE)`.
pub fn vip_lines(holders: &[VipHolder]) -> String {
    let mut out = String::new();
    for h in holders {
        let _ = match (&h.neighbour, &h.node) {
            (Some(n), Some(node)) => writeln!(
                out,
                "VIP {}: held by {node} ({}, {}), as the client sees it",
                h.vip, n.mac, n.state
            ),
            (Some(n), None) => writeln!(
                out,
                "VIP {}: answered by {} ({}), which is no node of the lab",
                h.vip, n.mac, n.state
            ),
            (None, _) => writeln!(out, "VIP {}: nobody answers ARP for it", h.vip),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::lab::plan::{ClientPlan, ExternalPlan, VmPlan};
    use crate::lab::protocol::Ready;

    fn plan() -> LabPlan {
        LabPlan {
            lab: "cl1".into(),
            site: "/s".into(),
            profile: "p".into(),
            memory_mib: 384,
            switch_netns: "cl1-sw".into(),
            client: ClientPlan {
                netns: "cl1-client".into(),
                port: "vc".into(),
                address: "192.0.2.250/24".into(),
                repo: None,
            },
            vms: vec![VmPlan {
                name: "lb1".into(),
                role: "lb".into(),
                mac: "52:54:00:c0:00:11".into(),
                addresses: vec!["192.0.2.11/24".into()],
                tap: "tap0".into(),
            }],
            externals: vec![ExternalPlan {
                name: "web1".into(),
                netns: "cl1-x-web1".into(),
                port: "v0".into(),
                addresses: vec!["192.0.2.21/24".into()],
                listen: vec!["192.0.2.21:8080".parse().unwrap()],
            }],
            vips: vec!["192.0.2.100".parse().unwrap()],
        }
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(
            clock((86_400 * 3 + 3600 * 13 + 60 * 5 + 9) * 1000 + 999),
            "13:05:09"
        );
    }

    #[test]
    fn table_lists_vms_externals_and_the_client() {
        let nodes = vec![
            NodeStatus {
                name: "lb1".into(),
                kind: NodeKind::Vm,
                role: "lb".into(),
                running: true,
                pid: Some(7),
                boots: 2,
                ready: Some(Ready {
                    after_ms: 11_250,
                    unix_ms: 3_600_000,
                    line: "CAIRN-READY".into(),
                }),
                link_up: false,
                exit: None,
            },
            NodeStatus {
                name: "web1".into(),
                kind: NodeKind::External,
                role: "external".into(),
                running: false,
                pid: None,
                boots: 0,
                ready: None,
                link_up: true,
                exit: Some("killed".into()),
            },
        ];
        let t = table(&plan(), &nodes);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("NODE    ROLE      STATE"), "{t}");
        assert!(lines[1].starts_with("lb1     lb        running"), "{t}");
        assert!(lines[1].contains("running (boot 2)"), "{t}");
        assert!(lines[1].contains("11.2 s, 01:00:00 UTC"), "{t}");
        assert!(lines[1].contains(" cut "), "{t}");
        assert!(
            lines[1].ends_with("52:54:00:c0:00:11  192.0.2.11/24"),
            "{t}"
        );
        assert!(lines[2].contains("stopped (killed)"), "{t}");
        assert!(lines[3].starts_with("client"), "{t}");
        assert!(lines[3].ends_with("192.0.2.250/24"), "{t}");
    }

    #[test]
    fn vip_lines_name_the_holder() {
        let h = VipHolder {
            vip: "192.0.2.100".parse().unwrap(),
            neighbour: Some(net::Neighbour {
                mac: "52:54:00:c0:00:11".into(),
                state: "REACHABLE".into(),
            }),
            node: Some("lb1".into()),
        };
        assert_eq!(
            vip_lines(&[h]),
            "VIP 192.0.2.100: held by lb1 (52:54:00:c0:00:11, REACHABLE), as the client sees it\n"
        );
        let nobody = VipHolder {
            vip: "192.0.2.100".parse().unwrap(),
            neighbour: None,
            node: None,
        };
        assert_eq!(
            vip_lines(&[nobody]),
            "VIP 192.0.2.100: nobody answers ARP for it\n"
        );
        assert_eq!(holder_of(&plan(), "52:54:00:C0:00:11"), Some("lb1".into()));
    }
}

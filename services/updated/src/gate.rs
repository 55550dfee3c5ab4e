//! When an installed update may reboot the box: the decision alone, without I/O, so every
//! case is unit-tested. The agent feeds it what cairn-vipd reports and how long it has been
//! waiting, and carries out the step it returns.
//!
//! - `immediately`, or `Upgrade(now=true)`: reboot.
//! - `peer-holds-vip`: every instance a backup under a present master: reboot. Otherwise,
//!   if another node of the role serves every frontend on its own address, ask cairn-vipd
//!   for maintenance mode (priority 1: the master resigns and the peer takes over) and wait
//!   up to [`HANDOVER_TIMEOUT`] for the peer to become master and to have stayed master for
//!   [`HANDOVER_SETTLE`] (a peer about to reboot into its own update hands the VIPs straight
//!   back); then reboot. If that does not happen in time, end maintenance and wait.

use std::time::Duration;

use cairn_control::VipInstanceStatus;
use cairn_site::RebootPolicy;

/// How long a master in maintenance mode waits for a peer to take over.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the peer must have held the VIPs after a handover before this box reboots.
pub const HANDOVER_SETTLE: Duration = Duration::from_secs(3);

/// What the gate looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The site's policy for this role.
    pub policy: RebootPolicy,
    /// `Upgrade(now=true)` was asked for.
    pub now: bool,
    /// cairn-vipd's instances, or why they could not be read.
    pub vip: Result<&'a [VipInstanceStatus], &'a str>,
    /// How long ago we asked cairn-vipd for maintenance mode, if we did.
    pub maintenance_for: Option<Duration>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Reboot now.
    Reboot,
    /// Ask cairn-vipd for maintenance mode; `peer` serves the frontends.
    RequestMaintenance {
        /// The peer that will take over.
        peer: String,
    },
    /// End maintenance mode (the handover did not happen) and wait.
    EndMaintenance(String),
    /// Wait and look again; the reason is shown in the status.
    Wait(String),
}

/// Decides the next step; `peer_serves` is asked only when a handover is about to be
/// requested: the name of a node of the role that serves every frontend on its own
/// address, or why none does.
pub fn decide(input: &Input<'_>, peer_serves: impl FnOnce() -> Result<String, String>) -> Step {
    if input.now || input.policy == RebootPolicy::Immediately {
        return Step::Reboot;
    }
    let instances = match input.vip {
        Ok(i) => i,
        Err(reason) => return Step::Wait(format!("cannot read cairn-vipd: {reason}")),
    };
    if instances.iter().all(|i| i.peer_is_master()) {
        // After a handover, make sure the peer keeps the VIP: a peer that is about to reboot
        // into its own update hands it straight back (both boxes upgrading at once).
        let settling = input.maintenance_for.is_some()
            && instances
                .iter()
                .any(|i| Duration::from_millis(i.in_state_ms) < HANDOVER_SETTLE);
        if settling {
            return Step::Wait(format!(
                "the peer holds the virtual IPs; making sure it keeps them for {} s",
                HANDOVER_SETTLE.as_secs()
            ));
        }
        return Step::Reboot;
    }
    if let Some(waited) = input.maintenance_for {
        if waited >= HANDOVER_TIMEOUT {
            return Step::EndMaintenance(format!(
                "no peer took over within {} s of maintenance mode",
                HANDOVER_TIMEOUT.as_secs()
            ));
        }
        let pending: Vec<&str> = instances
            .iter()
            .filter(|i| !i.peer_is_master())
            .map(|i| i.name.as_str())
            .collect();
        return Step::Wait(format!("handing over {} to a peer", pending.join(", ")));
    }
    if let Some(i) = instances
        .iter()
        .find(|i| i.state != "master" && !i.peer_is_master())
    {
        return Step::Wait(format!(
            "instance {} is {} and no master is present",
            i.name, i.state
        ));
    }
    match peer_serves() {
        Ok(peer) => Step::RequestMaintenance { peer },
        Err(reason) => Step::Wait(reason),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inst(name: &str, state: &str, master: &str) -> VipInstanceStatus {
        VipInstanceStatus {
            name: name.into(),
            vrid: 51,
            interface: "eth0".into(),
            state: state.into(),
            priority: 150,
            effective_priority: 150,
            master: master.into(),
            vips: vec![],
            checks: vec![],
            counters: vec![],
            in_state_ms: 0,
            maintenance: false,
        }
    }

    fn input<'a>(vip: Result<&'a [VipInstanceStatus], &'a str>) -> Input<'a> {
        Input {
            policy: RebootPolicy::PeerHoldsVip,
            now: false,
            vip,
            maintenance_for: None,
        }
    }

    fn no_peer_check() -> Result<String, String> {
        panic!("the peer must not be probed here")
    }

    #[test]
    fn immediately_and_now_reboot_without_looking() {
        let i = Input {
            policy: RebootPolicy::Immediately,
            ..input(Err("not running"))
        };
        assert_eq!(decide(&i, no_peer_check), Step::Reboot);
        let i = Input {
            now: true,
            ..input(Err("not running"))
        };
        assert_eq!(decide(&i, no_peer_check), Step::Reboot);
    }

    #[test]
    fn a_backup_under_a_master_reboots_at_once() {
        let all = [
            inst("v4", "backup", "192.0.2.12"),
            inst("v6", "backup", "2001:db8::12"),
        ];
        assert_eq!(decide(&input(Ok(&all)), no_peer_check), Step::Reboot);
        assert_eq!(decide(&input(Ok(&[])), no_peer_check), Step::Reboot);
    }

    #[test]
    fn a_backup_without_master_waits() {
        let all = [inst("v4", "backup", "")];
        assert_eq!(
            decide(&input(Ok(&all)), no_peer_check),
            Step::Wait("instance v4 is backup and no master is present".into())
        );
        assert_eq!(
            decide(&input(Err("connection refused")), no_peer_check),
            Step::Wait("cannot read cairn-vipd: connection refused".into())
        );
    }

    #[test]
    fn a_master_hands_over_only_to_a_serving_peer() {
        let all = [inst("v4", "master", "192.0.2.11")];
        assert_eq!(
            decide(&input(Ok(&all)), || Ok("lb2".into())),
            Step::RequestMaintenance { peer: "lb2".into() }
        );
        assert_eq!(
            decide(&input(Ok(&all)), || Err(
                "no peer serves port 80 on its own address".into()
            )),
            Step::Wait("no peer serves port 80 on its own address".into())
        );
    }

    #[test]
    fn maintenance_waits_for_the_peer_then_gives_up() {
        let mid = [inst("v4", "backup", "")];
        let i = Input {
            maintenance_for: Some(Duration::from_secs(2)),
            ..input(Ok(&mid))
        };
        assert_eq!(
            decide(&i, no_peer_check),
            Step::Wait("handing over v4 to a peer".into())
        );
        // The peer took over a moment ago: wait until it has kept the VIPs a while.
        let mut fresh = inst("v4", "backup", "192.0.2.12");
        fresh.in_state_ms = 500;
        let i = Input {
            maintenance_for: Some(Duration::from_secs(3)),
            ..input(Ok(std::slice::from_ref(&fresh)))
        };
        assert!(matches!(decide(&i, no_peer_check), Step::Wait(w) if w.contains("keeps them")));
        let mut settled = fresh.clone();
        settled.in_state_ms = HANDOVER_SETTLE.as_millis() as u64;
        let i = Input {
            maintenance_for: Some(Duration::from_secs(5)),
            ..input(Ok(std::slice::from_ref(&settled)))
        };
        assert_eq!(decide(&i, no_peer_check), Step::Reboot);
        let i = Input {
            maintenance_for: Some(HANDOVER_TIMEOUT),
            ..input(Ok(&mid))
        };
        assert!(matches!(decide(&i, no_peer_check), Step::EndMaintenance(_)));
    }
}

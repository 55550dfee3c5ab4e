//! The `storage-bootstrap` loop: ask glusterd, plan, act, report, repeat.
//! Safe on every boot of every node: the planner only asks for what is
//! missing, and a failed call is simply planned again in the next round.

use std::time::Duration;

use cairn_site::Site;

use crate::gluster::{Cli, CliError};
use crate::notify::notify;
use crate::plan::{self, Action, Plan};

/// Pause between rounds while something is missing.
pub const BUSY_INTERVAL: Duration = Duration::from_secs(2);
/// Pause between rounds once everything is in place (the loop keeps
/// watching: options changed by a new image, a volume someone stopped).
pub const IDLE_INTERVAL: Duration = Duration::from_secs(15);

/// What one round did.
#[derive(Debug)]
pub struct Round {
    /// The plan it acted on.
    pub plan: Plan,
    /// Calls that failed (they are planned again next round).
    pub failed: Vec<CliError>,
}

/// First pause before probing a node again after a failed probe; it doubles
/// per failure up to [`PROBE_BACKOFF_MAX`]. A probe of an absent node keeps
/// glusterd busy for seconds (and `peer status` fails meanwhile), so absent
/// nodes are not probed every round.
pub const PROBE_BACKOFF: Duration = Duration::from_secs(4);
/// Longest pause between probes of an absent node: how late at most a node
/// that comes up is probed.
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// When each address may be probed again after failed probes.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Vec<(String, std::time::Instant, Duration)>,
}

impl Backoff {
    /// Whether `address` may be probed at `now`.
    pub fn ready(&self, address: &str, now: std::time::Instant) -> bool {
        self.next
            .iter()
            .find(|(a, _, _)| a == address)
            .is_none_or(|(_, at, _)| now >= *at)
    }

    /// Records a failed probe: the pause doubles (from [`PROBE_BACKOFF`], up to
    /// [`PROBE_BACKOFF_MAX`]).
    pub fn failed(&mut self, address: &str, now: std::time::Instant) {
        match self.next.iter_mut().find(|(a, _, _)| a == address) {
            Some(e) => {
                e.2 = (e.2 * 2).min(PROBE_BACKOFF_MAX);
                e.1 = now + e.2;
            }
            None => self
                .next
                .push((address.to_owned(), now + PROBE_BACKOFF, PROBE_BACKOFF)),
        }
    }

    /// Records a successful probe.
    pub fn succeeded(&mut self, address: &str) {
        self.next.retain(|(a, _, _)| a != address);
    }
}

/// One round: gather, plan, run the actions in order. Probes are
/// independent (one absent peer must not hold back the others), so every
/// probe is tried (unless backing off); the first failing volume call ends
/// the round, since the later ones build on it. `seen` holds last round's
/// calls: repeated ones are logged at debug level only.
pub fn round(
    site: &Site,
    me: &str,
    cli: &Cli,
    seen: &mut Vec<Vec<String>>,
    backoff: &mut Backoff,
) -> Result<Round, CliError> {
    let peers = cli.peers()?;
    let volumes = cli.volumes()?;
    let plan = plan::plan(site, me, &peers, &volumes);
    let mut failed = Vec::new();
    let mut now = Vec::new();
    for a in &plan.actions {
        if let Action::Probe { address, .. } = a
            && !backoff.ready(address, std::time::Instant::now())
        {
            continue;
        }
        let args = a.args(site);
        if seen.contains(&args) {
            tracing::debug!("gluster {}", args.join(" "));
        } else {
            tracing::info!("gluster {}", args.join(" "));
        }
        now.push(args.clone());
        let result = cli.run(&args);
        if let Action::Probe { address, .. } = a {
            match &result {
                Ok(()) => backoff.succeeded(address),
                Err(_) => backoff.failed(address, std::time::Instant::now()),
            }
        }
        if let Err(e) = result {
            failed.push(e);
            if !matches!(a, Action::Probe { .. }) {
                break;
            }
        }
    }
    *seen = now;
    Ok(Round { plan, failed })
}

/// Runs rounds until converged (`once`) or forever.
pub fn run(site: &Site, me: &str, cli: &Cli, once: bool) -> Result<(), CliError> {
    let mut last = String::new();
    let mut seen = Vec::new();
    let mut backoff = Backoff::default();
    loop {
        let (status, converged) = match round(site, me, cli, &mut seen, &mut backoff) {
            Ok(r) => {
                for w in &r.plan.warnings {
                    if !last.contains(w.as_str()) {
                        tracing::warn!("{w}");
                    }
                }
                let mut status = r.plan.summary();
                if let Some(e) = r.failed.first() {
                    status.push_str(&format!("; retrying: {e}"));
                }
                // Converged means: nothing was left to do when the round began.
                (status, r.plan.converged())
            }
            Err(e) if once => return Err(e),
            Err(e) => (format!("waiting for glusterd: {e}"), false),
        };
        if status != last {
            tracing::info!("{status}");
            if let Err(e) = notify(&format!("STATUS={status}")) {
                tracing::debug!("cannot send status: {e}");
            }
            last = status;
        }
        if converged && once {
            return Ok(());
        }
        std::thread::sleep(if converged {
            IDLE_INTERVAL
        } else {
            BUSY_INTERVAL
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn failed_probes_back_off_doubling_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready("192.0.2.32", t0));
        b.failed("192.0.2.32", t0);
        assert!(!b.ready("192.0.2.32", t0 + Duration::from_secs(3)));
        assert!(b.ready("192.0.2.32", t0 + PROBE_BACKOFF));
        assert!(b.ready("192.0.2.33", t0), "other nodes are not held back");
        for _ in 0..10 {
            b.failed("192.0.2.32", t0);
        }
        assert!(!b.ready("192.0.2.32", t0 + Duration::from_secs(29)));
        assert!(b.ready("192.0.2.32", t0 + PROBE_BACKOFF_MAX));
        b.succeeded("192.0.2.32");
        assert!(b.ready("192.0.2.32", t0));
    }
}

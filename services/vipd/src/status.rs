//! What the control API reports: a snapshot of every instance that the main loop publishes
//! after each event, which the control thread answers `Instances` from.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_control::VipInstanceStatus;
use cairn_vrrp::{Counters, DropReason, Instance};

use crate::actions::state_name;
use crate::health::CheckState;

/// The counter name of a drop reason: `dropped_<reason>`.
pub fn drop_counter_name(reason: DropReason) -> String {
    format!("dropped_{}", reason.name())
}

/// Counters as (name, value); every drop reason is listed, zero or not, so clients see a
/// stable set.
pub fn counter_list(c: &Counters) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = [
        ("adverts_rx", c.adverts_rx),
        ("adverts_tx", c.adverts_tx),
        ("priority_zero_rx", c.priority_zero_rx),
        ("priority_zero_tx", c.priority_zero_tx),
        ("became_master", c.became_master),
        ("became_backup", c.became_backup),
        ("announcements_tx", c.announcements_tx),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for reason in DropReason::ALL {
        out.push((drop_counter_name(reason), c.get(reason)));
    }
    out
}

/// The status of one instance.
#[allow(clippy::too_many_arguments)]
pub fn instance_status(
    name: &str,
    interface: &str,
    vips: &[cairn_netlink::IpNet],
    instance: &Instance,
    checks: &[CheckState],
    maintenance: bool,
    since: Instant,
    now: Instant,
) -> VipInstanceStatus {
    let config = instance.config();
    VipInstanceStatus {
        name: name.to_owned(),
        vrid: config.vrid,
        interface: interface.to_owned(),
        state: state_name(instance.state()).to_owned(),
        priority: config.priority,
        effective_priority: instance.priority(),
        master: instance.master().map(|a| a.to_string()).unwrap_or_default(),
        vips: vips.iter().map(|v| v.to_string()).collect(),
        checks: checks.iter().map(|c| c.to_string()).collect(),
        counters: counter_list(instance.counters()),
        in_state_ms: millis_since(since, now),
        maintenance,
    }
}

/// The snapshot the main loop writes and the control thread reads: each status with the
/// instant of its last state change, so `in_state_ms` is computed when it is read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(Arc<Mutex<Vec<(VipInstanceStatus, Instant)>>>);

impl Snapshot {
    /// Replaces the published statuses; each comes with the instant its state began.
    pub fn publish(&self, statuses: Vec<(VipInstanceStatus, Instant)>) {
        match self.0.lock() {
            Ok(mut guard) => *guard = statuses,
            Err(poisoned) => *poisoned.into_inner() = statuses,
        }
    }

    /// The published statuses with `in_state_ms` as of now.
    pub fn read(&self) -> Vec<VipInstanceStatus> {
        let now = Instant::now();
        let entries = match self.0.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        entries
            .into_iter()
            .map(|(mut status, since)| {
                status.in_state_ms = millis_since(since, now);
                status
            })
            .collect()
    }
}

fn millis_since(since: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_list_every_drop_reason() {
        let mut c = Counters {
            adverts_rx: 7,
            ..Counters::default()
        };
        c.dropped.insert(DropReason::BadChecksum, 3);
        let list = counter_list(&c);
        assert_eq!(list.len(), 7 + DropReason::ALL.len());
        assert_eq!(list[0], ("adverts_rx".to_owned(), 7));
        assert!(list.contains(&("dropped_bad_checksum".to_owned(), 3)));
        assert!(list.contains(&("dropped_foreign_vrid".to_owned(), 0)));
        let names: std::collections::BTreeSet<String> = DropReason::ALL
            .iter()
            .map(|r| drop_counter_name(*r))
            .collect();
        assert_eq!(names.len(), DropReason::ALL.len(), "names are distinct");
    }

    #[test]
    fn snapshot_is_what_the_backend_answers() {
        let s = Snapshot::default();
        assert!(s.read().is_empty());
        let status = VipInstanceStatus {
            name: "web".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: "backup".into(),
            priority: 100,
            effective_priority: 100,
            master: String::new(),
            vips: vec!["192.0.2.100/24".into()],
            checks: vec![],
            counters: vec![],
            in_state_ms: 5,
            maintenance: true,
        };
        let since = Instant::now() - std::time::Duration::from_millis(1500);
        s.publish(vec![(status.clone(), since)]);
        let got = s.read();
        assert_eq!(got.len(), 1);
        assert!(got[0].in_state_ms >= 1500, "{}", got[0].in_state_ms);
        assert_eq!(
            VipInstanceStatus {
                in_state_ms: 5,
                ..got[0].clone()
            },
            status
        );
    }
}

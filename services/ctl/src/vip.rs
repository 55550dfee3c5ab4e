//! `cairnctl vip`: cairn-vipd's virtual routers as a table (or JSON), read over
//! `org.cairn.Vip1`.

use std::io::Write;
use std::path::Path;

use cairn_control::{ClientError, VipClient, VipInstanceStatus};

use crate::table;

/// Prints every instance: a table, then each instance's checks and non-zero counters; or,
/// with `json`, the array as the API returns it.
pub(crate) fn show(socket: &Path, json: bool) -> anyhow::Result<()> {
    let instances = VipClient::connect(socket)
        .and_then(|client| client.instances())
        .map_err(|e| explain(socket, e))?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &instances)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&instances).as_bytes())?;
    }
    Ok(out.flush()?)
}

/// Turns "nothing listens there" into a hint about the role; other errors keep their text.
fn explain(socket: &Path, error: ClientError) -> anyhow::Error {
    match error {
        ClientError::Connect { source, .. } => {
            let reason = match source.raw_os_error() {
                Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
                None => source.to_string(),
            };
            anyhow::anyhow!(
                "cannot reach cairn-vipd at {}: {reason} — is the lb role running?",
                socket.display()
            )
        }
        other => other.into(),
    }
}

/// The instances as a table (one row each); `cairnctl lb` shows the same table.
pub(crate) fn instances_table(instances: &[VipInstanceStatus]) -> String {
    let mut rows = vec![
        [
            "NAME",
            "VRID",
            "IF",
            "STATE",
            "PRIO(eff/conf)",
            "MASTER",
            "VIPS",
            "IN-STATE",
        ]
        .map(str::to_owned),
    ];
    for i in instances {
        rows.push([
            i.name.clone(),
            i.vrid.to_string(),
            i.interface.clone(),
            i.state.clone(),
            format!("{}/{}", i.effective_priority, i.priority),
            dash_if_empty(i.master.clone()),
            dash_if_empty(i.vips.join(",")),
            format_duration(i.in_state_ms),
        ]);
    }
    table::render(&rows)
}

/// The table, a blank line, then one block per instance with its checks and the counters
/// that are not zero.
fn render(instances: &[VipInstanceStatus]) -> String {
    let mut text = instances_table(instances);
    for i in instances {
        text.push('\n');
        text.push_str(&format!("{}:\n", i.name));
        push_list(&mut text, "checks:  ", i.checks.iter().cloned(), "none");
        let counters = i
            .counters
            .iter()
            .filter(|(_, value)| *value != 0)
            .map(|(name, value)| format!("{name}={value}"));
        push_list(&mut text, "counters:", counters, "all zero");
    }
    text
}

/// `  label item` for the first item, the others aligned below it; `  label empty` if none.
fn push_list(text: &mut String, label: &str, items: impl Iterator<Item = String>, empty: &str) {
    let mut first = true;
    for item in items {
        if first {
            text.push_str(&format!("  {label} {item}\n"));
            first = false;
        } else {
            text.push_str(&format!("  {:width$} {item}\n", "", width = label.len()));
        }
    }
    if first {
        text.push_str(&format!("  {label} {empty}\n"));
    }
}

fn dash_if_empty(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

/// A short human duration: `12.3s`, `2m05s`, `1h02m`, `3d04h`.
fn format_duration(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms < MINUTE => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        ms if ms < HOUR => format!("{}m{:02}s", ms / MINUTE, ms % MINUTE / 1000),
        ms if ms < DAY => format!("{}h{:02}m", ms / HOUR, ms % HOUR / MINUTE),
        ms => format!("{}d{:02}h", ms / DAY, ms % DAY / HOUR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str) -> VipInstanceStatus {
        VipInstanceStatus {
            name: name.into(),
            vrid: 51,
            interface: "eth1".into(),
            state: "master".into(),
            priority: 100,
            effective_priority: 90,
            master: "192.0.2.2".into(),
            vips: vec!["192.0.2.10/24".into(), "192.0.2.11/24".into()],
            checks: vec!["haproxy=ok".into(), "dns=failing (timeout)".into()],
            counters: vec![
                ("adverts_rx".into(), 0),
                ("adverts_tx".into(), 12),
                ("dropped_bad_checksum".into(), 3),
            ],
            in_state_ms: 125_000,
            maintenance: false,
        }
    }

    #[test]
    fn table_then_checks_and_non_zero_counters() {
        let quiet = VipInstanceStatus {
            name: "lb-v6".into(),
            vrid: 7,
            interface: "eth2".into(),
            state: "initialize".into(),
            priority: 255,
            effective_priority: 0,
            master: String::new(),
            vips: vec![],
            checks: vec![],
            counters: vec![("adverts_rx".into(), 0)],
            in_state_ms: 999,
            maintenance: false,
        };
        assert_eq!(
            render(&[instance("lb-v4"), quiet]),
            "NAME   VRID  IF    STATE       PRIO(eff/conf)  MASTER     VIPS                         IN-STATE\n\
             lb-v4  51    eth1  master      90/100          192.0.2.2  192.0.2.10/24,192.0.2.11/24  2m05s\n\
             lb-v6  7     eth2  initialize  0/255           -          -                            0.9s\n\
             \n\
             lb-v4:\n\
             \x20 checks:   haproxy=ok\n\
             \x20           dns=failing (timeout)\n\
             \x20 counters: adverts_tx=12\n\
             \x20           dropped_bad_checksum=3\n\
             \n\
             lb-v6:\n\
             \x20 checks:   none\n\
             \x20 counters: all zero\n"
        );
    }

    #[test]
    fn no_instances_is_just_the_header() {
        assert_eq!(
            render(&[]),
            "NAME  VRID  IF  STATE  PRIO(eff/conf)  MASTER  VIPS  IN-STATE\n"
        );
    }

    #[test]
    fn durations_pick_two_units() {
        assert_eq!(format_duration(0), "0.0s");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(59_999), "59.9s");
        assert_eq!(format_duration(60_000), "1m00s");
        assert_eq!(format_duration(3_599_999), "59m59s");
        assert_eq!(format_duration(3_600_000 + 2 * 60_000), "1h02m");
        assert_eq!(format_duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(format_duration(u64::MAX), "213503982334d14h");
    }

    #[test]
    fn a_missing_socket_is_explained_with_the_role() {
        let error = ClientError::Connect {
            path: "/run/cairn/vipd.sock".into(),
            source: std::io::Error::from_raw_os_error(2),
            server: "cairn-vipd",
        };
        assert_eq!(
            explain(Path::new("/run/cairn/vipd.sock"), error).to_string(),
            "cannot reach cairn-vipd at /run/cairn/vipd.sock: No such file or directory — is the lb role running?"
        );
        let other = ClientError::AccessDenied("no".into());
        assert_eq!(
            explain(Path::new("/x"), other).to_string(),
            "access denied: no"
        );
    }
}

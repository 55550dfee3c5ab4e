//! `cairnctl upgrade` and the slots part of `cairnctl status`: cairn-updated's state, read
//! and driven over `org.cairn.Update1`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_control::{ClientError, UpdateClient, UpdateStatus};

use crate::table;

/// How often `upgrade --wait` polls the status.
const POLL: Duration = Duration::from_millis(500);
/// Longest `upgrade --wait` waits for the check to end.
const WAIT_LIMIT: Duration = Duration::from_secs(1800);

/// Asks for a check now; with `wait`, prints progress until it ends (installed and
/// rebooting or waiting to reboot, up to date, deferred or refused). Exit status: 0 unless
/// the check ended with an error.
pub(crate) fn upgrade(socket: &Path, now: bool, wait: bool, json: bool) -> anyhow::Result<bool> {
    let client = UpdateClient::connect(socket).map_err(|e| explain(socket, e))?;
    let check = client.upgrade(now)?;
    let mut out = std::io::stdout().lock();
    if !wait {
        if json {
            writeln!(out, "{}", serde_json::json!({ "check": check }))?;
        } else {
            writeln!(out, "check {check} requested")?;
        }
        return Ok(true);
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut last_state = String::new();
    let status = loop {
        let status = match client.status() {
            Ok(s) => s,
            // The box went down for the reboot that follows an install (the agent may
            // still have said "installing" at our last poll).
            Err(ClientError::Disconnected { .. }) if going_down(&last_state) => {
                if !json {
                    writeln!(out, "rebooting")?;
                }
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        if status.state != last_state && !json {
            writeln!(out, "{}", status.state)?;
            out.flush()?;
        }
        last_state.clone_from(&status.state);
        let over = status.done >= check && status.state != "checking";
        if over {
            break status;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "check {check} still running after {} s",
                WAIT_LIMIT.as_secs()
            );
        }
        std::thread::sleep(POLL);
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", status.last_result)?;
    }
    out.flush()?;
    Ok(status.last_error.is_empty() || status.last_result != status.last_error)
}

/// Whether the agent's last state means the box may be rebooting for an install.
fn going_down(state: &str) -> bool {
    state == "installing" || state == "rebooting" || state.starts_with("waiting to reboot")
}

/// `cairnctl upgrade --status`: cairn-updated's status as a table or JSON.
pub(crate) fn print_status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let status = UpdateClient::connect(socket)
        .map_err(|e| explain(socket, e))?
        .status()?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &status)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&status).as_bytes())?;
    }
    Ok(out.flush()?)
}

/// The slots section of `cairnctl status`: a table when cairn-updated answers, else one line.
pub(crate) fn slots_section(socket: &Path) -> String {
    if !socket.exists() {
        return "updates: agent not running\n".to_owned();
    }
    match UpdateClient::connect_with_timeout(socket, Duration::from_secs(2))
        .and_then(|c| c.status())
    {
        Ok(s) => render(&s),
        Err(e) => format!("updates: {e}\n"),
    }
}

/// `updates: <state>` and a SLOT VERSION ENTRY BOOTED DEFAULT TRIES table.
pub(crate) fn render(s: &UpdateStatus) -> String {
    let mut out = format!("updates: {} (running {})\n", s.state, s.running_version);
    // The last check's result when it was no error (an error is the next line); it carries
    // the last downgrade's outcome (`up to date; downgraded 0.5.0 -> 0.4.0`).
    if !s.last_result.is_empty() && s.last_result != s.last_error {
        out.push_str(&format!("last check: {}\n", s.last_result));
    }
    if !s.last_error.is_empty() {
        out.push_str(&format!("last error: {}\n", s.last_error));
    }
    for f in &s.failed {
        out.push_str(&format!("failed: {f}\n"));
    }
    if s.slots.is_empty() {
        return out;
    }
    let mut rows =
        vec![["SLOT", "VERSION", "ENTRY", "BOOTED", "DEFAULT", "TRIES"].map(str::to_owned)];
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for slot in &s.slots {
        let tries = if slot.entry.is_empty() {
            "-".to_owned()
        } else if slot.blessed {
            "blessed".to_owned()
        } else if slot.entry.ends_with("+0.efi") {
            // `cairn-<v>+0.efi`: demoted by a downgrade (systemd-boot never makes this name),
            // booted only when no good entry is left.
            "demoted".to_owned()
        } else {
            format!("{} left", slot.tries_left)
        };
        rows.push([
            slot.slot.clone(),
            dash(&slot.version),
            dash(&slot.entry),
            yes(slot.booted),
            yes(slot.default),
            tries,
        ]);
    }
    out.push_str(&table::render(&rows));
    out
}

/// Turns "nothing listens there" into a hint; other errors keep their text.
fn explain(socket: &Path, error: ClientError) -> anyhow::Error {
    match error {
        ClientError::Connect { .. } => anyhow::anyhow!(
            "cannot reach cairn-updated at {}: updates: agent not running",
            socket.display()
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_control::SlotStatus;

    #[test]
    fn renders_state_errors_and_slots() {
        let slot = |s: &str, v: &str, e: &str, booted, default, blessed, tries_left| SlotStatus {
            slot: s.into(),
            version: v.into(),
            entry: e.into(),
            booted,
            default,
            blessed,
            tries_left,
        };
        let s = UpdateStatus {
            state: "waiting to reboot: handing the virtual IPs to lb2".into(),
            running_version: "0.1.0".into(),
            booted_slot: "a".into(),
            slots: vec![
                slot("a", "0.1.0", "cairn-0.1.0.efi", true, false, true, 0),
                slot("b", "0.2.0", "cairn-0.2.0+3.efi", false, true, false, 3),
            ],
            last_check: 1,
            last_result: "installed 0.2.0 as cairn-0.2.0+3.efi".into(),
            last_error: String::new(),
            failed: vec!["0.1.5: did not become healthy in 3 boots; running 0.1.0 again".into()],
            url: "http://192.0.2.250/".into(),
            requested: 1,
            done: 1,
        };
        assert_eq!(
            render(&s),
            "updates: waiting to reboot: handing the virtual IPs to lb2 (running 0.1.0)\n\
             last check: installed 0.2.0 as cairn-0.2.0+3.efi\n\
             failed: 0.1.5: did not become healthy in 3 boots; running 0.1.0 again\n\
             SLOT  VERSION  ENTRY              BOOTED  DEFAULT  TRIES\n\
             a     0.1.0    cairn-0.1.0.efi    yes     no       blessed\n\
             b     0.2.0    cairn-0.2.0+3.efi  no      yes      3 left\n"
        );
        // A downgrade under way: the running entry demoted, the older version default.
        let s = UpdateStatus {
            state: "rebooting".into(),
            running_version: "0.5.0".into(),
            slots: vec![
                slot("a", "0.4.0", "cairn-0.4.0+3.efi", false, true, false, 3),
                slot("b", "0.5.0", "cairn-0.5.0+0.efi", true, false, false, 0),
            ],
            last_result: "downgrading 0.5.0 -> 0.4.0: installed 0.4.0 as cairn-0.4.0+3.efi".into(),
            last_error: String::new(),
            failed: Vec::new(),
            ..s
        };
        assert_eq!(
            render(&s),
            "updates: rebooting (running 0.5.0)\n\
             last check: downgrading 0.5.0 -> 0.4.0: installed 0.4.0 as cairn-0.4.0+3.efi\n\
             SLOT  VERSION  ENTRY              BOOTED  DEFAULT  TRIES\n\
             a     0.4.0    cairn-0.4.0+3.efi  no      yes      3 left\n\
             b     0.5.0    cairn-0.5.0+0.efi  yes     no       demoted\n"
        );
        // A refusal is shown once, as the error.
        let s = UpdateStatus {
            state: "idle".into(),
            slots: Vec::new(),
            last_result: "refused index: x".into(),
            last_error: "refused index: x".into(),
            ..s
        };
        assert_eq!(
            render(&s),
            "updates: idle (running 0.5.0)\nlast error: refused index: x\n"
        );
        assert_eq!(
            slots_section(Path::new("/nonexistent/updated.sock")),
            "updates: agent not running\n"
        );
    }
}

//! Processes the lab did not start itself in this process: the keeper (found
//! by its pid file) and whatever is left inside the lab's namespaces after a
//! keeper died. Liveness comes from `/proc`, signals from kill(1), so no
//! unsafe code is needed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesised name).
pub fn stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Whether `pid` runs `cairn lab keeper` (guards against a recycled pid).
pub fn is_keeper(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    alive(pid) && args.windows(2).any(|w| w[0] == b"lab" && w[1] == b"keeper")
}

/// Sends SIGKILL to `pids` (errors for processes already gone are ignored).
pub fn kill_all(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = Command::new(kill_program());
    cmd.arg("-KILL").args(pids.iter().map(ToString::to_string));
    let _ = cmd.output();
}

fn kill_program() -> &'static str {
    if Path::new("/usr/bin/kill").is_file() {
        "/usr/bin/kill"
    } else {
        "/bin/kill"
    }
}

/// Waits until none of `pids` is alive; returns the ones still alive at the deadline.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_state_skips_odd_process_names() {
        assert_eq!(stat_state("42 (a) b) S 1 2"), Some('S'));
        assert_eq!(stat_state("42 (qemu) Z 1"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_not_a_keeper() {
        assert!(alive(std::process::id()));
        assert!(!is_keeper(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn killed_children_are_seen_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        kill_all(&[pid]);
        let _ = child.wait();
        assert!(wait_gone(&[pid], Duration::from_secs(5)).is_empty());
    }
}

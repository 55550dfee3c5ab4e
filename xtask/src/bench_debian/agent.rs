//! A minimal client of cairn's host control channel (docs/lab.md): one JSON
//! request line to the VM's virtio-serial socket, JSON lines back until the
//! exit line. Used for `cairnctl sysinfo --json`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// One process in `cairnctl sysinfo --json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProcessInfo {
    /// Its name.
    pub name: String,
    /// VmRSS (KiB).
    pub rss_kib: u64,
    /// RssAnon (KiB).
    pub anon_kib: u64,
}

/// What `cairnctl sysinfo --json` prints on the box.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SysInfo {
    /// MemTotal (KiB).
    pub mem_total_kib: u64,
    /// MemAvailable (KiB).
    pub mem_available_kib: u64,
    /// MemTotal − MemAvailable (KiB).
    pub mem_used_kib: u64,
    /// PID 1's VmRSS (KiB).
    pub pid1_rss_kib: u64,
    /// Uptime (ms).
    pub uptime_ms: u64,
    /// Meminfo parts (KiB); absent from boxes built before cairnctl reported them.
    #[serde(default)]
    pub meminfo: std::collections::BTreeMap<String, u64>,
    /// Processes, largest resident set first.
    #[serde(default)]
    pub processes: Vec<ProcessInfo>,
}

/// The answer to one request, assembled from its lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Concatenated stdout pieces.
    pub stdout: String,
    /// Concatenated stderr pieces.
    pub stderr: String,
    /// Exit code, once the exit line came.
    pub exit: Option<i64>,
    /// A refusal (`{"error": ...}`).
    pub error: Option<String>,
}

impl Answer {
    /// Takes one line; returns true when the answer is complete. Lines with
    /// another id (a previous client's tail) are skipped.
    pub fn push(&mut self, id: &str, line: &str) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        if v.get("id").and_then(Value::as_str) != Some(id) {
            return false;
        }
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            self.error = Some(e.to_owned());
            return true;
        }
        if let Some(code) = v.get("exit").and_then(Value::as_i64) {
            self.exit = Some(code);
            return true;
        }
        let data = v.get("data").and_then(Value::as_str).unwrap_or("");
        match v.get("stream").and_then(Value::as_str) {
            Some("stdout") => self.stdout.push_str(data),
            Some("stderr") => self.stderr.push_str(data),
            _ => {}
        }
        false
    }
}

/// Runs `cairnctl <args>` on the box behind `socket`; its stdout on exit 0.
pub fn run(socket: &Path, args: &[&str], timeout: Duration) -> Result<String> {
    let id = format!("bench-{}", std::process::id());
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("connecting to {}", socket.display()));
            }
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    let mut w = stream.try_clone()?;
    let req = json!({"id": id, "args": args});
    w.write_all(format!("{req}\n").as_bytes())?;
    let mut answer = Answer::default();
    for line in BufReader::new(stream).lines() {
        let line = line.with_context(|| format!("reading from {}", socket.display()))?;
        if answer.push(&id, &line) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "no complete answer from {} in {timeout:?}",
                socket.display()
            );
        }
    }
    match (answer.error, answer.exit) {
        (Some(e), _) => bail!("the box refused `cairnctl {}`: {e}", args.join(" ")),
        (None, Some(0)) => Ok(answer.stdout),
        (None, Some(c)) => bail!(
            "`cairnctl {}` exited {c}: {}",
            args.join(" "),
            answer.stderr.trim()
        ),
        (None, None) => bail!("connection closed before the answer ended"),
    }
}

/// `cairnctl sysinfo --json` on the box.
pub fn sysinfo(socket: &Path) -> Result<SysInfo> {
    let out = run(socket, &["sysinfo", "--json"], Duration::from_secs(30))?;
    serde_json::from_str(out.trim()).with_context(|| format!("sysinfo answer {out:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_assembles_streams_until_exit_and_skips_other_ids() {
        let mut a = Answer::default();
        assert!(!a.push("x", r#"{"id":"old","stream":"stdout","data":"no"}"#));
        assert!(!a.push("x", r#"{"id":"x","stream":"stdout","data":"{\"a\":"}"#));
        assert!(!a.push("x", r#"{"id":"x","stream":"stderr","data":"warn"}"#));
        assert!(!a.push("x", r#"{"id":"x","stream":"stdout","data":"1}\n"}"#));
        assert!(!a.push("x", "not json"));
        assert!(a.push("x", r#"{"id":"x","exit":0}"#));
        assert_eq!(a.stdout, "{\"a\":1}\n");
        assert_eq!(a.stderr, "warn");
        assert_eq!(a.exit, Some(0));
    }

    #[test]
    fn refusal_ends_the_answer() {
        let mut a = Answer::default();
        assert!(a.push("x", r#"{"id":"x","error":"request: agent"}"#));
        assert_eq!(a.error.as_deref(), Some("request: agent"));
    }

    #[test]
    fn sysinfo_json_parses() {
        let s: SysInfo = serde_json::from_str(
            r#"{"mem_total_kib":480000,"mem_available_kib":450000,"mem_used_kib":30000,"pid1_rss_kib":1500,"uptime_ms":20000}"#,
        )
        .unwrap();
        assert_eq!(s.mem_used_kib, 30000);
        assert_eq!(s.pid1_rss_kib, 1500);
    }
}

//! `cairn lab ctl <node> -- <cairnctl args...>`: runs cairnctl on a VM.
//!
//! Every VM of the lab has a virtio-serial port `org.cairn.control` whose host
//! end is the unix socket `<state>/vms/<node>/ctl.sock` (QEMU listens; only
//! root on the host may connect). On the box, the base role's `ctl-agent`
//! service (`cairnctl agent`) reads one JSON request per line and answers
//! with the command's output and exit code as JSON lines:
//!
//! ```text
//! → {"id":"<ours>","args":["status","--json"]}
//! ← {"id":"<ours>","stream":"stdout","data":"..."}   (any number, stdout or stderr)
//! ← {"id":"<ours>","exit":0}                         (or {"id":..,"error":".."})
//! ```
//!
//! Lines carrying another id (an answer to an earlier client that went away)
//! are skipped. QEMU serves one client at a time: a second `ctl` waits for the first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::plan;
use super::protocol::Request;
use super::state::StateDir;

/// One line of the agent's answer that belongs to our request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLine {
    /// Output of the command on its stdout.
    Stdout(String),
    /// Output of the command on its stderr.
    Stderr(String),
    /// The command finished with this exit code (the last line).
    Exit(i32),
    /// The agent refused the request or could not run it (the last line).
    Error(String),
}

/// Why `cairn lab ctl` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The VM is not running (keeper says so), so nothing listens.
    #[error(
        "{node} is not running, so its control channel {socket} is closed; boot it with `cairn lab start {node} --state {state}`"
    )]
    NotRunning {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
        /// The state directory.
        state: PathBuf,
    },
    /// Connecting to the control socket failed.
    #[error("cannot connect to {node}'s control channel {socket}: {source}")]
    Connect {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("talking to {node}'s control channel {socket}: {source}")]
    Io {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No complete answer within the time allowed.
    #[error(
        "{node}: no complete answer from cairnctl agent on {socket} within {secs} s (still booting? see `cairn lab status` and `cairn lab console {node}`)"
    )]
    Timeout {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
        /// The limit, seconds.
        secs: f64,
    },
    /// The channel closed before the exit line (the VM stopped or rebooted).
    #[error(
        "{node}: the control channel {socket} closed before the command finished (did the VM stop or reboot?)"
    )]
    Closed {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
    },
    /// The agent refused the request.
    #[error("{node}: cairnctl agent refused the request: {message}")]
    Refused {
        /// The node.
        node: String,
        /// The agent's reason.
        message: String,
    },
    /// The agent sent something that is not an answer line.
    #[error("{node}: unexpected answer from cairnctl agent on {socket}: {line:?}: {reason}")]
    BadAnswer {
        /// The node.
        node: String,
        /// Its control socket.
        socket: PathBuf,
        /// The line.
        line: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The request line (with its newline).
pub fn request_line(id: &str, args: &[String]) -> String {
    format!("{}\n", json!({ "id": id, "args": args }))
}

/// Decodes one answer line: `Ok(None)` for a line answering another request
/// (another id), an error text for anything that is not an answer.
pub fn parse_answer(line: &str, id: &str) -> Result<Option<AgentLine>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    match map.get("id") {
        Some(Value::String(s)) if s == id => {}
        // A refusal of a line the agent could not parse carries no id.
        None if map.contains_key("error") => {}
        _ => return Ok(None),
    }
    if let Some(code) = map.get("exit") {
        let code = code
            .as_i64()
            .and_then(|c| i32::try_from(c).ok())
            .ok_or("`exit` is not an integer")?;
        return Ok(Some(AgentLine::Exit(code)));
    }
    if let Some(e) = map.get("error") {
        return Ok(Some(AgentLine::Error(
            e.as_str().unwrap_or("(no reason given)").to_string(),
        )));
    }
    let data = map
        .get("data")
        .and_then(Value::as_str)
        .ok_or("no `exit`, `error` or `data`")?
        .to_string();
    match map.get("stream").and_then(Value::as_str) {
        Some("stdout") => Ok(Some(AgentLine::Stdout(data))),
        Some("stderr") => Ok(Some(AgentLine::Stderr(data))),
        other => Err(format!("unknown stream {other:?}")),
    }
}

/// The exit code of `cairn lab ctl` for the remote command's: the same, as
/// far as a process exit code can carry it.
pub fn local_exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(if code < 0 { 255 } else { 1 })
}

/// Runs `cairnctl <args>` on `node` and relays its output; returns its exit code.
pub fn run(state: &StateDir, node: &str, args: &[String], timeout: Duration) -> Result<ExitCode> {
    let plan = super::require_plan(state)?;
    if plan.vm(node).is_none() {
        if node == plan::CLIENT || plan.external(node).is_some() {
            bail!(
                "{node} is not a VM: ctl runs cairnctl on a VM (VMs: {}); `cairn lab exec {node}` runs commands there",
                plan.vms
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        bail!(
            "no node {node:?} in this lab (known: {})",
            plan.known_names()
        );
    }
    let socket = state.ctl_socket(node);
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(source) => {
            let running = super::ask_keeper(state, &Request::Status)
                .ok()
                .and_then(|r| r.nodes.into_iter().find(|n| n.name == node))
                .map(|n| n.running);
            if running == Some(false) {
                return Err(CtlError::NotRunning {
                    node: node.to_string(),
                    socket,
                    state: state.root().to_path_buf(),
                }
                .into());
            }
            return Err(CtlError::Connect {
                node: node.to_string(),
                socket,
                source,
            }
            .into());
        }
    };
    let id = format!("lab-{}-{}", std::process::id(), unique_suffix());
    let conversation = Conversation {
        node,
        socket: &socket,
        id: &id,
        timeout,
    };
    let code = conversation.run(
        &stream,
        args,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )?;
    Ok(ExitCode::from(local_exit_code(code)))
}

/// A per-call suffix so two `ctl` runs of one process never share an id.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// One request to one node's agent.
struct Conversation<'a> {
    node: &'a str,
    socket: &'a std::path::Path,
    id: &'a str,
    timeout: Duration,
}

impl Conversation<'_> {
    fn io(&self, source: std::io::Error) -> CtlError {
        CtlError::Io {
            node: self.node.to_string(),
            socket: self.socket.to_path_buf(),
            source,
        }
    }

    fn timed_out(&self) -> CtlError {
        CtlError::Timeout {
            node: self.node.to_string(),
            socket: self.socket.to_path_buf(),
            secs: self.timeout.as_secs_f64(),
        }
    }

    /// Sends the request and relays the answer to `out`/`err` until its exit line.
    fn run(
        &self,
        stream: &UnixStream,
        args: &[String],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, CtlError> {
        let deadline = Instant::now() + self.timeout;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        let mut writer = stream;
        writer
            .write_all(request_line(self.id, args).as_bytes())
            .map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(stream);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => {
                    return Err(CtlError::Closed {
                        node: self.node.to_string(),
                        socket: self.socket.to_path_buf(),
                    });
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out());
                }
                Err(e) => return Err(self.io(e)),
            }
            let line = line.trim_end();
            let parsed = parse_answer(line, self.id).map_err(|reason| CtlError::BadAnswer {
                node: self.node.to_string(),
                socket: self.socket.to_path_buf(),
                line: line.to_string(),
                reason,
            })?;
            // Our own stdout/stderr going away (a closed pipe) must not hide the exit code.
            match parsed {
                None => {}
                Some(AgentLine::Stdout(data)) => {
                    let _ = out.write_all(data.as_bytes());
                    let _ = out.flush();
                }
                Some(AgentLine::Stderr(data)) => {
                    let _ = err.write_all(data.as_bytes());
                    let _ = err.flush();
                }
                Some(AgentLine::Exit(code)) => return Ok(code),
                Some(AgentLine::Error(message)) => {
                    return Err(CtlError::Refused {
                        node: self.node.to_string(),
                        message,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_lines_carry_id_and_args() {
        let line = request_line("lab-1-2", &["stop".into(), "haproxy".into()]);
        assert_eq!(
            line,
            "{\"args\":[\"stop\",\"haproxy\"],\"id\":\"lab-1-2\"}\n"
        );
        let weird = request_line("x", &["a\"b\nc".into()]);
        assert!(weird.ends_with('\n') && !weird[..weird.len() - 1].contains('\n'));
    }

    #[test]
    fn answers_decode_and_foreign_ids_are_skipped() {
        let id = "lab-1";
        assert_eq!(
            parse_answer(r#"{"id":"lab-1","stream":"stdout","data":"a\n"}"#, id),
            Ok(Some(AgentLine::Stdout("a\n".into())))
        );
        assert_eq!(
            parse_answer(r#"{"id":"lab-1","stream":"stderr","data":""}"#, id),
            Ok(Some(AgentLine::Stderr(String::new())))
        );
        assert_eq!(
            parse_answer(r#"{"id":"lab-1","exit":3}"#, id),
            Ok(Some(AgentLine::Exit(3)))
        );
        assert_eq!(
            parse_answer(r#"{"id":"lab-1","error":"too many"}"#, id),
            Ok(Some(AgentLine::Error("too many".into())))
        );
        // An answer to someone else, or with no id at all (except a refusal).
        assert_eq!(parse_answer(r#"{"id":"lab-0","exit":0}"#, id), Ok(None));
        assert_eq!(parse_answer(r#"{"exit":0}"#, id), Ok(None));
        assert_eq!(
            parse_answer(r#"{"error":"request is not JSON"}"#, id),
            Ok(Some(AgentLine::Error("request is not JSON".into())))
        );
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        let id = "i";
        assert!(
            parse_answer("hello", id)
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert_eq!(parse_answer("[1]", id), Err("not a JSON object".into()));
        assert_eq!(
            parse_answer(r#"{"id":"i","exit":"0"}"#, id),
            Err("`exit` is not an integer".into())
        );
        assert_eq!(
            parse_answer(r#"{"id":"i"}"#, id),
            Err("no `exit`, `error` or `data`".into())
        );
        assert_eq!(
            parse_answer(r#"{"id":"i","stream":"tty","data":"x"}"#, id),
            Err("unknown stream Some(\"tty\")".into())
        );
    }

    /// Runs a conversation against a fake agent that checks the request and
    /// sends `answer` (then closes).
    fn converse_with(
        answer: &'static str,
        timeout: Duration,
    ) -> (Result<i32, CtlError>, String, String) {
        let (host, agent) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(&agent).read_line(&mut line).unwrap();
            assert_eq!(line, "{\"args\":[\"status\",\"--json\"],\"id\":\"me\"}\n");
            let mut w = &agent;
            w.write_all(answer.as_bytes()).unwrap();
            // Keep the connection open a little for the timeout case.
            std::thread::sleep(Duration::from_millis(400));
        });
        let c = Conversation {
            node: "lb1",
            socket: std::path::Path::new("/s/vms/lb1/ctl.sock"),
            id: "me",
            timeout,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = c.run(
            &host,
            &["status".into(), "--json".into()],
            &mut out,
            &mut err,
        );
        fake.join().unwrap();
        (
            r,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn a_conversation_relays_output_and_returns_the_exit_code() {
        let (r, out, err) = converse_with(
            concat!(
                "{\"id\":\"old\",\"stream\":\"stdout\",\"data\":\"stale\\n\"}\n",
                "{\"id\":\"me\",\"stream\":\"stdout\",\"data\":\"[]\"}\n",
                "{\"id\":\"me\",\"stream\":\"stderr\",\"data\":\"warn\\n\"}\n",
                "{\"id\":\"me\",\"stream\":\"stdout\",\"data\":\"\\n\"}\n",
                "{\"id\":\"me\",\"exit\":3}\n",
            ),
            Duration::from_secs(10),
        );
        assert_eq!(r.unwrap(), 3);
        assert_eq!(out, "[]\n");
        assert_eq!(err, "warn\n");
    }

    #[test]
    fn a_conversation_fails_precisely() {
        let (r, out, _) = converse_with(
            "{\"id\":\"me\",\"stream\":\"stdout\",\"data\":\"part\"}\n",
            Duration::from_secs(10),
        );
        assert_eq!(out, "part");
        assert_eq!(
            r.unwrap_err().to_string(),
            "lb1: the control channel /s/vms/lb1/ctl.sock closed before the command finished (did the VM stop or reboot?)"
        );
        let (r, _, _) = converse_with(
            "{\"id\":\"me\",\"error\":\"no\"}\n",
            Duration::from_secs(10),
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "lb1: cairnctl agent refused the request: no"
        );
        let (r, _, _) = converse_with("garbage\n", Duration::from_secs(10));
        assert!(
            r.unwrap_err()
                .to_string()
                .starts_with("lb1: unexpected answer from cairnctl agent on /s/vms/lb1/ctl.sock: \"garbage\": not JSON"),
        );
        let (r, _, _) = converse_with("", Duration::from_millis(200));
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with(
                "lb1: no complete answer from cairnctl agent on /s/vms/lb1/ctl.sock within 0.2 s"
            ),
            "{e}"
        );
    }

    #[test]
    fn exit_codes_map_to_a_byte() {
        assert_eq!(local_exit_code(0), 0);
        assert_eq!(local_exit_code(124), 124);
        assert_eq!(local_exit_code(255), 255);
        assert_eq!(local_exit_code(256), 1);
        assert_eq!(local_exit_code(-1), 255);
    }
}

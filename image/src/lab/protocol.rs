//! The keeper's control protocol on `<state>/keeper.sock`: one request line
//! in, one JSON line out, then the connection closes. Plain text requests so
//! the socket can be driven by hand (`echo status | socat - UNIX:keeper.sock`).
//! Parsing and formatting only; no I/O.

use serde::{Deserialize, Serialize};

/// A request to the keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Report every node.
    Status,
    /// Hard power-off of a VM (SIGKILL to QEMU), or stop an external node's responders.
    Kill(String),
    /// Boot a stopped VM again on its overlay, or restart a stopped responder.
    Start(String),
    /// Pull the node's cable.
    Cut(String),
    /// Plug the node's cable back in.
    Heal(String),
    /// Stop every VM and responder, answer, and exit.
    Down,
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty line.
    #[error("empty request")]
    Empty,
    /// Not a known verb.
    #[error("unknown request {0:?} (status, kill, start, cut, heal, down)")]
    Unknown(String),
    /// A node verb without a node, or extra words.
    #[error("{0}: expected exactly one node name")]
    Arity(String),
}

impl Request {
    /// Parses one request line (`kill lb1`).
    pub fn parse(line: &str) -> Result<Request, ParseError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&verb, rest)) = words.split_first() else {
            return Err(ParseError::Empty);
        };
        let node = || match rest {
            [one] => Ok((*one).to_string()),
            _ => Err(ParseError::Arity(verb.to_string())),
        };
        match verb {
            "status" | "down" if !rest.is_empty() => Err(ParseError::Arity(verb.to_string())),
            "status" => Ok(Request::Status),
            "down" => Ok(Request::Down),
            "kill" => node().map(Request::Kill),
            "start" => node().map(Request::Start),
            "cut" => node().map(Request::Cut),
            "heal" => node().map(Request::Heal),
            other => Err(ParseError::Unknown(other.to_string())),
        }
    }

    /// The request as one line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Down => "down".into(),
            Request::Kill(n) => format!("kill {n}"),
            Request::Start(n) => format!("start {n}"),
            Request::Cut(n) => format!("cut {n}"),
            Request::Heal(n) => format!("heal {n}"),
        }
    }
}

/// The keeper's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A sentence about what was done (`lb1 killed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every node, for `status` (and after each change).
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
}

impl Response {
    /// A success with a message and the nodes.
    pub fn ok(message: impl Into<String>, nodes: Vec<NodeStatus>) -> Self {
        Self {
            ok: true,
            error: None,
            message: Some(message.into()),
            nodes,
        }
    }

    /// A failure.
    pub fn err(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(error.into()),
            message: None,
            nodes: Vec::new(),
        }
    }
}

/// What kind of node a status entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A box booted as a QEMU VM.
    Vm,
    /// An external node run as HTTP responders.
    External,
}

/// When a VM printed `CAIRN-READY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Milliseconds after QEMU started.
    pub after_ms: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The console line.
    pub line: String,
}

/// One node as the keeper sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// VM or external.
    pub kind: NodeKind,
    /// Role (VMs) or `external`.
    pub role: String,
    /// QEMU (or every responder) is running.
    pub running: bool,
    /// QEMU's pid while running (the first responder's for external nodes).
    #[serde(default)]
    pub pid: Option<u32>,
    /// How many times the VM was started.
    pub boots: u32,
    /// `CAIRN-READY` of the current boot.
    #[serde(default)]
    pub ready: Option<Ready>,
    /// The cable is plugged in.
    pub link_up: bool,
    /// How the last run ended (`signal: 9 (SIGKILL)`), when stopped.
    #[serde(default)]
    pub exit: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Status,
            Request::Down,
            Request::Kill("lb1".into()),
            Request::Start("lb1".into()),
            Request::Cut("web-1".into()),
            Request::Heal("x".into()),
        ] {
            assert_eq!(Request::parse(&r.to_line()).unwrap(), r);
        }
        assert_eq!(
            Request::parse("  kill   lb2 \n").unwrap(),
            Request::Kill("lb2".into())
        );
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(Request::parse(" "), Err(ParseError::Empty));
        assert_eq!(
            Request::parse("kill"),
            Err(ParseError::Arity("kill".into()))
        );
        assert_eq!(
            Request::parse("cut a b"),
            Err(ParseError::Arity("cut".into()))
        );
        assert_eq!(
            Request::parse("status now"),
            Err(ParseError::Arity("status".into()))
        );
        assert_eq!(
            Request::parse("reboot lb1").unwrap_err().to_string(),
            "unknown request \"reboot\" (status, kill, start, cut, heal, down)"
        );
    }

    #[test]
    fn responses_are_one_json_line_and_parse_back() {
        let r = Response::ok(
            "lb1 killed",
            vec![NodeStatus {
                name: "lb1".into(),
                kind: NodeKind::Vm,
                role: "lb".into(),
                running: false,
                pid: None,
                boots: 1,
                ready: Some(Ready {
                    after_ms: 11_000,
                    unix_ms: 1,
                    line: "CAIRN-READY role=lb".into(),
                }),
                link_up: true,
                exit: Some("signal: 9 (SIGKILL)".into()),
            }],
        );
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains("\"kind\":\"vm\""), "{line}");
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), r);
        let e = serde_json::to_string(&Response::err("no node x")).unwrap();
        assert_eq!(e, r#"{"ok":false,"error":"no node x","nodes":[]}"#);
    }
}

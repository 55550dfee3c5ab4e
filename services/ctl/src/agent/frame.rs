//! The host control channel's wire format, without I/O: requests in, JSON lines out.
//!
//! ```text
//! host → box   {"id": "h1", "args": ["status", "--json"]}\n
//! box  → host  {"id": "h1", "stream": "stdout", "data": "[\n  {..."}\n     (any number)
//!              {"id": "h1", "stream": "stderr", "data": "..."}\n
//!              {"id": "h1", "exit": 0}\n                                   (last)
//!          or  {"id": "h1", "error": "request: field `args`: ..."}\n        (refused)
//! ```
//!
//! `id` is optional and echoed in every answer, so a host that reconnects
//! can tell a late answer to an earlier connection from its own.

use serde_json::{Value, json};

/// At most this many arguments per request.
pub const MAX_ARGS: usize = 32;
/// Each argument must be shorter than this many bytes.
pub const MAX_ARG_BYTES: usize = 4096;
/// A request line longer than this is refused without being parsed (the
/// largest valid request is about 32 × 4 KiB plus JSON escapes).
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// Output is sent in pieces of at most this many bytes of text.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024;

/// One validated request: run cairnctl with `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Echoed in every answer (a string or a number), when given.
    pub id: Option<Value>,
    /// cairnctl's arguments, without the program name.
    pub args: Vec<String>,
}

/// Why a request line was refused; the text is sent back as `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The line is not JSON.
    Json(String),
    /// The line is JSON but not an object.
    NotAnObject,
    /// A key other than `id` and `args`.
    UnknownField(String),
    /// `id` is neither a string nor a number.
    BadId,
    /// No `args` key.
    MissingArgs,
    /// `args` is not an array of strings.
    ArgsNotStrings,
    /// More than [`MAX_ARGS`] arguments.
    TooManyArgs(usize),
    /// An argument of [`MAX_ARG_BYTES`] bytes or more.
    ArgTooLong {
        /// Its position.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// An argument with a NUL byte (cannot be passed to exec).
    NulByte(usize),
    /// The agent would start itself again.
    Recursion,
    /// The line exceeded [`MAX_LINE_BYTES`].
    LineTooLong,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(e) => write!(f, "request is not JSON: {e}"),
            Self::NotAnObject => write!(f, "request must be a JSON object {{\"args\": [...]}}"),
            Self::UnknownField(k) => {
                write!(f, "request: unknown field `{k}` (expected `id`, `args`)")
            }
            Self::BadId => write!(f, "request: field `id`: must be a string or a number"),
            Self::MissingArgs => write!(f, "request: field `args` is missing"),
            Self::ArgsNotStrings => {
                write!(f, "request: field `args`: must be an array of strings")
            }
            Self::TooManyArgs(n) => write!(
                f,
                "request: field `args`: {n} arguments, at most {MAX_ARGS} allowed"
            ),
            Self::ArgTooLong { index, len } => write!(
                f,
                "request: field `args[{index}]`: {len} bytes, must be under {MAX_ARG_BYTES}"
            ),
            Self::NulByte(index) => {
                write!(f, "request: field `args[{index}]`: contains a NUL byte")
            }
            Self::Recursion => write!(
                f,
                "request: field `args`: `agent` cannot be run through the agent"
            ),
            Self::LineTooLong => write!(
                f,
                "request line longer than {MAX_LINE_BYTES} bytes; discarded"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses and validates one request line (without its newline). On error, the
/// request's `id` is returned too when it could be read, so the refusal carries it.
pub fn parse_request(line: &[u8]) -> Result<Request, (Option<Value>, RequestError)> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| (None, RequestError::Json(e.to_string())))?;
    let Value::Object(map) = value else {
        return Err((None, RequestError::NotAnObject));
    };
    let id = match map.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => return Err((None, RequestError::BadId)),
    };
    let fail = |e| Err((id.clone(), e));
    if let Some(k) = map.keys().find(|k| *k != "id" && *k != "args") {
        return fail(RequestError::UnknownField(k.clone()));
    }
    let Some(args) = map.get("args") else {
        return fail(RequestError::MissingArgs);
    };
    let Some(args) = args.as_array() else {
        return fail(RequestError::ArgsNotStrings);
    };
    if args.len() > MAX_ARGS {
        return fail(RequestError::TooManyArgs(args.len()));
    }
    let mut out = Vec::with_capacity(args.len());
    for (index, a) in args.iter().enumerate() {
        let Some(a) = a.as_str() else {
            return fail(RequestError::ArgsNotStrings);
        };
        if a.len() >= MAX_ARG_BYTES {
            return fail(RequestError::ArgTooLong {
                index,
                len: a.len(),
            });
        }
        if a.contains('\0') {
            return fail(RequestError::NulByte(index));
        }
        out.push(a.to_owned());
    }
    if invokes_agent(&out) {
        return fail(RequestError::Recursion);
    }
    Ok(Request { id, args: out })
}

/// Whether cairnctl would run its `agent` subcommand with these arguments:
/// the first word that is not an option (or the value of `--control`).
fn invokes_agent(args: &[String]) -> bool {
    let mut words = args.iter();
    while let Some(a) = words.next() {
        if a == "--control" {
            words.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        return a == "agent";
    }
    false
}

/// Which output stream a piece of text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

impl Stream {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

fn line(id: Option<&Value>, mut body: serde_json::Map<String, Value>) -> String {
    if let Some(id) = id {
        body.insert("id".into(), id.clone());
    }
    let mut s = Value::Object(body).to_string();
    s.push('\n');
    s
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// `{"stream": ..., "data": ...}`: a piece of the command's output.
pub fn output_line(id: Option<&Value>, stream: Stream, data: &str) -> String {
    line(id, object(json!({"stream": stream.name(), "data": data})))
}

/// `{"exit": code}`: the command finished; the last line of an answer.
pub fn exit_line(id: Option<&Value>, code: i32) -> String {
    line(id, object(json!({ "exit": code })))
}

/// `{"error": ...}`: the request was refused or could not run.
pub fn error_line(id: Option<&Value>, message: &str) -> String {
    line(id, object(json!({ "error": message })))
}

/// Splits the byte stream from the host into request lines, refusing
/// (and skipping up to the next newline) lines longer than [`MAX_LINE_BYTES`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    discarding: bool,
}

/// One item from [`LineSplitter::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline (and without a trailing `\r`).
    Complete(Vec<u8>),
    /// A line that was too long; its bytes were dropped.
    TooLong,
}

impl LineSplitter {
    /// Adds bytes; returns the lines they completed, in order. Blank lines are skipped.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (head, rest, ended) = match newline {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if !self.discarding {
                self.pending.extend_from_slice(head);
                if self.pending.len() > MAX_LINE_BYTES {
                    self.pending = Vec::new();
                    self.discarding = true;
                    out.push(Line::TooLong);
                }
            }
            if ended {
                if self.discarding {
                    self.discarding = false;
                } else {
                    let mut l = std::mem::take(&mut self.pending);
                    if l.last() == Some(&b'\r') {
                        l.pop();
                    }
                    if !l.iter().all(u8::is_ascii_whitespace) {
                        out.push(Line::Complete(l));
                    }
                }
            }
        }
        out
    }

    /// Forgets a partial line (the host went away in the middle of it).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.discarding = false;
    }
}

/// Turns the command's output bytes into text pieces without splitting a
/// UTF-8 sequence across two pieces; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Chunker {
    pending: Vec<u8>,
}

impl Utf8Chunker {
    /// Adds bytes; returns the text that is complete so far, in pieces of at
    /// most [`MAX_CHUNK_BYTES`]. At `eof`, everything left is returned.
    pub fn push(&mut self, bytes: &[u8], eof: bool) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let keep = if eof {
            0
        } else {
            incomplete_tail(&self.pending)
        };
        let ready: Vec<u8> = self.pending.drain(..self.pending.len() - keep).collect();
        let text = String::from_utf8_lossy(&ready);
        split_text(&text, MAX_CHUNK_BYTES)
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not
/// complete yet (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// Splits text into pieces of at most `max` bytes on character boundaries.
fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        out.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    out
}

/// The exit code reported for a command: its status, 128 + the signal that
/// killed it, like a shell.
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    code.or_else(|| signal.map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> (Option<Value>, String) {
        let (id, e) = parse_request(line.as_bytes()).unwrap_err();
        (id, e.to_string())
    }

    #[test]
    fn requests_parse_with_and_without_id() {
        assert_eq!(
            parse_request(br#"{"args": ["status", "--json"]}"#).unwrap(),
            Request {
                id: None,
                args: vec!["status".into(), "--json".into()]
            }
        );
        let r = parse_request(br#"{"id": 7, "args": []}"#).unwrap();
        assert_eq!(r.id, Some(json!(7)));
        assert!(r.args.is_empty());
        let r = parse_request(br#"{"args": ["stop", "haproxy"], "id": "h-1"}"#).unwrap();
        assert_eq!(r.id, Some(json!("h-1")));
    }

    #[test]
    fn bad_requests_are_refused_with_reason_and_id() {
        assert!(refused("status").1.starts_with("request is not JSON"));
        assert_eq!(
            refused("[1]").1,
            "request must be a JSON object {\"args\": [...]}"
        );
        assert_eq!(
            refused(r#"{"id": 1, "argv": []}"#),
            (
                Some(json!(1)),
                "request: unknown field `argv` (expected `id`, `args`)".into()
            )
        );
        assert_eq!(
            refused(r#"{"id": [1], "args": []}"#).1,
            "request: field `id`: must be a string or a number"
        );
        assert_eq!(
            refused(r#"{"id": "x"}"#),
            (Some(json!("x")), "request: field `args` is missing".into())
        );
        assert_eq!(
            refused(r#"{"args": "status"}"#).1,
            "request: field `args`: must be an array of strings"
        );
        assert_eq!(
            refused(r#"{"args": ["stop", 3]}"#).1,
            "request: field `args`: must be an array of strings"
        );
        assert_eq!(
            refused(r#"{"args": ["a\u0000b"]}"#).1,
            "request: field `args[0]`: contains a NUL byte"
        );
    }

    #[test]
    fn argument_limits() {
        let args = |n: usize, len: usize| {
            let list: Vec<String> = (0..n).map(|_| "x".repeat(len)).collect();
            json!({ "args": list }).to_string()
        };
        assert_eq!(
            parse_request(args(32, 4095).as_bytes()).unwrap().args.len(),
            32
        );
        assert_eq!(
            refused(&args(33, 1)).1,
            "request: field `args`: 33 arguments, at most 32 allowed"
        );
        assert_eq!(
            refused(&args(2, 4096)).1,
            "request: field `args[0]`: 4096 bytes, must be under 4096"
        );
        // The largest valid request fits in a line.
        assert!(args(32, 4095).len() < MAX_LINE_BYTES);
    }

    #[test]
    fn the_agent_does_not_run_itself() {
        for args in [
            json!(["agent"]),
            json!(["agent", "--device", "/dev/vport0p1"]),
            json!(["--control", "/run/x.sock", "agent"]),
            json!(["--control=/run/x.sock", "agent"]),
        ] {
            let line = json!({ "args": args }).to_string();
            assert_eq!(
                refused(&line).1,
                RequestError::Recursion.to_string(),
                "{line}"
            );
        }
        for args in [
            json!(["--version"]),
            json!(["logs", "agent"]),
            json!(["--control", "agent", "status"]),
        ] {
            let line = json!({ "args": args }).to_string();
            assert!(parse_request(line.as_bytes()).is_ok(), "{line}");
        }
    }

    #[test]
    fn answer_lines() {
        let id = json!("h1");
        assert_eq!(
            output_line(Some(&id), Stream::Stdout, "a\n\"b\"\n"),
            "{\"data\":\"a\\n\\\"b\\\"\\n\",\"id\":\"h1\",\"stream\":\"stdout\"}\n"
        );
        assert_eq!(
            output_line(None, Stream::Stderr, "x"),
            "{\"data\":\"x\",\"stream\":\"stderr\"}\n"
        );
        assert_eq!(exit_line(Some(&json!(3)), 1), "{\"exit\":1,\"id\":3}\n");
        assert_eq!(error_line(None, "no"), "{\"error\":\"no\"}\n");
    }

    #[test]
    fn lines_split_across_reads_and_overlong_ones_are_dropped() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"{\"a\""), vec![]);
        assert_eq!(
            s.push(b":1}\r\n\n  \n{\"b\":2}\n{\"c\""),
            vec![
                Line::Complete(b"{\"a\":1}".to_vec()),
                Line::Complete(b"{\"b\":2}".to_vec())
            ]
        );
        s.reset();
        assert_eq!(s.push(b"3}\n"), vec![Line::Complete(b"3}".to_vec())]);

        let big = vec![b'x'; MAX_LINE_BYTES];
        assert_eq!(s.push(&big), vec![]);
        assert_eq!(s.push(b"xx"), vec![Line::TooLong]);
        assert_eq!(s.push(&big), vec![], "still discarding");
        assert_eq!(
            s.push(b"tail\n{\"ok\":1}\n"),
            vec![Line::Complete(b"{\"ok\":1}".to_vec())]
        );
    }

    #[test]
    fn utf8_sequences_are_never_split() {
        let mut c = Utf8Chunker::default();
        let text = "grüße €𝄞";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for b in bytes {
            for piece in c.push(std::slice::from_ref(b), false) {
                out.push_str(&piece);
            }
        }
        assert_eq!(out, text);
        // Invalid bytes become U+FFFD; an incomplete tail is flushed at EOF.
        assert_eq!(c.push(b"a\xffb", false), vec!["a\u{fffd}b".to_string()]);
        assert_eq!(c.push(b"\xe2\x82", false), Vec::<String>::new());
        assert_eq!(c.push(b"", true), vec!["\u{fffd}".to_string()]);
        // Long output comes in pieces, each within the limit, on char boundaries.
        let long = "é".repeat(MAX_CHUNK_BYTES);
        let pieces = c.push(long.as_bytes(), false);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() <= MAX_CHUNK_BYTES));
        assert_eq!(pieces.concat(), long);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(Some(0), None), 0);
        assert_eq!(exit_code(Some(2), None), 2);
        assert_eq!(exit_code(None, Some(9)), 137);
        assert_eq!(exit_code(None, None), 1);
    }
}

//! The server side of the D-Bus authentication handshake, as a state machine over bytes.
//!
//! zbus has its own, but it buffers an unbounded line and panics on some malformed input, and
//! PID 1 faces every local user. This one accepts only the `EXTERNAL` mechanism, bounds line
//! length and line count, and never allocates more than [`MAX_LINE`] bytes. The caller reads
//! from the socket, feeds bytes in, writes the replies out and, once [`Progress::Done`], hands
//! the socket and any bytes that followed `BEGIN` to zbus as an authenticated socket.
//!
//! Client lines and our replies (D-Bus specification, "Authentication Protocol"):
//!
//! ```text
//! C: \0AUTH EXTERNAL 30              S: OK <guid>        (uid matches SO_PEERCRED)
//! C: \0AUTH EXTERNAL                 S: DATA
//! C: DATA | DATA 30                  S: OK <guid>
//! C: AUTH <other mechanism>          S: REJECTED EXTERNAL
//! C: NEGOTIATE_UNIX_FD               S: ERROR ...        (no fd passing: no method takes fds)
//! C: BEGIN                           (handshake done; D-Bus messages follow)
//! ```

/// Longest accepted line, including `\r\n`; real lines are under 60 bytes.
pub(crate) const MAX_LINE: usize = 256;
/// Most lines a client may send before `BEGIN`; an honest client needs at most four.
pub(crate) const MAX_LINES: usize = 16;

/// Why the handshake was abandoned; the connection is then closed.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub(crate) enum SaslError {
    /// The stream did not start with the credentials NUL byte.
    #[error("handshake does not start with a NUL byte")]
    NoLeadingNul,
    /// A line had no `\r\n` within [`MAX_LINE`] bytes.
    #[error("handshake line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A `\n` not preceded by `\r`.
    #[error("handshake line not terminated by CRLF")]
    BadLineEnding,
    /// More than [`MAX_LINES`] lines.
    #[error("more than {MAX_LINES} handshake lines")]
    TooManyLines,
    /// `BEGIN` before authentication succeeded.
    #[error("BEGIN before authentication")]
    BeginBeforeAuth,
}

/// Result of feeding bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More lines are needed.
    Continue,
    /// `BEGIN` received; `leftover` holds the bytes after it (the first D-Bus messages).
    Done {
        /// Bytes that followed `BEGIN\r\n` in the same read.
        leftover: Vec<u8>,
    },
}

/// What the server waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Auth,
    Data,
    Begin,
}

/// One connection's handshake.
#[derive(Debug)]
pub(crate) struct SaslServer {
    state: State,
    peer_uid: u32,
    guid: String,
    buf: Vec<u8>,
    nul_seen: bool,
    lines: usize,
}

impl SaslServer {
    /// A handshake for a peer whose uid (from `SO_PEERCRED`) is `peer_uid`; `guid` is the
    /// server GUID sent with `OK` (32 hex digits).
    pub(crate) fn new(peer_uid: u32, guid: &str) -> Self {
        SaslServer {
            state: State::Auth,
            peer_uid,
            guid: guid.to_owned(),
            buf: Vec::new(),
            nul_seen: false,
            lines: 0,
        }
    }

    /// Consumes the next bytes from the client and appends replies to `out`.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Progress, SaslError> {
        if !self.nul_seen {
            match bytes.split_first() {
                None => return Ok(Progress::Continue),
                Some((0, rest)) => {
                    self.nul_seen = true;
                    bytes = rest;
                }
                Some(_) => return Err(SaslError::NoLeadingNul),
            }
        }
        while !bytes.is_empty() {
            let Some(lf) = bytes.iter().position(|&b| b == b'\n') else {
                if self.buf.len() + bytes.len() > MAX_LINE {
                    return Err(SaslError::LineTooLong);
                }
                self.buf.extend_from_slice(bytes);
                return Ok(Progress::Continue);
            };
            if self.buf.len() + lf + 1 > MAX_LINE {
                return Err(SaslError::LineTooLong);
            }
            self.buf.extend_from_slice(&bytes[..=lf]);
            bytes = &bytes[lf + 1..];
            self.lines += 1;
            if self.lines > MAX_LINES {
                return Err(SaslError::TooManyLines);
            }
            let line = std::mem::take(&mut self.buf);
            let Some(line) = line.strip_suffix(b"\r\n") else {
                return Err(SaslError::BadLineEnding);
            };
            if self.line(line, out)? {
                return Ok(Progress::Done {
                    leftover: bytes.to_vec(),
                });
            }
        }
        Ok(Progress::Continue)
    }

    /// Handles one line without its `\r\n`; returns true on `BEGIN` after authentication.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<bool, SaslError> {
        let text = std::str::from_utf8(line).unwrap_or("");
        let mut words = text.split_ascii_whitespace();
        let command = words.next().unwrap_or("");
        let arg = words.next();
        match (self.state, command) {
            (State::Begin, "BEGIN") => return Ok(true),
            (_, "BEGIN") => return Err(SaslError::BeginBeforeAuth),
            (State::Auth, "AUTH") => match (arg, words.next()) {
                (Some("EXTERNAL"), Some(response)) => self.check_identity(response, out),
                (Some("EXTERNAL"), None) => {
                    self.state = State::Data;
                    out.extend_from_slice(b"DATA\r\n");
                }
                _ => self.reject(out),
            },
            (State::Data, "DATA") => match arg {
                Some(response) => self.check_identity(response, out),
                None => self.accept(out),
            },
            (State::Begin, "NEGOTIATE_UNIX_FD") => {
                out.extend_from_slice(b"ERROR file descriptor passing is not supported\r\n");
            }
            (_, "CANCEL" | "ERROR") => self.reject(out),
            _ => out.extend_from_slice(b"ERROR unexpected command\r\n"),
        }
        Ok(false)
    }

    /// `EXTERNAL` response: the hex-encoded decimal uid the client claims to be.
    fn check_identity(&mut self, hex_uid: &str, out: &mut Vec<u8>) {
        match decode_hex_uid(hex_uid) {
            Some(uid) if uid == self.peer_uid => self.accept(out),
            _ => self.reject(out),
        }
    }

    fn accept(&mut self, out: &mut Vec<u8>) {
        self.state = State::Begin;
        out.extend_from_slice(b"OK ");
        out.extend_from_slice(self.guid.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn reject(&mut self, out: &mut Vec<u8>) {
        self.state = State::Auth;
        out.extend_from_slice(b"REJECTED EXTERNAL\r\n");
    }
}

/// `"30"` → 0, `"31303030"` → 1000.
fn decode_hex_uid(hex: &str) -> Option<u32> {
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 20 {
        return None;
    }
    let digits: Option<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            let byte = u8::from_str_radix(pair, 16).ok()?;
            byte.is_ascii_digit().then_some(char::from(byte))
        })
        .collect();
    digits?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const GUID: &str = "0123456789abcdef0123456789abcdef";

    /// Feeds `input` in one piece and returns (result, replies).
    fn run(uid: u32, input: &[u8]) -> (Result<Progress, SaslError>, String) {
        let mut server = SaslServer::new(uid, GUID);
        let mut out = Vec::new();
        let result = server.feed(input, &mut out);
        (result, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn zbus_and_libdbus_style_with_initial_response() {
        // uid 1000 = "1000" = 31 30 30 30.
        let (result, out) = run(
            1000,
            b"\0AUTH EXTERNAL 31303030\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\nl\x01\x00\x01",
        );
        assert_eq!(
            result,
            Ok(Progress::Done {
                leftover: b"l\x01\x00\x01".to_vec()
            })
        );
        assert_eq!(
            out,
            format!("OK {GUID}\r\nERROR file descriptor passing is not supported\r\n")
        );
    }

    #[test]
    fn sd_bus_style_with_empty_data() {
        let (result, out) = run(0, b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n");
        assert_eq!(result, Ok(Progress::Done { leftover: vec![] }));
        assert_eq!(out, format!("DATA\r\nOK {GUID}\r\n"));
    }

    #[test]
    fn byte_by_byte_gives_the_same_replies() {
        let input = b"\0AUTH EXTERNAL 30\r\nBEGIN\r\nXYZ";
        let mut server = SaslServer::new(0, GUID);
        let mut out = Vec::new();
        let mut last = Ok(Progress::Continue);
        for (i, byte) in input.iter().enumerate() {
            last = server.feed(std::slice::from_ref(byte), &mut out);
            if matches!(last, Ok(Progress::Done { .. })) {
                assert_eq!(i, input.len() - 4, "done right after BEGIN's LF");
                break;
            }
        }
        assert_eq!(last, Ok(Progress::Done { leftover: vec![] }));
        assert_eq!(String::from_utf8_lossy(&out), format!("OK {GUID}\r\n"));
    }

    #[test]
    fn wrong_uid_or_mechanism_is_rejected_then_retry_works() {
        let (result, out) = run(
            1000,
            b"\0AUTH EXTERNAL 30\r\nAUTH ANONYMOUS\r\nAUTH\r\nAUTH EXTERNAL 31303030\r\n",
        );
        assert_eq!(result, Ok(Progress::Continue));
        assert_eq!(
            out,
            format!("REJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\nREJECTED EXTERNAL\r\nOK {GUID}\r\n")
        );
    }

    #[test]
    fn begin_before_auth_ends_the_handshake() {
        assert_eq!(run(0, b"\0BEGIN\r\n").0, Err(SaslError::BeginBeforeAuth));
        assert_eq!(
            run(0, b"\0AUTH EXTERNAL\r\nBEGIN\r\n").0,
            Err(SaslError::BeginBeforeAuth)
        );
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        assert_eq!(run(0, b"\n").0, Err(SaslError::NoLeadingNul));
        assert_eq!(
            run(0, b"AUTH EXTERNAL 30\r\n").0,
            Err(SaslError::NoLeadingNul)
        );
        assert_eq!(run(0, b"\0\n").0, Err(SaslError::BadLineEnding));
        assert_eq!(run(0, b"\0AUTH\r\n\n").0, Err(SaslError::BadLineEnding));
        assert_eq!(run(0, &[0u8; 300]).0, Err(SaslError::LineTooLong));
        let mut long = vec![0u8];
        long.extend(std::iter::repeat_n(b'A', MAX_LINE));
        long.extend_from_slice(b"\r\n");
        assert_eq!(run(0, &long).0, Err(SaslError::LineTooLong));
        let many = [&b"\0"[..], &b"ERROR\r\n".repeat(MAX_LINES + 1)].concat();
        assert_eq!(run(0, &many).0, Err(SaslError::TooManyLines));
        let (result, out) = run(0, b"\0\xff\xfe\r\nDATA 30\r\n");
        assert_eq!(result, Ok(Progress::Continue));
        assert_eq!(
            out,
            "ERROR unexpected command\r\nERROR unexpected command\r\n"
        );
    }

    #[test]
    fn hex_uids() {
        assert_eq!(decode_hex_uid("30"), Some(0));
        assert_eq!(decode_hex_uid("3635353334"), Some(65534));
        assert_eq!(decode_hex_uid("3"), None);
        assert_eq!(decode_hex_uid("zz"), None);
        assert_eq!(decode_hex_uid("41"), None, "'A' is not a digit");
        assert_eq!(decode_hex_uid(""), None);
        assert_eq!(decode_hex_uid("3939393939393939393939"), None, "too long");
    }
}

//! A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! QMP is line-delimited JSON: QEMU greets with `{"QMP": ...}`, the client
//! sends `{"execute": "qmp_capabilities"}`, then each command gets one reply,
//! `{"return": ...}` or `{"error": {"class", "desc"}}`, carrying back the `id`
//! the command was sent with. Asynchronous events (`{"event": ...}`) may
//! arrive at any time and are kept aside.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected to.
    #[error("cannot connect to QMP socket {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed (or timed out) during `command`.
    #[error("QMP {command} on {socket}: {source}")]
    Io {
        /// The command being exchanged (`greeting` for the handshake).
        command: String,
        /// The socket.
        socket: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU closed the socket before answering `command`.
    #[error("QMP {command} on {socket}: QEMU closed the connection")]
    Closed {
        /// The command being exchanged.
        command: String,
        /// The socket.
        socket: PathBuf,
    },
    /// QEMU sent something that is not QMP.
    #[error("QMP {command}: unexpected message {message}")]
    Protocol {
        /// The command being exchanged.
        command: String,
        /// The message, as received.
        message: String,
    },
    /// QEMU refused the command.
    #[error("QMP {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP's error class, e.g. `GenericError`, `DeviceNotFound`.
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
}

/// One message from QEMU.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// The greeting sent on connect.
    Greeting(Value),
    /// A successful reply.
    Return {
        /// The `id` of the command it answers, if one was sent.
        id: Option<Value>,
        /// The returned value.
        value: Value,
    },
    /// A failed command.
    Error {
        /// The `id` of the command it answers, if one was sent.
        id: Option<Value>,
        /// QMP's error class.
        class: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// An asynchronous event, e.g. `SHUTDOWN`, `RESET`, `WATCHDOG`.
    Event(Value),
}

/// Parses one line from QEMU; `None` when it is not a QMP message.
pub fn parse_message(line: &str) -> Option<Message> {
    let value: Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let id = object.get("id").cloned();
    if object.contains_key("QMP") {
        Some(Message::Greeting(value))
    } else if let Some(returned) = object.get("return") {
        Some(Message::Return {
            id,
            value: returned.clone(),
        })
    } else if let Some(error) = object.get("error") {
        let text = |key: &str| {
            error
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Some(Message::Error {
            id,
            class: text("class"),
            desc: text("desc"),
        })
    } else if object.contains_key("event") {
        Some(Message::Event(value))
    } else {
        None
    }
}

/// Encodes a command with its `id` as one QMP line.
pub fn encode_command(id: u64, command: &str, arguments: Option<&Value>) -> String {
    let mut message = json!({ "execute": command, "id": id });
    if let (Some(arguments), Some(object)) = (arguments, message.as_object_mut()) {
        object.insert("arguments".into(), arguments.clone());
    }
    format!("{message}\n")
}

/// A connected, negotiated QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    socket: PathBuf,
    next_id: u64,
    events: Vec<Value>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").field("socket", &self.socket).finish()
    }
}

impl Qmp {
    /// Connects to QEMU's QMP socket and negotiates capabilities. Every read
    /// waits at most `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(socket).map_err(|source| QmpError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
        Self::handshake(stream, socket, timeout)
    }

    /// Runs the handshake on an already connected stream (`socket` names it in errors).
    pub fn handshake(
        stream: UnixStream,
        socket: &Path,
        timeout: Duration,
    ) -> Result<Self, QmpError> {
        let io = |source| QmpError::Io {
            command: "greeting".into(),
            socket: socket.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
            socket: socket.to_path_buf(),
            next_id: 0,
            events: Vec::new(),
        };
        match qmp.read_message("greeting")? {
            Message::Greeting(_) => {}
            other => {
                return Err(QmpError::Protocol {
                    command: "greeting".into(),
                    message: format!("{other:?}"),
                });
            }
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value. Events that arrive
    /// meanwhile are kept for [`Qmp::take_events`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.next_id += 1;
        let id = self.next_id;
        let line = encode_command(id, command, arguments.as_ref());
        self.writer
            .write_all(line.as_bytes())
            .map_err(|source| QmpError::Io {
                command: command.into(),
                socket: self.socket.clone(),
                source,
            })?;
        loop {
            let message = match self.read_message(command) {
                // QEMU may close the socket as it quits, before or after replying.
                Err(QmpError::Closed { .. }) if command == "quit" => return Ok(Value::Null),
                other => other?,
            };
            match message {
                Message::Return {
                    id: Some(got),
                    value,
                } if got == id => return Ok(value),
                Message::Error {
                    id: Some(got),
                    class,
                    desc,
                } if got == id => {
                    return Err(QmpError::Command {
                        command: command.into(),
                        class,
                        desc,
                    });
                }
                Message::Event(event) => self.events.push(event),
                // A late reply to an earlier command that timed out: skip it.
                Message::Return { .. } | Message::Error { .. } | Message::Greeting(_) => {}
            }
        }
    }

    /// Events received so far (oldest first); the list is emptied.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    fn read_message(&mut self, command: &str) -> Result<Message, QmpError> {
        loop {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .map_err(|source| QmpError::Io {
                    command: command.into(),
                    socket: self.socket.clone(),
                    source,
                })?;
            if read == 0 {
                return Err(QmpError::Closed {
                    command: command.into(),
                    socket: self.socket.clone(),
                });
            }
            if line.trim().is_empty() {
                continue;
            }
            return parse_message(&line).ok_or_else(|| QmpError::Protocol {
                command: command.into(),
                message: line.trim_end().to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    #[test]
    fn messages_parse() {
        assert!(matches!(
            parse_message(r#"{"QMP": {"version": {}, "capabilities": ["oob"]}}"#),
            Some(Message::Greeting(_))
        ));
        assert_eq!(
            parse_message(r#"{"return": {}, "id": 3}"#),
            Some(Message::Return {
                id: Some(json!(3)),
                value: json!({})
            })
        );
        assert_eq!(
            parse_message(
                r#"{"id": 4, "error": {"class": "DeviceNotFound", "desc": "Device 'nic9' not found"}}"#
            ),
            Some(Message::Error {
                id: Some(json!(4)),
                class: "DeviceNotFound".into(),
                desc: "Device 'nic9' not found".into()
            })
        );
        assert!(matches!(
            parse_message(
                r#"{"timestamp": {"seconds": 1}, "event": "SHUTDOWN", "data": {"guest": true}}"#
            ),
            Some(Message::Event(_))
        ));
        assert_eq!(parse_message("not json"), None);
        assert_eq!(parse_message(r#"{"something": "else"}"#), None);
        assert_eq!(parse_message("[1]"), None);
    }

    #[test]
    fn commands_encode_with_id_and_arguments() {
        let line = encode_command(7, "set_link", Some(&json!({"name": "nic0", "up": false})));
        assert!(line.ends_with('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"execute": "set_link", "id": 7, "arguments": {"name": "nic0", "up": false}})
        );
        let value: Value = serde_json::from_str(&encode_command(1, "quit", None)).unwrap();
        assert_eq!(value, json!({"execute": "quit", "id": 1}));
    }

    /// A scripted QEMU: answers each command line with the next reply lines
    /// (`{id}` is replaced by the command's id). Returns the commands it saw.
    fn fake_qemu(
        stream: UnixStream,
        replies: Vec<Vec<&'static str>>,
    ) -> std::thread::JoinHandle<Vec<Value>> {
        std::thread::spawn(move || {
            let mut writer = stream.try_clone().unwrap();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut seen = Vec::new();
            for reply in replies {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let command: Value = serde_json::from_str(&line).unwrap();
                let id = command["id"].to_string();
                seen.push(command);
                for part in reply {
                    writer
                        .write_all(format!("{}\r\n", part.replace("{id}", &id)).as_bytes())
                        .unwrap();
                }
            }
            seen
        })
    }

    #[test]
    fn session_negotiates_skips_events_and_reports_errors() {
        let (client, server) = UnixStream::pair().unwrap();
        let server = fake_qemu(
            server,
            vec![
                vec![r#"{"return": {}, "id": {id}}"#],
                vec![
                    r#"{"event": "RESET", "data": {"guest": false}}"#,
                    r#"{"return": {}, "id": 999}"#,
                    r#"{"return": {"status": "running"}, "id": {id}}"#,
                ],
                vec![
                    r#"{"error": {"class": "GenericError", "desc": "no such thing"}, "id": {id}}"#,
                ],
            ],
        );
        let mut qmp =
            Qmp::handshake(client, Path::new("fake.sock"), Duration::from_secs(5)).unwrap();
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status, json!({"status": "running"}));
        let err = qmp
            .execute("set_link", Some(json!({"name": "x", "up": true})))
            .unwrap_err();
        assert!(matches!(err, QmpError::Command { ref class, .. } if class == "GenericError"));
        assert!(err.to_string().contains("no such thing"), "{err}");
        let events = qmp.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "RESET");
        assert!(qmp.take_events().is_empty());

        let seen = server.join().unwrap();
        let names: Vec<&str> = seen.iter().filter_map(|c| c["execute"].as_str()).collect();
        assert_eq!(names, ["qmp_capabilities", "query-status", "set_link"]);
    }

    #[test]
    fn quit_tolerates_the_socket_closing_and_others_do_not() {
        let (client, server) = UnixStream::pair().unwrap();
        let server = fake_qemu(server, vec![vec![r#"{"return": {}, "id": {id}}"#], vec![]]);
        let mut qmp =
            Qmp::handshake(client, Path::new("fake.sock"), Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.execute("quit", None).unwrap(), Value::Null);
        server.join().unwrap();

        let (client, server) = UnixStream::pair().unwrap();
        let server = fake_qemu(server, vec![vec![r#"{"return": {}, "id": {id}}"#], vec![]]);
        let mut qmp =
            Qmp::handshake(client, Path::new("fake.sock"), Duration::from_secs(5)).unwrap();
        let err = qmp.execute("system_reset", None).unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn silence_times_out() {
        let (client, server) = UnixStream::pair().unwrap();
        let err =
            Qmp::handshake(client, Path::new("fake.sock"), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, QmpError::Io { .. }), "{err}");
        drop(server);
    }
}

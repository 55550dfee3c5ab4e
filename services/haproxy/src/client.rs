//! The runtime API client: one command per connection, every step bounded by a deadline.
//!
//! HAProxy's CLI in its default (non-interactive) mode reads one line of
//! commands, writes the answer and closes the connection, so a reply is
//! everything read until end of file.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

use crate::info::{Info, InfoError, parse_info};
use crate::stat::{StatError, Stats, parse_stat};

/// Where the lb role's haproxy.cfg puts the runtime API (`stats socket`).
pub const DEFAULT_SOCKET: &str = "/run/haproxy/admin.sock";
/// How long one command may take, connect to last byte, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Replies longer than this are refused (a `show stat` of a few hundred servers is ~200 KiB).
pub const MAX_REPLY_BYTES: usize = 8 << 20;
/// Pause between connection attempts while the socket's accept queue is full.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// Why a runtime API command failed. Every variant names the socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket, or we may not connect to it.
    #[error("cannot reach haproxy at {}: {}", socket.display(), describe(error))]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// What connect(2) said.
        error: std::io::Error,
    },
    /// The command has a line break (it would be two commands).
    #[error("haproxy command {command:?} contains a line break")]
    BadCommand {
        /// The command.
        command: String,
    },
    /// HAProxy did not accept, answer or finish answering in time.
    #[error("haproxy at {} did not answer `{command}` within {timeout:?}", socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// Sending or receiving failed.
    #[error("haproxy at {} (`{command}`): {}", socket.display(), describe(error))]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// What the system call said.
        error: std::io::Error,
    },
    /// The reply exceeded [`MAX_REPLY_BYTES`].
    #[error("haproxy at {} answered `{command}` with more than {limit} bytes", socket.display())]
    TooLong {
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
        /// The limit.
        limit: usize,
    },
    /// The reply is not valid UTF-8.
    #[error("haproxy at {} answered `{command}` with bytes that are not UTF-8", socket.display())]
    NotText {
        /// The socket.
        socket: PathBuf,
        /// The command.
        command: String,
    },
    /// The `show stat` reply could not be parsed.
    #[error("haproxy at {}: `show stat`: {source}", socket.display())]
    Stat {
        /// The socket.
        socket: PathBuf,
        /// The parse error.
        source: StatError,
    },
    /// The `show info` reply could not be parsed.
    #[error("haproxy at {}: `show info`: {source}", socket.display())]
    Info {
        /// The socket.
        socket: PathBuf,
        /// The parse error.
        source: InfoError,
    },
}

/// An errno's description without Rust's ` (os error N)` suffix.
fn describe(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

/// A client of one HAProxy runtime API socket. Holds no connection: each
/// command opens its own, as HAProxy's non-interactive CLI expects.
#[derive(Debug, Clone)]
pub struct RuntimeClient {
    socket: PathBuf,
    timeout: Duration,
}

impl RuntimeClient {
    /// A client of `socket` with [`DEFAULT_TIMEOUT`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self::with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// A client of `socket`; `timeout` bounds each command from connect to the last byte.
    pub fn with_timeout(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        RuntimeClient {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Frontends, backends and servers (`show stat`).
    pub fn show_stat(&self) -> Result<Stats, ClientError> {
        let reply = self.command("show stat")?;
        parse_stat(&reply).map_err(|source| ClientError::Stat {
            socket: self.socket.clone(),
            source,
        })
    }

    /// Version, uptime and process facts (`show info`).
    pub fn show_info(&self) -> Result<Info, ClientError> {
        let reply = self.command("show info")?;
        parse_info(&reply).map_err(|source| ClientError::Info {
            socket: self.socket.clone(),
            source,
        })
    }

    /// Sends one command line and returns HAProxy's whole answer, as text.
    /// HAProxy answers errors in text too (`Unknown command...`); callers check.
    pub fn command(&self, command: &str) -> Result<String, ClientError> {
        if command.contains(['\n', '\r']) {
            return Err(ClientError::BadCommand {
                command: command.to_owned(),
            });
        }
        let deadline = Instant::now() + self.timeout;
        let mut stream = self.connect(command, deadline)?;
        let io = |error: std::io::Error| self.io_error(command, error);
        stream
            .set_write_timeout(Some(self.remaining(command, deadline)?))
            .map_err(io)?;
        stream
            .write_all(format!("{command}\n").as_bytes())
            .map_err(io)?;
        let mut reply = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            stream
                .set_read_timeout(Some(self.remaining(command, deadline)?))
                .map_err(io)?;
            let n = match stream.read(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            if n == 0 {
                break;
            }
            if reply.len() + n > MAX_REPLY_BYTES {
                return Err(ClientError::TooLong {
                    socket: self.socket.clone(),
                    command: command.to_owned(),
                    limit: MAX_REPLY_BYTES,
                });
            }
            reply.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8(reply).map_err(|_| ClientError::NotText {
            socket: self.socket.clone(),
            command: command.to_owned(),
        })
    }

    /// Connects without blocking past `deadline`: a full accept queue makes a
    /// non-blocking connect(2) on a unix socket fail with EAGAIN, so retry until then.
    fn connect(&self, command: &str, deadline: Instant) -> Result<UnixStream, ClientError> {
        let connect_error = |errno: Errno| ClientError::Connect {
            socket: self.socket.clone(),
            error: std::io::Error::from(errno),
        };
        let address = UnixAddr::new(&self.socket).map_err(connect_error)?;
        loop {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .map_err(connect_error)?;
            match connect(fd.as_raw_fd(), &address) {
                Ok(()) => {
                    let stream = UnixStream::from(fd);
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| self.io_error(command, e))?;
                    return Ok(stream);
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {
                    std::thread::sleep(self.remaining(command, deadline)?.min(CONNECT_RETRY));
                }
                Err(errno) => return Err(connect_error(errno)),
            }
        }
    }

    /// Time left before `deadline`, or the timeout error once it has passed.
    fn remaining(&self, command: &str, deadline: Instant) -> Result<Duration, ClientError> {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| self.timeout_error(command))
    }

    fn timeout_error(&self, command: &str) -> ClientError {
        ClientError::Timeout {
            socket: self.socket.clone(),
            command: command.to_owned(),
            timeout: self.timeout,
        }
    }

    /// Read and write timeouts surface as WouldBlock (or TimedOut); both mean the deadline passed.
    fn io_error(&self, command: &str, error: std::io::Error) -> ClientError {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timeout_error(command),
            _ => ClientError::Io {
                socket: self.socket.clone(),
                command: command.to_owned(),
                error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{Backlog, bind, listen};

    use super::*;

    const STAT: &str = include_str!("../fixtures/show-stat-checks.csv");
    const INFO: &str = include_str!("../fixtures/show-info.txt");

    /// Serves `replies` (command → answer) to `count` connections on a thread,
    /// like HAProxy: read one line, answer, close. Returns the commands seen.
    fn fake_haproxy(
        listener: UnixListener,
        count: usize,
        replies: &'static [(&'static str, &'static str)],
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..count {
                let (mut stream, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                let command = line.trim_end().to_owned();
                let answer = replies
                    .iter()
                    .find(|(c, _)| *c == command)
                    .map_or("Unknown command.\n", |(_, a)| a);
                stream.write_all(answer.as_bytes()).unwrap();
                seen.push(command);
            }
            seen
        })
    }

    #[test]
    fn show_stat_and_show_info_over_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let server = fake_haproxy(
            UnixListener::bind(&path).unwrap(),
            3,
            &[("show stat", STAT), ("show info", INFO)],
        );
        let client = RuntimeClient::new(&path);
        assert_eq!(client.socket(), path);
        let stats = client.show_stat().unwrap();
        assert_eq!(stats.backends.len(), 2);
        assert_eq!(client.show_info().unwrap().version, "2.6.12-1+deb12u3");
        assert_eq!(client.command("help me").unwrap(), "Unknown command.\n");
        assert_eq!(
            server.join().unwrap(),
            ["show stat", "show info", "help me"]
        );
    }

    #[test]
    fn a_rejected_command_is_a_parse_error_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let server = fake_haproxy(UnixListener::bind(&path).unwrap(), 1, &[]);
        let error = RuntimeClient::new(&path).show_stat().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "haproxy at {}: `show stat`: not a `show stat` reply (first line \"Unknown command.\")",
                path.display()
            )
        );
        server.join().unwrap();
    }

    #[test]
    fn a_missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let error = RuntimeClient::new(&path).show_info().unwrap_err();
        assert!(
            matches!(&error, ClientError::Connect { error, .. } if error.kind() == ErrorKind::NotFound)
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot reach haproxy at {}: No such file or directory",
                path.display()
            )
        );
    }

    #[test]
    fn a_silent_server_times_out() {
        // Accepted by the kernel (backlog) but never answered.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let timeout = Duration::from_millis(200);
        let error = RuntimeClient::with_timeout(&path, timeout)
            .command("show info")
            .unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "haproxy at {} did not answer `show info` within 200ms",
                path.display()
            )
        );
    }

    #[test]
    fn a_full_accept_queue_times_out_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        // Fill the queue (a backlog of 0 still admits one connection).
        let mut queued = Vec::new();
        loop {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            match connect(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()) {
                Ok(()) => queued.push(fd),
                Err(Errno::EAGAIN) => break,
                Err(e) => panic!("connect: {e}"),
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        let error = RuntimeClient::with_timeout(&path, Duration::from_millis(200))
            .command("show stat")
            .unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    }

    #[test]
    fn a_command_is_one_line() {
        let error = RuntimeClient::new("/nonexistent")
            .command("show stat\nshutdown frontend web")
            .unwrap_err();
        assert!(matches!(error, ClientError::BadCommand { .. }), "{error:?}");
    }
}

//! The relay between cairn-init (PID 1) and its control-API server process.
//!
//! PID 1 does not run the D-Bus server itself: it binds the control socket and hands it to a
//! child (`cairnctl serve-init-api`, [`serve_relayed`]) that speaks D-Bus to clients and forwards every
//! [`InitBackend`] call to PID 1 over a private stream socket. PID 1 answers with
//! [`serve_relay`], a plain blocking loop; the child's side is [`RelayBackend`]. Neither side
//! links the other's code paths in: PID 1 never executes zbus or tokio, and a crash of the
//! server process costs the API for a moment (PID 1 starts it again), never PID 1.
//!
//! The wire format is ours and small: every message is a frame of a little-endian `u32`
//! length and that many bytes; a frame starts with a tag byte, then the fields in order
//! (`u32`/`u64` little-endian, strings as a `u32` length and UTF-8 bytes). [`Request::encode`],
//! [`Request::decode`], [`Response::encode`] and [`Response::decode`] are pure.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{BackendError, InitBackend};
use crate::types::{LogLine, PowerAction, ServiceStatus};

/// Largest frame either side accepts (a `Logs` reply of 4096 long lines fits).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// How long the server process waits for PID 1's answer to one call.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One [`InitBackend`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// [`InitBackend::list_services`].
    List,
    /// [`InitBackend::start`].
    Start(String),
    /// [`InitBackend::stop`].
    Stop(String),
    /// [`InitBackend::restart`].
    Restart(String),
    /// [`InitBackend::logs`]: name, after_seq, max.
    Logs(String, u64, u32),
    /// [`InitBackend::power`].
    Power(PowerAction),
}

/// PID 1's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The services, for [`Request::List`].
    Services(Vec<ServiceStatus>),
    /// Success without data (start, stop, restart, power).
    Done,
    /// Log lines, for [`Request::Logs`].
    Logs(Vec<LogLine>),
    /// The call failed.
    Error(BackendError),
}

/// A frame that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control relay: malformed frame: {0}")]
pub struct DecodeError(pub String);

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Self {
        Self(vec![tag])
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError(format!("truncated {what}")));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.u32(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }
    /// A count of items each at least `min_size` bytes long, checked against what is left.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(DecodeError(format!("{what}: {n} items cannot fit")));
        }
        Ok(n)
    }
    fn end(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} bytes after the message",
                self.buf.len()
            )))
        }
    }
}

impl Request {
    /// The frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w;
        match self {
            Request::List => w = Writer::new(1),
            Request::Start(n) => {
                w = Writer::new(2);
                w.str(n);
            }
            Request::Stop(n) => {
                w = Writer::new(3);
                w.str(n);
            }
            Request::Restart(n) => {
                w = Writer::new(4);
                w.str(n);
            }
            Request::Logs(n, after, max) => {
                w = Writer::new(5);
                w.str(n);
                w.u64(*after);
                w.u32(*max);
            }
            Request::Power(a) => {
                w = Writer::new(6);
                w.u8(match a {
                    PowerAction::Reboot => 0,
                    PowerAction::Poweroff => 1,
                });
            }
        }
        w.0
    }

    /// Parses a frame payload.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf };
        let req = match r.u8("tag")? {
            1 => Request::List,
            2 => Request::Start(r.str("name")?),
            3 => Request::Stop(r.str("name")?),
            4 => Request::Restart(r.str("name")?),
            5 => Request::Logs(r.str("name")?, r.u64("after_seq")?, r.u32("max")?),
            6 => Request::Power(match r.u8("action")? {
                0 => PowerAction::Reboot,
                1 => PowerAction::Poweroff,
                a => return Err(DecodeError(format!("unknown power action {a}"))),
            }),
            t => return Err(DecodeError(format!("unknown request tag {t}"))),
        };
        r.end()?;
        Ok(req)
    }
}

impl Response {
    /// The frame payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w;
        match self {
            Response::Services(list) => {
                w = Writer::new(0x81);
                w.count(list.len());
                for s in list {
                    w.str(&s.name);
                    w.str(&s.state);
                    w.u32(s.pid);
                    w.u32(s.restarts);
                    w.u8(u8::from(s.ready));
                    w.str(&s.detail);
                }
            }
            Response::Done => w = Writer::new(0x82),
            Response::Logs(lines) => {
                w = Writer::new(0x83);
                w.count(lines.len());
                for l in lines {
                    w.u64(l.seq);
                    w.u64(l.t_ms);
                    w.str(&l.stream);
                    w.str(&l.text);
                }
            }
            Response::Error(e) => {
                w = Writer::new(0x84);
                match e {
                    BackendError::UnknownService(n) => {
                        w.u8(0);
                        w.str(n);
                    }
                    BackendError::ShuttingDown => w.u8(1),
                    BackendError::Internal(t) => {
                        w.u8(2);
                        w.str(t);
                    }
                }
            }
        }
        w.0
    }

    /// Parses a frame payload.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { buf };
        let resp = match r.u8("tag")? {
            0x81 => {
                // name, state, pid, restarts, ready, detail: at least 17 bytes each.
                let n = r.count(17, "services")?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(ServiceStatus {
                        name: r.str("service name")?,
                        state: r.str("service state")?,
                        pid: r.u32("pid")?,
                        restarts: r.u32("restarts")?,
                        ready: r.u8("ready")? != 0,
                        detail: r.str("detail")?,
                    });
                }
                Response::Services(list)
            }
            0x82 => Response::Done,
            0x83 => {
                // seq, t_ms, stream, text: at least 24 bytes each.
                let n = r.count(24, "log lines")?;
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    lines.push(LogLine {
                        seq: r.u64("seq")?,
                        t_ms: r.u64("t_ms")?,
                        stream: r.str("stream")?,
                        text: r.str("text")?,
                    });
                }
                Response::Logs(lines)
            }
            0x84 => Response::Error(match r.u8("error kind")? {
                0 => BackendError::UnknownService(r.str("service name")?),
                1 => BackendError::ShuttingDown,
                2 => BackendError::Internal(r.str("error text")?),
                k => return Err(DecodeError(format!("unknown error kind {k}"))),
            }),
            t => return Err(DecodeError(format!("unknown response tag {t}"))),
        };
        r.end()?;
        Ok(resp)
    }
}

/// Answers `req` with `backend` (PID 1's side of one call).
pub fn answer(backend: &dyn InitBackend, req: Request) -> Response {
    let done = |r: Result<(), BackendError>| r.map_or_else(Response::Error, |()| Response::Done);
    match req {
        Request::List => Response::Services(backend.list_services()),
        Request::Start(n) => done(backend.start(&n)),
        Request::Stop(n) => done(backend.stop(&n)),
        Request::Restart(n) => done(backend.restart(&n)),
        Request::Logs(n, after, max) => backend
            .logs(&n, after, max)
            .map_or_else(Response::Error, Response::Logs),
        Request::Power(a) => done(backend.power(a)),
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// Reads one frame; `None` when the peer closed the stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control relay: frame of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// PID 1's side: answers requests from the server process until it closes the stream.
/// A malformed request ends the relay (the server process is then restarted).
pub fn serve_relay(stream: &mut UnixStream, backend: &dyn InitBackend) -> io::Result<()> {
    while let Some(frame) = read_frame(stream)? {
        let req =
            Request::decode(&frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        write_frame(stream, &answer(backend, req).encode())?;
    }
    Ok(())
}

/// The server process's side: an [`InitBackend`] that asks PID 1 over the relay stream.
#[derive(Debug)]
pub struct RelayBackend {
    stream: Mutex<UnixStream>,
}

impl RelayBackend {
    /// Uses `stream` (the child's end of the relay) with [`ANSWER_TIMEOUT`] per call.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Self {
            stream: Mutex::new(stream),
        })
    }

    fn call(&self, req: &Request) -> Result<Response, BackendError> {
        let lost = |e: String| BackendError::Internal(format!("no answer from PID 1: {e}"));
        let mut s = self
            .stream
            .lock()
            .map_err(|_| lost("relay lock poisoned".into()))?;
        write_frame(&mut *s, &req.encode()).map_err(|e| lost(e.to_string()))?;
        let frame = read_frame(&mut *s)
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("relay closed".into()))?;
        Response::decode(&frame).map_err(|e| lost(e.to_string()))
    }

    fn done(&self, req: &Request) -> Result<(), BackendError> {
        match self.call(req)? {
            Response::Done => Ok(()),
            Response::Error(e) => Err(e),
            other => Err(BackendError::Internal(format!(
                "PID 1 answered {other:?} to {req:?}"
            ))),
        }
    }
}

impl InitBackend for RelayBackend {
    fn list_services(&self) -> Vec<ServiceStatus> {
        match self.call(&Request::List) {
            Ok(Response::Services(list)) => list,
            Ok(other) => {
                tracing::warn!(answer = ?other, "control relay: unexpected answer to List");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "control relay: List failed");
                Vec::new()
            }
        }
    }
    fn start(&self, name: &str) -> Result<(), BackendError> {
        self.done(&Request::Start(name.to_owned()))
    }
    fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.done(&Request::Stop(name.to_owned()))
    }
    fn restart(&self, name: &str) -> Result<(), BackendError> {
        self.done(&Request::Restart(name.to_owned()))
    }
    fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
        let req = Request::Logs(name.to_owned(), after_seq, max);
        match self.call(&req)? {
            Response::Logs(lines) => Ok(lines),
            Response::Error(e) => Err(e),
            other => Err(BackendError::Internal(format!(
                "PID 1 answered {other:?} to {req:?}"
            ))),
        }
    }
    fn power(&self, action: PowerAction) -> Result<(), BackendError> {
        self.done(&Request::Power(action))
    }
}

/// The server process (`cairnctl serve-init-api SOCKET`): clears the signal mask it
/// inherited from PID 1, then serves `org.cairn.Init1` on the
/// listening socket it got as stdin, forwarding every call to PID 1 over the relay it got as
/// stdout, until PID 1 closes the relay. Returns the exit code.
///
/// Stdin and stdout are replaced with `/dev/null` first, so a stray print can never corrupt
/// the relay (descriptors at fixed numbers are the only way to hand a child a socket without
/// `unsafe` code in PID 1).
pub fn serve_relayed(socket: &Path) -> i32 {
    // PID 1 blocks the signals it reads from a signalfd, and a blocked mask survives exec:
    // without this, SIGTERM at shutdown would not end this process.
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        tracing::warn!(error = %e, "control API server: cannot clear the signal mask");
    }
    let fds = (|| -> io::Result<(OwnedFd, OwnedFd)> {
        let listener = io::stdin().as_fd().try_clone_to_owned()?;
        let relay = io::stdout().as_fd().try_clone_to_owned()?;
        let null = File::options().read(true).write(true).open("/dev/null")?;
        nix::unistd::dup2_stdin(&null)?;
        nix::unistd::dup2_stdout(&null)?;
        Ok((listener, relay))
    })();
    let (listener, relay) = match fds {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "control API server: cannot take its descriptors");
            return 1;
        }
    };
    // When PID 1 drops its end (it then starts a new server process), this one must go: it
    // would otherwise keep accepting on the shared socket and answer every call with an
    // error. A closed peer shows as POLLHUP, which poll always reports.
    match relay.try_clone() {
        Ok(watch) => {
            let spawned = std::thread::Builder::new()
                .name("relay-watch".to_owned())
                .spawn(move || {
                    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                    loop {
                        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::empty())];
                        match poll(&mut fds, PollTimeout::NONE) {
                            Ok(_) if fds[0].any().unwrap_or(false) => break,
                            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
                            Err(_) => break,
                        }
                    }
                    tracing::info!("control API server: PID 1 closed the relay; exiting");
                    std::process::exit(0);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "control API server: cannot watch the relay");
            }
        }
        Err(e) => tracing::warn!(error = %e, "control API server: cannot watch the relay"),
    }
    let backend = match RelayBackend::new(UnixStream::from(relay)) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "control API server: relay unusable");
            return 1;
        }
    };
    match crate::serve_init_on(UnixListener::from(listener), socket, Arc::new(backend)) {
        Ok(server) => {
            tracing::info!(socket = %socket.display(), pid = std::process::id(), "control API listening");
            server.wait();
            1
        }
        Err(e) => {
            tracing::error!(error = %e, "control API server cannot serve");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            state: "running".into(),
            pid: 42,
            restarts: 3,
            ready: true,
            detail: "ready (notify) after 7 ms — ünïcode".into(),
        }
    }

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::List,
            Request::Start("haproxy".into()),
            Request::Stop(String::new()),
            Request::Restart("vipd".into()),
            Request::Logs("vipd".into(), u64::MAX, 4096),
            Request::Power(PowerAction::Reboot),
            Request::Power(PowerAction::Poweroff),
        ] {
            assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        }
    }

    #[test]
    fn responses_round_trip() {
        for resp in [
            Response::Services(vec![status("a"), status("b")]),
            Response::Services(Vec::new()),
            Response::Done,
            Response::Logs(vec![LogLine {
                seq: 7,
                t_ms: 1234,
                stream: "stderr".into(),
                text: "line\twith tab".into(),
            }]),
            Response::Error(BackendError::UnknownService("nope".into())),
            Response::Error(BackendError::ShuttingDown),
            Response::Error(BackendError::Internal("broken".into())),
        ] {
            assert_eq!(Response::decode(&resp.encode()).unwrap(), resp);
        }
    }

    #[test]
    fn malformed_frames_are_refused_not_trusted() {
        let e = |b: &[u8]| Request::decode(b).unwrap_err().0;
        assert!(e(&[]).contains("truncated tag"));
        assert!(e(&[9]).contains("unknown request tag 9"));
        assert!(e(&[2, 5, 0, 0, 0, b'a']).contains("truncated name"));
        assert!(e(&[2, 1, 0, 0, 0, 0xff]).contains("not UTF-8"));
        assert!(e(&[6, 2]).contains("unknown power action 2"));
        assert!(e(&[1, 0]).contains("1 bytes after the message"));
        // A huge count is refused before anything is allocated for it.
        let r = Response::decode(&[0x81, 0xff, 0xff, 0xff, 0xff])
            .unwrap_err()
            .0;
        assert!(r.contains("cannot fit"), "{r}");
        let mut services = Response::Services(vec![status("a")]).encode();
        services.pop();
        assert!(Response::decode(&services).is_err());
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"abc").unwrap();
        write_frame(&mut buf, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"abc");
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).unwrap().is_none());
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        let e = read_frame(&mut &huge[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A stream cut inside a frame is an error, not a clean end.
        let mut cut = &buf[..5];
        assert!(read_frame(&mut cut).is_err());
    }

    struct Fake;
    impl InitBackend for Fake {
        fn list_services(&self) -> Vec<ServiceStatus> {
            vec![status("svc")]
        }
        fn start(&self, name: &str) -> Result<(), BackendError> {
            if name == "svc" {
                Ok(())
            } else {
                Err(BackendError::UnknownService(name.into()))
            }
        }
        fn stop(&self, _: &str) -> Result<(), BackendError> {
            Err(BackendError::ShuttingDown)
        }
        fn restart(&self, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
        fn logs(&self, name: &str, after: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
            Ok((after + 1..=after + u64::from(max))
                .map(|seq| LogLine {
                    seq,
                    t_ms: seq * 10,
                    stream: "stdout".into(),
                    text: format!("{name} {seq}"),
                })
                .collect())
        }
        fn power(&self, _: PowerAction) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[test]
    fn a_relay_backend_gets_pid1s_answers_over_a_socket_pair() {
        let (mut pid1, child) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || serve_relay(&mut pid1, &Fake));
        let b = RelayBackend::new(child).unwrap();
        assert_eq!(b.list_services(), vec![status("svc")]);
        b.start("svc").unwrap();
        assert_eq!(
            b.start("other"),
            Err(BackendError::UnknownService("other".into()))
        );
        assert_eq!(b.stop("svc"), Err(BackendError::ShuttingDown));
        b.restart("svc").unwrap();
        let lines = b.logs("svc", 10, 3).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].text, "svc 13");
        b.power(PowerAction::Poweroff).unwrap();
        drop(b);
        // The child closing its end ends PID 1's loop cleanly.
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_dead_pid1_side_is_an_error_not_a_hang() {
        let (pid1, child) = UnixStream::pair().unwrap();
        drop(pid1);
        let b = RelayBackend::new(child).unwrap();
        let e = b.start("svc").unwrap_err();
        assert!(
            matches!(&e, BackendError::Internal(t) if t.starts_with("no answer from PID 1")),
            "{e:?}"
        );
        assert!(b.list_services().is_empty());
    }
}

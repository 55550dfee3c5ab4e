//! Finding the virtio-serial port and talking over it.
//!
//! In the guest a QEMU `virtserialport` named `org.cairn.control` appears as
//! `/dev/vportNpM`, with its name in `/sys/class/virtio-ports/vportNpM/name`.
//! The port outlives host connections: while no host is connected, `poll`
//! reports `POLLHUP` at once and reads return 0, and a blocking write would
//! wait for the next host. So the descriptor is non-blocking, a hang-up means
//! "sleep a little and look again", and writes give up when the host goes.
//!
//! For tests (`--device PATH` naming a unix socket) the channel connects to
//! that socket instead and connects again after each hang-up, which gives
//! the same "host comes and goes" shape without QEMU.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long a read waits before the caller gets control back.
const READ_WAIT: Duration = Duration::from_millis(500);
/// A write that cannot make progress for this long is abandoned.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// Where virtio-serial ports are listed.
pub const SYS_VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// The device of the port called `name`, from a sysfs class directory such as
/// [`SYS_VIRTIO_PORTS`]: `/dev/<entry>`. `None` when no port has that name.
pub fn find_port(class_dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(class_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    entries.into_iter().find_map(|entry| {
        let text = std::fs::read_to_string(entry.join("name")).ok()?;
        let dev = entry.file_name()?;
        (text.trim_end_matches(['\n', '\0']) == name).then(|| Path::new("/dev").join(dev))
    })
}

/// What a read produced.
#[derive(Debug)]
pub enum Received {
    /// Bytes from the host.
    Data(usize),
    /// Nothing yet; the host is still there.
    Idle,
    /// No host is connected (any more).
    Hangup,
}

/// A write could not be completed.
#[derive(Debug)]
pub enum WriteError {
    /// The host went away.
    Hangup,
    /// The host stopped reading for [`WRITE_STALL`].
    Stalled,
    /// Another error.
    Io(std::io::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hangup => write!(f, "the host disconnected"),
            Self::Stalled => write!(f, "the host read nothing for {} s", WRITE_STALL.as_secs()),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

enum Kind {
    /// The virtio-serial port (or another character device), open once.
    Device(File),
    /// A unix socket (tests): connected on demand, dropped on hang-up.
    Socket(Option<UnixStream>),
}

/// The agent's end of the host channel.
pub struct Channel {
    path: PathBuf,
    kind: Kind,
}

impl Channel {
    /// Opens the device at `path` (non-blocking), or, when `path` is a unix
    /// socket, prepares to connect to it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let is_socket = std::fs::metadata(path)?.file_type().is_socket();
        let kind = if is_socket {
            Kind::Socket(None)
        } else {
            let file = File::options()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
                .open(path)?;
            Kind::Device(file)
        };
        Ok(Self {
            path: path.to_path_buf(),
            kind,
        })
    }

    /// The device or socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.kind {
            Kind::Device(f) => Some(f.as_fd()),
            Kind::Socket(s) => s.as_ref().map(|s| s.as_fd()),
        }
    }

    /// Waits up to half a second for bytes from the host.
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<Received> {
        if let Kind::Socket(slot @ None) = &mut self.kind {
            match UnixStream::connect(&self.path) {
                Ok(s) => {
                    s.set_nonblocking(true)?;
                    *slot = Some(s);
                }
                Err(_) => return Ok(Received::Hangup),
            }
        }
        let Some(flags) = self.poll(PollFlags::POLLIN, READ_WAIT)? else {
            return Ok(Received::Idle);
        };
        if !flags.contains(PollFlags::POLLIN) {
            return Ok(self.hung_up_now(flags));
        }
        let result = match &mut self.kind {
            Kind::Device(f) => f.read(buf),
            Kind::Socket(Some(s)) => s.read(buf),
            Kind::Socket(None) => return Ok(Received::Hangup),
        };
        match result {
            Ok(0) => Ok(self.drop_connection()),
            Ok(n) => Ok(Received::Data(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Ok(Received::Idle)
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNRESET) => Ok(self.drop_connection()),
            Err(e) => Err(e),
        }
    }

    /// Whether the host has gone away (without waiting).
    pub fn hung_up(&mut self) -> bool {
        match self.poll(PollFlags::empty(), Duration::ZERO) {
            Ok(Some(flags)) => matches!(self.hung_up_now(flags), Received::Hangup),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Writes all of `bytes`, waiting for the host to read; gives up when it
    /// hangs up or stops reading.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), WriteError> {
        let mut last_progress = Instant::now();
        while !bytes.is_empty() {
            let result = match &mut self.kind {
                Kind::Device(f) => f.write(bytes),
                Kind::Socket(Some(s)) => s.write(bytes),
                Kind::Socket(None) => return Err(WriteError::Hangup),
            };
            match result {
                Ok(0) => return Err(WriteError::Hangup),
                Ok(n) => {
                    bytes = &bytes[n..];
                    last_progress = Instant::now();
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EPIPE | nix::libc::ECONNRESET | nix::libc::ENODEV)
                    ) =>
                {
                    self.drop_connection();
                    return Err(WriteError::Hangup);
                }
                Err(e) => return Err(WriteError::Io(e)),
            }
            if last_progress.elapsed() > WRITE_STALL {
                return Err(WriteError::Stalled);
            }
            let flags = self
                .poll(PollFlags::POLLOUT, READ_WAIT)
                .map_err(WriteError::Io)?;
            if let Some(flags) = flags {
                if !flags.contains(PollFlags::POLLOUT)
                    && matches!(self.hung_up_now(flags), Received::Hangup)
                {
                    return Err(WriteError::Hangup);
                }
            }
        }
        Ok(())
    }

    /// Polls for `events`; `None` on timeout.
    fn poll(&self, events: PollFlags, wait: Duration) -> std::io::Result<Option<PollFlags>> {
        let Some(fd) = self.fd() else {
            return Ok(Some(PollFlags::POLLHUP));
        };
        let mut fds = [PollFd::new(fd, events)];
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(fds[0].revents().unwrap_or(PollFlags::empty()))),
            Err(nix::errno::Errno::EINTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Interprets poll flags without readable data: a hang-up drops a test
    /// socket connection; anything else is idle.
    fn hung_up_now(&mut self, flags: PollFlags) -> Received {
        if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            self.drop_connection()
        } else {
            Received::Idle
        }
    }

    fn drop_connection(&mut self) -> Received {
        if let Kind::Socket(slot) = &mut self.kind {
            *slot = None;
        }
        Received::Hangup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_found_by_its_name_in_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("virtio-ports");
        for (entry, name) in [
            ("vport0p1", "org.qemu.guest_agent.0\n"),
            ("vport1p1", "org.cairn.control\n"),
            ("vport1p2", ""),
        ] {
            std::fs::create_dir_all(class.join(entry)).unwrap();
            std::fs::write(class.join(entry).join("name"), name).unwrap();
        }
        assert_eq!(
            find_port(&class, "org.cairn.control"),
            Some(PathBuf::from("/dev/vport1p1"))
        );
        assert_eq!(find_port(&class, "org.cairn.other"), None);
        assert_eq!(
            find_port(&dir.path().join("missing"), "org.cairn.control"),
            None
        );
    }
}

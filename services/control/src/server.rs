//! The control server: socket setup, the accept loop and per-connection plumbing, shared by
//! every control interface (`org.cairn.Init1` in cairn-init, `org.cairn.Vip1` in cairn-vipd).
//! The method layer is [`crate::dispatch`] plus one [`Service`] per interface.
//!
//! Everything runs on one thread named `cairn-control` with a current-thread tokio runtime:
//! the accept loop and every connection are tasks on it, so a slow or hostile client only
//! ever stalls its own task. Each connection's peer uid is read with `SO_PEERCRED` right
//! after `accept` and fixed for the connection's lifetime; the authentication handshake is
//! ours ([`crate::sasl`]), and every byte zbus reads passes a [`FrameGuard`] first.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};
use zbus::connection::socket::{ReadHalf, Split, WriteHalf};
use zbus::export::futures_core::Stream;
use zbus::fdo::ConnectionCredentials;

use crate::backend::InitBackend;
use crate::dispatch::{Handler, Service};
use crate::frame::FrameGuard;
use crate::init_service::InitService;
use crate::sasl::{Progress, SaslServer};
use crate::update::UpdateBackend;
use crate::update_service::UpdateService;
use crate::vip::VipBackend;
use crate::vip_service::VipService;

/// Most lines one `Logs` call returns, whatever `max` asks for; clients page with `after_seq`.
/// Bounds the size of a reply that PID 1 has to build.
pub const MAX_LOG_LINES_PER_CALL: u32 = 4096;

/// Most simultaneous connections from uids other than 0; more are closed right after accept.
pub const MAX_NON_ROOT_CONNECTIONS: usize = 32;

/// Most simultaneous connections from uid 0, counted apart from the others so that
/// unprivileged clients cannot lock root out.
pub const MAX_ROOT_CONNECTIONS: usize = 32;

/// A client must finish the authentication handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest D-Bus message accepted from a client; real calls are a few hundred bytes.
const MAX_INCOMING_MESSAGE: u64 = 8 * 1024;

/// Messages zbus may hold for a connection before it stops reading the socket. With the
/// frame limit this bounds what a client that never reads replies can make us buffer.
const MAX_QUEUED_MESSAGES: usize = 4;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why [`serve_init`] or [`serve_vip`] could not start serving.
#[derive(thiserror::Error, Debug)]
pub enum ServerError {
    /// The socket's parent directory could not be created.
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Something other than a socket is in the way.
    #[error("{} exists and is not a socket; not removing it", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// Another live server answers on this socket.
    #[error("{} is in use by a running server", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The stale socket file could not be removed.
    #[error("cannot remove stale socket {}: {source}", path.display())]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `bind` or listener setup failed.
    #[error("cannot bind control socket {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The socket's mode could not be set to 0666.
    #[error("cannot chmod control socket {}: {source}", path.display())]
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The runtime or the thread could not be created.
    #[error("cannot start the control thread for {}: {source}", path.display())]
    Thread {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Handle to the running control server.
///
/// The server runs until the process exits: dropping this handle does **not** stop the
/// `cairn-control` thread (PID 1 never needs to), it only forgets the handle.
#[derive(Debug)]
pub struct ControlServer {
    socket: PathBuf,
    thread: std::thread::JoinHandle<()>,
}

impl ControlServer {
    /// The socket path the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The `cairn-control` thread, e.g. to log its id.
    pub fn thread(&self) -> &std::thread::Thread {
        self.thread.thread()
    }

    /// Blocks until the server thread ends (it only does when its runtime fails).
    pub fn wait(self) {
        let _ = self.thread.join();
    }
}

/// Binds `socket` and serves `org.cairn.Init1` on it from a new thread named `cairn-control`.
///
/// Creates the parent directory if missing, replaces a stale socket file (one nobody answers
/// on), and makes the socket mode 0666: access is checked per call, by the peer's uid. All
/// setup errors are returned here; once running, the server logs problems with `tracing` and
/// keeps going. It installs no signal handlers, starts no processes and leaves the signal
/// mask alone: the new thread inherits the caller's mask, so call this after blocking the
/// signals that the main thread wants to receive.
pub fn serve_init(
    socket: &Path,
    backend: Arc<dyn InitBackend>,
) -> Result<ControlServer, ServerError> {
    serve(socket, InitService { backend })
}

/// Serves `org.cairn.Init1` from a new `cairn-control` thread on a listener bound earlier
/// with [`bind_socket`], possibly by another process: cairn-init binds the socket and hands
/// it to its control-API server process, so PID 1 itself never runs the D-Bus code
/// (docs/init.md, "The control API server"). `socket` only names it in errors.
pub fn serve_init_on(
    listener: std::os::unix::net::UnixListener,
    socket: &Path,
    backend: Arc<dyn InitBackend>,
) -> Result<ControlServer, ServerError> {
    serve_on(listener, socket, InitService { backend })
}

/// Binds `socket` and serves `org.cairn.Vip1` on it from a new thread named `cairn-control`.
///
/// The same machinery as [`serve_init`] (socket setup, handshake, frame guard, connection
/// limits, one thread); every method of `org.cairn.Vip1` is read-only and open to every uid.
pub fn serve_vip(
    socket: &Path,
    backend: Arc<dyn VipBackend>,
) -> Result<ControlServer, ServerError> {
    serve(socket, VipService { backend })
}

/// Binds `socket` and serves `org.cairn.Update1` on it from a new thread named `cairn-control`.
///
/// The same machinery as [`serve_init`]; `Status` is open to every uid, `Upgrade` needs uid 0.
pub fn serve_update(
    socket: &Path,
    backend: Arc<dyn UpdateBackend>,
) -> Result<ControlServer, ServerError> {
    serve(socket, UpdateService { backend })
}

/// Binds `socket` and serves `service` on it from a new `cairn-control` thread.
fn serve<S: Service>(socket: &Path, service: S) -> Result<ControlServer, ServerError> {
    serve_on(bind_socket(socket)?, socket, service)
}

/// Binds a control socket: creates the parent directory if missing, replaces a stale socket
/// file (one nobody answers on) and makes the socket mode 0666 (access is checked per call,
/// by the peer's uid).
pub fn bind_socket(socket: &Path) -> Result<std::os::unix::net::UnixListener, ServerError> {
    let path = socket.to_path_buf();
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    remove_stale_socket(socket)?;

    let std_listener =
        std::os::unix::net::UnixListener::bind(socket).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).map_err(|source| {
        ServerError::Chmod {
            path: path.clone(),
            source,
        }
    })?;
    Ok(std_listener)
}

/// Serves `service` on `std_listener` from a new `cairn-control` thread.
fn serve_on<S: Service>(
    std_listener: std::os::unix::net::UnixListener,
    socket: &Path,
    service: S,
) -> Result<ControlServer, ServerError> {
    let path = socket.to_path_buf();
    std_listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| ServerError::Thread {
            path: path.clone(),
            source,
        })?;
    let listener = {
        let _context = runtime.enter();
        UnixListener::from_std(std_listener).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?
    };

    let shared = Arc::new(Shared {
        service: Arc::new(service),
        guid: server_guid(),
        socket: path.clone(),
        root_connections: AtomicUsize::new(0),
        other_connections: AtomicUsize::new(0),
        limit_logged: AtomicBool::new(false),
    });
    let thread = std::thread::Builder::new()
        .name("cairn-control".to_owned())
        .spawn(move || runtime.block_on(accept_loop(listener, shared)))
        .map_err(|source| ServerError::Thread {
            path: path.clone(),
            source,
        })?;
    Ok(ControlServer {
        socket: path,
        thread,
    })
}

/// Removes a leftover socket file nobody answers on; refuses to touch anything else.
fn remove_stale_socket(socket: &Path) -> Result<(), ServerError> {
    let metadata = match std::fs::symlink_metadata(socket) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::RemoveStale {
                path: socket.to_path_buf(),
                source,
            });
        }
    };
    if !metadata.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: socket.to_path_buf(),
        });
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(ServerError::InUse {
            path: socket.to_path_buf(),
        });
    }
    std::fs::remove_file(socket).map_err(|source| ServerError::RemoveStale {
        path: socket.to_path_buf(),
        source,
    })
}

/// A server GUID (32 hex digits) that is unique enough without asking the kernel for random
/// bytes, which can block early in boot.
fn server_guid() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:024x}{:08x}", nanos & ((1 << 96) - 1), std::process::id())
}

/// State shared by all connection tasks.
struct Shared<S> {
    service: Arc<S>,
    guid: String,
    socket: PathBuf,
    root_connections: AtomicUsize,
    other_connections: AtomicUsize,
    /// Whether hitting a connection limit has been logged since a slot was last freed.
    limit_logged: AtomicBool,
}

async fn accept_loop<S: Service>(listener: UnixListener, shared: Arc<Shared<S>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => admit(stream, &shared),
            Err(error) => {
                warn!(socket = %shared.socket.display(), %error, "control socket accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Reads the peer's credentials, applies the connection limits and spawns the connection task.
fn admit<S: Service>(stream: UnixStream, shared: &Arc<Shared<S>>) {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(error) => {
            warn!(%error, "cannot read control peer credentials; closing");
            return;
        }
    };
    let uid = cred.uid();
    let Some(slot) = ConnectionSlot::take(shared, uid) else {
        // Once per episode, so a client hammering the socket cannot flood the log.
        if !shared.limit_logged.swap(true, Ordering::AcqRel) {
            warn!(uid, "too many control connections; closing new ones");
        }
        return;
    };
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let pid = cred.pid().and_then(|pid| u32::try_from(pid).ok());
        if let Err(error) = serve_connection(stream, uid, pid, &shared).await {
            debug!(uid, pid, %error, "control connection ended");
        }
        drop(slot);
    });
}

/// A place in the per-class connection count, given back on drop.
struct ConnectionSlot<S> {
    shared: Arc<Shared<S>>,
    root: bool,
}

impl<S> ConnectionSlot<S> {
    fn take(shared: &Arc<Shared<S>>, uid: u32) -> Option<Self> {
        let root = uid == 0;
        let (counter, limit) = if root {
            (&shared.root_connections, MAX_ROOT_CONNECTIONS)
        } else {
            (&shared.other_connections, MAX_NON_ROOT_CONNECTIONS)
        };
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(ConnectionSlot {
            shared: Arc::clone(shared),
            root,
        })
    }
}

impl<S> Drop for ConnectionSlot<S> {
    fn drop(&mut self) {
        let counter = if self.root {
            &self.shared.root_connections
        } else {
            &self.shared.other_connections
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        self.shared.limit_logged.store(false, Ordering::Release);
    }
}

/// Why a connection ended early.
#[derive(thiserror::Error, Debug)]
enum ConnectionError {
    #[error("handshake: {0}")]
    Sasl(#[from] crate::sasl::SaslError),
    #[error("handshake timed out after {} s", HANDSHAKE_TIMEOUT.as_secs())]
    HandshakeTimeout,
    #[error("peer closed the connection during the handshake")]
    HandshakeEof,
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("D-Bus setup: {0}")]
    Dbus(#[from] zbus::Error),
}

async fn serve_connection<S: Service>(
    stream: UnixStream,
    uid: u32,
    pid: Option<u32>,
    shared: &Shared<S>,
) -> Result<(), ConnectionError> {
    let (mut read, mut write) = stream.into_split();
    let leftover = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut read, &mut write, SaslServer::new(uid, &shared.guid)),
    )
    .await
    .map_err(|_| ConnectionError::HandshakeTimeout)??;

    // zbus drops messages that arrive while nobody listens, so its reader may only start
    // once our message stream exists.
    let (start_reading, may_read) = tokio::sync::oneshot::channel();
    let read = GuardedRead {
        inner: read,
        pending: leftover,
        guard: FrameGuard::new(MAX_INCOMING_MESSAGE),
        may_read: Some(may_read),
        uid,
        pid,
    };
    let socket = Split::new(
        Box::new(read) as Box<dyn ReadHalf>,
        Box::new(write) as Box<dyn WriteHalf>,
    );
    let connection = zbus::connection::Builder::authenticated_socket(socket, shared.guid.as_str())?
        .p2p()
        .max_queued(MAX_QUEUED_MESSAGES)
        .build()
        .await?;
    let mut messages = zbus::MessageStream::from(&connection);
    // Fails only if the reader is gone already, which the stream reports next.
    let _ = start_reading.send(());

    let handler = Handler {
        service: Arc::clone(&shared.service),
        peer_uid: uid,
    };
    // Ends when the peer goes away or a read fails (e.g. a frame the guard rejected);
    // dropping the connection then closes the socket.
    while let Some(Ok(message)) =
        std::future::poll_fn(|cx| Pin::new(&mut messages).poll_next(cx)).await
    {
        handler.answer(&connection, &message).await?;
    }
    Ok(())
}

/// Runs the authentication handshake; returns bytes received after `BEGIN`.
async fn handshake(
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
    mut sasl: SaslServer,
) -> Result<Vec<u8>, ConnectionError> {
    let mut buf = [0u8; 256];
    let mut replies = Vec::new();
    loop {
        let n = read.read(&mut buf).await?;
        if n == 0 {
            return Err(ConnectionError::HandshakeEof);
        }
        let progress = sasl.feed(&buf[..n], &mut replies)?;
        let mut sent = 0;
        while sent < replies.len() {
            // zbus's `sendmsg` passes MSG_NOSIGNAL: a vanished peer is an error, not SIGPIPE.
            match WriteHalf::sendmsg(write, &replies[sent..], &[]).await? {
                0 => return Err(ConnectionError::HandshakeEof),
                n => sent += n,
            }
        }
        replies.clear();
        if let Progress::Done { leftover } = progress {
            return Ok(leftover);
        }
    }
}

/// The read half zbus gets: plain `read(2)` (file descriptors a client might send are
/// discarded by the kernel), bytes left from the handshake first, every byte checked by a
/// [`FrameGuard`] before zbus sees it.
#[derive(Debug)]
struct GuardedRead {
    inner: OwnedReadHalf,
    pending: Vec<u8>,
    guard: FrameGuard,
    /// Resolves once the connection's message stream is listening.
    may_read: Option<tokio::sync::oneshot::Receiver<()>>,
    /// From `SO_PEERCRED` at accept.
    uid: u32,
    pid: Option<u32>,
}

#[zbus::export::async_trait::async_trait]
impl ReadHalf for GuardedRead {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        if let Some(may_read) = self.may_read.take() {
            // An error means the connection is being torn down; reading then fails or ends.
            let _ = may_read.await;
        }
        let n = if self.pending.is_empty() {
            self.inner.read(buf).await?
        } else {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            n
        };
        self.guard
            .feed(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((n, Vec::new()))
    }

    async fn peer_credentials(&mut self) -> io::Result<ConnectionCredentials> {
        let credentials = ConnectionCredentials::default().set_unix_user_id(self.uid);
        Ok(match self.pid {
            Some(pid) => credentials.set_process_id(pid),
            None => credentials,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn guid_is_32_hex_digits_and_valid_for_zbus() {
        let guid = server_guid();
        assert_eq!(guid.len(), 32);
        assert!(guid.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(zbus::Guid::try_from(guid.as_str()).is_ok());
    }
}

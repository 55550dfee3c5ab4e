//! What the blocking control clients share: the error type, and a connection that runs the
//! handshake and each call on a private runtime, bounded by a timeout. [`crate::InitClient`]
//! and [`crate::VipClient`] are thin typed wrappers around it.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zbus::zvariant::{DynamicType, Type};

use crate::error_names;

/// How long a client's `connect` and each call wait for the server before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client operation failed.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("cannot connect to {}: {source} (is {server} running?)", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
        /// The daemon expected on the socket, e.g. `cairn-init` or `cairn-vipd`.
        server: &'static str,
    },
    /// The socket accepted but the D-Bus handshake failed.
    #[error("D-Bus handshake on {} failed: {source}", path.display())]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: zbus::Error,
    },
    /// The server did not answer in time.
    #[error("{operation} timed out after {} s ({server} is not answering)", timeout.as_secs())]
    Timeout {
        /// What was being done, e.g. `connecting to /run/cairn/control.sock` or `ListServices`.
        operation: String,
        /// How long we waited.
        timeout: Duration,
        /// The daemon expected on the socket.
        server: &'static str,
    },
    /// The call needs uid 0 (`org.cairn.Error.AccessDenied`); the text is the server's.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The named service does not exist (`org.cairn.Error.UnknownService`).
    #[error("no such service \"{0}\"")]
    UnknownService(String),
    /// Any other D-Bus error reply.
    #[error("{message} ({name})")]
    DBus {
        /// The D-Bus error name, e.g. `org.cairn.Error.ShuttingDown`.
        name: String,
        /// The server's description.
        message: String,
    },
    /// The connection broke: the server exited, restarted or closed it.
    #[error("{method}: connection to {server} lost ({source})")]
    Disconnected {
        /// The D-Bus method.
        method: &'static str,
        /// The underlying error.
        source: zbus::Error,
        /// The daemon that was on the socket.
        server: &'static str,
    },
    /// The call failed without an error reply for another reason, e.g. a malformed reply.
    #[error("{method} failed: {source}")]
    Call {
        /// The D-Bus method.
        method: &'static str,
        /// The underlying error.
        source: zbus::Error,
    },
    /// The client's private runtime could not be created.
    #[error("cannot set up the client: {0}")]
    Runtime(io::Error),
}

/// Which object a client talks to on its socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    /// The daemon serving it, for error messages.
    pub(crate) server: &'static str,
    /// Object path.
    pub(crate) path: &'static str,
    /// Interface name.
    pub(crate) interface: &'static str,
}

/// A blocking peer-to-peer connection to one control socket.
///
/// Owns a small current-thread runtime that only runs inside its own calls; no threads are
/// started. Every call is bounded by the timeout.
pub(crate) struct BlockingConnection {
    // Dropped before the runtime: the connection's tasks live on it.
    connection: zbus::Connection,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
    target: Target,
}

impl std::fmt::Debug for BlockingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingConnection")
            .field("timeout", &self.timeout)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl BlockingConnection {
    /// Connects to `socket`; `timeout` bounds the connection and each later call.
    pub(crate) fn connect(
        socket: &Path,
        timeout: Duration,
        target: Target,
    ) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ClientError::Runtime)?;
        let path = socket.to_path_buf();
        let connection = runtime.block_on(async {
            let connecting = async {
                let stream = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|source| ClientError::Connect {
                        path: path.clone(),
                        source,
                        server: target.server,
                    })?;
                let (read, write) = stream.into_split();
                let socket = zbus::connection::socket::Split::new(
                    Box::new(NoFdRead(read)) as Box<dyn zbus::connection::socket::ReadHalf>,
                    Box::new(write) as Box<dyn zbus::connection::socket::WriteHalf>,
                );
                zbus::connection::Builder::socket(socket)
                    .p2p()
                    .build()
                    .await
                    .map_err(|source| ClientError::Handshake {
                        path: path.clone(),
                        source,
                    })
            };
            tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| ClientError::Timeout {
                    operation: format!("connecting to {}", path.display()),
                    timeout,
                    server: target.server,
                })?
        })?;
        Ok(BlockingConnection {
            connection,
            runtime,
            timeout,
            target,
        })
    }

    /// The timeout given to [`Self::connect`].
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls `method` and decodes its reply; `service` names the service the call is about,
    /// for [`ClientError::UnknownService`].
    pub(crate) fn call<B, R>(
        &self,
        method: &'static str,
        body: &B,
        service: Option<&str>,
    ) -> Result<R, ClientError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        let target = self.target;
        self.block_on(method, async {
            let reply = self
                .connection
                .call_method(
                    None::<&str>,
                    target.path,
                    Some(target.interface),
                    method,
                    body,
                )
                .await
                .map_err(|e| map_call_error(method, service, target.server, e))?;
            reply
                .body()
                .deserialize::<R>()
                .map_err(|source| ClientError::Call { method, source })
        })
    }

    fn block_on<T>(
        &self,
        method: &'static str,
        future: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, future).await })
            .map_err(|_| ClientError::Timeout {
                operation: method.to_owned(),
                timeout: self.timeout,
                server: self.target.server,
            })?
    }
}

/// Turns a zbus error into the matching [`ClientError`].
fn map_call_error(
    method: &'static str,
    service: Option<&str>,
    server: &'static str,
    error: zbus::Error,
) -> ClientError {
    let (name, description) = match &error {
        zbus::Error::MethodError(name, description, _) => (name, description),
        zbus::Error::InputOutput(_) => {
            return ClientError::Disconnected {
                method,
                source: error,
                server,
            };
        }
        _ => {
            return ClientError::Call {
                method,
                source: error,
            };
        }
    };
    let message = description.clone().unwrap_or_default();
    match (name.as_str(), service) {
        (error_names::UNKNOWN_SERVICE, Some(service)) => {
            ClientError::UnknownService(service.to_owned())
        }
        (error_names::ACCESS_DENIED, _) => ClientError::AccessDenied(message),
        (name, _) => ClientError::DBus {
            name: name.to_owned(),
            message,
        },
    }
}

/// The client's read half: a plain unix stream that does not offer file-descriptor passing,
/// so zbus skips `NEGOTIATE_UNIX_FD`, which our servers refuse (zbus would log a warning on
/// every connection, e.g. each time cairn-vipd checks a service's readiness).
#[derive(Debug)]
struct NoFdRead(tokio::net::unix::OwnedReadHalf);

#[zbus::export::async_trait::async_trait]
impl zbus::connection::socket::ReadHalf for NoFdRead {
    async fn recvmsg(
        &mut self,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        zbus::connection::socket::ReadHalf::recvmsg(&mut self.0, buf).await
    }

    async fn peer_credentials(&mut self) -> std::io::Result<zbus::fdo::ConnectionCredentials> {
        zbus::connection::socket::ReadHalf::peer_credentials(&mut self.0).await
    }
}

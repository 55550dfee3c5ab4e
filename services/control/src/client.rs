//! A blocking client for `org.cairn.Init1`, used by cairnctl and tests.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zbus::zvariant::{DynamicType, Type};

use crate::types::{LogLine, PowerAction, ServiceStatus};
use crate::{INIT_INTERFACE, INIT_PATH, error_names};

/// How long [`InitClient::connect`] and each call wait for cairn-init before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client operation failed.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("cannot connect to {}: {source} (is cairn-init running?)", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The socket accepted but the D-Bus handshake failed.
    #[error("D-Bus handshake on {} failed: {source}", path.display())]
    Handshake {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: zbus::Error,
    },
    /// cairn-init did not answer in time.
    #[error("{operation} timed out after {} s (cairn-init is not answering)", timeout.as_secs())]
    Timeout {
        /// What was being done, e.g. `connecting to /run/cairn/control.sock` or `ListServices`.
        operation: String,
        /// How long we waited.
        timeout: Duration,
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
    /// The connection broke: cairn-init exited, restarted or closed it.
    #[error("{method}: connection to cairn-init lost ({source})")]
    Disconnected {
        /// The D-Bus method.
        method: &'static str,
        /// The underlying error.
        source: zbus::Error,
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

/// A blocking connection to cairn-init's control socket.
///
/// Each instance owns a small current-thread runtime that only runs inside its own calls;
/// no threads are started. Every call is bounded by the client's timeout.
pub struct InitClient {
    // Dropped before the runtime: the connection's tasks live on it.
    connection: zbus::Connection,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl std::fmt::Debug for InitClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl InitClient {
    /// Connects to the control socket at `socket` with [`DEFAULT_TIMEOUT`].
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(socket, DEFAULT_TIMEOUT)
    }

    /// Connects to the control socket at `socket`; `timeout` bounds the connection and each
    /// later call.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
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
                    })?;
                zbus::connection::Builder::unix_stream(stream)
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
                })?
        })?;
        Ok(InitClient {
            connection,
            runtime,
            timeout,
        })
    }

    /// Every supervised service (`ListServices`).
    pub fn list_services(&self) -> Result<Vec<ServiceStatus>, ClientError> {
        self.call("ListServices", &(), None)
    }

    /// Starts a service (`Start`, uid 0 only).
    pub fn start(&self, name: &str) -> Result<(), ClientError> {
        self.call("Start", &(name,), Some(name))
    }

    /// Stops a service (`Stop`, uid 0 only).
    pub fn stop(&self, name: &str) -> Result<(), ClientError> {
        self.call("Stop", &(name,), Some(name))
    }

    /// Restarts a service (`Restart`, uid 0 only).
    pub fn restart(&self, name: &str) -> Result<(), ClientError> {
        self.call("Restart", &(name,), Some(name))
    }

    /// Log lines of `name` with seq > `after_seq`, oldest first, at most `max` (and at most
    /// [`MAX_LOG_LINES_PER_CALL`](crate::MAX_LOG_LINES_PER_CALL)) (`Logs`).
    pub fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, ClientError> {
        self.call("Logs", &(name, after_seq, max), Some(name))
    }

    /// Reboots or powers off the machine after an orderly shutdown (`Power`, uid 0 only).
    pub fn power(&self, action: PowerAction) -> Result<(), ClientError> {
        self.call("Power", &(action.as_str(),), None)
    }

    /// Calls `method` and decodes its reply; `service` names the service the call is about,
    /// for [`ClientError::UnknownService`].
    fn call<B, R>(
        &self,
        method: &'static str,
        body: &B,
        service: Option<&str>,
    ) -> Result<R, ClientError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        self.block_on(method, async {
            let reply = self
                .connection
                .call_method(None::<&str>, INIT_PATH, Some(INIT_INTERFACE), method, body)
                .await
                .map_err(|e| map_call_error(method, service, e))?;
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
            })?
    }
}

/// Turns a zbus error into the matching [`ClientError`].
fn map_call_error(method: &'static str, service: Option<&str>, error: zbus::Error) -> ClientError {
    let (name, description) = match &error {
        zbus::Error::MethodError(name, description, _) => (name, description),
        zbus::Error::InputOutput(_) => {
            return ClientError::Disconnected {
                method,
                source: error,
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

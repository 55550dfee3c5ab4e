//! The boundary between the D-Bus layer and cairn-init's supervisor.

use crate::types::{LogLine, PowerAction, ServiceStatus};

/// What cairn-init implements so [`serve_init`](crate::serve_init) can answer calls.
///
/// Methods are blocking and are called on the control thread, one at a time: cairn-init's
/// implementation hands the request to its single-threaded main loop and waits for the reply
/// (typically well under a millisecond). While a method runs, no other control client is
/// served, so implementations must answer promptly and never wait on a control client.
pub trait InitBackend: Send + Sync + 'static {
    /// Every supervised service, in the order the supervisor wants them shown.
    fn list_services(&self) -> Vec<ServiceStatus>;
    /// Starts a stopped service (no-op if it is already running).
    fn start(&self, name: &str) -> Result<(), BackendError>;
    /// Stops a service and keeps it stopped.
    fn stop(&self, name: &str) -> Result<(), BackendError>;
    /// Stops and starts a service again.
    fn restart(&self, name: &str) -> Result<(), BackendError>;
    /// Lines with seq > after_seq, at most `max`, oldest first.
    fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, BackendError>;
    /// Begins an orderly shutdown that ends in a reboot or power-off.
    fn power(&self, action: PowerAction) -> Result<(), BackendError>;
}

/// Why the supervisor refused or failed a request; mapped one-to-one onto D-Bus error names.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// No service with this name exists (`org.cairn.Error.UnknownService`).
    #[error("no such service \"{0}\"")]
    UnknownService(String),
    /// cairn-init is shutting down and takes no more requests (`org.cairn.Error.ShuttingDown`).
    #[error("cairn-init is shutting down")]
    ShuttingDown,
    /// Anything else; the text says what (`org.cairn.Error.Failed`).
    #[error("cairn-init failed: {0}")]
    Internal(String),
}

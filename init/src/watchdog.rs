//! The hardware watchdog: opened at boot, pinged from the main loop, and
//! closed with the magic character on orderly shutdown so it does not fire
//! while the machine reboots on purpose.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Timeout asked of the device.
pub const TIMEOUT_S: i32 = 30;

/// Failure to use the watchdog device.
#[derive(Debug, thiserror::Error)]
#[error("watchdog {path}: {source}")]
pub struct WatchdogError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// An open watchdog device.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
    path: PathBuf,
    /// Ping interval in milliseconds (a quarter of the timeout).
    pub interval_ms: u64,
}

impl Watchdog {
    /// Opens the device and sets its timeout (keeping the driver's default
    /// when it refuses ours).
    pub fn open(path: &Path) -> Result<Self, WatchdogError> {
        let err = |source| WatchdogError {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new().write(true).open(path).map_err(err)?;
        let timeout =
            crate::sys::watchdog_set_timeout(file.as_raw_fd(), TIMEOUT_S).unwrap_or(TIMEOUT_S);
        let interval_ms = (timeout.max(1) as u64 * 1000) / 4;
        let mut w = Self {
            file,
            path: path.to_owned(),
            interval_ms,
        };
        w.ping()?;
        Ok(w)
    }

    /// Keeps the machine alive for another timeout period.
    pub fn ping(&mut self) -> Result<(), WatchdogError> {
        self.file.write_all(b"\0").map_err(|source| WatchdogError {
            path: self.path.clone(),
            source,
        })
    }

    /// Disarms the watchdog (magic close) and closes the device.
    pub fn close(mut self) -> Result<(), WatchdogError> {
        self.file.write_all(b"V").map_err(|source| WatchdogError {
            path: self.path.clone(),
            source,
        })
    }
}

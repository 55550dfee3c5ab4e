//! Entering a lab namespace from a dedicated thread.
//!
//! `setns(2)` with `CLONE_NEWNET` changes only the calling thread, so observers and
//! capture threads enter a namespace once and open their sockets there; a socket stays in
//! the namespace it was created in.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

/// Entering a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `/run/netns/<name>` could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `setns` refused.
    #[error("setns into {name}: {source}")]
    Setns {
        /// The namespace name.
        name: String,
        /// Why.
        source: nix::Error,
    },
}

/// Where `ip netns add` puts the namespace file of `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Moves the calling thread into network namespace `name` (use only on a thread you own).
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let path = path(name);
    let file = File::open(&path).map_err(|source| NetnsError::Open { path, source })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
        name: name.to_owned(),
        source,
    })
}

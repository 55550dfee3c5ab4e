//! `cairn-k8s import`: puts cairn's pause image into containerd's `k8s.io`
//! namespace with `ctr images import` (unpacked for overlayfs), then waits
//! until the CRI sees it. Importing the same archive again changes nothing,
//! so the service runs on every boot.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The archive is not in the image.
    #[error("{0}: no pause image archive (the builder puts it there for the k8s-node role)")]
    NoArchive(PathBuf),
    /// ctr could not be run.
    #[error("cannot run {ctr}: {source}")]
    Spawn {
        /// The program.
        ctr: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ctr failed.
    #[error("{ctr} images import failed ({status}): {stderr}")]
    Failed {
        /// The program.
        ctr: PathBuf,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// The `ctr` command line that imports `archive` through `socket`.
pub fn ctr_args(socket: &Path, archive: &Path) -> Vec<String> {
    vec![
        "--address".into(),
        socket.display().to_string(),
        "--namespace".into(),
        "k8s.io".into(),
        "images".into(),
        "import".into(),
        archive.display().to_string(),
    ]
}

/// Runs `ctr images import`; returns what it printed.
pub fn import(ctr: &Path, socket: &Path, archive: &Path) -> Result<String, ImportError> {
    if !archive.is_file() {
        return Err(ImportError::NoArchive(archive.to_owned()));
    }
    let o = Command::new(ctr)
        .args(ctr_args(socket, archive))
        .output()
        .map_err(|source| ImportError::Spawn {
            ctr: ctr.to_owned(),
            source,
        })?;
    if !o.status.success() {
        return Err(ImportError::Failed {
            ctr: ctr.to_owned(),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ctr_imports_into_the_cri_namespace() {
        let a = ctr_args(
            Path::new("/run/containerd/containerd.sock"),
            Path::new("/x.tar"),
        );
        assert_eq!(
            a.join(" "),
            "--address /run/containerd/containerd.sock --namespace k8s.io images import /x.tar"
        );
    }

    #[test]
    fn a_missing_archive_and_a_failing_ctr_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = import(
            Path::new("/bin/false"),
            Path::new("/s"),
            &dir.path().join("none.tar"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("none.tar: no pause image archive"), "{e}");
        let tar = dir.path().join("p.tar");
        std::fs::write(&tar, "x").unwrap();
        let e = import(Path::new("/bin/false"), Path::new("/s"), &tar)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/bin/false images import failed"), "{e}");
    }
}

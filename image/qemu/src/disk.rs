//! Disk images handed to a VM: format detection and qcow2 overlays, so a VM
//! never writes to the build output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors preparing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The disk image could not be read.
    #[error("cannot read disk image {path}: {source}")]
    Read {
        /// The image.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `qemu-img` could not be run.
    #[error("cannot run {program}: {source}")]
    QemuImgSpawn {
        /// The `qemu-img` binary.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `qemu-img create` failed.
    #[error("qemu-img could not create overlay {overlay} on {base}: {stderr}")]
    Overlay {
        /// The overlay that was to be created.
        overlay: PathBuf,
        /// Its backing image.
        base: PathBuf,
        /// What qemu-img said.
        stderr: String,
    },
}

/// Image formats a VM can boot from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// A plain byte-for-byte disk (`disk.img`).
    Raw,
    /// QEMU's copy-on-write format (`disk.qcow2`).
    Qcow2,
}

impl DiskFormat {
    /// QEMU's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }

    /// Detects the format from the first bytes of an image: qcow2 starts with
    /// `QFI\xfb`; anything else is taken as raw.
    pub fn from_header(header: &[u8]) -> Self {
        if header.starts_with(b"QFI\xfb") {
            DiskFormat::Qcow2
        } else {
            DiskFormat::Raw
        }
    }

    /// Detects the format of the image at `path`.
    pub fn of_file(path: &Path) -> Result<Self, DiskError> {
        let err = |source| DiskError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut header = Vec::with_capacity(4);
        std::fs::File::open(path)
            .map_err(err)?
            .take(4)
            .read_to_end(&mut header)
            .map_err(err)?;
        Ok(Self::from_header(&header))
    }
}

/// Creates a qcow2 `overlay` backed by `base` (which is only ever read).
pub fn create_overlay(
    qemu_img: &Path,
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
) -> Result<(), DiskError> {
    // The backing path is stored in the overlay: make it absolute so the
    // overlay works from any directory.
    let base = std::path::absolute(base).map_err(|source| DiskError::Read {
        path: base.to_path_buf(),
        source,
    })?;
    let output = Command::new(qemu_img)
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            base_format.name(),
            "-b",
        ])
        .arg(&base)
        .arg(overlay)
        .output()
        .map_err(|source| DiskError::QemuImgSpawn {
            program: qemu_img.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DiskError::Overlay {
            overlay: overlay.to_path_buf(),
            base,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_header() {
        assert_eq!(
            DiskFormat::from_header(b"QFI\xfb\0\0\0\x03"),
            DiskFormat::Qcow2
        );
        assert_eq!(DiskFormat::from_header(b"QFI"), DiskFormat::Raw);
        assert_eq!(DiskFormat::from_header(&[0; 512]), DiskFormat::Raw);
        assert_eq!(DiskFormat::from_header(b""), DiskFormat::Raw);
    }

    #[test]
    fn format_of_a_missing_file_names_it() {
        let err = DiskFormat::of_file(Path::new("/nonexistent/disk.img")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
    }

    #[test]
    fn overlay_reads_through_to_its_base() {
        // Needs qemu-img (package qemu-utils), like every QEMU test here.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![0x5a; 1 << 20]).unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        create_overlay(Path::new("qemu-img"), &base, DiskFormat::Raw, &overlay)
            .expect("qemu-img create (package qemu-utils)");
        assert_eq!(DiskFormat::of_file(&overlay).unwrap(), DiskFormat::Qcow2);
        let info = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&overlay)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["backing-filename-format"], "raw");
        assert_eq!(info["virtual-size"], 1 << 20);
        assert_eq!(
            info["full-backing-filename"].as_str(),
            Some(base.to_str().unwrap())
        );

        let err = create_overlay(
            Path::new("qemu-img"),
            &dir.path().join("absent.img"),
            DiskFormat::Raw,
            &dir.path().join("o2.qcow2"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("absent.img"), "{err}");
    }
}

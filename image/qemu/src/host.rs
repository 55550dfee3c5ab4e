//! Where QEMU and its firmware live on the build host, and finding them.
//!
//! The defaults are Debian bookworm's paths (packages `qemu-system-x86`,
//! `qemu-utils`, `ovmf`, `ipxe-qemu`); `cargo xtask setup` installs them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Errors finding QEMU or a firmware file on the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The QEMU system emulator is not installed (or not on `PATH`).
    #[error(
        "{program} not found (looked on PATH): install the host packages with `cargo xtask setup`"
    )]
    QemuMissing {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// `qemu-img` (needed for qcow2 overlays) is not installed.
    #[error(
        "{program} not found (looked on PATH): install the host packages with `cargo xtask setup`"
    )]
    QemuImgMissing {
        /// The program that was looked for.
        program: PathBuf,
    },
    /// An OVMF (UEFI firmware) file is missing.
    #[error(
        "OVMF firmware file {path} is missing: install the host packages with `cargo xtask setup`"
    )]
    OvmfMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// The iPXE option ROM for the network card is missing.
    #[error("iPXE ROM {path} is missing: install the host packages with `cargo xtask setup`")]
    IpxeRomMissing {
        /// The missing file.
        path: PathBuf,
    },
}

/// Host programs and firmware files a VM may need. `Default` gives Debian's paths;
/// tests and unusual hosts override single fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    /// The QEMU system emulator: a bare name is looked up on `PATH`.
    pub qemu: PathBuf,
    /// `qemu-img`, used to create qcow2 overlays: a bare name is looked up on `PATH`.
    pub qemu_img: PathBuf,
    /// Read-only UEFI firmware code (pflash unit 0).
    pub ovmf_code: PathBuf,
    /// Template of the UEFI variable store; every VM gets its own copy (pflash unit 1).
    pub ovmf_vars_template: PathBuf,
    /// iPXE option ROM for virtio-net (a combined legacy BIOS + UEFI ROM).
    pub ipxe_rom: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            qemu: PathBuf::from("qemu-system-x86_64"),
            qemu_img: PathBuf::from("qemu-img"),
            ovmf_code: PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"),
            ovmf_vars_template: PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"),
            ipxe_rom: PathBuf::from("/usr/lib/ipxe/qemu/efi-virtio.rom"),
        }
    }
}

impl HostPaths {
    /// The QEMU binary as an absolute path, or why it cannot be used.
    pub fn resolve_qemu(&self) -> Result<PathBuf, HostError> {
        find_program(&self.qemu, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            HostError::QemuMissing {
                program: self.qemu.clone(),
            }
        })
    }

    /// `qemu-img` as an absolute path, or why it cannot be used.
    pub fn resolve_qemu_img(&self) -> Result<PathBuf, HostError> {
        find_program(&self.qemu_img, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
            HostError::QemuImgMissing {
                program: self.qemu_img.clone(),
            }
        })
    }

    /// Checks that both OVMF files exist.
    pub fn check_ovmf(&self) -> Result<(), HostError> {
        for path in [&self.ovmf_code, &self.ovmf_vars_template] {
            if !path.is_file() {
                return Err(HostError::OvmfMissing { path: path.clone() });
            }
        }
        Ok(())
    }

    /// Checks that the iPXE ROM exists.
    pub fn check_ipxe_rom(&self) -> Result<(), HostError> {
        if self.ipxe_rom.is_file() {
            Ok(())
        } else {
            Err(HostError::IpxeRomMissing {
                path: self.ipxe_rom.clone(),
            })
        }
    }
}

/// Finds `program` the way a shell would: a name containing `/` is taken as a
/// path, a bare name is searched in the directories of `path_var` (`PATH`).
/// Returns the first candidate that is an executable regular file.
pub fn find_program(program: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_os_str().is_empty() {
        return None;
    }
    if program.components().count() > 1 || program.is_absolute() {
        return is_executable(program).then(|| program.to_path_buf());
    }
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_file(path: &Path, mode: u32) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn bare_name_is_searched_on_path_in_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        write_file(&first.path().join("not-exec"), 0o644);
        write_file(&second.path().join("not-exec"), 0o755);
        write_file(&second.path().join("tool"), 0o755);
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();

        assert_eq!(
            find_program(Path::new("tool"), Some(&path)),
            Some(second.path().join("tool"))
        );
        // The non-executable file in the first directory is skipped.
        assert_eq!(
            find_program(Path::new("not-exec"), Some(&path)),
            Some(second.path().join("not-exec"))
        );
        assert_eq!(find_program(Path::new("absent"), Some(&path)), None);
        assert_eq!(find_program(Path::new("tool"), None), None);
        assert_eq!(find_program(Path::new(""), Some(&path)), None);
    }

    #[test]
    fn explicit_path_is_not_searched() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("tool"), 0o755);
        let absolute = dir.path().join("tool");
        assert_eq!(find_program(&absolute, None), Some(absolute.clone()));
        assert_eq!(find_program(&dir.path().join("nope"), None), None);
    }

    #[test]
    fn missing_files_are_named_in_errors() {
        let paths = HostPaths {
            qemu: PathBuf::from("/nonexistent/qemu-system-x86_64"),
            ovmf_code: PathBuf::from("/nonexistent/OVMF_CODE_4M.fd"),
            ipxe_rom: PathBuf::from("/nonexistent/efi-virtio.rom"),
            ..HostPaths::default()
        };
        let qemu = paths.resolve_qemu().unwrap_err().to_string();
        assert!(qemu.contains("/nonexistent/qemu-system-x86_64"), "{qemu}");
        assert!(qemu.contains("cargo xtask setup"), "{qemu}");
        let ovmf = paths.check_ovmf().unwrap_err().to_string();
        assert!(ovmf.contains("/nonexistent/OVMF_CODE_4M.fd"), "{ovmf}");
        let rom = paths.check_ipxe_rom().unwrap_err().to_string();
        assert!(rom.contains("/nonexistent/efi-virtio.rom"), "{rom}");
    }
}

//! Attaches a file to a free loop device, read-only, for the PXE path where
//! the root image travels inside the initramfs. Uses `LOOP_CONFIGURE`
//! (Linux 5.8+) and falls back to `LOOP_SET_FD` + `LOOP_SET_STATUS64`.
//! The device is set to autoclear: it detaches itself once the last user
//! (our descriptor, dm-verity, a mount) lets go.
//!
//! ```text
//! struct loop_info64 (232 bytes)           struct loop_config (304 bytes)
//!   0 u64 lo_device    24 u64 lo_offset       0 u32 fd
//!   8 u64 lo_inode     32 u64 lo_sizelimit    4 u32 block_size
//!  16 u64 lo_rdevice   40 u32 lo_number       8 loop_info64 info
//!  44 u32 encrypt_type 48 u32 key_size      240 u64 reserved[8]
//!  52 u32 lo_flags     56 u8 lo_file_name[64]
//! 120 u8 lo_crypt_name[64] 184 u8 key[32] 216 u64 lo_init[2]
//! ```

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use crate::blockdev::{self, Roots};
use crate::devctl::{self, LOOP_CONFIG_SIZE, LOOP_INFO64_SIZE};

/// `LO_FLAGS_READ_ONLY`.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR`.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_FLAGS_PARTSCAN`.
pub const LO_FLAGS_PARTSCAN: u32 = 8;
/// `LO_NAME_SIZE`.
pub const LO_NAME_SIZE: usize = 64;
/// Offset of `lo_flags` in `struct loop_info64`.
pub const INFO_FLAGS_OFFSET: usize = 52;
/// Offset of `lo_file_name` in `struct loop_info64`.
pub const INFO_FILE_NAME_OFFSET: usize = 56;
/// Offset of `info` in `struct loop_config`.
pub const CONFIG_INFO_OFFSET: usize = 8;
/// How many times to retry when another process takes the free device first.
pub const ATTACH_ATTEMPTS: usize = 16;

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Read-only device (and backing file opened read-only).
    pub read_only: bool,
    /// Scan the image for a partition table.
    pub partscan: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_only: true,
            partscan: false,
        }
    }
}

/// An attached loop device. It stays attached while anything holds it; with
/// autoclear it detaches once this handle and every other user are gone.
#[derive(Debug)]
pub struct LoopDevice {
    /// The device node, e.g. `/dev/loop0`.
    pub path: PathBuf,
    /// The loop number.
    pub number: u32,
    file: File,
}

impl LoopDevice {
    /// The open device (keeps it attached while held).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Problems attaching a loop device.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The backing file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Backing {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// /dev/loop-control is unusable.
    #[error("{path}: {source}")]
    Control {
        /// The control node.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The loop device node is unusable.
    #[error("{path}: {source}")]
    Device {
        /// The loop device.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Binding the file failed.
    #[error("attaching {backing} to {path}: {source}")]
    Attach {
        /// The loop device.
        path: PathBuf,
        /// The image.
        backing: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Every free device was taken by someone else first.
    #[error("no free loop device for {backing} after {ATTACH_ATTEMPTS} attempts")]
    Busy {
        /// The image.
        backing: PathBuf,
    },
}

fn flags(opts: Options) -> u32 {
    let mut f = LO_FLAGS_AUTOCLEAR;
    if opts.read_only {
        f |= LO_FLAGS_READ_ONLY;
    }
    if opts.partscan {
        f |= LO_FLAGS_PARTSCAN;
    }
    f
}

fn file_name_bytes(backing: &Path) -> Vec<u8> {
    let b = backing.as_os_str().as_encoded_bytes();
    b[..b.len().min(LO_NAME_SIZE - 1)].to_vec()
}

/// Encodes a `struct loop_info64` with `flags` and the (truncated) file name.
pub fn encode_info64(flags: u32, backing: &Path) -> [u8; LOOP_INFO64_SIZE] {
    let mut info = [0u8; LOOP_INFO64_SIZE];
    info[INFO_FLAGS_OFFSET..INFO_FLAGS_OFFSET + 4].copy_from_slice(&flags.to_ne_bytes());
    let name = file_name_bytes(backing);
    info[INFO_FILE_NAME_OFFSET..INFO_FILE_NAME_OFFSET + name.len()].copy_from_slice(&name);
    info
}

/// Encodes a `struct loop_config` binding descriptor `fd`.
pub fn encode_config(fd: u32, flags: u32, backing: &Path) -> [u8; LOOP_CONFIG_SIZE] {
    let mut c = [0u8; LOOP_CONFIG_SIZE];
    c[0..4].copy_from_slice(&fd.to_ne_bytes());
    // block_size 0: the kernel picks (512, or the backing's logical block size).
    c[CONFIG_INFO_OFFSET..CONFIG_INFO_OFFSET + LOOP_INFO64_SIZE]
        .copy_from_slice(&encode_info64(flags, backing));
    c
}

fn open_control(roots: &Roots) -> Result<File, LoopError> {
    let path = roots.dev.join("loop-control");
    if !path.exists() {
        // The misc minor of loop-control is fixed (LOOP_CTRL_MINOR).
        let _ = nix::sys::stat::mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(10, 237),
        );
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|source| LoopError::Control { path, source })
}

fn open_device(roots: &Roots, number: u32) -> Result<(PathBuf, File), LoopError> {
    let name = format!("loop{number}");
    let path = match blockdev::by_name(roots, &name) {
        Some(dev) => blockdev::ensure_node(roots, &dev).unwrap_or_else(|_| dev.node(roots)),
        None => roots.dev.join(&name),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .or_else(|_| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
        })
        .map_err(|source| LoopError::Device {
            path: path.clone(),
            source,
        })?;
    Ok((path, file))
}

fn bind(dev: &File, backing_file: &File, backing: &Path, opts: Options) -> std::io::Result<()> {
    let fl = flags(opts);
    let config = encode_config(backing_file.as_raw_fd() as u32, fl, backing);
    match devctl::loop_configure(dev, &config) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {
            // Pre-5.8 kernel: bind, then set flags (read-only follows the
            // backing descriptor's mode).
            devctl::loop_set_fd(dev, backing_file)?;
            let info = encode_info64(fl & !LO_FLAGS_READ_ONLY, backing);
            if let Err(e) = devctl::loop_set_status64(dev, &info) {
                let _ = devctl::loop_clr_fd(dev);
                return Err(e);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Attaches `backing` to a free loop device.
pub fn attach(roots: &Roots, backing: &Path, opts: Options) -> Result<LoopDevice, LoopError> {
    let backing_file = OpenOptions::new()
        .read(true)
        .write(!opts.read_only)
        .custom_flags(libc::O_CLOEXEC)
        .open(backing)
        .map_err(|source| LoopError::Backing {
            path: backing.to_owned(),
            source,
        })?;
    let control = open_control(roots)?;
    for _ in 0..ATTACH_ATTEMPTS {
        let number = devctl::loop_ctl_get_free(&control).map_err(|source| LoopError::Control {
            path: roots.dev.join("loop-control"),
            source,
        })?;
        let (path, file) = open_device(roots, number)?;
        match bind(&file, &backing_file, backing, opts) {
            Ok(()) => return Ok(LoopDevice { path, number, file }),
            // Someone else bound it between GET_FREE and our bind: try another.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(source) => {
                return Err(LoopError::Attach {
                    path,
                    backing: backing.to_owned(),
                    source,
                });
            }
        }
    }
    Err(LoopError::Busy {
        backing: backing.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn info64_layout() {
        let info = encode_info64(
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            Path::new("/root.img"),
        );
        assert_eq!(info.len(), 232);
        assert_eq!(&info[52..56], &5u32.to_ne_bytes());
        assert_eq!(&info[56..66], b"/root.img\0");
        assert!(info[..52].iter().all(|b| *b == 0));
        assert!(info[66..].iter().all(|b| *b == 0));
    }

    #[test]
    fn long_names_are_truncated_with_a_nul() {
        let long = format!("/{}", "x".repeat(100));
        let info = encode_info64(0, Path::new(&long));
        assert_eq!(info[56 + 62], b'x');
        assert_eq!(info[56 + 63], 0, "last byte of lo_file_name stays NUL");
    }

    #[test]
    fn config_layout() {
        let c = encode_config(7, flags(Options::default()), Path::new("/r"));
        assert_eq!(c.len(), 304);
        assert_eq!(&c[0..4], &7u32.to_ne_bytes());
        assert_eq!(&c[4..8], &0u32.to_ne_bytes(), "block_size");
        assert_eq!(
            &c[8 + 52..8 + 56],
            &5u32.to_ne_bytes(),
            "read-only + autoclear"
        );
        assert_eq!(&c[8 + 56..8 + 58], b"/r");
        assert!(c[240..].iter().all(|b| *b == 0), "reserved");
    }

    #[test]
    fn flag_sets() {
        assert_eq!(
            flags(Options::default()),
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR
        );
        assert_eq!(
            flags(Options {
                read_only: false,
                partscan: true
            }),
            LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN
        );
    }
}

//! The data partition: writable state mounted at /var. On first boot the
//! partition is empty (all zeros) and is formatted ext4; a partition that
//! holds anything else is never formatted. When there is no data partition
//! (`cairn.data=tmpfs`, PXE) or anything goes wrong, /var is a tmpfs and the
//! box boots on, with the reason logged.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{MsFlags, mount};
use tracing::{error, info, warn};

use crate::blockdev::{self, Roots};
use crate::cmdline::{self, DataSource};

/// How many leading bytes decide whether a partition is empty.
pub const PROBE_BYTES: usize = 64 * 1024;
/// Where the data partition goes.
pub const VAR: &str = "/var";
/// The formatter, from e2fsprogs, shipped in the root image.
pub const MKE2FS: &str = "/sbin/mke2fs";
/// The ext4 label cairn gives the data filesystem.
pub const LABEL: &str = "cairn-data";

/// What the first bytes of a partition say it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// ext2/3/4 superblock magic 0xEF53 at byte 1080.
    Ext4,
    /// XFS superblock magic "XFSB" at byte 0.
    Xfs,
    /// Only zeros: never used.
    Empty,
    /// Something else: not ours to touch.
    Unknown,
}

/// What to do with the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Empty: run mke2fs, then mount ext4.
    FormatAndMount,
    /// A filesystem: mount it as this type.
    Mount(&'static str),
    /// Unknown contents: leave it alone, use tmpfs.
    Refuse,
}

/// Classifies the first bytes of a partition (up to [`PROBE_BYTES`]).
pub fn classify(head: &[u8]) -> Signature {
    let head = &head[..head.len().min(PROBE_BYTES)];
    if head.len() >= 4 && &head[0..4] == b"XFSB" {
        return Signature::Xfs;
    }
    if head.len() >= 1082 && head[1080..1082] == [0x53, 0xEF] {
        return Signature::Ext4;
    }
    if !head.is_empty() && head.iter().all(|b| *b == 0) {
        return Signature::Empty;
    }
    Signature::Unknown
}

/// Decides what to do with a partition of the given signature.
pub fn plan(sig: Signature) -> Plan {
    match sig {
        Signature::Empty => Plan::FormatAndMount,
        Signature::Ext4 => Plan::Mount("ext4"),
        Signature::Xfs => Plan::Mount("xfs"),
        Signature::Unknown => Plan::Refuse,
    }
}

/// Problems with the data partition.
#[derive(Debug, thiserror::Error)]
pub enum DatapartError {
    /// The partition was not found.
    #[error(transparent)]
    Find(#[from] blockdev::BlockdevError),
    /// Its first bytes could not be read.
    #[error("reading {path}: {source}")]
    Probe {
        /// The device.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds data that is not a filesystem cairn mounts.
    #[error(
        "{path} holds unknown data (no ext4 or XFS signature, not all zeros); not formatting it"
    )]
    Refused {
        /// The device.
        path: PathBuf,
    },
    /// mke2fs could not run or failed.
    #[error("{mke2fs} on {path}: {reason}")]
    Format {
        /// The formatter.
        mke2fs: PathBuf,
        /// The device.
        path: PathBuf,
        /// Exit status and output, or the spawn error.
        reason: String,
    },
    /// Mounting failed.
    #[error("mount of {path} ({fstype}) on {target}: {source}")]
    Mount {
        /// The device or "tmpfs".
        path: PathBuf,
        /// The filesystem type.
        fstype: String,
        /// The mount point.
        target: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where and how to set up the data partition.
#[derive(Debug, Clone)]
pub struct Config {
    /// sysfs and /dev.
    pub roots: Roots,
    /// The mount point (normally /var).
    pub target: PathBuf,
    /// The ext4 formatter.
    pub mke2fs: PathBuf,
    /// How long to wait for the partition to appear.
    pub wait: Duration,
    /// The disk the system booted from, preferred when several match.
    pub prefer_disk: Option<String>,
}

impl Config {
    /// The running system's settings: /sys, /dev, /var, /sbin/mke2fs.
    pub fn system(wait: Duration) -> Config {
        let roots = Roots::system();
        let prefer_disk = blockdev::disk_of_mount(&roots, Path::new("/"));
        Config {
            roots,
            target: VAR.into(),
            mke2fs: MKE2FS.into(),
            wait,
            prefer_disk,
        }
    }
}

/// How /var ended up.
#[derive(Debug)]
pub enum Outcome {
    /// The data partition is mounted.
    Mounted {
        /// Its node.
        device: PathBuf,
        /// Its filesystem type.
        fstype: &'static str,
        /// Whether it was formatted on this boot.
        formatted: bool,
    },
    /// /var is a tmpfs; `reason` says why when it was not asked for.
    Tmpfs {
        /// The error that forced tmpfs, if any.
        reason: Option<DatapartError>,
    },
}

/// Reads up to [`PROBE_BYTES`] from the start of `path`.
pub fn probe(path: &Path) -> Result<Vec<u8>, DatapartError> {
    let probe_err = |source| DatapartError::Probe {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(probe_err)?;
    let mut head = Vec::with_capacity(PROBE_BYTES);
    f.take(PROBE_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(probe_err)?;
    Ok(head)
}

/// Runs `mke2fs -t ext4 -L cairn-data -q -E lazy_itable_init=1,lazy_journal_init=1,nodiscard
/// <device>`: inode tables and the journal are initialised lazily by the
/// kernel, so the first boot does not wait for the whole partition to be written.
pub fn format(mke2fs: &Path, device: &Path) -> Result<(), DatapartError> {
    let fail = |reason: String| DatapartError::Format {
        mke2fs: mke2fs.to_owned(),
        path: device.to_owned(),
        reason,
    };
    // mke2fs asks getrandom(2) for its UUID and hash seed, which blocks until
    // the kernel's CRNG is ready: seconds on a fresh VM without a hardware RNG.
    // The kernel hands out UUIDs without blocking, so pass both in.
    let kernel_uuid = || {
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .ok()
            .map(|u| u.trim().to_owned())
            .filter(|u| u.len() == 36)
    };
    let mut extended = "lazy_itable_init=1,lazy_journal_init=1,nodiscard".to_owned();
    let mut cmd = Command::new(mke2fs);
    cmd.args(["-t", "ext4", "-L", LABEL, "-q"]);
    if let (Some(uuid), Some(seed)) = (kernel_uuid(), kernel_uuid()) {
        cmd.args(["-U", &uuid]);
        extended.push_str(",hash_seed=");
        extended.push_str(&seed);
    }
    let out = cmd
        .args(["-E", &extended])
        .arg(device)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(fail(format!("{}: {text}", out.status)))
    }
}

fn mount_fs(device: &Path, fstype: &'static str, target: &Path) -> Result<(), DatapartError> {
    mount(
        Some(device),
        target,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| DatapartError::Mount {
        path: device.to_owned(),
        fstype: fstype.into(),
        target: target.to_owned(),
        source: e.into(),
    })
}

/// Probes the partition at `device`, formats it only if empty, and mounts it
/// on `target`. Returns the filesystem type and whether it was formatted.
pub fn prepare_and_mount(
    device: &Path,
    target: &Path,
    mke2fs: &Path,
) -> Result<(&'static str, bool), DatapartError> {
    let head = probe(device)?;
    match plan(classify(&head)) {
        Plan::Refuse => Err(DatapartError::Refused {
            path: device.to_owned(),
        }),
        Plan::Mount(fstype) => mount_fs(device, fstype, target).map(|()| (fstype, false)),
        Plan::FormatAndMount => {
            format(mke2fs, device)?;
            mount_fs(device, "ext4", target).map(|()| ("ext4", true))
        }
    }
}

/// Mounts a tmpfs on `target`.
pub fn mount_tmpfs(target: &Path) -> Result<(), DatapartError> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| DatapartError::Mount {
        path: "tmpfs".into(),
        fstype: "tmpfs".into(),
        target: target.to_owned(),
        source: e.into(),
    })
}

/// Sets up `cfg.target` from `source`. Never fails: on any error /var becomes
/// a tmpfs and the error is returned in the outcome (and logged).
pub fn setup(source: &DataSource, cfg: &Config) -> Outcome {
    let spec = match source {
        DataSource::Tmpfs => {
            return tmpfs_outcome(cfg, None);
        }
        DataSource::Device(spec) => spec,
    };
    let found = blockdev::wait_for(
        &cfg.roots,
        spec,
        cfg.prefer_disk.as_deref(),
        cfg.wait,
        blockdev::POLL,
    );
    let device = match found {
        Ok((_, node)) => node,
        Err(e) => return tmpfs_outcome(cfg, Some(e.into())),
    };
    match prepare_and_mount(&device, &cfg.target, &cfg.mke2fs) {
        Ok((fstype, formatted)) => Outcome::Mounted {
            device,
            fstype,
            formatted,
        },
        Err(e) => tmpfs_outcome(cfg, Some(e)),
    }
}

fn tmpfs_outcome(cfg: &Config, reason: Option<DatapartError>) -> Outcome {
    if let Err(e) = mount_tmpfs(&cfg.target) {
        error!(error = %e, "cannot mount a tmpfs either; /var stays as it is");
    }
    Outcome::Tmpfs { reason }
}

/// Machine mode: reads `cairn.data=` from /proc/cmdline (default
/// `PARTLABEL=data`) and sets up /var, logging the outcome.
pub fn setup_machine() {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let params = match cmdline::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "kernel command line; using the default data partition");
            cmdline::BootParams::default()
        }
    };
    let cfg = Config::system(params.root_wait);
    let source = params.data;
    match setup(&source, &cfg) {
        Outcome::Mounted {
            device,
            fstype,
            formatted,
        } => {
            info!(device = %device.display(), fstype, formatted, target = %cfg.target.display(), "data partition mounted")
        }
        Outcome::Tmpfs { reason: None } => {
            info!(target = %cfg.target.display(), "data on tmpfs (cairn.data=tmpfs)")
        }
        Outcome::Tmpfs { reason: Some(e) } => {
            error!(error = %e, "data partition unusable; /var is a tmpfs, state will not survive a reboot")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_empty() {
        assert_eq!(classify(&vec![0u8; PROBE_BYTES]), Signature::Empty);
        assert_eq!(classify(&[0u8; 4096]), Signature::Empty, "a short device");
        assert_eq!(plan(Signature::Empty), Plan::FormatAndMount);
    }

    #[test]
    fn ext4_magic_at_1080() {
        let mut b = vec![0u8; PROBE_BYTES];
        b[1080] = 0x53;
        b[1081] = 0xEF;
        assert_eq!(classify(&b), Signature::Ext4);
        assert_eq!(plan(Signature::Ext4), Plan::Mount("ext4"));
        // Wrong byte order is not ext4 and not empty.
        b[1080] = 0xEF;
        b[1081] = 0x53;
        assert_eq!(classify(&b), Signature::Unknown);
    }

    #[test]
    fn xfs_magic_at_0() {
        let mut b = vec![0u8; PROBE_BYTES];
        b[..4].copy_from_slice(b"XFSB");
        assert_eq!(classify(&b), Signature::Xfs);
        assert_eq!(plan(Signature::Xfs), Plan::Mount("xfs"));
    }

    #[test]
    fn one_stray_byte_is_unknown_and_refused() {
        let mut b = vec![0u8; PROBE_BYTES];
        b[PROBE_BYTES - 1] = 1;
        assert_eq!(classify(&b), Signature::Unknown);
        assert_eq!(plan(Signature::Unknown), Plan::Refuse);
        // A byte beyond the probe window does not count.
        let mut c = vec![0u8; PROBE_BYTES + 1];
        c[PROBE_BYTES] = 1;
        assert_eq!(classify(&c), Signature::Empty);
        assert_eq!(
            classify(&[]),
            Signature::Unknown,
            "nothing read is not empty"
        );
    }

    #[test]
    fn refused_message_says_not_formatting() {
        let e = DatapartError::Refused {
            path: "/dev/vda4".into(),
        };
        assert!(e.to_string().starts_with("/dev/vda4 holds unknown data"));
        assert!(e.to_string().ends_with("not formatting it"));
    }
}

//! Device-mapper through its ioctls on `/dev/mapper/control`, enough to set
//! up one read-only `verity` target: Debian's kernels lack `CONFIG_DM_INIT`,
//! so `dm-mod.create=` does nothing and userspace must do it. The ioctl
//! buffers are encoded byte by byte with the layout of <linux/dm-ioctl.h>
//! (checked by unit tests) and handed to [`crate::devctl::dm_ioctl`].
//!
//! ```text
//! struct dm_ioctl (312 bytes)              struct dm_target_spec (40 bytes)
//!   0 u32 version[3]     = 4.0.0             0 u64 sector_start
//!  12 u32 data_size      (whole buffer)      8 u64 length (sectors)
//!  16 u32 data_start     = 312              16 s32 status
//!  20 u32 target_count                      20 u32 next (bytes to next spec)
//!  24 s32 open_count                        24 char target_type[16]
//!  28 u32 flags                             40 params, NUL, pad to 8
//!  32 u32 event_nr
//!  36 u32 padding
//!  40 u64 dev            (huge_encode_dev)
//!  48 char name[128]
//! 176 char uuid[129]
//! 305 char data[7]
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use crate::blockdev::{self, Roots};
use crate::cmdline::{VERITY_BLOCK, VerityParams};
use crate::devctl::{self, DM_IOCTL_SIZE};

/// The control node, relative to the device directory.
pub const CONTROL: &str = "mapper/control";
/// The interface version we speak (the kernel accepts any 4.x ≥ ours).
pub const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_NAME_LEN`.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`.
pub const MAX_TYPE_NAME: usize = 16;
/// `sizeof(struct dm_target_spec)`.
pub const TARGET_SPEC_SIZE: usize = 40;
/// `DM_READONLY_FLAG`: the table opens its devices read-only (verity requires it).
pub const READONLY_FLAG: u32 = 1;
/// `DM_SUSPEND_FLAG`: with DM_DEV_SUSPEND, suspend; without it, resume.
pub const SUSPEND_FLAG: u32 = 1 << 1;

/// Offsets inside `struct dm_ioctl`.
pub mod offset {
    /// `version[3]`.
    pub const VERSION: usize = 0;
    /// `data_size`.
    pub const DATA_SIZE: usize = 12;
    /// `data_start`.
    pub const DATA_START: usize = 16;
    /// `target_count`.
    pub const TARGET_COUNT: usize = 20;
    /// `open_count`.
    pub const OPEN_COUNT: usize = 24;
    /// `flags`.
    pub const FLAGS: usize = 28;
    /// `dev`.
    pub const DEV: usize = 40;
    /// `name[128]`.
    pub const NAME: usize = 48;
    /// `uuid[129]`.
    pub const UUID: usize = 176;
}

/// The device-mapper commands used here (the `nr` of each ioctl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `DM_VERSION`: check the interface version.
    Version = 0,
    /// `DM_DEV_CREATE`: create an empty, suspended device.
    DevCreate = 3,
    /// `DM_DEV_REMOVE`: remove a device.
    DevRemove = 4,
    /// `DM_DEV_SUSPEND`: suspend, or resume (activating a loaded table).
    DevSuspend = 6,
    /// `DM_DEV_STATUS`: report a device's state.
    DevStatus = 7,
    /// `DM_TABLE_LOAD`: load a table into the inactive slot.
    TableLoad = 9,
}

impl Command {
    /// The ioctl request number: `_IOWR(0xfd, nr, struct dm_ioctl)`.
    pub fn request(self) -> u32 {
        (3 << 30) | ((DM_IOCTL_SIZE as u32) << 16) | (0xfd << 8) | self as u32
    }

    /// The command's name in <linux/dm-ioctl.h>, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Version => "DM_VERSION",
            Command::DevCreate => "DM_DEV_CREATE",
            Command::DevRemove => "DM_DEV_REMOVE",
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::DevStatus => "DM_DEV_STATUS",
            Command::TableLoad => "DM_TABLE_LOAD",
        }
    }
}

/// One line of a device-mapper table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub length: u64,
    /// Target type, e.g. `verity`.
    pub kind: String,
    /// The target's parameter string.
    pub params: String,
}

/// What the kernel reports back in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The kernel's interface version.
    pub version: [u32; 3],
    /// Flags (e.g. READONLY, ACTIVE_PRESENT).
    pub flags: u32,
    /// The device number, `huge_encode_dev` encoded.
    pub dev: u64,
    /// Open count.
    pub open_count: i32,
    /// Number of targets.
    pub target_count: u32,
}

/// Problems setting up a device-mapper device.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// The control node cannot be opened (dm_mod not loaded?).
    #[error("cannot open {path}: {source} (is the dm_mod module loaded?)")]
    Control {
        /// The control node.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("{cmd} {name}: {source}")]
    Ioctl {
        /// The command's name, e.g. `DM_TABLE_LOAD`.
        cmd: &'static str,
        /// The device name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel speaks another major version.
    #[error("device-mapper interface {}.{}.{} is not version 4", found[0], found[1], found[2])]
    Version {
        /// What the kernel reported.
        found: [u32; 3],
    },
    /// A name, type or parameter string does not fit the ioctl layout.
    #[error("device-mapper request for {name}: {reason}")]
    Encode {
        /// The device name.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// The device below is smaller than the verity layout needs.
    #[error("{path} holds {size} bytes but the verity layout needs at least {needed}")]
    TooSmall {
        /// The device.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// What the verity parameters need.
        needed: u64,
    },
    /// The start of the hash area could not be read.
    #[error("reading the verity superblock of {path}: {source}")]
    ReadSuperblock {
        /// The device.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The veritysetup superblock disagrees with `cairn.verity=`.
    #[error("{path}: {reason}")]
    Superblock {
        /// The device.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// Finding the device below failed.
    #[error(transparent)]
    Device(#[from] blockdev::BlockdevError),
    /// The /dev/mapper node could not be made.
    #[error("cannot create {path}: {source}")]
    Node {
        /// The node.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(a)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(a)
}

fn encode_error(name: &str, reason: impl Into<String>) -> DmError {
    DmError::Encode {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn check_name(name: &str) -> Result<(), DmError> {
    if name.is_empty()
        || name.len() >= NAME_LEN
        || name.contains(['/', '\0'])
        || name == "."
        || name == ".."
    {
        return Err(encode_error(
            name,
            "device names are 1 to 127 bytes without '/' or NUL",
        ));
    }
    Ok(())
}

/// Encodes a request: the header for device `name` with `flags`, followed
/// by `targets` (only DM_TABLE_LOAD carries any).
pub fn encode(name: &str, flags: u32, targets: &[Target]) -> Result<Vec<u8>, DmError> {
    check_name(name)?;
    let mut specs = Vec::new();
    for t in targets {
        if t.kind.is_empty() || t.kind.len() >= MAX_TYPE_NAME || t.kind.contains('\0') {
            return Err(encode_error(name, format!("bad target type {:?}", t.kind)));
        }
        if t.params.contains('\0') {
            return Err(encode_error(name, "target parameters contain NUL"));
        }
        let padded = (t.params.len() + 1).next_multiple_of(8);
        let mut spec = vec![0u8; TARGET_SPEC_SIZE + padded];
        put_u64(&mut spec, 0, t.start);
        put_u64(&mut spec, 8, t.length);
        let next = spec.len() as u32;
        put_u32(&mut spec, 20, next);
        spec[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        spec[TARGET_SPEC_SIZE..TARGET_SPEC_SIZE + t.params.len()]
            .copy_from_slice(t.params.as_bytes());
        specs.extend_from_slice(&spec);
    }
    let total = DM_IOCTL_SIZE + specs.len();
    let total32 = u32::try_from(total).map_err(|_| encode_error(name, "table too large"))?;
    let mut buf = vec![0u8; DM_IOCTL_SIZE];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, offset::VERSION + 4 * i, *v);
    }
    put_u32(&mut buf, offset::DATA_SIZE, total32);
    put_u32(&mut buf, offset::DATA_START, DM_IOCTL_SIZE as u32);
    put_u32(&mut buf, offset::TARGET_COUNT, targets.len() as u32);
    put_u32(&mut buf, offset::FLAGS, flags);
    buf[offset::NAME..offset::NAME + name.len()].copy_from_slice(name.as_bytes());
    buf.extend_from_slice(&specs);
    Ok(buf)
}

/// Reads the header fields the kernel fills in.
pub fn decode_status(buf: &[u8]) -> Status {
    Status {
        version: [get_u32(buf, 0), get_u32(buf, 4), get_u32(buf, 8)],
        flags: get_u32(buf, offset::FLAGS),
        dev: get_u64(buf, offset::DEV),
        open_count: get_u32(buf, offset::OPEN_COUNT) as i32,
        target_count: get_u32(buf, offset::TARGET_COUNT),
    }
}

/// Splits a `huge_encode_dev` device number into major and minor.
pub fn decode_dev(dev: u64) -> (u32, u32) {
    let major = ((dev & 0xfff00) >> 8) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
    (major, minor)
}

/// The signature of the superblock `veritysetup format` writes at the hash
/// offset (unless `--no-superblock`); the hash tree then starts one hash
/// block later.
pub const SUPERBLOCK_MAGIC: &[u8; 8] = b"verity\0\0";
/// Size of `struct verity_sb`.
pub const SUPERBLOCK_SIZE: usize = 512;

/// The fields of a veritysetup superblock (`struct verity_sb`, little-endian).
///
/// ```text
///   0 u8  signature[8] "verity\0\0"   64 u32 data_block_size
///   8 u32 version                      68 u32 hash_block_size
///  12 u32 hash_type (1 = normal)       72 u64 data_blocks
///  16 u8  uuid[16]                     80 u16 salt_size
///  32 u8  algorithm[32]                88 u8  salt[256]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Superblock version (1).
    pub version: u32,
    /// Hash format: 1 is the normal one, 0 Chrome OS.
    pub hash_type: u32,
    /// Hash algorithm, e.g. `sha256`.
    pub algorithm: String,
    /// Data block size.
    pub data_block_size: u32,
    /// Hash block size.
    pub hash_block_size: u32,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// The salt.
    pub salt: Vec<u8>,
}

/// Parses a veritysetup superblock, or `None` when `head` does not start with one.
pub fn parse_superblock(head: &[u8]) -> Option<Superblock> {
    if head.len() < SUPERBLOCK_SIZE || &head[0..8] != SUPERBLOCK_MAGIC {
        return None;
    }
    let le32 = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let mut d = [0u8; 8];
    d.copy_from_slice(&head[72..80]);
    let salt_size = usize::from(u16::from_le_bytes([head[80], head[81]])).min(256);
    let alg = &head[32..64];
    let alg_len = alg.iter().position(|b| *b == 0).unwrap_or(alg.len());
    Some(Superblock {
        version: le32(8),
        hash_type: le32(12),
        algorithm: String::from_utf8_lossy(&alg[..alg_len]).into_owned(),
        data_block_size: le32(64),
        hash_block_size: le32(68),
        data_blocks: u64::from_le_bytes(d),
        salt: head[88..88 + salt_size].to_vec(),
    })
}

/// The first block of the hash tree, given the first bytes at the hash
/// offset: one block past a veritysetup superblock when there is one (which
/// must then agree with the command line), else the hash offset itself.
pub fn hash_start(v: &VerityParams, head: &[u8]) -> Result<u64, String> {
    let Some(sb) = parse_superblock(head) else {
        return Ok(v.hash_start_block());
    };
    let block = VERITY_BLOCK as u32;
    let mut wrong = Vec::new();
    if sb.hash_type != 1 {
        wrong.push(format!("hash type {} (want 1)", sb.hash_type));
    }
    if sb.algorithm != "sha256" {
        wrong.push(format!("algorithm {} (want sha256)", sb.algorithm));
    }
    if sb.data_block_size != block || sb.hash_block_size != block {
        wrong.push(format!(
            "block sizes {}/{} (want 4096/4096)",
            sb.data_block_size, sb.hash_block_size
        ));
    }
    if sb.data_blocks != v.data_blocks {
        wrong.push(format!(
            "{} data blocks (cairn.verity= says {})",
            sb.data_blocks, v.data_blocks
        ));
    }
    if sb.salt != v.salt {
        wrong.push("a different salt than cairn.verity=".into());
    }
    if wrong.is_empty() {
        Ok(v.hash_start_block() + 1)
    } else {
        Err(format!(
            "the verity superblock at byte {} has {}",
            v.hash_offset,
            wrong.join(", ")
        ))
    }
}

/// The verity table line for a root image whose data and hash tree share the
/// device `major:minor`, the tree starting at hash block `hash_start`:
/// `1 <dev> <dev> 4096 4096 <data-blocks> <hash-start> sha256 <roothash> <salt>`.
pub fn verity_target(dev: (u32, u32), v: &VerityParams, hash_start: u64) -> Target {
    let d = format!("{}:{}", dev.0, dev.1);
    Target {
        start: 0,
        length: v.data_sectors(),
        kind: "verity".into(),
        params: format!(
            "1 {d} {d} {VERITY_BLOCK} {VERITY_BLOCK} {} {hash_start} sha256 {} {}",
            v.data_blocks,
            v.root_hash_hex(),
            v.salt_hex()
        ),
    }
}

/// An open `/dev/mapper/control`.
#[derive(Debug)]
pub struct Control {
    file: File,
}

impl Control {
    /// Opens the control node, creating it from sysfs' misc device number
    /// when devtmpfs has not.
    pub fn open(roots: &Roots) -> Result<Control, DmError> {
        let path = roots.dev.join(CONTROL);
        if !path.exists() {
            make_control_node(roots, &path);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| DmError::Control { path, source })?;
        Ok(Control { file })
    }

    fn call(&self, cmd: Command, name: &str, mut buf: Vec<u8>) -> Result<Status, DmError> {
        devctl::dm_ioctl(&self.file, cmd.request(), &mut buf).map_err(|source| DmError::Ioctl {
            cmd: cmd.name(),
            name: name.to_owned(),
            source,
        })?;
        Ok(decode_status(&buf))
    }

    /// `DM_VERSION`; fails unless the kernel speaks version 4.
    pub fn version(&self) -> Result<[u32; 3], DmError> {
        // DM_VERSION takes no name; "-" satisfies the encoder and is ignored.
        let mut buf = encode("-", 0, &[])?;
        buf[offset::NAME] = 0;
        let s = self.call(Command::Version, "", buf)?;
        if s.version[0] != VERSION[0] {
            return Err(DmError::Version { found: s.version });
        }
        Ok(s.version)
    }

    /// `DM_DEV_CREATE`: a new empty device; returns its major and minor.
    pub fn create(&self, name: &str) -> Result<(u32, u32), DmError> {
        let s = self.call(Command::DevCreate, name, encode(name, 0, &[])?)?;
        Ok(decode_dev(s.dev))
    }

    /// `DM_TABLE_LOAD` of `targets` into the inactive slot.
    pub fn load(&self, name: &str, read_only: bool, targets: &[Target]) -> Result<(), DmError> {
        let flags = if read_only { READONLY_FLAG } else { 0 };
        self.call(Command::TableLoad, name, encode(name, flags, targets)?)
            .map(drop)
    }

    /// `DM_DEV_SUSPEND` without the suspend flag: activates the loaded table.
    pub fn resume(&self, name: &str) -> Result<Status, DmError> {
        self.call(Command::DevSuspend, name, encode(name, 0, &[])?)
    }

    /// `DM_DEV_STATUS`.
    pub fn status(&self, name: &str) -> Result<Status, DmError> {
        self.call(Command::DevStatus, name, encode(name, 0, &[])?)
    }

    /// `DM_DEV_REMOVE`.
    pub fn remove(&self, name: &str) -> Result<(), DmError> {
        self.call(Command::DevRemove, name, encode(name, 0, &[])?)
            .map(drop)
    }
}

fn make_control_node(roots: &Roots, path: &Path) {
    let Ok(text) = std::fs::read_to_string(roots.sys.join("class/misc/device-mapper/dev")) else {
        return;
    };
    let Some((ma, mi)) = text.trim().split_once(':') else {
        return;
    };
    let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
        return;
    };
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = nix::sys::stat::mknod(
        path,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(ma, mi),
    );
}

/// Size in bytes of the block device `major:minor`, from sysfs.
fn device_size(roots: &Roots, dev: (u32, u32)) -> Option<u64> {
    std::fs::read_to_string(
        roots
            .sys
            .join(format!("dev/block/{}:{}/size", dev.0, dev.1)),
    )
    .ok()?
    .trim()
    .parse::<u64>()
    .ok()
    .map(|sectors| sectors * 512)
}

/// The first hash tree block of `device`, looking for a veritysetup
/// superblock at the hash offset.
pub fn read_hash_start(device: &Path, params: &VerityParams) -> Result<u64, DmError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut head = Vec::with_capacity(SUPERBLOCK_SIZE);
    // A short read is no superblock (a tiny image's tree can be empty).
    File::open(device)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(params.hash_offset))?;
            f.take(SUPERBLOCK_SIZE as u64).read_to_end(&mut head)
        })
        .map_err(|source| DmError::ReadSuperblock {
            path: device.to_owned(),
            source,
        })?;
    hash_start(params, &head).map_err(|reason| DmError::Superblock {
        path: device.to_owned(),
        reason,
    })
}

/// Creates the read-only verity device `name` over `device` (data followed by
/// its hash tree) and returns its node, `<dev>/mapper/<name>`. A device left
/// half-made by a failed step is removed again.
pub fn setup_verity(
    roots: &Roots,
    name: &str,
    device: &Path,
    params: &VerityParams,
) -> Result<PathBuf, DmError> {
    let below = blockdev::numbers(device)?;
    let needed = params.hash_offset;
    match device_size(roots, below) {
        Some(size) if size < needed => {
            return Err(DmError::TooSmall {
                path: device.to_owned(),
                size,
                needed,
            });
        }
        _ => {}
    }
    let target = verity_target(below, params, read_hash_start(device, params)?);
    let ctl = Control::open(roots)?;
    ctl.version()?;
    let numbers = ctl.create(name)?;
    let activated = ctl
        .load(name, true, std::slice::from_ref(&target))
        .and_then(|()| ctl.resume(name));
    if let Err(e) = activated {
        let _ = ctl.remove(name);
        return Err(e);
    }
    let node = roots.dev.join("mapper").join(name);
    let _ = std::fs::create_dir_all(roots.dev.join("mapper"));
    match nix::sys::stat::mknod(
        &node,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(u64::from(numbers.0), u64::from(numbers.1)),
    ) {
        Ok(()) | Err(nix::Error::EEXIST) => Ok(node),
        Err(source) => Err(DmError::Node { path: node, source }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // Values of DM_* from <linux/dm-ioctl.h> on x86-64 (sizeof(struct dm_ioctl) = 312).
        assert_eq!(Command::Version.request(), 0xc138_fd00);
        assert_eq!(Command::DevCreate.request(), 0xc138_fd03);
        assert_eq!(Command::DevRemove.request(), 0xc138_fd04);
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(Command::DevStatus.request(), 0xc138_fd07);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
    }

    #[test]
    fn header_layout_matches_the_kernel_header() {
        assert_eq!(DM_IOCTL_SIZE, 312);
        assert_eq!(offset::NAME + NAME_LEN, offset::UUID);
        assert_eq!(offset::UUID + UUID_LEN + 7, DM_IOCTL_SIZE);
        let buf = encode("root", READONLY_FLAG, &[]).unwrap();
        assert_eq!(buf.len(), 312);
        assert_eq!(get_u32(&buf, 0), 4);
        assert_eq!(get_u32(&buf, 4), 0);
        assert_eq!(get_u32(&buf, 8), 0);
        assert_eq!(get_u32(&buf, offset::DATA_SIZE), 312);
        assert_eq!(get_u32(&buf, offset::DATA_START), 312);
        assert_eq!(get_u32(&buf, offset::TARGET_COUNT), 0);
        assert_eq!(get_u32(&buf, offset::FLAGS), 1);
        assert_eq!(&buf[48..53], b"root\0");
        assert!(buf[53..312].iter().all(|b| *b == 0));
    }

    fn params() -> VerityParams {
        VerityParams {
            root_hash: [0xab; 32],
            salt: vec![1, 2, 3],
            data_blocks: 2560,
            hash_offset: 2560 * 4096,
        }
    }

    #[test]
    fn verity_table_line() {
        let t = verity_target((254, 2), &params(), 2560);
        assert_eq!(t.start, 0);
        assert_eq!(t.length, 20480);
        assert_eq!(t.kind, "verity");
        assert_eq!(
            t.params,
            format!(
                "1 254:2 254:2 4096 4096 2560 2560 sha256 {} 010203",
                "ab".repeat(32)
            )
        );
        let mut p = params();
        p.salt.clear();
        p.hash_offset = 3000 * 4096;
        let h = p.hash_start_block();
        assert!(
            verity_target((7, 0), &p, h)
                .params
                .contains(" 2560 3000 sha256 ")
        );
        assert!(verity_target((7, 0), &p, h).params.ends_with(" -"));
    }

    #[test]
    fn table_load_layout() {
        let t = verity_target((254, 2), &params(), 2561);
        let buf = encode("root", READONLY_FLAG, std::slice::from_ref(&t)).unwrap();
        let spec = &buf[312..];
        let padded = (t.params.len() + 1).next_multiple_of(8);
        assert_eq!(spec.len(), 40 + padded);
        assert_eq!(buf.len() % 8, 0, "specs stay 8-byte aligned");
        assert_eq!(get_u32(&buf, offset::DATA_SIZE) as usize, buf.len());
        assert_eq!(get_u32(&buf, offset::DATA_START), 312);
        assert_eq!(get_u32(&buf, offset::TARGET_COUNT), 1);
        assert_eq!(get_u64(spec, 0), 0, "sector_start");
        assert_eq!(get_u64(spec, 8), 20480, "length");
        assert_eq!(get_u32(spec, 16), 0, "status");
        assert_eq!(get_u32(spec, 20) as usize, spec.len(), "next");
        assert_eq!(&spec[24..31], b"verity\0");
        assert!(spec[31..40].iter().all(|b| *b == 0));
        let params = &spec[40..40 + t.params.len()];
        assert_eq!(params, t.params.as_bytes());
        assert!(
            spec[40 + t.params.len()..].iter().all(|b| *b == 0),
            "NUL and padding"
        );
    }

    #[test]
    fn two_targets_chain_by_next() {
        let a = Target {
            start: 0,
            length: 8,
            kind: "zero".into(),
            params: String::new(),
        };
        let b = Target {
            start: 8,
            length: 8,
            kind: "error".into(),
            params: "x".repeat(9),
        };
        let buf = encode("t", 0, &[a, b]).unwrap();
        let first = &buf[312..];
        assert_eq!(get_u32(first, 20), 48, "40 + 1 NUL padded to 8");
        let second = &first[48..];
        assert_eq!(get_u64(second, 0), 8);
        assert_eq!(get_u32(second, 20), 56, "40 + 9 + NUL padded to 16");
        assert_eq!(buf.len(), 312 + 48 + 56);
    }

    #[test]
    fn bad_names_and_types_are_refused() {
        assert!(encode("", 0, &[]).is_err());
        assert!(encode("a/b", 0, &[]).is_err());
        assert!(encode(&"n".repeat(128), 0, &[]).is_err());
        assert!(encode(&"n".repeat(127), 0, &[]).is_ok());
        let t = Target {
            start: 0,
            length: 1,
            kind: "x".repeat(16),
            params: String::new(),
        };
        let e = encode("root", 0, &[t]).unwrap_err();
        assert!(e.to_string().contains("bad target type"), "{e}");
    }

    /// A superblock as veritysetup 2.6 writes it (bytes from a real image).
    fn superblock(data_blocks: u64, salt: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..8].copy_from_slice(b"verity\0\0");
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[16..32].copy_from_slice(&[0x37; 16]);
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&4096u32.to_le_bytes());
        b[68..72].copy_from_slice(&4096u32.to_le_bytes());
        b[72..80].copy_from_slice(&data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    #[test]
    fn hash_tree_starts_after_a_veritysetup_superblock() {
        let v = params();
        let sb = superblock(2560, &[1, 2, 3]);
        let parsed = parse_superblock(&sb).unwrap();
        assert_eq!(parsed.algorithm, "sha256");
        assert_eq!(parsed.data_blocks, 2560);
        assert_eq!(parsed.salt, vec![1, 2, 3]);
        assert_eq!(hash_start(&v, &sb), Ok(2561));
        // --no-superblock: the tree starts right at the hash offset.
        assert_eq!(hash_start(&v, &[0x5a; 512]), Ok(2560));
        let e = hash_start(&v, &superblock(2559, &[1, 2, 3])).unwrap_err();
        assert!(
            e.contains("2559 data blocks (cairn.verity= says 2560)"),
            "{e}"
        );
        let e = hash_start(&v, &superblock(2560, &[9])).unwrap_err();
        assert!(e.contains("different salt"), "{e}");
        assert!(parse_superblock(&sb[..100]).is_none());
    }

    #[test]
    fn decodes_status_and_device_numbers() {
        let mut buf = encode("root", 0, &[]).unwrap();
        put_u32(&mut buf, 4, 47);
        put_u64(&mut buf, offset::DEV, (254 << 8) | 3);
        let s = decode_status(&buf);
        assert_eq!(s.version, [4, 47, 0]);
        assert_eq!(decode_dev(s.dev), (254, 3));
        // Minors above 255 are split around the major (new_encode_dev).
        let dev = 0x12u64 | (253 << 8) | (0x3400 << 12);
        assert_eq!(decode_dev(dev), (253, 0x3412));
    }
}

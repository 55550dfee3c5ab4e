//! Finds a block device by GPT partition GUID, GPT partition name or kernel
//! name without udev: it scans `<sys>/class/block/*/uevent`, reads PARTUUIDs
//! from the disk's GPT (mainline kernels put `PARTNAME=` but not `PARTUUID=`
//! in a partition's uevent), creates the `/dev` node with mknod when devtmpfs
//! has none, and waits a bounded time for devices that appear asynchronously
//! after their driver loads. Roots are passed in so the lookup is tested
//! against a fake sysfs.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag};

use crate::cmdline::DeviceSpec;

/// Default poll interval while waiting for a device.
pub const POLL: Duration = Duration::from_millis(20);

/// Where sysfs and the device nodes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// sysfs, normally `/sys`.
    pub sys: PathBuf,
    /// The device directory, normally `/dev`.
    pub dev: PathBuf,
}

impl Roots {
    /// The running system's `/sys` and `/dev`.
    pub fn system() -> Roots {
        Roots {
            sys: "/sys".into(),
            dev: "/dev".into(),
        }
    }
}

/// A block device found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda2`.
    pub name: String,
    /// Device node path relative name from uevent `DEVNAME` (usually `name`).
    pub devname: String,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// The whole disk it belongs to (itself for a whole disk).
    pub disk: String,
}

impl BlockDevice {
    /// The device node under `roots.dev`.
    pub fn node(&self, roots: &Roots) -> PathBuf {
        roots.dev.join(&self.devname)
    }
}

/// The fields of a block device's uevent file that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `DEVNAME=`.
    pub devname: Option<String>,
    /// `MAJOR=`.
    pub major: Option<u32>,
    /// `MINOR=`.
    pub minor: Option<u32>,
    /// `DEVTYPE=` (`disk` or `partition`).
    pub devtype: Option<String>,
    /// `PARTN=`: the partition's number in its table.
    pub partn: Option<u32>,
    /// `PARTNAME=`: the GPT partition name.
    pub partname: Option<String>,
    /// `PARTUUID=` (only on kernels patched to export it).
    pub partuuid: Option<String>,
}

/// Parses the text of a sysfs uevent file.
pub fn parse_uevent(text: &str) -> Uevent {
    let mut u = Uevent::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "DEVNAME" => u.devname = Some(v.to_owned()),
            "MAJOR" => u.major = v.parse().ok(),
            "MINOR" => u.minor = v.parse().ok(),
            "DEVTYPE" => u.devtype = Some(v.to_owned()),
            "PARTN" => u.partn = v.parse().ok(),
            "PARTNAME" => u.partname = Some(v.to_owned()),
            "PARTUUID" => u.partuuid = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    u
}

/// One used entry of a GPT partition array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based partition number (the kernel's PARTN).
    pub number: u32,
    /// Partition type GUID, lowercase.
    pub type_guid: String,
    /// Unique partition GUID (PARTUUID), lowercase.
    pub unique_guid: String,
    /// Partition name (PARTLABEL).
    pub name: String,
}

/// Where a GPT's partition array is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptHeader {
    /// LBA of the partition array.
    pub entries_lba: u64,
    /// Number of entries.
    pub entries: u32,
    /// Size of one entry in bytes.
    pub entry_size: u32,
    /// CRC32 of the whole array.
    pub entries_crc: u32,
}

impl GptHeader {
    /// Size of the partition array in bytes.
    pub fn array_len(&self) -> usize {
        self.entries as usize * self.entry_size as usize
    }
}

/// Problems finding a block device.
#[derive(Debug, thiserror::Error)]
pub enum BlockdevError {
    /// sysfs could not be listed.
    #[error("cannot list {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A GPT is not usable.
    #[error("GPT of {disk}: {reason}")]
    Gpt {
        /// The disk node.
        disk: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two or more devices match and none is preferred.
    #[error("{spec} matches more than one device: {}", devices.join(", "))]
    Ambiguous {
        /// The wanted device.
        spec: String,
        /// Names of the matching devices.
        devices: Vec<String>,
    },
    /// Nothing matched within the wait.
    #[error("no block device matches {spec} after {} ms (block devices seen: {})", waited.as_millis(), if seen.is_empty() { "none".to_owned() } else { seen.join(" ") })]
    NotFound {
        /// The wanted device.
        spec: String,
        /// How long we waited.
        waited: Duration,
        /// Every block device present at the end, for diagnosis.
        seen: Vec<String>,
    },
    /// The /dev node could not be created.
    #[error("cannot create device node {path}: {source}")]
    Mknod {
        /// The node.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// A path that should be a block device is not one.
    #[error("{path} is not a block device")]
    NotBlock {
        /// The path.
        path: PathBuf,
    },
    /// A device node could not be examined.
    #[error("{path}: {source}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// CRC32 (IEEE 802.3, reflected), as GPT uses it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Formats a GUID stored in GPT's mixed-endian layout.
pub fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        le32(b, 0),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        crate::cmdline::to_hex(&b[10..16])
    )
}

/// Parses and checks (signature, size, CRC) a GPT header: the bytes of LBA 1.
pub fn parse_gpt_header(lba1: &[u8]) -> Result<GptHeader, String> {
    if lba1.len() < 92 || &lba1[0..8] != b"EFI PART" {
        return Err("no GPT signature at LBA 1".into());
    }
    let size = le32(lba1, 12) as usize;
    if !(92..=lba1.len()).contains(&size) {
        return Err(format!("bad header size {size}"));
    }
    let mut copy = lba1[..size].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != le32(lba1, 16) {
        return Err("header CRC mismatch".into());
    }
    let h = GptHeader {
        entries_lba: le64(lba1, 72),
        entries: le32(lba1, 80),
        entry_size: le32(lba1, 84),
        entries_crc: le32(lba1, 88),
    };
    if h.entry_size < 128 || h.entry_size > 4096 || h.entry_size % 8 != 0 {
        return Err(format!("bad partition entry size {}", h.entry_size));
    }
    if h.entries == 0 || h.entries > 1024 {
        return Err(format!("bad partition entry count {}", h.entries));
    }
    Ok(h)
}

/// Parses and checks (CRC) a GPT partition array; returns the used entries.
pub fn parse_gpt_entries(header: &GptHeader, array: &[u8]) -> Result<Vec<GptPartition>, String> {
    let len = header.array_len();
    if array.len() < len {
        return Err("partition array is truncated".into());
    }
    if crc32(&array[..len]) != header.entries_crc {
        return Err("partition array CRC mismatch".into());
    }
    let mut out = Vec::new();
    for (i, e) in array[..len].chunks(header.entry_size as usize).enumerate() {
        let mut ty = [0u8; 16];
        ty.copy_from_slice(&e[0..16]);
        if ty == [0u8; 16] {
            continue;
        }
        let mut uniq = [0u8; 16];
        uniq.copy_from_slice(&e[16..32]);
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|u| *u != 0)
            .collect();
        out.push(GptPartition {
            number: i as u32 + 1,
            type_guid: guid_string(&ty),
            unique_guid: guid_string(&uniq),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(out)
}

/// Reads the GPT of the disk node `disk` with logical sector size `sector`.
pub fn read_gpt(disk: &Path, sector: u64) -> Result<Vec<GptPartition>, BlockdevError> {
    use std::io::{Read, Seek, SeekFrom};
    let gpt_err = |reason: String| BlockdevError::Gpt {
        disk: disk.to_owned(),
        reason,
    };
    let mut f = std::fs::File::open(disk).map_err(|e| gpt_err(e.to_string()))?;
    let mut lba1 = vec![0u8; sector as usize];
    f.seek(SeekFrom::Start(sector))
        .and_then(|_| f.read_exact(&mut lba1))
        .map_err(|e| gpt_err(format!("reading LBA 1: {e}")))?;
    let header = parse_gpt_header(&lba1).map_err(gpt_err)?;
    let mut array = vec![0u8; header.array_len()];
    let at = header
        .entries_lba
        .checked_mul(sector)
        .ok_or_else(|| gpt_err("partition array LBA out of range".into()))?;
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.read_exact(&mut array))
        .map_err(|e| gpt_err(format!("reading the partition array: {e}")))?;
    parse_gpt_entries(&header, &array).map_err(gpt_err)
}

/// A block device as listed in sysfs, with its uevent.
#[derive(Debug, Clone)]
struct Listed {
    dev: BlockDevice,
    uevent: Uevent,
}

fn read_device(sys_class_block: &Path, name: &str) -> Option<Listed> {
    let dir = sys_class_block.join(name);
    let path = dir.join("uevent");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // Devices come and go while we look; one that vanished is not an error.
        Err(_) => return None,
    };
    let uevent = parse_uevent(&text);
    let (Some(major), Some(minor), Some(devname)) =
        (uevent.major, uevent.minor, uevent.devname.clone())
    else {
        // Not a usable device entry; one odd entry must not hide the others.
        tracing::debug!(path = %path.display(), "uevent without MAJOR/MINOR/DEVNAME");
        return None;
    };
    let disk = if dir.join("partition").exists() || uevent.devtype.as_deref() == Some("partition") {
        std::fs::canonicalize(&dir)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| name.to_owned())
    } else {
        name.to_owned()
    };
    Some(Listed {
        dev: BlockDevice {
            name: name.to_owned(),
            devname,
            major,
            minor,
            disk,
        },
        uevent,
    })
}

fn list(roots: &Roots) -> Result<Vec<Listed>, BlockdevError> {
    let class = roots.sys.join("class/block");
    let rd = std::fs::read_dir(&class).map_err(|source| BlockdevError::ReadDir {
        path: class.clone(),
        source,
    })?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Some(l) = read_device(&class, &n) {
            out.push(l);
        }
    }
    Ok(out)
}

/// Names of every block device in sysfs now (for error messages).
pub fn present(roots: &Roots) -> Vec<String> {
    list(roots)
        .map(|l| l.into_iter().map(|l| l.dev.name).collect())
        .unwrap_or_default()
}

fn sector_size(roots: &Roots, disk: &str) -> u64 {
    std::fs::read_to_string(
        roots
            .sys
            .join("class/block")
            .join(disk)
            .join("queue/logical_block_size"),
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .filter(|s: &u64| s.is_power_of_two() && *s >= 512)
    .unwrap_or(512)
}

/// The GUIDs of a disk's partitions, by partition number, or nothing when the
/// disk has no readable GPT.
fn disk_partuuids(roots: &Roots, all: &[Listed], disk: &str) -> Vec<(u32, String)> {
    let Some(d) = all.iter().find(|l| l.dev.name == disk) else {
        return Vec::new();
    };
    let Ok(node) = ensure_node(roots, &d.dev) else {
        return Vec::new();
    };
    match read_gpt(&node, sector_size(roots, disk)) {
        Ok(parts) => parts
            .into_iter()
            .map(|p| (p.number, p.unique_guid))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "skipping disk");
            Vec::new()
        }
    }
}

/// Every block device matching `spec` right now (one sysfs scan, no waiting).
pub fn scan(roots: &Roots, spec: &DeviceSpec) -> Result<Vec<BlockDevice>, BlockdevError> {
    let all = list(roots)?;
    let mut out = Vec::new();
    match spec {
        DeviceSpec::PartLabel(label) => {
            out.extend(
                all.iter()
                    .filter(|l| l.uevent.partname.as_deref() == Some(label.as_str()))
                    .map(|l| l.dev.clone()),
            );
        }
        DeviceSpec::Path(p) => {
            let want = p
                .strip_prefix("/dev")
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.extend(
                all.iter()
                    .filter(|l| l.dev.devname == want)
                    .map(|l| l.dev.clone()),
            );
        }
        DeviceSpec::PartUuid(uuid) => {
            let mut gpts: Vec<(String, Vec<(u32, String)>)> = Vec::new();
            for l in all.iter().filter(|l| l.dev.disk != l.dev.name) {
                let matched = match (&l.uevent.partuuid, l.uevent.partn) {
                    (Some(u), _) => u == uuid,
                    (None, Some(n)) => {
                        if !gpts.iter().any(|(d, _)| *d == l.dev.disk) {
                            gpts.push((
                                l.dev.disk.clone(),
                                disk_partuuids(roots, &all, &l.dev.disk),
                            ));
                        }
                        gpts.iter()
                            .find(|(d, _)| *d == l.dev.disk)
                            .is_some_and(|(_, parts)| {
                                parts.iter().any(|(pn, u)| *pn == n && u == uuid)
                            })
                    }
                    (None, None) => false,
                };
                if matched {
                    out.push(l.dev.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Picks one device from `matches`: the only one, or the only one on
/// `prefer_disk` (the disk the system booted from) when there are several.
pub fn choose(
    spec: &DeviceSpec,
    matches: Vec<BlockDevice>,
    prefer_disk: Option<&str>,
) -> Result<Option<BlockDevice>, BlockdevError> {
    if matches.len() <= 1 {
        return Ok(matches.into_iter().next());
    }
    if let Some(disk) = prefer_disk {
        let on_disk: Vec<&BlockDevice> = matches.iter().filter(|m| m.disk == disk).collect();
        if let [one] = on_disk[..] {
            return Ok(Some(one.clone()));
        }
    }
    Err(BlockdevError::Ambiguous {
        spec: spec.to_string(),
        devices: matches.into_iter().map(|m| m.name).collect(),
    })
}

/// Makes sure `<dev>/<devname>` is a block device node, creating it (mode
/// 0600) when devtmpfs has not. Returns the node's path.
pub fn ensure_node(roots: &Roots, dev: &BlockDevice) -> Result<PathBuf, BlockdevError> {
    let path = dev.node(roots);
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_block_device() => return Ok(path),
        // A regular file stands in for a disk in tests against a fake tree.
        Ok(m) if m.file_type().is_file() => return Ok(path),
        Ok(_) => return Err(BlockdevError::NotBlock { path }),
        Err(_) => {}
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let devnum = nix::sys::stat::makedev(u64::from(dev.major), u64::from(dev.minor));
    match nix::sys::stat::mknod(
        &path,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        devnum,
    ) {
        Ok(()) => Ok(path),
        // devtmpfs created it between our look and our mknod.
        Err(nix::Error::EEXIST) => Ok(path),
        Err(source) => Err(BlockdevError::Mknod { path, source }),
    }
}

/// Looks up the block device called `name` in sysfs (e.g. `loop3`).
pub fn by_name(roots: &Roots, name: &str) -> Option<BlockDevice> {
    read_device(&roots.sys.join("class/block"), name).map(|l| l.dev)
}

/// Waits up to `timeout`, polling every `poll`, for exactly one device
/// matching `spec`, and makes sure its node exists.
pub fn wait_for(
    roots: &Roots,
    spec: &DeviceSpec,
    prefer_disk: Option<&str>,
    timeout: Duration,
    poll: Duration,
) -> Result<(BlockDevice, PathBuf), BlockdevError> {
    let start = Instant::now();
    loop {
        let found = match scan(roots, spec) {
            Ok(m) => choose(spec, m, prefer_disk)?,
            // sysfs itself missing is worth waiting for only within the bound.
            Err(e) if start.elapsed() >= timeout => return Err(e),
            Err(_) => None,
        };
        if let Some(dev) = found {
            let node = ensure_node(roots, &dev)?;
            return Ok((dev, node));
        }
        if start.elapsed() >= timeout {
            return Err(BlockdevError::NotFound {
                spec: spec.to_string(),
                waited: start.elapsed(),
                seen: present(roots),
            });
        }
        std::thread::sleep(poll);
    }
}

/// Major and minor number of the block device node at `path`.
pub fn numbers(path: &Path) -> Result<(u32, u32), BlockdevError> {
    let m = std::fs::metadata(path).map_err(|source| BlockdevError::Stat {
        path: path.to_owned(),
        source,
    })?;
    if !m.file_type().is_block_device() {
        return Err(BlockdevError::NotBlock {
            path: path.to_owned(),
        });
    }
    let rdev = m.rdev();
    Ok((libc::major(rdev), libc::minor(rdev)))
}

/// The disk holding the filesystem mounted at `/` (looking through
/// device-mapper to the device below), e.g. `vda`. `None` when it cannot be
/// told (tmpfs root, unknown layout).
pub fn disk_of_mount(roots: &Roots, mount_point: &Path) -> Option<String> {
    let dev = std::fs::metadata(mount_point).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sysdev = roots.sys.join(format!("dev/block/{major}:{minor}"));
    let mut name = std::fs::canonicalize(&sysdev)
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    // Follow dm (and loop-less) stacking down to the first slave.
    for _ in 0..4 {
        let slaves = roots.sys.join("class/block").join(&name).join("slaves");
        let mut below: Vec<String> = std::fs::read_dir(&slaves)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        below.sort();
        match below.into_iter().next() {
            Some(b) => name = b,
            None => break,
        }
    }
    let l = read_device(&roots.sys.join("class/block"), &name)?;
    Some(l.dev.disk)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn parses_uevent() {
        let u = parse_uevent(
            "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=2\nPARTNAME=root-a\n",
        );
        assert_eq!(u.major, Some(254));
        assert_eq!(u.minor, Some(2));
        assert_eq!(u.devname.as_deref(), Some("vda2"));
        assert_eq!(u.partn, Some(2));
        assert_eq!(u.partname.as_deref(), Some("root-a"));
        assert_eq!(u.partuuid, None);
        let u = parse_uevent("PARTUUID=ABCD\nMAJOR=x\n");
        assert_eq!(u.partuuid.as_deref(), Some("abcd"));
        assert_eq!(u.major, None);
    }

    /// A GPT header and array with the given (type, unique, name) entries.
    fn gpt(entries: &[([u8; 16], [u8; 16], &str)]) -> (Vec<u8>, Vec<u8>) {
        let mut array = vec![0u8; 128 * 128];
        for (i, (ty, uniq, name)) in entries.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(ty);
            e[16..32].copy_from_slice(uniq);
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        let mut h = vec![0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        (h, array)
    }

    const LINUX: [u8; 16] = [
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ];

    #[test]
    fn gpt_guids_and_names() {
        let uniq = [
            0x3e, 0x0f, 0x8b, 0x6c, 0x2a, 0x1d, 0x5c, 0x4b, 0x9d, 0x8e, 0x7f, 0x6a, 0x5b, 0x4c,
            0x3d, 0x2e,
        ];
        let (h, a) = gpt(&[
            (LINUX, uniq, "root-a"),
            ([0; 16], [1; 16], ""),
            (LINUX, [2; 16], "data"),
        ]);
        let header = parse_gpt_header(&h).unwrap();
        assert_eq!(header.entries_lba, 2);
        let parts = parse_gpt_entries(&header, &a).unwrap();
        assert_eq!(parts.len(), 2, "unused entries are skipped");
        assert_eq!(parts[0].number, 1);
        assert_eq!(parts[0].type_guid, "0fc63daf-8483-4772-8e79-3d69d8477de4");
        assert_eq!(parts[0].unique_guid, "6c8b0f3e-1d2a-4b5c-9d8e-7f6a5b4c3d2e");
        assert_eq!(parts[0].name, "root-a");
        assert_eq!(parts[1].number, 3);
        assert_eq!(parts[1].name, "data");
    }

    #[test]
    fn damaged_gpt_is_refused() {
        let (mut h, mut a) = gpt(&[(LINUX, [7; 16], "data")]);
        let header = parse_gpt_header(&h).unwrap();
        a[200] ^= 1;
        assert!(parse_gpt_entries(&header, &a).unwrap_err().contains("CRC"));
        h[80] = 4;
        assert!(parse_gpt_header(&h).unwrap_err().contains("CRC"));
        assert!(
            parse_gpt_header(&[0u8; 512])
                .unwrap_err()
                .contains("signature")
        );
        assert!(
            parse_gpt_entries(&header, &a[..100])
                .unwrap_err()
                .contains("truncated")
        );
    }

    fn dev(name: &str, disk: &str) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            devname: name.into(),
            major: 8,
            minor: 1,
            disk: disk.into(),
        }
    }

    #[test]
    fn choosing_among_matches() {
        let spec = DeviceSpec::PartLabel("data".into());
        assert_eq!(choose(&spec, vec![], None).unwrap(), None);
        assert_eq!(
            choose(&spec, vec![dev("vda4", "vda")], Some("sda")).unwrap(),
            Some(dev("vda4", "vda"))
        );
        let two = vec![dev("sda4", "sda"), dev("vda4", "vda")];
        assert_eq!(
            choose(&spec, two.clone(), Some("vda")).unwrap(),
            Some(dev("vda4", "vda"))
        );
        let e = choose(&spec, two.clone(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PARTLABEL=data matches more than one device: sda4, vda4"
        );
        assert!(choose(&spec, two, Some("nvme0n1")).is_err());
    }

    #[test]
    fn not_found_lists_what_was_seen() {
        let e = BlockdevError::NotFound {
            spec: "PARTLABEL=data".into(),
            waited: Duration::from_millis(10_000),
            seen: vec!["vda".into(), "vda1".into()],
        };
        assert_eq!(
            e.to_string(),
            "no block device matches PARTLABEL=data after 10000 ms (block devices seen: vda vda1)"
        );
    }
}

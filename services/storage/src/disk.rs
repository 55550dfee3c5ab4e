//! Finding a brick disk by the name the site gives it. A cairn box has no
//! udev, so `/dev/disk/by-path/...` and `/dev/disk/by-id/...` links do not
//! exist: the names are matched against sysfs instead (`sysfs` is a
//! parameter so tests use a fake tree).

use std::path::{Path, PathBuf};

use cairn_site::BrickDisk;

/// Why a brick disk could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiskError {
    /// No block device matches.
    #[error("no disk matches {0} (disks seen: {1})")]
    NotFound(String, String),
    /// More than one does.
    #[error("{0} matches several disks: {1}")]
    Ambiguous(String, String),
}

/// A whole disk seen in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name (`vdb`, `nvme0n1`, `sda`).
    pub name: String,
    /// Serial number, if the driver reports one.
    pub serial: Option<String>,
    /// PCI addresses on the device's sysfs path, outermost first.
    pub pci: Vec<String>,
}

impl BlockDev {
    /// The `/dev` node.
    pub fn dev_path(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
}

fn is_pci_address(s: &str) -> bool {
    // dddd:bb:ss.f
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Whole disks under `<sysfs>/block` (no loop, ram, zram, dm or md devices).
pub fn list(sysfs: &Path) -> Vec<BlockDev> {
    let mut out: Vec<BlockDev> = std::fs::read_dir(sysfs.join("block"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| {
            !["loop", "ram", "zram", "dm-", "md", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .map(|name| {
            let dir = sysfs.join("block").join(&name);
            let serial = ["serial", "device/serial"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
                .map(|s| s.trim().to_owned())
                .find(|s| !s.is_empty());
            let pci = std::fs::canonicalize(dir.join("device"))
                .map(|p| {
                    p.components()
                        .filter_map(|c| c.as_os_str().to_str())
                        .filter(|c| is_pci_address(c))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            BlockDev { name, serial, pci }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The disk the site names: `serial`, or `device` as
/// `/dev/disk/by-path/pci-<addr>[-...]` (the innermost PCI function),
/// `/dev/disk/by-id/<bus>-<serial>` (virtio-, nvme-, ata-, scsi-: the
/// serial after the first `-`; the part after the model for ata), or a plain
/// `/dev/<name>` (unstable across hardware changes, but allowed).
pub fn find(want: &BrickDisk, disks: &[BlockDev]) -> Result<PathBuf, DiskError> {
    let label;
    let hits: Vec<&BlockDev> = if let Some(serial) = &want.serial {
        label = format!("serial {serial:?}");
        disks
            .iter()
            .filter(|d| d.serial.as_deref() == Some(serial.as_str()))
            .collect()
    } else {
        let dev = want
            .device
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        label = dev.clone();
        if let Some(rest) = dev.strip_prefix("/dev/disk/by-path/pci-") {
            let addr = rest.get(..12).unwrap_or(rest);
            disks
                .iter()
                .filter(|d| d.pci.last().is_some_and(|p| p == addr))
                .collect()
        } else if let Some(id) = dev.strip_prefix("/dev/disk/by-id/") {
            disks
                .iter()
                .filter(|d| {
                    d.serial.as_deref().is_some_and(|s| {
                        id.split_once('-')
                            .is_some_and(|(_, tail)| tail == s || tail.ends_with(&format!("_{s}")))
                    })
                })
                .collect()
        } else {
            let name = dev.strip_prefix("/dev/").unwrap_or(&dev);
            disks.iter().filter(|d| d.name == name).collect()
        }
    };
    let seen = || {
        disks
            .iter()
            .map(|d| {
                format!(
                    "{} serial={} pci={}",
                    d.name,
                    d.serial.as_deref().unwrap_or("-"),
                    d.pci.last().map_or("-", String::as_str)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match hits.as_slice() {
        [one] => Ok(one.dev_path()),
        [] => Err(DiskError::NotFound(label, seen())),
        many => Err(DiskError::Ambiguous(
            label,
            many.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let s = t.path();
        let mk = |name: &str, devpath: &str, serial: Option<&str>| {
            let dev = s.join("devices").join(devpath);
            std::fs::create_dir_all(&dev).unwrap();
            let b = s.join("block").join(name);
            std::fs::create_dir_all(&b).unwrap();
            std::os::unix::fs::symlink(&dev, b.join("device")).unwrap();
            if let Some(x) = serial {
                std::fs::write(b.join("serial"), format!("{x}\n")).unwrap();
            }
        };
        mk("vda", "pci0000:00/0000:00:03.0/virtio1", None);
        mk("vdb", "pci0000:00/0000:00:05.0/virtio2", Some("BRICK-2"));
        mk(
            "nvme0n1",
            "pci0000:00/0000:00:1c.0/0000:01:00.0/nvme/nvme0",
            Some("S4EWNX0N"),
        );
        std::fs::create_dir_all(s.join("block/loop0")).unwrap();
        t
    }

    fn disk(device: Option<&str>, serial: Option<&str>) -> BrickDisk {
        BrickDisk {
            node: "st1".into(),
            device: device.map(PathBuf::from),
            serial: serial.map(str::to_owned),
        }
    }

    #[test]
    fn disks_are_listed_without_loop_devices() {
        let t = fake_sysfs();
        let l = list(t.path());
        let names: Vec<&str> = l.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["nvme0n1", "vda", "vdb"]);
        assert_eq!(l[0].pci, vec!["0000:00:1c.0", "0000:01:00.0"]);
        assert_eq!(l[2].serial.as_deref(), Some("BRICK-2"));
    }

    #[test]
    fn disks_are_found_by_path_id_serial_and_name() {
        let t = fake_sysfs();
        let l = list(t.path());
        let f = |d, s| find(&disk(d, s), &l);
        assert_eq!(
            f(Some("/dev/disk/by-path/pci-0000:00:05.0"), None),
            Ok(PathBuf::from("/dev/vdb"))
        );
        assert_eq!(
            f(Some("/dev/disk/by-path/pci-0000:01:00.0-nvme-1"), None),
            Ok(PathBuf::from("/dev/nvme0n1"))
        );
        assert_eq!(
            f(Some("/dev/disk/by-id/virtio-BRICK-2"), None),
            Ok(PathBuf::from("/dev/vdb"))
        );
        assert_eq!(
            f(Some("/dev/disk/by-id/nvme-Samsung_SSD_970_S4EWNX0N"), None),
            Ok(PathBuf::from("/dev/nvme0n1"))
        );
        assert_eq!(f(None, Some("S4EWNX0N")), Ok(PathBuf::from("/dev/nvme0n1")));
        assert_eq!(f(Some("/dev/vda"), None), Ok(PathBuf::from("/dev/vda")));
        let e = f(Some("/dev/disk/by-path/pci-0000:00:09.0"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no disk matches /dev/disk/by-path/pci-0000:00:09.0 (disks seen: nvme0n1 serial=S4EWNX0N pci=0000:01:00.0, vda"),
            "{e}"
        );
    }
}

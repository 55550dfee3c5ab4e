//! Getting a box ready for glusterd, on every boot: Gluster's run directory,
//! its state and log directories on the data partition, the brick disk
//! (formatted only when empty, then mounted) and the bricks' parent
//! directories. Every step checks before it acts, so running it again
//! changes nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_site::{BRICKS_DIR, Site};

use crate::disk;
use crate::magic::{self, Content};

/// Why the box could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A file system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The brick disk named by the site was not found.
    #[error("brick disk of node {node}: {source}")]
    Disk {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: disk::DiskError,
    },
    /// The brick disk holds something that is not XFS: it is never touched.
    #[error(
        "brick disk {device} holds {what}: not formatting or mounting it (wipe it by hand if it is really free)"
    )]
    Occupied {
        /// The device.
        device: PathBuf,
        /// What was found.
        what: String,
    },
    /// mkfs.xfs or mount failed.
    #[error("{0}")]
    Command(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PrepareError + 'a {
    move |source| PrepareError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where things are: `/` and `/sys` on a box, temporary trees in tests.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The root the absolute paths below are taken in.
    pub root: PathBuf,
    /// sysfs.
    pub sysfs: PathBuf,
    /// This process's mountinfo.
    pub mountinfo: PathBuf,
    /// mkfs.xfs.
    pub mkfs_xfs: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            sysfs: PathBuf::from("/sys"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            mkfs_xfs: PathBuf::from("/sbin/mkfs.xfs"),
        }
    }
}

impl Paths {
    fn at(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// Whether `mountinfo` text lists `point` as a mount point.
pub fn is_mounted(mountinfo: &str, point: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p == point)
}

/// Prepares node `me`; returns what was done, one line per step taken.
pub fn prepare(site: &Site, me: &str, paths: &Paths) -> Result<Vec<String>, PrepareError> {
    let mut done = Vec::new();
    // Gluster's run directory is compiled in as /var/run/gluster; /var is the
    // data partition here, so point /var/run at the fresh /run tmpfs.
    let var_run = paths.at("/var/run");
    if std::fs::symlink_metadata(&var_run).is_err() {
        std::fs::create_dir_all(paths.at("/var")).map_err(io("creating", &var_run))?;
        std::os::unix::fs::symlink("/run", &var_run).map_err(io("linking", &var_run))?;
        done.push("linked /var/run to /run".to_owned());
    }
    for d in ["/var/lib/glusterd", "/var/log/glusterfs", BRICKS_DIR] {
        let p = paths.at(d);
        if !p.is_dir() {
            std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
            done.push(format!("created {d}"));
        }
    }
    let storage = site.storage.as_ref();
    if let Some(want) = storage.and_then(|s| s.disk_of(me)) {
        let device =
            disk::find(want, &disk::list(&paths.sysfs)).map_err(|source| PrepareError::Disk {
                node: me.to_owned(),
                source,
            })?;
        let mountinfo =
            std::fs::read_to_string(&paths.mountinfo).map_err(io("reading", &paths.mountinfo))?;
        if !is_mounted(&mountinfo, BRICKS_DIR) {
            let dev_host = if paths.root == Path::new("/") {
                device.clone()
            } else {
                paths.at(&device.to_string_lossy())
            };
            match probe(&dev_host)? {
                Content::Empty => {
                    mkfs_xfs(&paths.mkfs_xfs, &dev_host)?;
                    done.push(format!("made an XFS file system on {}", device.display()));
                }
                Content::Signature("xfs") => {}
                Content::Signature(what) => {
                    return Err(PrepareError::Occupied {
                        device,
                        what: what.to_owned(),
                    });
                }
                Content::Unknown => {
                    return Err(PrepareError::Occupied {
                        device,
                        what: "data without a known signature".to_owned(),
                    });
                }
            }
            mount_xfs(&dev_host, &paths.at(BRICKS_DIR))?;
            done.push(format!("mounted {} on {BRICKS_DIR}", device.display()));
        }
    }
    for v in storage.into_iter().flat_map(|s| s.volumes_on(me)) {
        let p = paths.at(&format!("{BRICKS_DIR}/{}", v.name));
        if !p.is_dir() {
            std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
            done.push(format!("created {BRICKS_DIR}/{}", v.name));
        }
    }
    Ok(done)
}

/// Reads the first [`magic::PROBE_BYTES`] of a device and classifies them.
pub fn probe(device: &Path) -> Result<Content, PrepareError> {
    let f = std::fs::File::open(device).map_err(io("opening", device))?;
    let mut head = Vec::with_capacity(magic::PROBE_BYTES);
    f.take(magic::PROBE_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io("reading", device))?;
    Ok(magic::classify(&head))
}

/// `mkfs.xfs -i size=512` (Gluster's recommendation: room for its extended
/// attributes in the inode). Never `-f`: mkfs.xfs refuses a device holding a
/// file system on its own, a second guard after [`probe`].
fn mkfs_xfs(mkfs: &Path, device: &Path) -> Result<(), PrepareError> {
    let out = Command::new(mkfs)
        .args(["-q", "-i", "size=512", "-L", "cairn-brick"])
        .arg(device)
        .output()
        .map_err(|e| PrepareError::Command(format!("running {}: {e}", mkfs.display())))?;
    if !out.status.success() {
        return Err(PrepareError::Command(format!(
            "mkfs.xfs {} failed ({}): {}",
            device.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn mount_xfs(device: &Path, at: &Path) -> Result<(), PrepareError> {
    use nix::mount::{MsFlags, mount};
    mount(
        Some(device),
        at,
        Some("xfs"),
        MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        None::<&str>,
    )
    .map_err(|e| {
        PrepareError::Command(format!(
            "mounting {} (xfs) on {}: {e}",
            device.display(),
            at.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(extra: &str) -> Site {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join("examples/storage-site.toml")).unwrap();
        cairn_site::parse_site(&format!("{text}{extra}"), Path::new("site.toml")).unwrap()
    }

    fn paths(t: &Path) -> Paths {
        std::fs::create_dir_all(t.join("sys/block")).unwrap();
        std::fs::write(t.join("mountinfo"), "").unwrap();
        Paths {
            root: t.to_path_buf(),
            sysfs: t.join("sys"),
            mountinfo: t.join("mountinfo"),
            mkfs_xfs: PathBuf::from("/nonexistent/mkfs.xfs"),
        }
    }

    #[test]
    fn the_data_partition_layout_is_made_once() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(t.path());
        let done = prepare(&site(""), "st1", &p).unwrap();
        assert_eq!(
            done,
            vec![
                "linked /var/run to /run",
                "created /var/lib/glusterd",
                "created /var/log/glusterfs",
                "created /var/lib/cairn/bricks",
                "created /var/lib/cairn/bricks/gv0",
            ]
        );
        assert_eq!(
            std::fs::read_link(t.path().join("var/run")).unwrap(),
            PathBuf::from("/run")
        );
        assert_eq!(prepare(&site(""), "st1", &p).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_occupied_or_missing_disk_is_refused_without_formatting() {
        let t = tempfile::tempdir().unwrap();
        let p = paths(t.path());
        let s = site("\n[[storage.disk]]\nnode = \"st1\"\ndevice = \"/dev/vdb\"\n");
        let e = prepare(&s, "st1", &p).unwrap_err().to_string();
        assert!(
            e.starts_with("brick disk of node st1: no disk matches /dev/vdb"),
            "{e}"
        );
        // A "disk" holding ext4: refused, and mkfs (which does not exist
        // here) is never called.
        std::fs::create_dir_all(t.path().join("sys/block/vdb")).unwrap();
        std::fs::create_dir_all(t.path().join("dev")).unwrap();
        let mut img = vec![0u8; 4096];
        img[0x438] = 0x53;
        img[0x439] = 0xef;
        std::fs::write(t.path().join("dev/vdb"), &img).unwrap();
        let e = prepare(&s, "st1", &p).unwrap_err().to_string();
        assert_eq!(
            e,
            "brick disk /dev/vdb holds ext2/3/4: not formatting or mounting it (wipe it by hand if it is really free)"
        );
        // Empty: it would be formatted (the fake mkfs.xfs path fails, proving
        // the call is made only now).
        std::fs::write(t.path().join("dev/vdb"), vec![0u8; 4096]).unwrap();
        let e = prepare(&s, "st1", &p).unwrap_err().to_string();
        assert!(e.starts_with("running /nonexistent/mkfs.xfs"), "{e}");
    }

    #[test]
    fn mount_points_are_read_from_mountinfo() {
        let mi = "36 25 0:32 / /var rw,relatime shared:1 - ext4 /dev/vda4 rw\n\
                  40 36 253:16 / /var/lib/cairn/bricks rw,noatime - xfs /dev/vdb rw\n";
        assert!(is_mounted(mi, "/var/lib/cairn/bricks"));
        assert!(!is_mounted(mi, "/var/lib"));
    }
}

//! The filesystems PID 1 mounts at boot and the order it unmounts them in at
//! shutdown. Planning is separate from doing so it can be tested without root.

use std::path::{Path, PathBuf};

/// One mount to make at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Filesystem source ("proc", "devtmpfs", ...).
    pub source: &'static str,
    /// Mount point, absolute.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags (MS_*).
    pub flags: nix::mount::MsFlags,
    /// Filesystem options.
    pub data: &'static str,
    /// Directory mode when the mount point has to be created.
    pub mode: u32,
}

/// The early mounts of a cairn box, in order.
pub fn boot_mounts() -> Vec<MountSpec> {
    use nix::mount::MsFlags as F;
    let secure = F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC;
    vec![
        MountSpec {
            source: "proc",
            target: "/proc",
            fstype: "proc",
            flags: secure,
            data: "",
            mode: 0o555,
        },
        MountSpec {
            source: "sysfs",
            target: "/sys",
            fstype: "sysfs",
            flags: secure,
            data: "",
            mode: 0o555,
        },
        MountSpec {
            source: "devtmpfs",
            target: "/dev",
            fstype: "devtmpfs",
            flags: F::MS_NOSUID,
            data: "mode=0755",
            mode: 0o755,
        },
        MountSpec {
            source: "devpts",
            target: "/dev/pts",
            fstype: "devpts",
            flags: F::MS_NOSUID | F::MS_NOEXEC,
            data: "gid=5,mode=620,ptmxmode=000",
            mode: 0o755,
        },
        MountSpec {
            source: "tmpfs",
            target: "/dev/shm",
            fstype: "tmpfs",
            flags: F::MS_NOSUID | F::MS_NODEV,
            data: "mode=1777",
            mode: 0o1777,
        },
        MountSpec {
            source: "tmpfs",
            target: "/run",
            fstype: "tmpfs",
            flags: F::MS_NOSUID | F::MS_NODEV,
            data: "mode=0755,size=20%",
            mode: 0o755,
        },
        MountSpec {
            source: "tmpfs",
            target: "/tmp",
            fstype: "tmpfs",
            flags: F::MS_NOSUID | F::MS_NODEV,
            data: "mode=1777,size=20%",
            mode: 0o1777,
        },
        MountSpec {
            source: "cgroup2",
            target: "/sys/fs/cgroup",
            fstype: "cgroup2",
            flags: secure,
            data: "nsdelegate",
            mode: 0o755,
        },
    ]
}

/// Mount points listed in `/proc/self/mountinfo` text, in mount order.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Filesystem type and mount point of every mount in `mountinfo` text.
pub fn mounts_with_types(mountinfo: &str) -> Vec<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?;
            let (_, after) = l.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            Some((fstype.to_owned(), PathBuf::from(unescape(point))))
        })
        .collect()
}

/// What to unmount at shutdown, deepest and newest first, leaving `/` (which
/// is remounted read-only instead) and the API filesystems PID 1 still uses.
pub fn unmount_order(mountinfo: &str) -> Vec<PathBuf> {
    let keep = [
        Path::new("/"),
        Path::new("/proc"),
        Path::new("/sys"),
        Path::new("/dev"),
    ];
    let mut points: Vec<PathBuf> = mount_points(mountinfo)
        .into_iter()
        .filter(|p| !keep.contains(&p.as_path()))
        .collect();
    points.reverse();
    // A later mount can sit on top of an earlier one; deeper paths go first
    // among equals so children are never unmounted after their parents.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / ro,relatime shared:1 - erofs /dev/mapper/root ro
23 22 0:21 / /proc rw,nosuid shared:2 - proc proc rw
24 22 0:22 / /sys rw,nosuid shared:3 - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid shared:4 - devtmpfs devtmpfs rw
26 25 0:23 / /dev/pts rw shared:5 - devpts devpts rw
27 22 0:24 / /run rw shared:6 - tmpfs tmpfs rw
28 24 0:25 / /sys/fs/cgroup rw shared:7 - cgroup2 cgroup2 rw
29 22 254:1 / /var rw shared:8 - ext4 /dev/vda4 rw
30 29 254:2 / /var/lib/my\\040brick rw shared:9 - xfs /dev/vdb rw
";

    #[test]
    fn unmounts_children_before_parents_and_keeps_api_filesystems() {
        let order = unmount_order(INFO);
        let s: Vec<&str> = order.iter().map(|p| p.to_str().unwrap_or("")).collect();
        assert_eq!(
            s,
            [
                "/var/lib/my brick",
                "/sys/fs/cgroup",
                "/dev/pts",
                "/var",
                "/run"
            ]
        );
    }

    #[test]
    fn reads_types() {
        let t = mounts_with_types(INFO);
        assert!(t.contains(&("cgroup2".to_owned(), PathBuf::from("/sys/fs/cgroup"))));
        assert_eq!(t[0], ("erofs".to_owned(), PathBuf::from("/")));
    }

    #[test]
    fn boot_mounts_cover_the_api_filesystems() {
        let m = boot_mounts();
        let targets: Vec<&str> = m.iter().map(|m| m.target).collect();
        for t in ["/proc", "/sys", "/dev", "/run", "/tmp", "/sys/fs/cgroup"] {
            assert!(targets.contains(&t), "{t}");
        }
        // /dev must come before /dev/pts, /sys before cgroup2.
        let pos = |t: &str| targets.iter().position(|x| *x == t);
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/sys") < pos("/sys/fs/cgroup"));
    }
}

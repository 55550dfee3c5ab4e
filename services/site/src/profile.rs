//! Hardware profiles: what kind of box an image is for.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Collector, FileErrors, from_toml, read, single};

/// A kind of box: kernel, modules, console and disk layout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name; must match the file name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Serial console for the kernel and cairn-init, e.g. `ttyS0,115200`.
    pub console: String,
    /// Kernel package and modules.
    pub kernel: KernelSpec,
    /// Partition sizes of `disk.img`.
    pub disk: DiskSizes,
    /// Whether the box has a hardware watchdog cairn-init should feed.
    #[serde(default)]
    pub watchdog: bool,
}

/// The kernel of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Debian package, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// Exact package version (pinned for reproducible builds).
    pub version: String,
    /// Modules loaded at boot from the initramfs, by name; their
    /// dependencies are added by the builder.
    pub modules: Vec<String>,
    /// Extra kernel command line words.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

/// Partition sizes in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSizes {
    /// EFI system partition.
    pub esp_mib: u32,
    /// Each root slot (A and B).
    pub root_mib: u32,
    /// The data partition in the image (grown on the box by a later feature).
    pub data_mib: u32,
}

/// Loads `<dir>/<name>.toml`; an unknown name lists the profiles that exist.
pub fn load_profile(dir: &Path, name: &str) -> Result<Profile, FileErrors> {
    let path = dir.join(format!("{name}.toml"));
    if !path.is_file() || name.contains('/') {
        let mut known: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".toml")
                    .map(str::to_owned)
            })
            .collect();
        known.sort();
        return Err(single(
            dir,
            "",
            format!(
                "unknown hardware profile {name:?} (known: {})",
                known.join(", ")
            ),
        ));
    }
    let p: Profile = from_toml(&read(&path)?, &path)?;
    let mut c = Collector::new(&path);
    if p.name != name {
        c.add(
            "name",
            format!("{:?} does not match the file name {name:?}", p.name),
        );
    }
    if p.kernel.modules.is_empty() {
        c.add(
            "kernel.modules",
            "no modules: the initramfs could not mount the root filesystem",
        );
    }
    if p.disk.esp_mib < 32 {
        c.add(
            "disk.esp_mib",
            "the ESP needs at least 32 MiB (FAT32, systemd-boot and two UKIs)",
        );
    }
    if p.disk.root_mib < 16 || p.disk.data_mib < 16 {
        c.add("disk", "root and data partitions need at least 16 MiB each");
    }
    c.finish(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = r#"
name = "qemu-x86_64"
description = "QEMU q35 VM"
console = "ttyS0,115200"
watchdog = true
[kernel]
package = "linux-image-6.1.0-56-amd64"
version = "6.1.158-1"
modules = ["virtio_blk", "erofs", "dm_verity"]
[disk]
esp_mib = 64
root_mib = 128
data_mib = 64
"#;

    #[test]
    fn loads_by_name_and_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("qemu-x86_64.toml"), P).unwrap();
        let p = load_profile(dir.path(), "qemu-x86_64").unwrap();
        assert_eq!(p.kernel.modules.len(), 3);
        let e = load_profile(dir.path(), "raspberry")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown hardware profile \"raspberry\" (known: qemu-x86_64)"),
            "{e}"
        );
    }

    #[test]
    fn validates_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.toml"),
            P.replace("esp_mib = 64", "esp_mib = 8").replace(
                "modules = [\"virtio_blk\", \"erofs\", \"dm_verity\"]",
                "modules = []",
            ),
        )
        .unwrap();
        let e = load_profile(dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("field `name`"), "{e}");
        assert!(e.contains("field `disk.esp_mib`"), "{e}");
        assert!(e.contains("field `kernel.modules`"), "{e}");
    }
}

//! `manifest.json` and the CycloneDX SBOM beside it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::rootimg::Verity;

/// One output file.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    /// Path relative to the build directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One Debian package that contributed files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
    /// SHA-256 of the .deb.
    pub sha256: String,
}

/// The build's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// Format version of this file.
    pub manifest_version: u32,
    /// Image version (from the site file).
    pub version: String,
    /// Hardware profile.
    pub profile: String,
    /// Role.
    pub role: String,
    /// Cluster name.
    pub cluster: String,
    /// SOURCE_DATE_EPOCH used for every timestamp.
    pub source_date_epoch: u64,
    /// Kernel package and version string.
    pub kernel: Kernel,
    /// dm-verity parameters of the root filesystem.
    pub verity: Verity,
    /// Kernel command line of the disk boot (either slot) and of PXE.
    pub cmdline: Cmdlines,
    /// Sizes of interest.
    pub sizes: Sizes,
    /// Every output file.
    pub artifacts: Vec<Artifact>,
    /// Every Debian package that went in.
    pub packages: Vec<Package>,
}

/// The kernel that went in.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// Debian package.
    pub package: String,
    /// Package version.
    pub package_version: String,
    /// `uname -r`.
    pub release: String,
    /// Modules in the initramfs, load order.
    pub modules: Vec<String>,
}

/// Kernel command lines.
#[derive(Debug, Clone, Serialize)]
pub struct Cmdlines {
    /// Disk boot.
    pub disk: String,
    /// PXE boot.
    pub pxe: String,
}

/// Sizes in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// The erofs root (without the hash tree).
    pub rootfs: u64,
    /// The root partition content (erofs + hash tree).
    pub root_partition_content: u64,
    /// The disk initramfs.
    pub initrd: u64,
    /// The PXE initrd (initramfs + root image).
    pub pxe_initrd: u64,
    /// The UKI.
    pub uki: u64,
    /// Regular files in the root.
    pub root_files: usize,
    /// Executables in the root.
    pub root_executables: usize,
}

pub use cairn_debian::apt::hex;

/// Describes the output files under `dir`.
pub fn artifacts(dir: &Path, names: &[&str]) -> Result<Vec<Artifact>> {
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            Ok(Artifact {
                path: (*n).to_owned(),
                size: std::fs::metadata(&p)
                    .with_context(|| format!("{}", p.display()))?
                    .len(),
                sha256: cairn_debian::apt::sha256_file(&p)?,
            })
        })
        .collect()
}

/// A CycloneDX 1.5 SBOM of the packages, deterministic (no serial number or
/// timestamp other than SOURCE_DATE_EPOCH).
pub fn cyclonedx(m: &Manifest) -> serde_json::Value {
    let components: Vec<serde_json::Value> = m
        .packages
        .iter()
        .map(|p| {
            serde_json::json!({
                "type": "library",
                "name": p.name,
                "version": p.version,
                "purl": format!("pkg:deb/debian/{}@{}?arch={}&distro=bookworm", p.name, p.version, p.architecture),
                "hashes": [{"alg": "SHA-256", "content": p.sha256}],
            })
        })
        .collect();
    serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "component": {
                "type": "operating-system",
                "name": format!("cairn-{}-{}", m.role, m.profile),
                "version": m.version,
            },
            "properties": [{"name": "source_date_epoch", "value": m.source_date_epoch.to_string()}],
        },
        "components": components,
    })
}

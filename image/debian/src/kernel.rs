//! Finding the kernel image and version in an extracted kernel package.
//!
//! Debian names kernel packages `linux-image-<kver>` (`linux-image-6.1.0-56-cloud-amd64`, or
//! `...-unsigned`), and they ship `/boot/vmlinuz-<kver>` and `/lib/modules/<kver>/`. The version
//! string comes from the package name when it fits, otherwise from the one `vmlinuz-*` in the
//! tree, and is checked against both files.

use std::io;
use std::path::{Path, PathBuf};

use crate::rootpath::{self, RootPathError};

/// Errors from locating a kernel in an extracted package.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No `vmlinuz` for the version in the tree.
    #[error("no kernel image for `{package}` under `{root}` (looked for {looked_for})")]
    NoKernel {
        /// The package name.
        package: String,
        /// The extracted tree.
        root: PathBuf,
        /// What was looked for.
        looked_for: String,
    },
    /// Several kernels in the tree and the package name does not say which.
    #[error("`{root}` holds several kernels ({}); name the package exactly", versions.join(", "))]
    Ambiguous {
        /// The extracted tree.
        root: PathBuf,
        /// The versions found.
        versions: Vec<String>,
    },
    /// The kernel has no modules directory.
    #[error("kernel {version} has no `/lib/modules/{version}` under `{root}`")]
    NoModules {
        /// The kernel version.
        version: String,
        /// The extracted tree.
        root: PathBuf,
    },
    /// `/boot` could not be listed.
    #[error("cannot list `{path}`")]
    Read {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Path resolution inside the tree failed.
    #[error(transparent)]
    Path(#[from] RootPathError),
}

/// A kernel found in an extracted package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Kernel release string (`uname -r`), e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// Host path of the kernel image.
    pub vmlinuz: PathBuf,
    /// Host path of `lib/modules/<version>`.
    pub modules_dir: PathBuf,
}

/// The kernel release a package name implies: `linux-image-<kver>[-unsigned]` → `<kver>`.
pub fn version_from_package(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("linux-image-")?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    // Meta packages (`linux-image-cloud-amd64`) name a flavour, not a release.
    rest.starts_with(|c: char| c.is_ascii_digit())
        .then_some(rest)
}

/// Versions of the `vmlinuz-*` files in `boot`, sorted.
fn versions_in(root: &Path) -> Result<Vec<String>, KernelError> {
    let Some(boot) = rootpath::resolve(root, Path::new("/boot"))?.filter(|r| r.is_dir) else {
        return Ok(Vec::new());
    };
    let dir = rootpath::host_path(root, &boot.path);
    let read_err = |source| KernelError::Read {
        path: dir.clone(),
        source,
    };
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_err)? {
        let name = entry.map_err(read_err)?.file_name();
        if let Some(v) = name.to_string_lossy().strip_prefix("vmlinuz-") {
            versions.push(v.to_string());
        }
    }
    versions.sort();
    Ok(versions)
}

/// Finds the kernel of package `package` in its extracted tree `root`.
pub fn find_kernel(root: &Path, package: &str) -> Result<Kernel, KernelError> {
    let version = match version_from_package(package) {
        Some(v) => v.to_string(),
        None => {
            let mut versions = versions_in(root)?;
            match versions.len() {
                0 => {
                    return Err(KernelError::NoKernel {
                        package: package.to_string(),
                        root: root.to_path_buf(),
                        looked_for: "/boot/vmlinuz-*".to_string(),
                    });
                }
                1 => versions.remove(0),
                _ => {
                    return Err(KernelError::Ambiguous {
                        root: root.to_path_buf(),
                        versions,
                    });
                }
            }
        }
    };
    let image = format!("/boot/vmlinuz-{version}");
    let vmlinuz = rootpath::resolve(root, Path::new(&image))?
        .filter(|r| !r.is_dir)
        .ok_or_else(|| KernelError::NoKernel {
            package: package.to_string(),
            root: root.to_path_buf(),
            looked_for: image.clone(),
        })?;
    let modules = rootpath::resolve(root, &Path::new("/lib/modules").join(&version))?
        .filter(|r| r.is_dir)
        .ok_or_else(|| KernelError::NoModules {
            version: version.clone(),
            root: root.to_path_buf(),
        })?;
    Ok(Kernel {
        vmlinuz: rootpath::host_path(root, &vmlinuz.path),
        modules_dir: rootpath::host_path(root, &modules.path),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_package_names() {
        assert_eq!(
            version_from_package("linux-image-6.1.0-56-cloud-amd64"),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            version_from_package("linux-image-6.1.0-56-amd64-unsigned"),
            Some("6.1.0-56-amd64")
        );
        assert_eq!(version_from_package("linux-image-cloud-amd64"), None);
        assert_eq!(version_from_package("haproxy"), None);
    }

    fn tree(versions: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("boot")).unwrap();
        for v in versions {
            std::fs::write(dir.path().join(format!("boot/vmlinuz-{v}")), b"MZ").unwrap();
            std::fs::create_dir_all(dir.path().join(format!("lib/modules/{v}"))).unwrap();
        }
        dir
    }

    #[test]
    fn finds_kernel_by_name_or_by_the_only_image() {
        let dir = tree(&["6.1.0-56-cloud-amd64"]);
        let k = find_kernel(dir.path(), "linux-image-6.1.0-56-cloud-amd64").unwrap();
        assert_eq!(k.version, "6.1.0-56-cloud-amd64");
        assert_eq!(
            k.vmlinuz,
            dir.path().join("boot/vmlinuz-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            k.modules_dir,
            dir.path().join("lib/modules/6.1.0-56-cloud-amd64")
        );
        let k = find_kernel(dir.path(), "some-custom-kernel").unwrap();
        assert_eq!(k.version, "6.1.0-56-cloud-amd64");
    }

    #[test]
    fn missing_wrong_and_ambiguous_kernels_are_errors() {
        let dir = tree(&["6.1.0-56-cloud-amd64"]);
        let err = find_kernel(dir.path(), "linux-image-6.1.0-47-cloud-amd64").unwrap_err();
        assert!(
            err.to_string()
                .contains("/boot/vmlinuz-6.1.0-47-cloud-amd64"),
            "{err}"
        );
        let dir = tree(&["6.1.0-47-amd64", "6.1.0-56-amd64"]);
        let err = find_kernel(dir.path(), "custom").unwrap_err();
        assert!(
            matches!(&err, KernelError::Ambiguous { versions, .. } if versions.len() == 2),
            "{err}"
        );
        let dir = tree(&[]);
        std::fs::write(dir.path().join("boot/vmlinuz-6.1.0-1-amd64"), b"MZ").unwrap();
        let err = find_kernel(dir.path(), "linux-image-6.1.0-1-amd64").unwrap_err();
        assert!(matches!(err, KernelError::NoModules { .. }), "{err}");
    }
}

//! Listing and extracting a `.deb`'s data archive.
//!
//! `dpkg-deb --fsys-tarfile` decompresses the data member (xz, zstd, gzip: whatever dpkg-deb
//! supports) without consulting dpkg's database; the tar stream is read with the `tar` crate so
//! every entry is seen: listing, refusing paths that climb out of the destination, and
//! preserving symlinks, hard links, modes and mtimes. Ownership is not applied (image builders
//! set it when they write the filesystem), so extraction works without root.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// Errors from reading or extracting a `.deb`.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// `dpkg-deb` could not be started.
    #[error("cannot run `dpkg-deb` for `{deb}`")]
    Spawn {
        /// The package file.
        deb: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `dpkg-deb` failed (not a `.deb`, truncated, unknown compression).
    #[error("`dpkg-deb --fsys-tarfile {deb}` failed ({status}): {stderr}")]
    DpkgDeb {
        /// The package file.
        deb: PathBuf,
        /// Exit status as text.
        status: String,
        /// What dpkg-deb printed.
        stderr: String,
    },
    /// The data archive could not be read.
    #[error("cannot read the data archive of `{deb}`")]
    Archive {
        /// The package file.
        deb: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's path climbs out of the package root.
    #[error("`{deb}` contains `{entry}`, which points outside the extraction root")]
    UnsafePath {
        /// The package file.
        deb: PathBuf,
        /// The entry path as stored.
        entry: String,
    },
    /// Writing an entry under the destination failed.
    #[error("cannot extract `{entry}` of `{deb}` into `{dest}`")]
    Unpack {
        /// The package file.
        deb: PathBuf,
        /// The entry path inside the package.
        entry: PathBuf,
        /// The destination directory.
        dest: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What kind of file an entry is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
    },
    /// A directory.
    Directory,
    /// A symbolic link, with its target as stored.
    Symlink {
        /// Link target, exactly as in the archive.
        target: PathBuf,
    },
    /// A hard link to an earlier entry.
    HardLink {
        /// The entry it links to, absolute inside the package root.
        target: PathBuf,
    },
    /// Anything else (devices, FIFOs): dpkg packages practically never ship them.
    Other,
}

/// One entry of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DebEntry {
    /// Absolute path inside the package root (`/usr/sbin/haproxy`).
    pub path: PathBuf,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    /// What it is.
    pub kind: EntryKind,
}

/// Normalises an archive path (`./usr/bin/x`) to an absolute path inside the package root;
/// `None` for paths with `..` (never valid in a package).
fn normalise(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in raw.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Reads the entry list of a package from a tar header.
fn describe_entry(deb: &Path, entry: &tar::Entry<'_, ChildStdout>) -> Result<DebEntry, DebError> {
    let archive_err = |source| DebError::Archive {
        deb: deb.to_path_buf(),
        source,
    };
    let raw = entry.path().map_err(archive_err)?.into_owned();
    let unsafe_path = || DebError::UnsafePath {
        deb: deb.to_path_buf(),
        entry: raw.display().to_string(),
    };
    let path = normalise(&raw).ok_or_else(unsafe_path)?;
    let header = entry.header();
    let mode = header.mode().map_err(archive_err)? & 0o7777;
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File {
            size: header.size().map_err(archive_err)?,
        },
        tar::EntryType::Directory => EntryKind::Directory,
        tar::EntryType::Symlink => EntryKind::Symlink {
            target: entry
                .link_name()
                .map_err(archive_err)?
                .map(|t| t.into_owned())
                .unwrap_or_default(),
        },
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(archive_err)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            EntryKind::HardLink {
                target: normalise(&target).ok_or_else(unsafe_path)?,
            }
        }
        _ => EntryKind::Other,
    };
    Ok(DebEntry { path, mode, kind })
}

/// `dpkg-deb --fsys-tarfile deb`, with stdout piped.
fn spawn_tarfile(deb: &Path) -> Result<Child, DebError> {
    Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DebError::Spawn {
            deb: deb.to_path_buf(),
            source,
        })
}

/// Waits for dpkg-deb and picks the error that explains the failure best: dpkg-deb's own
/// message when the stream broke (not a `.deb`, truncated), otherwise ours.
fn finish(deb: &Path, mut child: Child, walked: Result<(), DebError>) -> Result<(), DebError> {
    if walked.is_err() {
        // Stop dpkg-deb if we gave up early; it may be blocked writing into the pipe.
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let stderr = stderr.trim().to_string();
    let status = child.wait().map_err(|source| DebError::Spawn {
        deb: deb.to_path_buf(),
        source,
    })?;
    let dpkg_deb_failed = || DebError::DpkgDeb {
        deb: deb.to_path_buf(),
        status: status.to_string(),
        stderr: stderr.clone(),
    };
    match walked {
        Ok(()) if !status.success() => Err(dpkg_deb_failed()),
        Err(DebError::Archive { .. }) if !status.success() && !stderr.is_empty() => {
            Err(dpkg_deb_failed())
        }
        other => other,
    }
}

/// Walks the data archive of `deb`, calling `visit` for every entry.
fn walk(
    deb: &Path,
    mut visit: impl FnMut(DebEntry, tar::Entry<'_, ChildStdout>) -> Result<(), DebError>,
) -> Result<(), DebError> {
    let mut child = spawn_tarfile(deb)?;
    let walked = match child.stdout.take() {
        Some(stdout) => (|| {
            let archive_err = |source| DebError::Archive {
                deb: deb.to_path_buf(),
                source,
            };
            let mut archive = tar::Archive::new(stdout);
            for entry in archive.entries().map_err(archive_err)? {
                let entry = entry.map_err(archive_err)?;
                let described = describe_entry(deb, &entry)?;
                visit(described, entry)?;
            }
            Ok(())
        })(),
        None => Ok(()),
    };
    finish(deb, child, walked)
}

/// Lists the files of a package's data archive, in archive order (the package root `/` is
/// left out).
pub fn list(deb: &Path) -> Result<Vec<DebEntry>, DebError> {
    let mut entries = Vec::new();
    walk(deb, |described, _| {
        if described.path != Path::new("/") {
            entries.push(described);
        }
        Ok(())
    })?;
    Ok(entries)
}

/// Extracts a package's data archive into `dest` (created if missing) and returns its entries.
///
/// Symlinks are recreated as stored (absolute targets stay absolute: they are meant for the
/// image's root, not the host's), modes and mtimes are kept, ownership is not. Extracting
/// several packages into the same `dest` overlays them, later files replacing earlier ones.
pub fn extract(deb: &Path, dest: &Path) -> Result<Vec<DebEntry>, DebError> {
    let unpack_err = |entry: &Path, source| DebError::Unpack {
        deb: deb.to_path_buf(),
        entry: entry.to_path_buf(),
        dest: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(|e| unpack_err(Path::new("/"), e))?;
    let mut entries = Vec::new();
    // Directory modes are applied last, deepest first, so a read-only directory cannot block
    // its own contents (the same order `tar::Archive::unpack` uses).
    let mut directories: Vec<DebEntry> = Vec::new();
    walk(deb, |described, mut entry| {
        if described.path == Path::new("/") {
            return Ok(());
        }
        if described.kind == EntryKind::Directory {
            let canonical =
                ensure_dir(dest, &described.path).map_err(|e| unpack_err(&described.path, e))?;
            // A directory reached through an existing symlink keeps the link, as dpkg does;
            // its mode belongs to the link's target, which this package does not own.
            if canonical == described.path {
                directories.push(described.clone());
            }
        } else {
            remove_existing(dest, &described.path).map_err(|e| unpack_err(&described.path, e))?;
            entry.set_preserve_permissions(true);
            entry.set_preserve_mtime(true);
            entry.set_unpack_xattrs(false);
            let unpacked = entry
                .unpack_in(dest)
                .map_err(|e| unpack_err(&described.path, e))?;
            if !unpacked {
                return Err(DebError::UnsafePath {
                    deb: deb.to_path_buf(),
                    entry: described.path.display().to_string(),
                });
            }
        }
        entries.push(described);
        Ok(())
    })?;
    directories.sort_by(|a, b| b.path.cmp(&a.path));
    for dir in directories {
        let host = crate::rootpath::host_path(dest, &dir.path);
        set_mode(&host, dir.mode).map_err(|e| unpack_err(&dir.path, e))?;
    }
    Ok(entries)
}

/// Creates the directory `path` (absolute inside `dest`) and any missing parents, resolving
/// existing symlinks inside `dest` (never on the host); returns its canonical path in `dest`.
fn ensure_dir(dest: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut canonical = PathBuf::from("/");
    for component in path.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let candidate = canonical.join(name);
        match crate::rootpath::resolve(dest, &candidate) {
            Ok(Some(resolved)) if resolved.is_dir => canonical = resolved.path,
            Ok(Some(resolved)) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!(
                        "`{}` exists and is not a directory",
                        resolved.path.display()
                    ),
                ));
            }
            Ok(None) => {
                std::fs::create_dir(crate::rootpath::host_path(dest, &candidate))?;
                canonical = candidate;
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Ok(canonical)
}

/// Removes a file or symlink already at `path` (inside `dest`), so a later package (or the same
/// one again) replaces it as dpkg would. The parent is resolved inside `dest`, so nothing outside
/// it is ever removed; directories are left alone.
fn remove_existing(dest: &Path, path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let parent = match crate::rootpath::resolve(dest, parent) {
        Ok(Some(resolved)) if resolved.is_dir => resolved.path,
        Ok(_) => return Ok(()),
        Err(e) => return Err(io::Error::other(e)),
    };
    let existing = crate::rootpath::host_path(dest, &parent).join(name);
    match std::fs::symlink_metadata(&existing) {
        Ok(meta) if !meta.is_dir() => std::fs::remove_file(&existing),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_archive_paths() {
        assert_eq!(
            normalise(Path::new("./usr/sbin/haproxy")),
            Some(PathBuf::from("/usr/sbin/haproxy"))
        );
        assert_eq!(normalise(Path::new("./")), Some(PathBuf::from("/")));
        assert_eq!(normalise(Path::new("./usr/../../etc")), None);
    }

    #[test]
    fn missing_or_bogus_debs_are_dpkg_deb_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bogus.deb");
        std::fs::write(&bogus, b"not an ar archive").unwrap();
        let err = list(&bogus).unwrap_err();
        assert!(matches!(err, DebError::DpkgDeb { .. }), "{err:?}");
        assert!(err.to_string().contains("bogus.deb"), "{err}");
    }
}

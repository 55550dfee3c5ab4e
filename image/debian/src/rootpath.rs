//! Path resolution confined to a staging root.
//!
//! A staging root holds the files of an image being built. Its symlinks (including absolute ones
//! such as `/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`) must be
//! resolved the way they will be on the booted box, i.e. relative to the staging root and never to
//! the build host's `/`. [`resolve`] walks a path one component at a time and only ever asks the
//! host about a single, already resolved component, so no host symlink is followed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before resolution gives up, as Linux's `MAXSYMLINKS`.
pub const MAX_SYMLINKS: usize = 40;

/// Errors from resolving a path inside a staging root.
#[derive(Debug, thiserror::Error)]
pub enum RootPathError {
    /// The path is relative; paths inside a root are always absolute.
    #[error("`{path}` is not an absolute path inside the root")]
    Relative {
        /// The path as given.
        path: PathBuf,
    },
    /// More than [`MAX_SYMLINKS`] symlinks were followed (usually a loop).
    #[error("too many levels of symbolic links resolving `{path}` under `{root}`")]
    TooManySymlinks {
        /// The path being resolved.
        path: PathBuf,
        /// The staging root.
        root: PathBuf,
    },
    /// Reading a component's metadata or a symlink's target failed.
    #[error("cannot inspect `{path}`")]
    Io {
        /// The host path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A path resolved inside a staging root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical path inside the root: absolute, no symlink in any component.
    pub path: PathBuf,
    /// Every symlink followed on the way, as (location inside the root, target as stored).
    /// The location's parent is canonical, so recreating these links and the final path in an
    /// empty root reproduces the original path.
    pub symlinks: BTreeMap<PathBuf, PathBuf>,
    /// Whether the final path is a directory.
    pub is_dir: bool,
}

/// The host path of `path` (absolute, inside the root) under `root`.
///
/// Only meaningful for canonical paths, whose components are not symlinks.
pub fn host_path(root: &Path, path: &Path) -> PathBuf {
    let mut host = root.to_path_buf();
    for component in path.components() {
        if let Component::Normal(name) = component {
            host.push(name);
        }
    }
    host
}

enum Part {
    Parent,
    Name(OsString),
}

/// Pushes the components of `path` onto `stack` so that the first component is popped first.
fn push_components(stack: &mut Vec<Part>, path: &Path) {
    let parts: Vec<Part> = path
        .components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Part::Parent),
            Component::Normal(name) => Some(Part::Name(name.to_os_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

/// Resolves the absolute `path` inside `root`, following symlinks inside the root.
///
/// Returns `Ok(None)` when the path does not exist (or a non-final component is not a
/// directory), so callers can search several directories; errors are reserved for loops and
/// I/O failures other than "not found".
pub fn resolve(root: &Path, path: &Path) -> Result<Option<Resolved>, RootPathError> {
    if !path.is_absolute() {
        return Err(RootPathError::Relative {
            path: path.to_path_buf(),
        });
    }
    let mut pending = Vec::new();
    push_components(&mut pending, path);
    let mut current = PathBuf::from("/");
    let mut symlinks = BTreeMap::new();
    let mut followed = 0usize;
    let mut is_dir = true;
    while let Some(part) = pending.pop() {
        let name = match part {
            Part::Parent => {
                current.pop();
                is_dir = true;
                continue;
            }
            Part::Name(name) => name,
        };
        let candidate = current.join(&name);
        let host = host_path(root, &candidate);
        let meta = match std::fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Ok(None);
            }
            Err(source) => return Err(RootPathError::Io { path: host, source }),
        };
        if meta.file_type().is_symlink() {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(RootPathError::TooManySymlinks {
                    path: path.to_path_buf(),
                    root: root.to_path_buf(),
                });
            }
            let target = std::fs::read_link(&host)
                .map_err(|source| RootPathError::Io { path: host, source })?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            push_components(&mut pending, &target);
            symlinks.insert(candidate, target);
            continue;
        }
        is_dir = meta.is_dir();
        if !is_dir && !pending.is_empty() {
            return Ok(None);
        }
        current = candidate;
    }
    Ok(Some(Resolved {
        path: current,
        symlinks,
        is_dir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1.2"), b"x").unwrap();
        symlink(
            "libfoo.so.1.2",
            r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        )
        .unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir(r.join("lib64")).unwrap();
        // Absolute target: must resolve inside the root, not on the host.
        symlink("/lib/x86_64-linux-gnu/libfoo.so.1", r.join("lib64/abs")).unwrap();
        symlink("../../etc/passwd", r.join("lib64/escape")).unwrap();
        symlink("loop2", r.join("lib64/loop1")).unwrap();
        symlink("loop1", r.join("lib64/loop2")).unwrap();
        dir
    }

    #[test]
    fn follows_relative_and_directory_symlinks() {
        let dir = root();
        let r = resolve(dir.path(), Path::new("/lib/x86_64-linux-gnu/libfoo.so.1"))
            .unwrap()
            .unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
        assert!(!r.is_dir);
        let links: Vec<_> = r.symlinks.into_iter().collect();
        assert_eq!(
            links,
            vec![
                (PathBuf::from("/lib"), PathBuf::from("usr/lib")),
                (
                    PathBuf::from("/usr/lib/x86_64-linux-gnu/libfoo.so.1"),
                    PathBuf::from("libfoo.so.1.2")
                ),
            ]
        );
    }

    #[test]
    fn absolute_targets_stay_inside_the_root() {
        let dir = root();
        let r = resolve(dir.path(), Path::new("/lib64/abs"))
            .unwrap()
            .unwrap();
        assert_eq!(r.path, Path::new("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2"));
        assert_eq!(r.symlinks.len(), 3);
    }

    #[test]
    fn dotdot_cannot_climb_above_the_root() {
        let dir = root();
        // /etc/passwd exists on the host but not in the root.
        assert_eq!(
            resolve(dir.path(), Path::new("/lib64/escape")).unwrap(),
            None
        );
        assert_eq!(
            resolve(dir.path(), Path::new("/../../../etc/passwd")).unwrap(),
            None
        );
    }

    #[test]
    fn missing_paths_and_files_used_as_directories_are_none() {
        let dir = root();
        assert_eq!(resolve(dir.path(), Path::new("/nope")).unwrap(), None);
        assert_eq!(
            resolve(
                dir.path(),
                Path::new("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2/x")
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn loops_are_errors() {
        let dir = root();
        let err = resolve(dir.path(), Path::new("/lib64/loop1")).unwrap_err();
        assert!(
            matches!(err, RootPathError::TooManySymlinks { .. }),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_are_rejected() {
        let dir = root();
        let err = resolve(dir.path(), Path::new("lib")).unwrap_err();
        assert!(matches!(err, RootPathError::Relative { .. }), "{err}");
    }

    #[test]
    fn directories_resolve_with_is_dir() {
        let dir = root();
        let r = resolve(dir.path(), Path::new("/lib/")).unwrap().unwrap();
        assert_eq!(r.path, Path::new("/usr/lib"));
        assert!(r.is_dir);
    }
}

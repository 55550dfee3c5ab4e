//! The shared-library closure of ELF binaries inside a staging root.
//!
//! For each binary this reads `PT_INTERP` and `DT_NEEDED`, then looks every needed soname up the
//! way glibc's loader will on the booted box, which has no `/etc/ld.so.cache`:
//! `DT_RPATH` (only when the object has no `DT_RUNPATH`), then `DT_RUNPATH`, then the loader's
//! built-in system directories ([`DEFAULT_SEARCH_DIRS`], Debian's multiarch order). `$ORIGIN` is
//! the directory of the object as it was found. Candidates of the wrong ELF class or machine are
//! skipped, as the loader does. All paths are resolved inside the staging root
//! ([`crate::rootpath`]), including absolute symlink targets.
//!
//! The result lists the regular files to copy and every symlink on the way (a library's
//! `libssl.so.3` link, a `/lib64` interpreter link, a `/lib -> usr/lib` directory link), so that
//! copying exactly those into an empty root reproduces every path the loader will open.
//! Libraries loaded with `dlopen` (NSS modules, plugins) are not in `DT_NEEDED`: callers list
//! those as binaries of their own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use goblin::elf::Elf;
use goblin::elf::header::{EI_CLASS, EI_DATA};

use crate::rootpath::{self, RootPathError};

/// The glibc loader's built-in search path on Debian amd64 (`ld.so --help`), used when no
/// `ld.so.cache` exists, which is the case in cairn images.
pub const DEFAULT_SEARCH_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Errors from computing a library closure.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// A requested binary does not exist in the root.
    #[error("binary `{binary}` not found under `{root}`")]
    BinaryNotFound {
        /// The binary, inside the root.
        binary: PathBuf,
        /// The staging root.
        root: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The path inside the root.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file is not a parsable ELF object.
    #[error("`{path}` is not an ELF object: {reason}")]
    NotElf {
        /// The path inside the root.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A binary's `PT_INTERP` does not exist in the root.
    #[error("`{binary}` needs the program interpreter `{interpreter}`, which is not in the root")]
    MissingInterpreter {
        /// The object with the `PT_INTERP`.
        binary: PathBuf,
        /// The interpreter path.
        interpreter: String,
    },
    /// A needed library is nowhere on the search path.
    #[error(
        "`{binary}` needs `{soname}`, not found in {} (pulled in by `{required_by}`)",
        searched.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    MissingLibrary {
        /// The object whose `DT_NEEDED` names the library.
        binary: PathBuf,
        /// The soname.
        soname: String,
        /// Directories searched, in order.
        searched: Vec<PathBuf>,
        /// The requested binary whose closure this is.
        required_by: PathBuf,
    },
    /// Path resolution inside the root failed (symlink loop, I/O).
    #[error(transparent)]
    Path(#[from] RootPathError),
}

/// Files and symlinks to copy so that binaries run in a new root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryClosure {
    /// Regular files (binaries, libraries, interpreter): canonical paths inside the root.
    pub files: BTreeSet<PathBuf>,
    /// Symlinks to recreate: location inside the root → target exactly as stored.
    pub symlinks: BTreeMap<PathBuf, PathBuf>,
    /// Each soname → the path the loader opens for it (before symlinks are followed).
    pub sonames: BTreeMap<String, PathBuf>,
}

/// ELF identity the loader insists on: class (32/64-bit), byte order and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    class: u8,
    data: u8,
    machine: u16,
}

/// What the closure needs from one object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dynamic {
    identity: Identity,
    interpreter: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Dynamic, ElfError> {
    let elf = Elf::parse(bytes).map_err(|e| ElfError::NotElf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let split = |entries: &[&str]| -> Vec<String> {
        entries
            .iter()
            .flat_map(|e| e.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Dynamic {
        identity: Identity {
            class: elf.header.e_ident[EI_CLASS],
            data: elf.header.e_ident[EI_DATA],
            machine: elf.header.e_machine,
        },
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    })
}

/// Just the identity of a candidate library, from its header.
fn identity_of(host: &Path) -> Option<Identity> {
    use std::io::Read;
    let mut header = [0u8; 64];
    let mut file = std::fs::File::open(host).ok()?;
    file.read_exact(&mut header).ok()?;
    let parsed = Elf::parse_header(&header).ok()?;
    Some(Identity {
        class: parsed.e_ident[EI_CLASS],
        data: parsed.e_ident[EI_DATA],
        machine: parsed.e_machine,
    })
}

/// Expands `$ORIGIN`/`${ORIGIN}` in a search path entry; entries with other tokens (`$LIB`,
/// `$PLATFORM`) or relative paths are dropped, since the image's loader would not find them in
/// a predictable place either.
fn expand(entry: &str, origin: &Path) -> Option<PathBuf> {
    let origin = origin.to_string_lossy();
    let expanded = entry
        .replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin);
    (!expanded.contains('$') && expanded.starts_with('/')).then(|| PathBuf::from(expanded))
}

/// The directories searched for the `DT_NEEDED` entries of `object`.
fn search_path(object: &Dynamic, origin: &Path, defaults: &[PathBuf]) -> Vec<PathBuf> {
    let own = if object.runpath.is_empty() {
        &object.rpath
    } else {
        &object.runpath
    };
    let mut dirs: Vec<PathBuf> = own.iter().filter_map(|e| expand(e, origin)).collect();
    for d in defaults {
        if !dirs.contains(d) {
            dirs.push(d.clone());
        }
    }
    dirs
}

/// Computes library closures inside one staging root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryResolver {
    root: PathBuf,
    search_dirs: Vec<PathBuf>,
}

struct Work {
    /// Path the object was found at (for `$ORIGIN`), inside the root.
    found_at: PathBuf,
    /// Canonical path inside the root.
    canonical: PathBuf,
    /// The requested binary this object belongs to.
    required_by: PathBuf,
}

impl LibraryResolver {
    /// A resolver for `root` with the loader's default search directories.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            search_dirs: DEFAULT_SEARCH_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// Replaces the default search directories (absolute paths inside the root).
    pub fn with_search_dirs(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.search_dirs = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// The closure of `binaries` (absolute paths inside the root): the binaries themselves,
    /// their interpreters and every library they need, transitively.
    pub fn closure(&self, binaries: &[impl AsRef<Path>]) -> Result<LibraryClosure, ElfError> {
        let mut out = LibraryClosure::default();
        let mut queue = VecDeque::new();
        for binary in binaries {
            let binary = binary.as_ref();
            let resolved = rootpath::resolve(&self.root, binary)?
                .filter(|r| !r.is_dir)
                .ok_or_else(|| ElfError::BinaryNotFound {
                    binary: binary.to_path_buf(),
                    root: self.root.clone(),
                })?;
            out.symlinks.extend(resolved.symlinks);
            out.files.insert(resolved.path.clone());
            queue.push_back(Work {
                // The loader takes the main program's origin from /proc/self/exe: canonical.
                found_at: resolved.path.clone(),
                canonical: resolved.path,
                required_by: binary.to_path_buf(),
            });
        }
        let mut seen = BTreeSet::new();
        while let Some(work) = queue.pop_front() {
            if !seen.insert(work.canonical.clone()) {
                continue;
            }
            self.visit(work, &mut out, &mut queue)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        work: Work,
        out: &mut LibraryClosure,
        queue: &mut VecDeque<Work>,
    ) -> Result<(), ElfError> {
        let host = rootpath::host_path(&self.root, &work.canonical);
        let bytes = std::fs::read(&host).map_err(|source| ElfError::Read {
            path: work.canonical.clone(),
            source,
        })?;
        let object = parse(&work.canonical, &bytes)?;
        if let Some(interpreter) = &object.interpreter {
            let resolved = rootpath::resolve(&self.root, Path::new(interpreter))?
                .filter(|r| !r.is_dir)
                .ok_or_else(|| ElfError::MissingInterpreter {
                    binary: work.canonical.clone(),
                    interpreter: interpreter.clone(),
                })?;
            out.symlinks.extend(resolved.symlinks);
            out.files.insert(resolved.path.clone());
            queue.push_back(Work {
                found_at: PathBuf::from(interpreter),
                canonical: resolved.path,
                required_by: work.required_by.clone(),
            });
        }
        let origin = work
            .found_at
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let dirs = search_path(&object, &origin, &self.search_dirs);
        for soname in &object.needed {
            let found = self.find(soname, &dirs, object.identity)?;
            let Some((found_at, resolved)) = found else {
                return Err(ElfError::MissingLibrary {
                    binary: work.canonical.clone(),
                    soname: soname.clone(),
                    searched: dirs,
                    required_by: work.required_by.clone(),
                });
            };
            out.symlinks.extend(resolved.symlinks);
            out.files.insert(resolved.path.clone());
            out.sonames
                .entry(soname.clone())
                .or_insert_with(|| found_at.clone());
            queue.push_back(Work {
                found_at,
                canonical: resolved.path,
                required_by: work.required_by.clone(),
            });
        }
        Ok(())
    }

    /// Looks `soname` up in `dirs`; a name with a `/` is a path of its own.
    fn find(
        &self,
        soname: &str,
        dirs: &[PathBuf],
        identity: Identity,
    ) -> Result<Option<(PathBuf, rootpath::Resolved)>, ElfError> {
        let candidates: Vec<PathBuf> = if soname.contains('/') {
            vec![PathBuf::from("/").join(soname)]
        } else {
            dirs.iter().map(|d| d.join(soname)).collect()
        };
        for candidate in candidates {
            let Some(resolved) = rootpath::resolve(&self.root, &candidate)? else {
                continue;
            };
            if resolved.is_dir {
                continue;
            }
            let host = rootpath::host_path(&self.root, &resolved.path);
            if identity_of(&host) == Some(identity) {
                return Ok(Some((candidate, resolved)));
            }
        }
        Ok(None)
    }
}

/// Shorthand for [`LibraryResolver::new`]`(root).closure(binaries)`.
pub fn library_closure(
    root: &Path,
    binaries: &[impl AsRef<Path>],
) -> Result<LibraryClosure, ElfError> {
    LibraryResolver::new(root).closure(binaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_expanded_and_other_tokens_dropped() {
        let origin = Path::new("/opt/app/bin");
        assert_eq!(
            expand("$ORIGIN/../lib", origin),
            Some(PathBuf::from("/opt/app/bin/../lib"))
        );
        assert_eq!(
            expand("${ORIGIN}/x", origin),
            Some(PathBuf::from("/opt/app/bin/x"))
        );
        assert_eq!(expand("/usr/$LIB/foo", origin), None);
        assert_eq!(expand("relative/dir", origin), None);
    }

    fn dynamic(rpath: &[&str], runpath: &[&str]) -> Dynamic {
        Dynamic {
            identity: Identity {
                class: 2,
                data: 1,
                machine: 62,
            },
            interpreter: None,
            needed: vec![],
            rpath: rpath.iter().map(|s| s.to_string()).collect(),
            runpath: runpath.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn runpath_replaces_rpath_and_defaults_come_last() {
        let defaults: Vec<PathBuf> = DEFAULT_SEARCH_DIRS.iter().map(PathBuf::from).collect();
        let origin = Path::new("/opt/bin");
        let dirs = search_path(&dynamic(&["/r"], &[]), origin, &defaults);
        assert_eq!(dirs[0], Path::new("/r"));
        assert_eq!(dirs.len(), 1 + defaults.len());
        let dirs = search_path(&dynamic(&["/r"], &["$ORIGIN/../lib"]), origin, &defaults);
        assert_eq!(dirs[0], Path::new("/opt/bin/../lib"));
        assert!(!dirs.contains(&PathBuf::from("/r")));
        // A default listed in RUNPATH is searched once, at its RUNPATH position.
        let dirs = search_path(&dynamic(&[], &["/usr/lib"]), origin, &defaults);
        assert_eq!(dirs[0], Path::new("/usr/lib"));
        assert_eq!(dirs.len(), defaults.len());
    }

    #[test]
    fn non_elf_files_are_named_in_the_error() {
        let err = parse(Path::new("/usr/bin/script"), b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(err.to_string().contains("/usr/bin/script"), "{err}");
    }
}

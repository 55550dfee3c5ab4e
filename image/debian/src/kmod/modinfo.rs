//! The `.modinfo` section of a kernel module: `depends=`, `alias=`, `name=` and friends.
//!
//! `modpost` writes `depends=` from the same symbol resolution `depmod` does, so a module's
//! dependencies can be read without `depmod` (which Debian runs only at install time, leaving
//! the kernel package without `modules.dep`).

use std::path::{Path, PathBuf};

use goblin::elf::Elf;

use super::tables::normalise;

/// Errors from reading a module's `.modinfo`.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    /// The module file could not be read.
    #[error("cannot read kernel module `{path}`")]
    Read {
        /// The module file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not an ELF object.
    #[error("`{path}` is not an ELF kernel module: {reason}")]
    NotElf {
        /// The module file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file has no `.modinfo` section (or it lies outside the file).
    #[error("`{path}` has no .modinfo section")]
    NoModinfo {
        /// The module file.
        path: PathBuf,
    },
    /// The module is compressed; Debian bookworm ships plain `.ko` files.
    #[error("`{path}` is compressed; only uncompressed .ko modules are supported")]
    Compressed {
        /// The module file.
        path: PathBuf,
    },
}

/// What the closure needs from a module's `.modinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modinfo {
    /// `name=`, normalised (empty when absent).
    pub name: String,
    /// `depends=`, normalised, in order.
    pub depends: Vec<String>,
    /// `alias=` values, normalised.
    pub aliases: Vec<String>,
}

/// Parses the raw `.modinfo` bytes (NUL-separated `key=value` strings).
pub fn parse_modinfo(bytes: &[u8]) -> Modinfo {
    let mut info = Modinfo::default();
    for field in bytes.split(|b| *b == 0) {
        let Ok(field) = std::str::from_utf8(field) else {
            continue;
        };
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = normalise(value),
            "depends" => info
                .depends
                .extend(value.split(',').filter(|d| !d.is_empty()).map(normalise)),
            "alias" => info.aliases.push(normalise(value)),
            _ => {}
        }
    }
    info
}

/// Reads and parses the `.modinfo` section of the module file at `path`.
pub fn read_modinfo(path: &Path) -> Result<Modinfo, ModinfoError> {
    if path.extension().is_some_and(|e| e != "ko") {
        return Err(ModinfoError::Compressed {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ModinfoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let elf = Elf::parse(&bytes).map_err(|e| ModinfoError::NotElf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let section = elf
        .section_headers
        .iter()
        .find(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or_else(|| ModinfoError::NoModinfo {
            path: path.to_path_buf(),
        })?;
    let start = usize::try_from(section.sh_offset).ok();
    let len = usize::try_from(section.sh_size).ok();
    let data = start
        .zip(len)
        .and_then(|(s, l)| bytes.get(s..s.checked_add(l)?))
        .ok_or_else(|| ModinfoError::NoModinfo {
            path: path.to_path_buf(),
        })?;
    Ok(parse_modinfo(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_depends_aliases_and_name() {
        let raw = b"license=GPL\0description=device-mapper target\0\0\0depends=reed_solomon,dm-mod,dm-bufio\0retpoline=Y\0name=dm_verity\0alias=fs-erofs\0";
        let info = parse_modinfo(raw);
        assert_eq!(info.name, "dm_verity");
        assert_eq!(info.depends, ["reed_solomon", "dm_mod", "dm_bufio"]);
        assert_eq!(info.aliases, ["fs_erofs"]);
        assert!(parse_modinfo(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn compressed_and_non_elf_modules_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let xz = dir.path().join("a.ko.xz");
        std::fs::write(&xz, b"x").unwrap();
        assert!(matches!(
            read_modinfo(&xz),
            Err(ModinfoError::Compressed { .. })
        ));
        let ko = dir.path().join("b.ko");
        std::fs::write(&ko, b"not elf").unwrap();
        let err = read_modinfo(&ko).unwrap_err();
        assert!(matches!(err, ModinfoError::NotElf { .. }), "{err}");
        assert!(err.to_string().contains("b.ko"));
    }
}

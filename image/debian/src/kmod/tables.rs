//! The text tables in `/lib/modules/<kver>/`: `modules.dep`, `modules.builtin`, `modules.alias`
//! and `modules.builtin.modinfo`.
//!
//! Debian's kernel packages ship `modules.builtin`, `modules.builtin.modinfo` and
//! `modules.order`; `modules.dep` and `modules.alias` appear only after `depmod` ran (on an
//! installed system). Parsers here are pure so they are tested on small fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Errors from parsing a modules table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A line does not have the table's shape.
    #[error("{file} line {line}: unexpected `{text}`")]
    Syntax {
        /// The table's file name (`modules.dep`).
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// The module name of a `.ko` path, as the kernel knows it: file name without `.ko` (and any
/// compression suffix), `-` written `_`.
pub fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))?;
    Some(normalise(stem))
}

/// `-` and `_` are the same in module names and aliases; the kernel uses `_`.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// A parsed `modules.dep`: module name → (path, dependency names in file order).
pub type DepTable = BTreeMap<String, (PathBuf, Vec<String>)>;

/// Parses `modules.dep` (`kernel/a/b.ko: kernel/c.ko kernel/d.ko`).
pub fn parse_modules_dep(text: &str) -> Result<DepTable, TableError> {
    let mut table = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let syntax = || TableError::Syntax {
            file: "modules.dep",
            line: i + 1,
            text: line.to_string(),
        };
        let (module, deps) = line.split_once(':').ok_or_else(syntax)?;
        let path = PathBuf::from(module.trim());
        let name = module_name(&path).ok_or_else(syntax)?;
        let deps = deps
            .split_whitespace()
            .map(|d| module_name(Path::new(d)).ok_or_else(syntax))
            .collect::<Result<Vec<_>, _>>()?;
        table.insert(name, (path, deps));
    }
    Ok(table)
}

/// Parses `modules.builtin` (one `kernel/.../name.ko` per line) into module names.
pub fn parse_modules_builtin(text: &str) -> Result<BTreeSet<String>, TableError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            module_name(Path::new(line.trim())).ok_or_else(|| TableError::Syntax {
                file: "modules.builtin",
                line: i + 1,
                text: line.to_string(),
            })
        })
        .collect()
}

/// An alias table: normalised alias → module names.
pub type AliasTable = BTreeMap<String, BTreeSet<String>>;

/// Parses `modules.alias` (`alias <alias> <module>`; comments start with `#`).
pub fn parse_modules_alias(text: &str) -> Result<AliasTable, TableError> {
    let mut table: AliasTable = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_trimmed = line.trim();
        if line_trimmed.is_empty() || line_trimmed.starts_with('#') {
            continue;
        }
        let mut words = line_trimmed.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("alias"), Some(alias), Some(module), None) => {
                table
                    .entry(normalise(alias))
                    .or_default()
                    .insert(normalise(module));
            }
            _ => {
                return Err(TableError::Syntax {
                    file: "modules.alias",
                    line: i + 1,
                    text: line.to_string(),
                });
            }
        }
    }
    Ok(table)
}

/// Aliases of built-in modules from `modules.builtin.modinfo` (NUL-separated
/// `module.key=value` strings; only `alias` keys are kept).
pub fn parse_builtin_modinfo(bytes: &[u8]) -> AliasTable {
    let mut table: AliasTable = BTreeMap::new();
    for field in bytes.split(|b| *b == 0) {
        let Ok(field) = std::str::from_utf8(field) else {
            continue;
        };
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        if let Some(module) = key.strip_suffix(".alias") {
            table
                .entry(normalise(value))
                .or_default()
                .insert(normalise(module));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_normalised() {
        assert_eq!(
            module_name(Path::new("kernel/drivers/md/dm-verity.ko")).as_deref(),
            Some("dm_verity")
        );
        assert_eq!(
            module_name(Path::new("kernel/fs/erofs/erofs.ko.xz")).as_deref(),
            Some("erofs")
        );
        assert_eq!(module_name(Path::new("modules.dep")), None);
    }

    #[test]
    fn parses_modules_dep() {
        let text = "\
kernel/drivers/md/dm-verity.ko: kernel/lib/reed_solomon/reed_solomon.ko kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-mod.ko:

kernel/drivers/md/dm-bufio.ko:
";
        let t = parse_modules_dep(text).unwrap();
        assert_eq!(t.len(), 3);
        let (path, deps) = &t["dm_verity"];
        assert_eq!(path, Path::new("kernel/drivers/md/dm-verity.ko"));
        assert_eq!(deps, &["reed_solomon", "dm_bufio", "dm_mod"]);
        assert!(t["dm_mod"].1.is_empty());
        let err = parse_modules_dep("no colon here\n").unwrap_err();
        assert_eq!(
            err,
            TableError::Syntax {
                file: "modules.dep",
                line: 1,
                text: "no colon here".into()
            }
        );
    }

    #[test]
    fn parses_builtin_and_aliases() {
        let b = parse_modules_builtin("kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n")
            .unwrap();
        assert!(b.contains("ext4") && b.contains("crc32c_generic"));
        let a = parse_modules_alias(
            "# Aliases extracted from modules themselves.\nalias fs-erofs erofs\nalias crypto-crc32c crc32c-intel\n",
        )
        .unwrap();
        assert_eq!(a["fs_erofs"].iter().collect::<Vec<_>>(), ["erofs"]);
        assert_eq!(
            a["crypto_crc32c"].iter().collect::<Vec<_>>(),
            ["crc32c_intel"]
        );
        assert!(parse_modules_alias("alias onlyone\n").is_err());
        let m = parse_builtin_modinfo(
            b"ext4.alias=fs-ext4\0ext4.license=GPL\0crc32c_generic.alias=crypto-crc32c\0",
        );
        assert_eq!(m["fs_ext4"].iter().collect::<Vec<_>>(), ["ext4"]);
        assert_eq!(
            m["crypto_crc32c"].iter().collect::<Vec<_>>(),
            ["crc32c_generic"]
        );
        assert!(!m.contains_key("GPL"));
    }
}

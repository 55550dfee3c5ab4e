//! Loads kernel modules in a fixed order with `finit_module(2)`. The builder
//! resolves dependencies from `modules.dep` and writes the list, dependencies
//! first, to `/etc/cairn/modules`: one absolute `.ko` path per line,
//! optionally followed by module parameters; `#` starts a comment. A module
//! that fails is reported and the rest are still loaded.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::devctl;

/// Where the initramfs keeps its module list.
pub const MODULES_LIST: &str = "/etc/cairn/modules";

/// One line of the module list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Absolute path of the `.ko` file (maybe `.ko.xz`, `.ko.zst`, `.ko.gz`).
    pub path: PathBuf,
    /// Module parameters, space separated as for `insmod` (may be empty).
    pub params: String,
}

impl ModuleEntry {
    /// Whether the file is compressed, so the kernel must decompress it.
    pub fn compressed(&self) -> bool {
        let name = self.path.to_string_lossy();
        [".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .any(|e| name.ends_with(e))
    }
}

/// What happened to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The kernel accepted it.
    Inserted,
    /// It was already loaded (EEXIST), which is fine.
    AlreadyLoaded,
}

/// A module or module list that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The list itself is unreadable.
    #[error("module list {path}: {source}")]
    ReadList {
        /// The list's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the list is not an absolute path.
    #[error("module list {path} line {line}: {text:?} is not an absolute .ko path")]
    BadLine {
        /// The list's path.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The module file cannot be opened.
    #[error("module {path}: {source}")]
    Open {
        /// The module's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel refused the module.
    #[error("module {path}: finit_module: {errno}")]
    Insert {
        /// The module's path.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// The outcome of loading a list.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Modules the kernel accepted.
    pub inserted: usize,
    /// Modules that were already loaded.
    pub already_loaded: usize,
    /// Everything that failed, in order.
    pub failures: Vec<KmodError>,
}

/// Parses a module list. Bad lines become errors; good lines are kept.
pub fn parse_list(list_path: &Path, text: &str) -> (Vec<ModuleEntry>, Vec<KmodError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (path, params) = match line.split_once(char::is_whitespace) {
            Some((p, rest)) => (p, rest.trim()),
            None => (line, ""),
        };
        if !path.starts_with('/') || !path.contains(".ko") {
            errors.push(KmodError::BadLine {
                path: list_path.to_owned(),
                line: i + 1,
                text: raw.to_owned(),
            });
            continue;
        }
        entries.push(ModuleEntry {
            path: PathBuf::from(path),
            params: params.to_owned(),
        });
    }
    (entries, errors)
}

/// Loads one module; EEXIST counts as success.
pub fn load(entry: &ModuleEntry) -> Result<Loaded, KmodError> {
    let file = File::open(&entry.path).map_err(|source| KmodError::Open {
        path: entry.path.clone(),
        source,
    })?;
    let params = CString::new(entry.params.as_str()).map_err(|_| KmodError::Insert {
        path: entry.path.clone(),
        errno: Errno::EINVAL,
    })?;
    let flags = if entry.compressed() {
        devctl::MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    match devctl::finit_module(&file, &params, flags) {
        Ok(()) => Ok(Loaded::Inserted),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Loaded::AlreadyLoaded),
        Err(e) => Err(KmodError::Insert {
            path: entry.path.clone(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }),
    }
}

/// Loads every module in order, calling `each` after each one, and keeps going
/// after failures.
pub fn load_all(
    entries: &[ModuleEntry],
    mut each: impl FnMut(&ModuleEntry, &Result<Loaded, KmodError>),
) -> LoadReport {
    let mut report = LoadReport::default();
    for e in entries {
        let r = load(e);
        each(e, &r);
        match r {
            Ok(Loaded::Inserted) => report.inserted += 1,
            Ok(Loaded::AlreadyLoaded) => report.already_loaded += 1,
            Err(err) => report.failures.push(err),
        }
    }
    report
}

/// Reads the list at `list` and loads it. A missing list means no modules.
pub fn load_list_file(
    list: &Path,
    each: impl FnMut(&ModuleEntry, &Result<Loaded, KmodError>),
) -> LoadReport {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return LoadReport {
                failures: vec![KmodError::ReadList {
                    path: list.to_owned(),
                    source,
                }],
                ..LoadReport::default()
            };
        }
    };
    let (entries, bad) = parse_list(list, &text);
    let mut report = load_all(&entries, each);
    report.failures.splice(0..0, bad);
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_lines_comments_and_params() {
        let text = "\
# dependencies first
/lib/modules/6.1.0-47-cloud-amd64/kernel/drivers/md/dm-mod.ko
  /lib/modules/x/kernel/drivers/md/dm-verity.ko   # verity

/lib/modules/x/kernel/drivers/watchdog/softdog.ko soft_margin=30 nowayout=1
relative/thing.ko
/etc/passwd
/lib/modules/x/kernel/fs/erofs/erofs.ko.xz
";
        let (entries, errors) = parse_list(Path::new("/etc/cairn/modules"), text);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "/lib/modules/6.1.0-47-cloud-amd64/kernel/drivers/md/dm-mod.ko",
                "/lib/modules/x/kernel/drivers/md/dm-verity.ko",
                "/lib/modules/x/kernel/drivers/watchdog/softdog.ko",
                "/lib/modules/x/kernel/fs/erofs/erofs.ko.xz",
            ]
        );
        assert_eq!(entries[2].params, "soft_margin=30 nowayout=1");
        assert_eq!(entries[0].params, "");
        assert!(!entries[0].compressed());
        assert!(entries[3].compressed());
        assert_eq!(errors.len(), 2);
        let msg = errors[0].to_string();
        assert!(
            msg.contains("line 6") && msg.contains("relative/thing.ko"),
            "{msg}"
        );
        assert!(errors[1].to_string().contains("line 7"));
    }

    #[test]
    fn failures_name_the_module_and_continue() {
        let entries = vec![
            ModuleEntry {
                path: "/nonexistent/a.ko".into(),
                params: String::new(),
            },
            ModuleEntry {
                path: "/nonexistent/b.ko".into(),
                params: String::new(),
            },
        ];
        let mut seen = Vec::new();
        let report = load_all(&entries, |e, _| seen.push(e.path.clone()));
        assert_eq!(seen.len(), 2, "every module is attempted");
        assert_eq!(report.failures.len(), 2);
        assert_eq!(report.inserted, 0);
        let msg = report.failures[1].to_string();
        assert!(msg.starts_with("module /nonexistent/b.ko:"), "{msg}");
    }

    #[test]
    fn a_missing_list_loads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = load_list_file(&dir.path().join("modules"), |_, _| {});
        assert_eq!((r.inserted, r.already_loaded, r.failures.len()), (0, 0, 0));
        let list = dir.path().join("modules2");
        std::fs::write(&list, "bogus\n/nonexistent/x.ko\n").unwrap();
        let r = load_list_file(&list, |_, _| {});
        assert_eq!(r.failures.len(), 2);
        assert!(matches!(r.failures[0], KmodError::BadLine { line: 1, .. }));
        assert!(matches!(r.failures[1], KmodError::Open { .. }));
    }

    #[test]
    fn insert_error_shows_errno_name_and_text() {
        let e = KmodError::Insert {
            path: "/m/x.ko".into(),
            errno: Errno::ENOEXEC,
        };
        assert_eq!(
            e.to_string(),
            "module /m/x.ko: finit_module: ENOEXEC: Exec format error"
        );
    }
}

//! The boot entries cairn keeps on the ESP (`<esp>/EFI/Linux/cairn-<version>[+<left>[-<done>]].efi`):
//! listing them, deleting every one but the booted entry, free space, and syncing.

use std::path::{Path, PathBuf};

use cairn_update::entries::{self, Entry};

/// Why an ESP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EspError {
    let path = path.to_path_buf();
    move |source| EspError::Io { path, source }
}

/// One entry file on the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFile {
    /// The parsed name.
    pub entry: Entry,
    /// Its file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The mounted ESP.
#[derive(Debug, Clone)]
pub struct Esp {
    root: PathBuf,
}

impl Esp {
    /// The ESP mounted at `root` (e.g. `/efi`).
    pub fn new(root: &Path) -> Self {
        Esp {
            root: root.to_path_buf(),
        }
    }

    /// `<esp>/EFI/Linux`.
    pub fn dir(&self) -> PathBuf {
        self.root.join(entries::DIR)
    }

    /// cairn's entries, in systemd-boot's order (the default first); other files are left out.
    pub fn entries(&self) -> Result<Vec<EntryFile>, EspError> {
        let dir = self.dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut out = Vec::new();
        for e in read {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(entry) = Entry::parse(&name) else {
                continue;
            };
            let size = e.metadata().map_err(io(&e.path()))?.len();
            out.push(EntryFile { entry, name, size });
        }
        let mut sorted: Vec<Entry> = out.iter().map(|f| f.entry.clone()).collect();
        entries::sort(&mut sorted);
        out.sort_by_key(|f| sorted.iter().position(|e| *e == f.entry));
        Ok(out)
    }

    /// The entry of the running `version`, if there is one: a good one first, else a bad one
    /// (the last try of a counted boot, or the last-resort boot of a demoted entry).
    pub fn booted(&self, version: &str) -> Result<Option<EntryFile>, EspError> {
        let mut of: Vec<EntryFile> = self
            .entries()?
            .into_iter()
            .filter(|f| f.entry.version == version)
            .collect();
        of.sort_by_key(|f| f.entry.is_bad());
        Ok(of.into_iter().next())
    }

    /// Renames entry `from` to `to` under `EFI/Linux`, then makes it durable (fsync of the
    /// directory, `syncfs`). A rename within one directory is atomic: at every instant
    /// exactly one of the two names exists.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), EspError> {
        let dir = self.dir();
        let target = dir.join(to);
        std::fs::rename(dir.join(from), &target).map_err(io(&target))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        self.sync()
    }

    /// Files that an update deletes: every cairn entry except `keep`, and stale temp files.
    pub fn deletable(&self, keep: &str) -> Result<Vec<(String, u64)>, EspError> {
        let dir = self.dir();
        let mut out = Vec::new();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&dir)(e)),
        };
        for e in read {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = Entry::parse(&name).is_some()
                || (name.starts_with(".cairn-") && name.ends_with(".tmp"));
            if ours && name != keep {
                let size = e.metadata().map_err(io(&e.path()))?.len();
                out.push((name, size));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the named files under `EFI/Linux`.
    pub fn delete(&self, names: &[String]) -> Result<(), EspError> {
        for name in names {
            let path = self.dir().join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(())
    }

    /// Bytes available to us on the ESP's filesystem.
    pub fn free_bytes(&self) -> Result<u64, EspError> {
        let dir = self.dir();
        let st = nix::sys::statvfs::statvfs(&dir).map_err(|e| io(&dir)(std::io::Error::from(e)))?;
        Ok(st.blocks_available().saturating_mul(st.fragment_size()))
    }

    /// Flushes the ESP's filesystem (`syncfs`).
    pub fn sync(&self) -> Result<(), EspError> {
        let dir = self.dir();
        let f = std::fs::File::open(&dir).map_err(io(&dir))?;
        nix::unistd::syncfs(&f).map_err(|e| io(&dir)(std::io::Error::from(e)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_boot_order_and_finds_what_to_delete() {
        let t = tempfile::tempdir().unwrap();
        let esp = Esp::new(t.path());
        assert!(esp.entries().unwrap().is_empty());
        std::fs::create_dir_all(esp.dir()).unwrap();
        for name in [
            "cairn-0.1.0.efi",
            "cairn-0.2.0+0-3.efi",
            "cairn-0.3.0+2-1.efi",
            ".cairn-0.4.0.tmp",
            "other.efi",
        ] {
            std::fs::write(esp.dir().join(name), name).unwrap();
        }
        let names: Vec<String> = esp.entries().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "cairn-0.3.0+2-1.efi",
                "cairn-0.1.0.efi",
                "cairn-0.2.0+0-3.efi"
            ]
        );
        assert_eq!(
            esp.booted("0.1.0").unwrap().unwrap().name,
            "cairn-0.1.0.efi"
        );
        assert_eq!(
            esp.booted("0.2.0").unwrap().unwrap().name,
            "cairn-0.2.0+0-3.efi",
            "a bad entry of the running version is its last try"
        );
        assert_eq!(esp.booted("0.4.0").unwrap(), None);
        let deletable: Vec<String> = esp
            .deletable("cairn-0.1.0.efi")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            deletable,
            [
                ".cairn-0.4.0.tmp",
                "cairn-0.2.0+0-3.efi",
                "cairn-0.3.0+2-1.efi"
            ]
        );
        esp.delete(&deletable).unwrap();
        esp.sync().unwrap();
        assert!(esp.free_bytes().unwrap() > 0);
        let left: Vec<String> = esp.entries().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(left, ["cairn-0.1.0.efi"]);
        assert!(esp.dir().join("other.efi").exists(), "foreign files stay");
    }

    #[test]
    fn a_good_entry_is_preferred_and_renames_keep_the_contents() {
        let t = tempfile::tempdir().unwrap();
        let esp = Esp::new(t.path());
        std::fs::create_dir_all(esp.dir()).unwrap();
        for name in ["cairn-0.5.0+0.efi", "cairn-0.4.0+3.efi"] {
            std::fs::write(esp.dir().join(name), name).unwrap();
        }
        assert_eq!(
            esp.booted("0.5.0").unwrap().unwrap().name,
            "cairn-0.5.0+0.efi"
        );
        esp.rename("cairn-0.5.0+0.efi", "cairn-0.5.0.efi").unwrap();
        assert_eq!(
            std::fs::read_to_string(esp.dir().join("cairn-0.5.0.efi")).unwrap(),
            "cairn-0.5.0+0.efi"
        );
        assert!(!esp.dir().join("cairn-0.5.0+0.efi").exists());
        let err = esp.rename("cairn-9.efi", "cairn-9+0.efi").unwrap_err();
        assert!(err.to_string().contains("cairn-9+0.efi"), "{err}");
    }
}

//! The EFI system partition on a disk-booted box: mounted on `/efi` so
//! cairn-updated can install UKIs, and read here to tell whether this boot
//! runs a boot-counted entry (`EFI/Linux/cairn-<v>+<left>[-<done>].efi`)
//! and to bless it. Paths are passed in so tests use a temp directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_update::entries::{self, Entry};
use nix::mount::{MsFlags, mount};

use crate::blockdev::{self, Roots};
use crate::cmdline::DeviceSpec;

/// Where the ESP is mounted in machine mode.
pub const MOUNT_POINT: &str = "/efi";
/// The ESP's GPT partition name.
pub const LABEL: &str = "esp";
/// Its filesystem.
pub const FSTYPE: &str = "vfat";
/// Mount options: `flush` writes data out early, so a power cut right after
/// an update loses as little as possible.
pub const OPTIONS: &str = "flush";
/// How long to wait for the ESP partition (it sits on the root's disk,
/// which is present by then).
pub const WAIT: Duration = Duration::from_secs(2);

/// Problems with the ESP.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// The partition was not found.
    #[error(transparent)]
    Device(#[from] blockdev::BlockdevError),
    /// The mount failed.
    #[error("mounting {device} ({FSTYPE}) on {target}: {source}")]
    Mount {
        /// The partition.
        device: PathBuf,
        /// The mount point.
        target: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// The UKI directory could not be read.
    #[error("reading {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// There is no counted entry of this version to bless.
    #[error("{dir} has no boot-counted entry for version {version}")]
    NoCountedEntry {
        /// The UKI directory.
        dir: PathBuf,
        /// The running version.
        version: String,
    },
    /// Renaming or syncing failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step: "renaming", "syncing".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Finds the partition labelled `esp` (preferring the disk `/` is on) and
/// mounts it on `target`. Returns the partition's node.
pub fn mount_esp(roots: &Roots, target: &Path) -> Result<PathBuf, EspError> {
    let prefer = blockdev::disk_of_mount(roots, Path::new("/"));
    let spec = DeviceSpec::PartLabel(LABEL.into());
    let (_, node) = blockdev::wait_for(roots, &spec, prefer.as_deref(), WAIT, blockdev::POLL)?;
    let _ = std::fs::create_dir_all(target);
    mount(
        Some(&node),
        target,
        Some(FSTYPE),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(OPTIONS),
    )
    .map_err(|source| EspError::Mount {
        device: node.clone(),
        target: target.to_owned(),
        source,
    })?;
    Ok(node)
}

/// The UKI directory of an ESP mounted at `esp`.
pub fn uki_dir(esp: &Path) -> PathBuf {
    esp.join(entries::DIR)
}

/// The cairn entries in `dir`, with their file names.
pub fn list(dir: &Path) -> Result<Vec<(String, Entry)>, EspError> {
    let rd = std::fs::read_dir(dir).map_err(|source| EspError::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut out: Vec<(String, Entry)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let entry = Entry::parse(&name)?;
            Some((name, entry))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The boot-counted entry of `version` among `entries`: the one systemd-boot
/// counted down last (most tries done) when there are several. `None` when
/// the version has no counted entry (a blessed boot).
pub fn counted_entry<'a>(entries: &'a [(String, Entry)], version: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.version == version)
        .filter_map(|e| e.tries.map(|t| (t.done, e)))
        .max_by_key(|(done, _)| *done)
        .map(|(_, e)| e)
}

/// The counted entry this boot runs, read from the ESP at `esp`.
pub fn booted_counted_entry(esp: &Path, version: &str) -> Result<Option<Entry>, EspError> {
    let all = list(&uki_dir(esp))?;
    Ok(counted_entry(&all, version).cloned())
}

/// Blesses the counted entry of `version` on the ESP at `esp`: renames it to
/// its blessed name, then syncs the directory and the filesystem. Returns
/// the old and new file names.
pub fn bless(esp: &Path, version: &str) -> Result<(String, String), EspError> {
    let dir = uki_dir(esp);
    let all = list(&dir)?;
    let entry = counted_entry(&all, version).ok_or_else(|| EspError::NoCountedEntry {
        dir: dir.clone(),
        version: version.to_owned(),
    })?;
    let (from, to) = (entry.file_name(), entry.blessed().file_name());
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| EspError::Io { what, path, source }
    };
    std::fs::rename(dir.join(&from), dir.join(&to)).map_err(io("renaming", &dir.join(&from)))?;
    let d = std::fs::File::open(&dir).map_err(io("opening", &dir))?;
    d.sync_all().map_err(io("syncing", &dir))?;
    nix::unistd::syncfs(&d).map_err(|e| EspError::Io {
        what: "syncing the filesystem of",
        path: dir.clone(),
        source: e.into(),
    })?;
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn esp_with(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let dir = uki_dir(d.path());
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), f.as_bytes()).unwrap();
        }
        d
    }

    #[test]
    fn finds_the_counted_entry_of_the_running_version() {
        let esp = esp_with(&[
            "cairn-0.1.0.efi",
            "cairn-0.2.0+2-1.efi",
            ".cairn-0.3.0.tmp",
            "other.efi",
        ]);
        let e = booted_counted_entry(esp.path(), "0.2.0").unwrap().unwrap();
        assert_eq!(e.file_name(), "cairn-0.2.0+2-1.efi");
        assert_eq!(booted_counted_entry(esp.path(), "0.1.0").unwrap(), None);
        assert_eq!(booted_counted_entry(esp.path(), "0.3.0").unwrap(), None);
        // The last try: systemd-boot made it +0-3 before starting it.
        let esp = esp_with(&["cairn-0.1.0.efi", "cairn-0.2.0+0-3.efi"]);
        let e = booted_counted_entry(esp.path(), "0.2.0").unwrap().unwrap();
        assert!(e.is_bad());
        // Two counted entries of one version (never made by cairn): the one counted most.
        let esp = esp_with(&["cairn-0.2.0+3.efi", "cairn-0.2.0+1-2.efi"]);
        let e = booted_counted_entry(esp.path(), "0.2.0").unwrap().unwrap();
        assert_eq!(e.file_name(), "cairn-0.2.0+1-2.efi");
        // No ESP directory at all is an error the caller logs.
        let empty = tempfile::tempdir().unwrap();
        let err = booted_counted_entry(empty.path(), "0.2.0").unwrap_err();
        assert!(err.to_string().contains("EFI/Linux"), "{err}");
    }

    #[test]
    fn blessing_renames_and_keeps_the_contents() {
        let esp = esp_with(&["cairn-0.1.0.efi", "cairn-0.2.0+2-1.efi"]);
        let (from, to) = bless(esp.path(), "0.2.0").unwrap();
        assert_eq!(from, "cairn-0.2.0+2-1.efi");
        assert_eq!(to, "cairn-0.2.0.efi");
        let dir = uki_dir(esp.path());
        assert_eq!(
            std::fs::read_to_string(dir.join("cairn-0.2.0.efi")).unwrap(),
            "cairn-0.2.0+2-1.efi"
        );
        assert!(!dir.join("cairn-0.2.0+2-1.efi").exists());
        assert!(dir.join("cairn-0.1.0.efi").exists(), "others untouched");
        // Nothing left to bless.
        let err = bless(esp.path(), "0.2.0").unwrap_err();
        assert!(matches!(err, EspError::NoCountedEntry { .. }), "{err}");
    }
}

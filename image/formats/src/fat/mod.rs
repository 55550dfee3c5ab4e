//! FAT filesystem images, for the EFI system partition.
//!
//! A small write-once FAT16/FAT32 writer: the whole volume except file contents is
//! computed in memory ([`layout`]), then written into a fresh sparse file with the
//! contents streamed in. Reproducible by construction: the volume id is derived from a
//! caller-supplied seed, every entry carries one caller-supplied timestamp
//! (SOURCE_DATE_EPOCH), entries are sorted and clusters allocated contiguously in that
//! order. Names that are not plain upper-case 8.3 names get VFAT long-name entries.
//!
//! Why not the `fatfs` crate: its released 0.3.6 writes long-name entries in front of
//! every directory's `.` and `..` entries, which `fsck.fat` reports as a corrupt
//! directory (rust-fatfs PR 100 / issue 117; fixed only in its unreleased master).
//! The tests still use `fatfs` as an independent reader.

pub mod geometry;
pub mod layout;
pub mod names;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::dos_time;
pub use crate::source::FileSource;
use crate::sparse::{self, SparseCopyError};
pub use geometry::Geometry;

/// Smallest image that is formatted as FAT32 (smaller ones get FAT16).
pub const FAT32_MIN_SIZE: u64 = 64 << 20;
/// Sector size of the images.
pub const SECTOR_SIZE: u64 = 512;

/// Which FAT variant an image is formatted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    /// 16-bit FAT, for images under [`FAT32_MIN_SIZE`] (small test images).
    Fat16,
    /// 32-bit FAT, the usual ESP format.
    Fat32,
}

impl FatKind {
    /// The variant used for an image of `size_bytes`.
    pub fn for_size(size_bytes: u64) -> FatKind {
        if size_bytes >= FAT32_MIN_SIZE {
            FatKind::Fat32
        } else {
            FatKind::Fat16
        }
    }
}

/// One file to put into the filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatFile {
    /// Path inside the filesystem, `/`-separated, e.g. `EFI/BOOT/BOOTX64.EFI`; parent
    /// directories are created as needed.
    pub path: String,
    /// The file's content.
    pub source: FileSource,
}

impl FatFile {
    /// A file copied from `source` on the build host.
    pub fn from_path(path: impl Into<String>, source: impl Into<PathBuf>) -> FatFile {
        FatFile {
            path: path.into(),
            source: FileSource::Path(source.into()),
        }
    }

    /// A file with the given bytes.
    pub fn from_bytes(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> FatFile {
        FatFile {
            path: path.into(),
            source: FileSource::Bytes(bytes.into()),
        }
    }
}

/// Parameters of the filesystem itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatOptions {
    /// Image size in bytes, a multiple of 512; at least about 2.1 MiB (FAT16's minimum
    /// cluster count), FAT32 from 64 MiB.
    pub size_bytes: u64,
    /// Volume label, 1 to 11 characters of `A-Z 0-9 _ -` and space (lower case is
    /// upper-cased).
    pub label: String,
    /// Seed the volume id is derived from (e.g. the image name and version).
    pub seed: Vec<u8>,
    /// Timestamp for every entry, in seconds since the Unix epoch (SOURCE_DATE_EPOCH);
    /// clamped to the FAT range 1980..2107.
    pub timestamp: i64,
}

/// What can go wrong while building a FAT image.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// The image size is not a whole number of sectors, or no legal FAT16/FAT32 layout fits.
    #[error(
        "FAT image size {size} is not usable: it must be a multiple of {SECTOR_SIZE} bytes, \
         at least about 2.1 MiB and below 2 TiB"
    )]
    BadSize {
        /// The requested size.
        size: u64,
    },
    /// The volume label cannot be stored.
    #[error("FAT volume label `{label}` must be 1 to 11 characters of A-Z 0-9 _ - and space")]
    BadLabel {
        /// The rejected label.
        label: String,
    },
    /// A path inside the filesystem is not usable.
    #[error("path `{path}` in the FAT image is invalid: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Two files have the same path (FAT compares names case-insensitively).
    #[error("path `{path}` is given twice (FAT names ignore case)")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// A path is used both as a file and as a directory.
    #[error("`{path}` is a file but another entry needs it to be a directory")]
    FileIsDirectory {
        /// The file path.
        path: String,
    },
    /// A file is larger than FAT's 4 GiB limit.
    #[error("`{path}` is {size} bytes, FAT files hold less than 4 GiB")]
    FileTooLarge {
        /// Path inside the filesystem.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The FAT16 root directory region is full.
    #[error("the FAT16 root directory needs {entries} entries, it holds {max}")]
    TooManyRootEntries {
        /// Entries needed (long names take several).
        entries: usize,
        /// Entries available.
        max: usize,
    },
    /// The files do not fit.
    #[error("the files need {needed} bytes of clusters, the FAT volume has {available}")]
    NoSpace {
        /// Bytes the files and directories need, in whole clusters.
        needed: u64,
        /// Bytes of data clusters in the volume.
        available: u64,
    },
    /// A source file could not be read.
    #[error("cannot read `{source_path}` for `{path}` in the FAT image: {source}")]
    ReadSource {
        /// Path inside the filesystem.
        path: String,
        /// The file on the build host.
        source_path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A source file changed size between planning and copying.
    #[error("`{source_path}` for `{path}` in the FAT image changed size while being copied")]
    SourceChanged {
        /// Path inside the filesystem.
        path: String,
        /// The file on the build host.
        source_path: PathBuf,
    },
    /// Writing the image failed.
    #[error("cannot write FAT image `{image}`: {source}")]
    Write {
        /// The image file.
        image: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The FAT volume id (serial number) for `seed`: the first four bytes of a SHA-256.
pub fn volume_id(seed: &[u8]) -> u32 {
    let digest = Sha256::new()
        .chain_update(b"cairn-fat-volume-id\0")
        .chain_update(seed)
        .finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The 11-byte, space-padded label field for `label`, or `None` if it cannot be stored.
pub fn encode_label(label: &str) -> Option<[u8; 11]> {
    let upper = label.to_ascii_uppercase();
    let valid = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || b"_- ".contains(&c);
    if upper.trim().is_empty() || upper.len() > 11 || !upper.bytes().all(valid) {
        return None;
    }
    let mut field = [b' '; 11];
    field[..upper.len()].copy_from_slice(upper.as_bytes());
    Some(field)
}

/// Checks a path inside the filesystem.
fn check_path(path: &str) -> Result<(), FatError> {
    let bad = |reason| FatError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.starts_with('/') {
        return Err(bad("must be relative (no leading `/`)"));
    }
    for part in path.split('/') {
        if part.is_empty() {
            return Err(bad("has an empty component"));
        }
        if part == "." || part == ".." {
            return Err(bad("has a `.` or `..` component"));
        }
        if part.encode_utf16().count() > 255 {
            return Err(bad("has a component longer than 255 UTF-16 units"));
        }
        if part
            .chars()
            .any(|c| c.is_control() || "\"*:<>?\\|".contains(c))
        {
            return Err(bad("has a character FAT does not allow"));
        }
        if part.ends_with('.') || part.ends_with(' ') {
            return Err(bad("has a component ending in `.` or space"));
        }
    }
    Ok(())
}

/// Builds a FAT image at `out` (replacing it) holding `files`, and returns the FAT variant
/// used. Everything is checked before the image is created; a failed write removes it.
pub fn build_fat(out: &Path, files: &[FatFile], options: &FatOptions) -> Result<FatKind, FatError> {
    let label = encode_label(&options.label).ok_or_else(|| FatError::BadLabel {
        label: options.label.clone(),
    })?;
    let geometry = Geometry::for_size(options.size_bytes)?;
    let mut sorted: Vec<&FatFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut inputs = Vec::with_capacity(sorted.len());
    for file in &sorted {
        check_path(&file.path)?;
        let size = match &file.source {
            FileSource::Bytes(bytes) => bytes.len() as u64,
            FileSource::Path(source_path) => std::fs::metadata(source_path)
                .map_err(|source| FatError::ReadSource {
                    path: file.path.clone(),
                    source_path: source_path.clone(),
                    source,
                })?
                .len(),
        };
        inputs.push((file.path.clone(), size));
    }
    let plan = layout::plan(
        geometry,
        &inputs,
        label,
        volume_id(&options.seed),
        dos_time::from_unix(options.timestamp),
    )?;
    let result = write_image(out, &plan, &sorted);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result.map(|()| geometry.kind)
}

fn write_image(out: &Path, plan: &layout::Plan, files: &[&FatFile]) -> Result<(), FatError> {
    let write_error = |source| FatError::Write {
        image: out.to_owned(),
        source,
    };
    let g = &plan.geometry;
    // A fresh file of the full size reads as zeros: only non-zero blocks are written.
    let mut image = File::create(out).map_err(write_error)?;
    image
        .set_len(u64::from(g.total_sectors) * SECTOR_SIZE)
        .map_err(write_error)?;
    let put =
        |image: &mut File, offset: u64, bytes: &[u8]| sparse::write_sparse(image, offset, bytes);
    put(&mut image, 0, &plan.boot_sector).map_err(write_error)?;
    if g.kind == FatKind::Fat32 {
        put(&mut image, SECTOR_SIZE, &plan.fs_info).map_err(write_error)?;
        put(&mut image, 6 * SECTOR_SIZE, &plan.boot_sector).map_err(write_error)?;
        put(&mut image, 7 * SECTOR_SIZE, &plan.fs_info).map_err(write_error)?;
    }
    for index in 0..geometry::FAT_COUNT {
        put(&mut image, g.fat_offset(index), &plan.fat).map_err(write_error)?;
    }
    for (offset, bytes) in &plan.directories {
        put(&mut image, *offset, bytes).map_err(write_error)?;
    }
    for placed in &plan.files {
        let file = files[placed.input];
        match &file.source {
            FileSource::Bytes(bytes) => {
                put(&mut image, placed.offset, bytes).map_err(write_error)?
            }
            FileSource::Path(source_path) => {
                let read_error = |source| FatError::ReadSource {
                    path: file.path.clone(),
                    source_path: source_path.clone(),
                    source,
                };
                let changed = || FatError::SourceChanged {
                    path: file.path.clone(),
                    source_path: source_path.clone(),
                };
                let mut source = File::open(source_path).map_err(read_error)?;
                let copied =
                    sparse::copy_sparse(&mut source, &mut image, placed.offset, placed.size)
                        .map_err(|e| match e {
                            SparseCopyError::Read(e) => read_error(e),
                            SparseCopyError::Write(e) => write_error(e),
                            SparseCopyError::TooLong { .. } => changed(),
                        })?;
                if copied != placed.size {
                    return Err(changed());
                }
            }
        }
    }
    image.flush().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_id_follows_the_seed() {
        assert_eq!(volume_id(b"a"), volume_id(b"a"));
        assert_ne!(volume_id(b"a"), volume_id(b"b"));
    }

    #[test]
    fn labels_are_upper_cased_padded_and_checked() {
        assert_eq!(encode_label("esp"), Some(*b"ESP        "));
        assert_eq!(encode_label("CAIRN-BOOT1"), Some(*b"CAIRN-BOOT1"));
        assert_eq!(encode_label(""), None);
        assert_eq!(encode_label("   "), None);
        assert_eq!(encode_label("TWELVE-CHARS"), None);
        assert_eq!(encode_label("A/B"), None);
    }

    #[test]
    fn paths_are_checked() {
        for (path, bad) in [
            ("EFI/BOOT/BOOTX64.EFI", false),
            ("loader/entries/cairn 1.conf", false),
            ("/EFI", true),
            ("EFI//x", true),
            ("EFI/../x", true),
            ("a:b", true),
            ("trailing.", true),
            ("x/", true),
        ] {
            assert_eq!(check_path(path).is_err(), bad, "{path}");
        }
    }
}

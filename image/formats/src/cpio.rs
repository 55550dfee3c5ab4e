//! cpio "newc" (`070701`) archives, the format the Linux kernel unpacks as an initramfs.
//!
//! Reproducible by construction: entries are written sorted by path (so every parent
//! directory comes before its children, and missing parents are added as 0755
//! directories), uid and gid are 0, one caller-supplied mtime is used for every entry,
//! and inode numbers are assigned 1, 2, 3… in that order. Each header and each file body
//! is padded to 4 bytes and the archive ends with a `TRAILER!!!` entry. The kernel also
//! accepts several such archives concatenated, compressed or not.
//!
//! ```text
//! header: "070701" then 13 fields of 8 hex digits:
//!   ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
//! name (namesize bytes, NUL included), padded so header + name is a multiple of 4
//! data (filesize bytes: file content or symlink target), padded to a multiple of 4
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

pub use crate::source::FileSource;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const TRAILER: &str = "TRAILER!!!";
/// Mode of directories added because a deeper entry needs them.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File(FileSource),
    /// A symbolic link to `target` (stored as given, relative or absolute).
    Symlink {
        /// Where the link points.
        target: String,
    },
    /// A character device node such as `dev/console` (5:1).
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// One entry as added to an [`Archive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Normalised path inside the archive, without a leading `/`.
    pub path: String,
    /// Permission bits (including setuid/setgid/sticky), at most `0o7777`; symlinks are
    /// always `0o777`.
    pub mode: u32,
    /// What the entry is.
    pub kind: EntryKind,
}

impl Entry {
    fn type_bits(&self) -> u32 {
        match self.kind {
            EntryKind::Directory => S_IFDIR,
            EntryKind::File(_) => S_IFREG,
            EntryKind::Symlink { .. } => S_IFLNK,
            EntryKind::CharDevice { .. } => S_IFCHR,
        }
    }
}

/// What can go wrong while assembling or writing a cpio archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A path is not usable inside the archive.
    #[error("archive path `{path}` is invalid: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The same path was added twice.
    #[error("archive path `{path}` is added twice")]
    DuplicatePath {
        /// The normalised path.
        path: String,
    },
    /// A path's parent is an entry that is not a directory.
    #[error("`{parent}` is not a directory, so `{path}` cannot be inside it")]
    ParentNotDirectory {
        /// The entry that needs a directory parent.
        path: String,
        /// The non-directory entry in the way.
        parent: String,
    },
    /// Permission bits outside `0o7777`.
    #[error("mode {mode:#o} of `{path}` has bits outside 0o7777")]
    BadMode {
        /// The entry.
        path: String,
        /// The rejected mode.
        mode: u32,
    },
    /// An empty symlink target.
    #[error("symlink `{path}` has an empty target")]
    EmptySymlink {
        /// The symlink.
        path: String,
    },
    /// A file or the mtime does not fit the format's 32-bit fields.
    #[error("`{path}` is {size} bytes, newc cpio holds at most 4 GiB - 1 per file")]
    FileTooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A source file could not be read.
    #[error("cannot read `{source_path}` for `{path}` in the cpio archive: {source}")]
    ReadSource {
        /// The entry.
        path: String,
        /// The file on the build host.
        source_path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A source file changed size while it was copied.
    #[error("`{source_path}` for `{path}` in the cpio archive changed size while being copied")]
    SourceChanged {
        /// The entry.
        path: String,
        /// The file on the build host.
        source_path: PathBuf,
    },
    /// Writing to the output failed.
    #[error("cannot write the cpio archive: {0}")]
    Write(#[source] io::Error),
    /// Writing the archive file failed.
    #[error("cannot write cpio archive `{path}`: {source}")]
    WriteFile {
        /// The archive file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Turns `path` into the archive's form: no leading `/` or `./`, no empty, `.` or `..`
/// components, no NUL.
pub fn normalize_path(path: &str) -> Result<String, CpioError> {
    let bad = |reason| CpioError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut rest = path.trim_start_matches('/');
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped.trim_start_matches('/');
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("names no entry (empty or the root itself)"));
    }
    for part in rest.split('/') {
        match part {
            "" => return Err(bad("has an empty component")),
            "." | ".." => return Err(bad("has a `.` or `..` component")),
            _ => {}
        }
    }
    Ok(rest.to_owned())
}

/// Ancestors of a normalised path, nearest last: `a/b/c` → `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// A newc archive being assembled: entries keyed by normalised path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Archive {
    mtime: u32,
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    /// An empty archive whose entries all get modification time `mtime` (seconds since
    /// the epoch, e.g. SOURCE_DATE_EPOCH).
    pub fn new(mtime: u32) -> Archive {
        Archive {
            mtime,
            entries: BTreeMap::new(),
        }
    }

    /// Adds a directory with permission bits `mode` (e.g. `0o755`).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.add(path, mode, EntryKind::Directory)
    }

    /// Adds a regular file with permission bits `mode` and content from `source`.
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        source: impl Into<FileSource>,
    ) -> Result<(), CpioError> {
        self.add(path, mode, EntryKind::File(source.into()))
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.add(
            path,
            0o777,
            EntryKind::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// Adds a character device node `major:minor` with permission bits `mode`.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.add(path, mode, EntryKind::CharDevice { major, minor })
    }

    /// Adds any entry; the other `add_*` methods call this.
    pub fn add(&mut self, path: &str, mode: u32, kind: EntryKind) -> Result<(), CpioError> {
        let path = normalize_path(path)?;
        if mode & !0o7777 != 0 {
            return Err(CpioError::BadMode { path, mode });
        }
        if let EntryKind::Symlink { target } = &kind {
            if target.is_empty() {
                return Err(CpioError::EmptySymlink { path });
            }
        }
        if let EntryKind::File(FileSource::Bytes(bytes)) = &kind {
            if u32::try_from(bytes.len()).is_err() {
                return Err(CpioError::FileTooLarge {
                    path,
                    size: bytes.len() as u64,
                });
            }
        }
        if self.entries.contains_key(&path) {
            return Err(CpioError::DuplicatePath { path });
        }
        for ancestor in ancestors(&path) {
            if let Some(entry) = self.entries.get(ancestor) {
                if entry.kind != EntryKind::Directory {
                    return Err(CpioError::ParentNotDirectory {
                        path: path.clone(),
                        parent: ancestor.to_owned(),
                    });
                }
            }
        }
        if kind != EntryKind::Directory {
            let prefix = format!("{path}/");
            if let Some((child, _)) = self.entries.range(prefix.clone()..).next() {
                if child.starts_with(&prefix) {
                    return Err(CpioError::ParentNotDirectory {
                        path: child.clone(),
                        parent: path,
                    });
                }
            }
        }
        self.entries
            .insert(path.clone(), Entry { path, mode, kind });
        Ok(())
    }

    /// Every entry that will be written, in archive order: the added ones plus the missing
    /// parent directories (mode [`IMPLICIT_DIR_MODE`]), sorted by path.
    pub fn entries(&self) -> Vec<Entry> {
        let mut all: BTreeMap<&str, Entry> = BTreeMap::new();
        for (path, entry) in &self.entries {
            for ancestor in ancestors(path) {
                all.entry(ancestor).or_insert_with(|| Entry {
                    path: ancestor.to_owned(),
                    mode: IMPLICIT_DIR_MODE,
                    kind: EntryKind::Directory,
                });
            }
            all.insert(path, entry.clone());
        }
        all.into_values().collect()
    }

    /// Writes the archive to `out` and returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: W) -> Result<u64, CpioError> {
        let mut out = CountingWriter {
            inner: out,
            count: 0,
        };
        for (index, entry) in self.entries().iter().enumerate() {
            let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
            self.write_entry(&mut out, ino, entry)?;
        }
        write_header(&mut out, &Header::trailer()).map_err(CpioError::Write)?;
        out.flush().map_err(CpioError::Write)?;
        Ok(out.count)
    }

    /// Writes the archive gzip-compressed at `level` (0–9) to `out`, with a fixed gzip
    /// header (mtime 0, OS "Unix", no name) so the output is reproducible. Returns the
    /// uncompressed size.
    pub fn write_gzip_to<W: Write>(&self, out: W, level: u32) -> Result<u64, CpioError> {
        let mut encoder = GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(out, Compression::new(level.min(9)));
        let size = self.write_to(&mut encoder)?;
        encoder.finish().map_err(CpioError::Write)?;
        Ok(size)
    }

    /// Writes the archive to the file `path` (replacing it), gzip-compressed when `gzip`
    /// is `Some(level)`. A failed write removes the file.
    pub fn write_file(&self, path: &Path, gzip: Option<u32>) -> Result<(), CpioError> {
        let file_error = |source| CpioError::WriteFile {
            path: path.to_owned(),
            source,
        };
        let result = File::create(path).map_err(file_error).and_then(|file| {
            let out = io::BufWriter::new(file);
            let written = match gzip {
                Some(level) => self.write_gzip_to(out, level),
                None => self.write_to(out),
            };
            written.map_err(|e| match e {
                CpioError::Write(source) => file_error(source),
                other => other,
            })
        });
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result.map(|_| ())
    }

    fn write_entry<W: Write>(&self, out: &mut W, ino: u32, entry: &Entry) -> Result<(), CpioError> {
        let path = &entry.path;
        let mut header = Header {
            ino,
            mode: entry.type_bits() | entry.mode,
            nlink: 1,
            mtime: self.mtime,
            filesize: 0,
            rdevmajor: 0,
            rdevminor: 0,
            name: path,
        };
        match &entry.kind {
            EntryKind::Directory => {
                header.nlink = 2;
                write_header(out, &header).map_err(CpioError::Write)
            }
            EntryKind::CharDevice { major, minor } => {
                header.rdevmajor = *major;
                header.rdevminor = *minor;
                write_header(out, &header).map_err(CpioError::Write)
            }
            EntryKind::Symlink { target } => {
                header.filesize = target.len() as u32;
                write_header(out, &header).map_err(CpioError::Write)?;
                write_padded(out, target.as_bytes()).map_err(CpioError::Write)
            }
            EntryKind::File(FileSource::Bytes(bytes)) => {
                header.filesize = bytes.len() as u32;
                write_header(out, &header).map_err(CpioError::Write)?;
                write_padded(out, bytes).map_err(CpioError::Write)
            }
            EntryKind::File(FileSource::Path(source_path)) => {
                let read_error = |source| CpioError::ReadSource {
                    path: path.clone(),
                    source_path: source_path.clone(),
                    source,
                };
                let changed = || CpioError::SourceChanged {
                    path: path.clone(),
                    source_path: source_path.clone(),
                };
                let mut file = File::open(source_path).map_err(read_error)?;
                let size = file.metadata().map_err(read_error)?.len();
                header.filesize = u32::try_from(size).map_err(|_| CpioError::FileTooLarge {
                    path: path.clone(),
                    size,
                })?;
                write_header(out, &header).map_err(CpioError::Write)?;
                let copied = copy_exactly(&mut file, out, size).map_err(|e| match e {
                    CopyError::Read(e) => read_error(e),
                    CopyError::Write(e) => CpioError::Write(e),
                })?;
                let mut probe = [0u8; 1];
                let grew = file.read(&mut probe).map_err(read_error)? != 0;
                if copied != size || grew {
                    return Err(changed());
                }
                out.write_all(&[0u8; 3][..padding(size)])
                    .map_err(CpioError::Write)
            }
        }
    }
}

/// The header fields that vary; uid, gid, device and check fields are always 0.
struct Header<'a> {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
    name: &'a str,
}

impl Header<'_> {
    fn trailer() -> Header<'static> {
        Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdevmajor: 0,
            rdevminor: 0,
            name: TRAILER,
        }
    }
}

/// Bytes of zero padding after `len` bytes to reach a multiple of 4.
fn padding(len: u64) -> usize {
    ((4 - len % 4) % 4) as usize
}

/// Encodes a header with its name and padding.
fn encode_header(header: &Header<'_>) -> Vec<u8> {
    let namesize = header.name.len() as u32 + 1;
    let fields = [
        header.ino,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        header.mtime,
        header.filesize,
        0, // devmajor
        0, // devminor
        header.rdevmajor,
        header.rdevminor,
        namesize,
        0, // check
    ];
    let mut bytes = b"070701".to_vec();
    for field in fields {
        bytes.extend(format!("{field:08x}").bytes());
    }
    bytes.extend(header.name.as_bytes());
    bytes.push(0);
    bytes.resize(bytes.len() + padding(bytes.len() as u64), 0);
    bytes
}

fn write_header<W: Write>(out: &mut W, header: &Header<'_>) -> io::Result<()> {
    out.write_all(&encode_header(header))
}

fn write_padded<W: Write>(out: &mut W, data: &[u8]) -> io::Result<()> {
    out.write_all(data)?;
    out.write_all(&[0u8; 3][..padding(data.len() as u64)])
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies at most `limit` bytes; returns how many were copied.
fn copy_exactly<R: Read, W: Write>(
    source: &mut R,
    out: &mut W,
    limit: u64,
) -> Result<u64, CopyError> {
    let mut buffer = vec![0u8; 1 << 16];
    let mut copied = 0u64;
    while copied < limit {
        let want = buffer.len().min((limit - copied) as usize);
        let n = match source.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buffer[..n]).map_err(CopyError::Write)?;
        copied += n as u64;
    }
    Ok(copied)
}

/// Counts the bytes passed through, for the size [`Archive::write_to`] returns.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_path("/init").unwrap(), "init");
        assert_eq!(normalize_path("./usr/bin/").unwrap(), "usr/bin");
        assert_eq!(normalize_path(".//./etc").unwrap(), "etc");
        for bad in ["", "/", ".", "a//b", "a/../b", "a/./b", "a\0b"] {
            assert!(
                matches!(normalize_path(bad), Err(CpioError::BadPath { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_layout_matches_newc() {
        let header = Header {
            ino: 1,
            mode: S_IFREG | 0o755,
            nlink: 1,
            mtime: 0x1234_5678,
            filesize: 5,
            rdevmajor: 0,
            rdevminor: 0,
            name: "init",
        };
        let bytes = encode_header(&header);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with(
            "070701\
             00000001000081ed00000000000000000000000112345678\
             00000005000000000000000000000000000000000000000500000000init\0"
        ));
        // 110 + 5 = 115, padded to 116.
        assert_eq!(bytes.len(), 116);
        assert_eq!(
            encode_header(&Header::trailer()).len(),
            124,
            "110 + 11 padded to 4"
        );
    }

    #[test]
    fn entries_are_sorted_with_implicit_parents() {
        let mut archive = Archive::new(0);
        archive.add_file("usr/bin/haproxy", 0o755, "x").unwrap();
        archive.add_symlink("bin", "usr/bin").unwrap();
        archive.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        archive.add_dir("usr", 0o700).unwrap();
        let listed: Vec<(String, u32)> = archive
            .entries()
            .into_iter()
            .map(|e| (e.path, e.mode))
            .collect();
        assert_eq!(
            listed,
            [
                ("bin".into(), 0o777),
                ("dev".into(), 0o755),
                ("dev/console".into(), 0o600),
                ("usr".into(), 0o700),
                ("usr/bin".into(), 0o755),
                ("usr/bin/haproxy".into(), 0o755),
            ]
        );
    }

    #[test]
    fn rejects_conflicting_entries() {
        let mut archive = Archive::new(0);
        archive.add_file("etc/hostname", 0o644, "box").unwrap();
        assert!(matches!(
            archive.add_file("/etc/hostname", 0o644, "again"),
            Err(CpioError::DuplicatePath { path }) if path == "etc/hostname"
        ));
        assert!(matches!(
            archive.add_file("etc/hostname/x", 0o644, "x"),
            Err(CpioError::ParentNotDirectory { parent, .. }) if parent == "etc/hostname"
        ));
        archive.add_file("lib/x.so", 0o644, "x").unwrap();
        assert!(matches!(
            archive.add_symlink("lib", "usr/lib"),
            Err(CpioError::ParentNotDirectory { path, parent }) if path == "lib/x.so" && parent == "lib"
        ));
        assert!(matches!(
            archive.add_file("init", 0o100_755, "x"),
            Err(CpioError::BadMode { .. })
        ));
        assert!(matches!(
            archive.add_symlink("sbin", ""),
            Err(CpioError::EmptySymlink { .. })
        ));
    }

    #[test]
    fn output_is_padded_and_ends_with_the_trailer() {
        let mut archive = Archive::new(1_700_000_000);
        archive.add_file("init", 0o755, "#!x").unwrap();
        let mut out = Vec::new();
        let size = archive.write_to(&mut out).unwrap();
        assert_eq!(size, out.len() as u64);
        assert_eq!(out.len() % 4, 0);
        // init header (110 + 5 → 116), data 3 → 4, trailer 110 + 11 → 124 (121 padded).
        assert_eq!(out.len(), 116 + 4 + 124);
        let trailer = &out[120..];
        assert!(trailer.starts_with(b"07070100000000"));
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    }

    #[test]
    fn gzip_output_is_reproducible_and_has_a_fixed_header() {
        let mut archive = Archive::new(0);
        archive.add_file("init", 0o755, vec![b'a'; 10_000]).unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        archive.write_gzip_to(&mut a, 6).unwrap();
        archive.write_gzip_to(&mut b, 6).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            &a[..4],
            &[0x1f, 0x8b, 8, 0],
            "gzip magic, deflate, no flags"
        );
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime 0");
        assert_eq!(a[9], 3, "OS Unix");
        let mut plain = Vec::new();
        archive.write_to(&mut plain).unwrap();
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(a.as_slice())
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, plain);
    }
}

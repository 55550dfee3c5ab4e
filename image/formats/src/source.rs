//! Where a file's bytes come from when it is put into an image.

use std::path::PathBuf;

/// The content of a file going into an image (FAT or cpio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    /// Copied from a file on the build host when the image is written.
    Path(PathBuf),
    /// Given in memory.
    Bytes(Vec<u8>),
}

impl From<Vec<u8>> for FileSource {
    fn from(bytes: Vec<u8>) -> FileSource {
        FileSource::Bytes(bytes)
    }
}

impl From<&str> for FileSource {
    fn from(text: &str) -> FileSource {
        FileSource::Bytes(text.as_bytes().to_vec())
    }
}

impl From<PathBuf> for FileSource {
    fn from(path: PathBuf) -> FileSource {
        FileSource::Path(path)
    }
}

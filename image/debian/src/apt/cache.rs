//! The project-owned `.deb` cache: where a package's file lives and whether it is already there
//! and intact.
//!
//! A cached file is reused only when its size and SHA-256 match apt's signed index, so a warm
//! build never needs the network and a truncated or tampered file is fetched again.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::index::IndexRecord;

/// Errors from inspecting the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading a cached file failed.
    #[error("cannot read cached package `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, CacheError> {
    let read_err = |source| CacheError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Where `record`'s `.deb` lives in the cache directory `dir`.
pub fn cached_path(dir: &Path, record: &IndexRecord) -> PathBuf {
    dir.join(record.deb_file_name())
}

/// Whether `path` holds exactly the `.deb` `record` describes (size, then SHA-256).
///
/// A missing file is `Ok(false)`; a file that differs is also `Ok(false)`, so it is fetched again.
pub fn matches_index(path: &Path, record: &IndexRecord) -> Result<bool, CacheError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == record.size => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(CacheError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    Ok(sha256_file(path)? == record.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: u64, sha256: &str) -> IndexRecord {
        IndexRecord {
            package: "foo".into(),
            version: "1:1.0-1".into(),
            architecture: "amd64".into(),
            sha256: sha256.into(),
            size,
            filename: "pool/main/f/foo/foo_1.0-1_amd64.deb".into(),
        }
    }

    // sha256("abc")
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), ABC);
    }

    #[test]
    fn cache_hits_need_matching_size_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(3, ABC);
        let p = cached_path(dir.path(), &r);
        assert_eq!(p.file_name().unwrap(), "foo_1%3a1.0-1_amd64.deb");
        assert!(!matches_index(&p, &r).unwrap(), "missing file");
        std::fs::write(&p, b"abc").unwrap();
        assert!(matches_index(&p, &r).unwrap());
        std::fs::write(&p, b"abd").unwrap();
        assert!(!matches_index(&p, &r).unwrap(), "same size, other digest");
        std::fs::write(&p, b"ab").unwrap();
        assert!(!matches_index(&p, &r).unwrap(), "truncated");
    }
}

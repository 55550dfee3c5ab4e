//! Checking a root image chunk by chunk against its manifest, so no
//! unverified byte ever reaches the inactive slot.

use sha2::{Digest, Sha256};

use crate::hex;
use crate::manifest::RootImage;

/// Why a chunk or the whole image is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// More chunks than the manifest lists.
    #[error("chunk {index}: the manifest lists only {count} chunks")]
    Extra {
        /// Index of the surplus chunk.
        index: usize,
        /// Chunks in the manifest.
        count: usize,
    },
    /// A chunk of the wrong length.
    #[error("chunk {index}: {got} bytes, expected {expected}")]
    Length {
        /// Chunk index.
        index: usize,
        /// Its length per the manifest.
        expected: u64,
        /// Its length as given.
        got: u64,
    },
    /// A chunk whose sha256 differs from the manifest's.
    #[error("chunk {index}: sha256 {got} does not match the manifest's {expected}")]
    Hash {
        /// Chunk index.
        index: usize,
        /// sha256 per the manifest.
        expected: String,
        /// sha256 of the bytes given.
        got: String,
    },
    /// `finish` before every chunk was seen.
    #[error("only {seen} of {count} chunks were received")]
    Incomplete {
        /// Chunks seen.
        seen: usize,
        /// Chunks in the manifest.
        count: usize,
    },
    /// Every chunk matched but the whole-file sha256 does not.
    #[error("whole image sha256 {got} does not match the manifest's {expected}")]
    Whole {
        /// sha256 per the manifest.
        expected: String,
        /// sha256 of everything given.
        got: String,
    },
}

/// Checks a root image chunk by chunk against a manifest before anything is written.
#[derive(Debug, Clone)]
pub struct ChunkVerifier {
    size: u64,
    chunk_size: u64,
    chunks: Vec<String>,
    sha256: String,
    next: usize,
    whole: Sha256,
}

impl ChunkVerifier {
    /// A verifier for `root` (a validated manifest's root image).
    pub fn new(root: &RootImage) -> ChunkVerifier {
        ChunkVerifier {
            size: root.size,
            chunk_size: root.chunk_size.max(1),
            chunks: root.chunks.clone(),
            sha256: root.sha256.clone(),
            next: 0,
            whole: Sha256::new(),
        }
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Length of chunk `index` (the last one may be short; 0 past the end).
    pub fn chunk_len(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.chunk_size);
        self.size.saturating_sub(start).min(self.chunk_size)
    }

    /// Byte offset of chunk `index` in the image.
    pub fn chunk_offset(&self, index: usize) -> u64 {
        (index as u64).saturating_mul(self.chunk_size)
    }

    /// Index of the chunk `verify_next` expects.
    pub fn next_index(&self) -> usize {
        self.next
    }

    /// Checks the next chunk, in order; the error names the chunk index.
    /// Keeps a running sha256 of everything accepted.
    pub fn verify_next(&mut self, data: &[u8]) -> Result<(), ChunkError> {
        let index = self.next;
        let Some(expected) = self.chunks.get(index) else {
            return Err(ChunkError::Extra {
                index,
                count: self.chunks.len(),
            });
        };
        let want = self.chunk_len(index);
        if data.len() as u64 != want {
            return Err(ChunkError::Length {
                index,
                expected: want,
                got: data.len() as u64,
            });
        }
        let got = hex::sha256(data);
        if &got != expected {
            return Err(ChunkError::Hash {
                index,
                expected: expected.clone(),
                got,
            });
        }
        self.whole.update(data);
        self.next += 1;
        Ok(())
    }

    /// Succeeds when every chunk was seen and the whole sha256 matches.
    pub fn finish(self) -> Result<(), ChunkError> {
        if self.next != self.chunks.len() {
            return Err(ChunkError::Incomplete {
                seen: self.next,
                count: self.chunks.len(),
            });
        }
        let got = hex::encode(&self.whole.finalize());
        if got != self.sha256 {
            return Err(ChunkError::Whole {
                expected: self.sha256,
                got,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Verity, hash_chunks};

    const CS: usize = 4096;

    fn image() -> Vec<u8> {
        (0..(3 * CS + 100)).map(|i| (i * 7 % 256) as u8).collect()
    }

    fn root_of(data: &[u8]) -> RootImage {
        let (size, sha256, chunks) = hash_chunks(data, CS as u64).unwrap();
        RootImage {
            file: "root.img".into(),
            size,
            sha256,
            chunk_size: CS as u64,
            chunks,
            verity: Verity {
                root_hash: "00".repeat(32),
                salt: String::new(),
                data_blocks: 1,
                hash_offset: 4096,
            },
        }
    }

    #[test]
    fn a_good_image_passes_chunk_by_chunk() {
        let data = image();
        let mut v = ChunkVerifier::new(&root_of(&data));
        assert_eq!(v.chunk_count(), 4);
        assert_eq!(
            (0..5).map(|i| v.chunk_len(i)).collect::<Vec<_>>(),
            vec![4096, 4096, 4096, 100, 0]
        );
        assert_eq!(v.chunk_offset(3), 3 * 4096);
        for c in data.chunks(CS) {
            v.verify_next(c).unwrap();
        }
        assert_eq!(v.next_index(), 4);
        v.finish().unwrap();
    }

    #[test]
    fn a_flipped_bit_names_its_chunk() {
        let data = image();
        let root = root_of(&data);
        for k in 0..4 {
            let mut bad = data.clone();
            bad[k * CS + 50] ^= 0x10;
            let mut v = ChunkVerifier::new(&root);
            let mut err = None;
            for (i, c) in bad.chunks(CS).enumerate() {
                if let Err(e) = v.verify_next(c) {
                    err = Some((i, e));
                    break;
                }
            }
            let (i, e) = err.unwrap();
            assert_eq!(i, k);
            assert!(
                matches!(e, ChunkError::Hash { index, .. } if index == k),
                "{e}"
            );
            assert!(
                e.to_string().starts_with(&format!("chunk {k}: sha256 ")),
                "{e}"
            );
        }
    }

    #[test]
    fn short_and_extra_data_are_refused() {
        let data = image();
        let root = root_of(&data);
        let mut v = ChunkVerifier::new(&root);
        assert_eq!(
            v.verify_next(&data[..CS - 1]),
            Err(ChunkError::Length {
                index: 0,
                expected: 4096,
                got: 4095
            })
        );
        // The refused chunk was not counted; the right one still passes.
        v.verify_next(&data[..CS]).unwrap();
        v.verify_next(&data[CS..2 * CS]).unwrap();
        v.verify_next(&data[2 * CS..3 * CS]).unwrap();
        // Last chunk with extra bytes.
        let mut long = data[3 * CS..].to_vec();
        long.push(0);
        assert_eq!(
            v.verify_next(&long),
            Err(ChunkError::Length {
                index: 3,
                expected: 100,
                got: 101
            })
        );
        v.verify_next(&data[3 * CS..]).unwrap();
        // A chunk past the end.
        assert_eq!(
            v.verify_next(&[0u8; 10]),
            Err(ChunkError::Extra { index: 4, count: 4 })
        );
        v.finish().unwrap();
    }

    #[test]
    fn finish_needs_every_chunk_and_the_whole_hash() {
        let data = image();
        let root = root_of(&data);
        let mut v = ChunkVerifier::new(&root);
        v.verify_next(&data[..CS]).unwrap();
        assert_eq!(
            v.finish(),
            Err(ChunkError::Incomplete { seen: 1, count: 4 })
        );

        // Chunk hashes that match but a whole-file hash that does not.
        let mut wrong = root.clone();
        wrong.sha256 = "00".repeat(32);
        let mut v = ChunkVerifier::new(&wrong);
        for c in data.chunks(CS) {
            v.verify_next(c).unwrap();
        }
        assert!(matches!(v.finish(), Err(ChunkError::Whole { .. })));
    }
}

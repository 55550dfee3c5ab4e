//! Copying file contents into a fresh image while seeking over all-zero chunks, so the
//! image stays sparse on disk (a fresh file reads as zeros where nothing was written).

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Why a sparse copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum SparseCopyError {
    /// Reading the source failed.
    #[error("reading the source failed: {0}")]
    Read(#[source] io::Error),
    /// Writing the target failed.
    #[error("writing the target failed: {0}")]
    Write(#[source] io::Error),
    /// The source holds more than the limit (it grew after it was measured).
    #[error("the source holds at least {copied} bytes, more than the {limit} allowed")]
    TooLong {
        /// Bytes seen so far.
        copied: u64,
        /// The limit.
        limit: u64,
    },
}

/// Copies `source` to `offset` in `target`, seeking over all-zero chunks (the target must
/// read as zeros there already), and fails if the source holds more than `limit` bytes.
/// Returns the number of bytes copied.
pub fn copy_sparse<R: Read, W: Write + Seek>(
    source: &mut R,
    target: &mut W,
    offset: u64,
    limit: u64,
) -> Result<u64, SparseCopyError> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let filled = read_full(source, &mut buffer).map_err(SparseCopyError::Read)?;
        if filled == 0 {
            return Ok(copied);
        }
        let chunk = &buffer[..filled];
        if copied + filled as u64 > limit {
            return Err(SparseCopyError::TooLong {
                copied: copied + filled as u64,
                limit,
            });
        }
        if chunk.iter().any(|&b| b != 0) {
            target
                .seek(SeekFrom::Start(offset + copied))
                .map_err(SparseCopyError::Write)?;
            target.write_all(chunk).map_err(SparseCopyError::Write)?;
        }
        copied += filled as u64;
    }
}

/// Writes `bytes` at `offset`, seeking over the all-zero 4 KiB blocks.
pub fn write_sparse<W: Write + Seek>(target: &mut W, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let mut copied = 0;
    for block in bytes.chunks(4096) {
        if block.iter().any(|&b| b != 0) {
            target.seek(SeekFrom::Start(offset + copied))?;
            target.write_all(block)?;
        }
        copied += block.len() as u64;
    }
    Ok(())
}

/// Reads until `buffer` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(source: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_zero_chunks_and_enforces_the_limit() {
        let mut source = vec![0u8; 3 << 20];
        source[(2 << 20) + 7] = 0xAB;
        let mut target = io::Cursor::new(Vec::new());
        let copied = copy_sparse(&mut source.as_slice(), &mut target, 512, 4 << 20).unwrap();
        assert_eq!(copied, 3 << 20);
        let written = target.into_inner();
        // Only the third chunk was written (the cursor zero-fills the gap it seeked over).
        assert_eq!(written.len(), 512 + (3 << 20));
        assert_eq!(written[512 + (2 << 20) + 7], 0xAB);
        let mut small = io::Cursor::new(Vec::new());
        assert!(matches!(
            copy_sparse(&mut source.as_slice(), &mut small, 0, 1 << 20),
            Err(SparseCopyError::TooLong { limit, .. }) if limit == 1 << 20
        ));
    }

    #[test]
    fn write_sparse_leaves_zero_blocks_unwritten() {
        let mut bytes = vec![0u8; 3 * 4096];
        bytes[4096] = 1;
        let mut target = io::Cursor::new(vec![0xEEu8; 4 * 4096]);
        write_sparse(&mut target, 4096, &bytes).unwrap();
        let written = target.into_inner();
        assert_eq!(written[4096], 0xEE, "first zero block skipped");
        assert_eq!(written[2 * 4096], 1);
        assert_eq!(written[3 * 4096], 0xEE, "last zero block skipped");
    }
}

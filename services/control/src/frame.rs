//! Message framing checks on the server's incoming byte stream.
//!
//! zbus sizes its receive buffer from the lengths a message's fixed header declares (up to
//! the D-Bus maximum of 128 MiB) and fills it with zeros before the body arrives. An
//! unprivileged client could thus make PID 1 commit 128 MiB per connection by sending 16
//! bytes. [`FrameGuard`] sees every byte before zbus does, and rejects a header that declares
//! more than its limit (or is malformed) before the header's last byte is handed over.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------+---------------+---------------+---------------+
//! |  endianness   | message type  |     flags     | major version |
//! |  'l' or 'B'   |    1 ..= 4    |               |       1       |
//! +---------------+---------------+---------------+---------------+
//! |                     body length (bytes)                       |
//! +---------------------------------------------------------------+
//! |                            serial                             |
//! +---------------------------------------------------------------+
//! |            header fields array length (bytes)                 |
//! +---------------------------------------------------------------+
//! |  header fields ..., padded to a multiple of 8 | body ...      |
//! +---------------------------------------------------------------+
//! ```

/// Size of the fixed part of a D-Bus message header.
const FIXED_HEADER_LEN: usize = 16;

/// Why the byte stream was rejected.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// First byte was neither `l` nor `B`.
    #[error("invalid endianness byte {0:#04x} in message header")]
    BadEndianness(u8),
    /// Message type outside 1..=4.
    #[error("invalid message type {0} in message header")]
    BadType(u8),
    /// Protocol version other than 1.
    #[error("unsupported D-Bus protocol version {0}")]
    BadVersion(u8),
    /// Declared size above the limit.
    #[error("message of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Header, padding and body as declared.
        declared: u64,
        /// The guard's limit.
        limit: u64,
    },
}

/// Follows message boundaries in a stream of D-Bus messages and checks each fixed header.
#[derive(Debug)]
pub(crate) struct FrameGuard {
    header: [u8; FIXED_HEADER_LEN],
    header_len: usize,
    /// Bytes of the current message still to come after its fixed header.
    remaining: u64,
    limit: u64,
}

impl FrameGuard {
    /// A guard for a stream that starts at a message boundary; messages may be at most `limit`
    /// bytes long in total.
    pub(crate) fn new(limit: u64) -> Self {
        FrameGuard {
            header: [0; FIXED_HEADER_LEN],
            header_len: 0,
            remaining: 0,
            limit,
        }
    }

    /// Accounts for `bytes`, the next bytes of the stream. After an error the stream must be
    /// dropped: the guard no longer knows where messages start.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                // `take` fits in u64: it is at most `self.remaining`.
                self.remaining -= take as u64;
                bytes = &bytes[take..];
                continue;
            }
            let take = (FIXED_HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == FIXED_HEADER_LEN {
                self.header_len = 0;
                self.remaining = self.check_header()?;
            }
        }
        Ok(())
    }

    /// Validates the buffered fixed header; returns how many bytes follow it.
    fn check_header(&self) -> Result<u64, FrameError> {
        let h = &self.header;
        let read_u32 = match h[0] {
            b'l' => u32::from_le_bytes,
            b'B' => u32::from_be_bytes,
            other => return Err(FrameError::BadEndianness(other)),
        };
        if !(1..=4).contains(&h[1]) {
            return Err(FrameError::BadType(h[1]));
        }
        if h[3] != 1 {
            return Err(FrameError::BadVersion(h[3]));
        }
        let body_len = u64::from(read_u32([h[4], h[5], h[6], h[7]]));
        let fields_len = u64::from(read_u32([h[12], h[13], h[14], h[15]]));
        let header_len = FIXED_HEADER_LEN as u64 + fields_len;
        let padding = (8 - header_len % 8) % 8;
        let total = header_len + padding + body_len;
        if total > self.limit {
            return Err(FrameError::TooLarge {
                declared: total,
                limit: self.limit,
            });
        }
        Ok(total - FIXED_HEADER_LEN as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A fixed header with the given lengths, little-endian method call.
    fn header(body_len: u32, fields_len: u32) -> Vec<u8> {
        let mut h = vec![b'l', 1, 0, 1];
        h.extend_from_slice(&body_len.to_le_bytes());
        h.extend_from_slice(&7u32.to_le_bytes());
        h.extend_from_slice(&fields_len.to_le_bytes());
        h
    }

    /// A whole message: header, fields, padding to 8, body (content irrelevant to the guard).
    fn message(body_len: u32, fields_len: u32) -> Vec<u8> {
        let mut m = header(body_len, fields_len);
        m.resize(16 + fields_len as usize, 0xaa);
        while m.len() % 8 != 0 {
            m.push(0);
        }
        m.resize(m.len() + body_len as usize, 0xbb);
        m
    }

    #[test]
    fn accepts_consecutive_messages_split_anywhere() {
        let mut stream = message(5, 13);
        stream.extend(message(0, 8));
        stream.extend(message(100, 40));
        for chunk in [1, 3, 7, 16, 17, 1000] {
            let mut guard = FrameGuard::new(1024);
            for piece in stream.chunks(chunk) {
                assert_eq!(guard.feed(piece), Ok(()), "chunk size {chunk}");
            }
            assert_eq!(guard.header_len, 0);
            assert_eq!(guard.remaining, 0, "ends at a message boundary");
        }
    }

    #[test]
    fn rejects_oversized_declaration_on_the_last_header_byte() {
        let mut guard = FrameGuard::new(4096);
        let h = header(128 << 20, 8);
        assert_eq!(guard.feed(&h[..15]), Ok(()));
        assert_eq!(
            guard.feed(&h[15..]),
            Err(FrameError::TooLarge {
                declared: 16 + 8 + (128 << 20),
                limit: 4096
            })
        );
    }

    #[test]
    fn counts_header_padding_and_big_endian_lengths() {
        // 16 + 13 = 29, padded to 32, plus 64 body bytes: 96.
        let mut be = vec![b'B', 1, 0, 1];
        be.extend_from_slice(&64u32.to_be_bytes());
        be.extend_from_slice(&1u32.to_be_bytes());
        be.extend_from_slice(&13u32.to_be_bytes());
        assert_eq!(FrameGuard::new(96).feed(&be), Ok(()));
        assert_eq!(
            FrameGuard::new(95).feed(&be),
            Err(FrameError::TooLarge {
                declared: 96,
                limit: 95
            })
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        let mut h = header(0, 8);
        h[0] = b'x';
        assert_eq!(
            FrameGuard::new(64).feed(&h),
            Err(FrameError::BadEndianness(b'x'))
        );
        let mut h = header(0, 8);
        h[1] = 0;
        assert_eq!(FrameGuard::new(64).feed(&h), Err(FrameError::BadType(0)));
        let mut h = header(0, 8);
        h[3] = 2;
        assert_eq!(FrameGuard::new(64).feed(&h), Err(FrameError::BadVersion(2)));
    }

    #[test]
    fn maximal_lengths_do_not_overflow() {
        let h = header(u32::MAX, u32::MAX);
        assert_eq!(FrameGuard::new(u64::MAX).feed(&h), Ok(()));
        assert!(matches!(
            FrameGuard::new(1 << 16).feed(&h),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

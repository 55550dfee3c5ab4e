//! Netlink and nfnetlink framing: messages, attributes, and the kernel's ACK/error replies.
//! No I/O; the layouts follow `linux/netlink.h` and `linux/netfilter/nfnetlink.h`.
//!
//! ```text
//! nlmsghdr (16 bytes, host byte order)      nfgenmsg (4 bytes)
//! +----------+--------+--------+-----+-----+--------+---------+--------------+
//! | len u32  | type   | flags  | seq | pid | family | version | res_id (BE)  |
//! |          | u16    | u16    | u32 | u32 | u8     | u8 = 0  | u16          |
//! +----------+--------+--------+-----+-----+--------+---------+--------------+
//! then attributes: nlattr { len u16, type u16 } + payload, each padded to 4 bytes
//! (len counts header and payload, not the padding).
//! ```

use std::fmt;

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// `NLMSG_ERROR`: an error or (errno 0) an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_CAPPED` (in an error reply: the echoed request is only its header).
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` (in an error reply: extended-ACK attributes follow).
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`.
pub const NLM_F_APPEND: u16 = 0x800;

/// `NLA_F_NESTED`, set on nested attributes as libmnl does.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Mask of the attribute type bits (without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`).
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `NLMSGERR_ATTR_MSG`: the kernel's reason text in an extended ACK.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`).
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFNL_SUBSYS_NFTABLES`.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `AF_UNSPEC`, the family of batch delimiters.
pub const AF_UNSPEC: u8 = 0;

/// Rounds `len` up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds the attributes of one message (or of one nest).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs {
    bytes: Vec<u8>,
}

impl Attrs {
    /// An empty attribute list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an attribute with a raw payload, padded to 4 bytes.
    pub fn bytes(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        // Payloads here are addresses, names and nests of a few hundred bytes at most.
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len16.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.bytes.resize(align(self.bytes.len()), 0);
        self
    }

    /// Appends a 32-bit value in network byte order (what nf_tables expects for its
    /// numeric attributes: registers, lengths, keys, hook numbers, verdicts).
    pub fn be32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Appends a NUL-terminated string.
    pub fn string(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.bytes(kind, &payload)
    }

    /// Appends a nested attribute (flagged `NLA_F_NESTED`) holding `inner`.
    pub fn nest(&mut self, kind: u16, inner: &Attrs) -> &mut Self {
        self.bytes(kind | NLA_F_NESTED, &inner.bytes)
    }

    /// The encoded attributes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One nfnetlink request, before it gets its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `nlmsg_type`: `(subsystem << 8) | message`, or a batch delimiter.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nfgen_family` (`NFPROTO_*`).
    pub family: u8,
    /// `res_id`, host value (encoded big-endian).
    pub res_id: u16,
    /// The attributes.
    pub attrs: Attrs,
    /// What this message does, for error messages (e.g. `new chain drain`).
    pub label: String,
}

impl Request {
    /// Appends this message with sequence number `seq` to `out`.
    pub fn encode_into(&self, seq: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let len = NLMSG_HDRLEN + NFGENMSG_LEN + self.attrs.as_bytes().len();
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        out.extend_from_slice(&len32.to_ne_bytes());
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        // Port 0: the kernel fills in the sender's port.
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.push(self.family);
        out.push(0); // NFNETLINK_V0
        out.extend_from_slice(&self.res_id.to_be_bytes());
        out.extend_from_slice(self.attrs.as_bytes());
        debug_assert_eq!(out.len() - start, len);
    }
}

/// The batch's bytes: every request, with consecutive sequence numbers from `first_seq`.
pub fn encode_batch(requests: &[Request], first_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = first_seq;
    for request in requests {
        request.encode_into(seq, &mut out);
        seq = seq.wrapping_add(1);
    }
    out
}

/// A netlink message header as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `nlmsg_len`.
    pub len: u32,
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
}

/// A datagram or attribute list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a header needs, or a length pointing past the end.
    #[error("{what} at offset {offset}: length {len} does not fit in {available} bytes")]
    Length {
        /// Which structure.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its declared (or minimum) length.
        len: usize,
        /// Bytes left from its start.
        available: usize,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Splits a datagram into its messages: each header with its payload (after the header).
pub fn split_messages(datagram: &[u8]) -> Result<Vec<(Header, &[u8])>, DecodeError> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let available = datagram.len() - offset;
        if available < NLMSG_HDRLEN {
            return Err(DecodeError::Length {
                what: "netlink header",
                offset,
                len: NLMSG_HDRLEN,
                available,
            });
        }
        let header = Header {
            len: u32_at(datagram, offset),
            kind: u16_at(datagram, offset + 4),
            flags: u16_at(datagram, offset + 6),
            seq: u32_at(datagram, offset + 8),
            pid: u32_at(datagram, offset + 12),
        };
        let len = header.len as usize;
        if len < NLMSG_HDRLEN || len > available {
            return Err(DecodeError::Length {
                what: "netlink message",
                offset,
                len,
                available,
            });
        }
        messages.push((header, &datagram[offset + NLMSG_HDRLEN..offset + len]));
        offset += align(len);
    }
    Ok(messages)
}

/// One decoded attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The type without flag bits.
    pub kind: u16,
    /// Whether `NLA_F_NESTED` was set.
    pub nested: bool,
    /// The payload (without padding).
    pub payload: &'a [u8],
}

/// Splits an attribute list. Checks that every length fits and that the list ends exactly
/// at the end of `bytes` after padding.
pub fn split_attrs(bytes: &[u8]) -> Result<Vec<Attr<'_>>, DecodeError> {
    let mut attrs = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let available = bytes.len() - offset;
        if available < NLA_HDRLEN {
            return Err(DecodeError::Length {
                what: "attribute header",
                offset,
                len: NLA_HDRLEN,
                available,
            });
        }
        let len = usize::from(u16_at(bytes, offset));
        let kind = u16_at(bytes, offset + 2);
        if len < NLA_HDRLEN || len > available {
            return Err(DecodeError::Length {
                what: "attribute",
                offset,
                len,
                available,
            });
        }
        attrs.push(Attr {
            kind: kind & NLA_TYPE_MASK,
            nested: kind & NLA_F_NESTED != 0,
            payload: &bytes[offset + NLA_HDRLEN..offset + len],
        });
        offset += align(len);
    }
    Ok(attrs)
}

/// The kernel's answer to one request: `NLMSG_ERROR` with errno 0 (ACK) or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The sequence number of the request answered.
    pub seq: u32,
    /// 0 for an ACK, else a positive errno.
    pub errno: i32,
    /// The kernel's reason text from the extended ACK, if it gave one.
    pub message: Option<String>,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {} errno {}", self.seq, self.errno)?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

/// Decodes the payload of an `NLMSG_ERROR` message whose header is `header`.
///
/// ```text
/// payload: error i32 | echoed request nlmsghdr (+ its payload unless NLM_F_CAPPED)
///          | extended-ACK attributes if NLM_F_ACK_TLVS
/// ```
pub fn parse_answer(header: &Header, payload: &[u8]) -> Result<Answer, DecodeError> {
    let min = 4 + NLMSG_HDRLEN;
    if payload.len() < min {
        return Err(DecodeError::Length {
            what: "error message",
            offset: 0,
            len: min,
            available: payload.len(),
        });
    }
    let error = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let mut message = None;
    if header.flags & NLM_F_ACK_TLVS != 0 {
        let echoed_len = u32_at(payload, 4) as usize;
        let skip = if header.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            align(echoed_len)
        };
        if let Some(tlvs) = payload.get(4 + skip..) {
            for attr in split_attrs(tlvs)? {
                if attr.kind == NLMSGERR_ATTR_MSG {
                    let text = attr.payload.split(|b| *b == 0).next().unwrap_or(&[]);
                    message = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    Ok(Answer {
        seq: header.seq,
        errno: error.saturating_neg(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_is_padded_but_length_excludes_padding() {
        let mut attrs = Attrs::new();
        attrs.string(1, "drain");
        // len 4 + 6 = 10, padded to 12.
        assert_eq!(
            attrs.as_bytes(),
            &[10, 0, 1, 0, b'd', b'r', b'a', b'i', b'n', 0, 0, 0]
        );
    }

    #[test]
    fn be32_is_network_order_and_nest_is_flagged() {
        let mut inner = Attrs::new();
        inner.be32(2, 0xffff_ff6a);
        let mut outer = Attrs::new();
        outer.nest(4, &inner);
        assert_eq!(
            outer.as_bytes(),
            &[12, 0, 4, 0x80, 8, 0, 2, 0, 0xff, 0xff, 0xff, 0x6a]
        );
    }

    #[test]
    fn request_header_layout() {
        let mut attrs = Attrs::new();
        attrs.string(1, "t");
        let request = Request {
            kind: 0x0a00,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            family: 2,
            res_id: 10,
            attrs,
            label: "x".into(),
        };
        let mut out = Vec::new();
        request.encode_into(7, &mut out);
        let mut expected = Vec::new();
        expected.extend_from_slice(&28u32.to_ne_bytes());
        expected.extend_from_slice(&0x0a00u16.to_ne_bytes());
        expected.extend_from_slice(&5u16.to_ne_bytes());
        expected.extend_from_slice(&7u32.to_ne_bytes());
        expected.extend_from_slice(&0u32.to_ne_bytes());
        expected.extend_from_slice(&[2, 0, 0, 10]);
        expected.extend_from_slice(&6u16.to_ne_bytes());
        expected.extend_from_slice(&1u16.to_ne_bytes());
        expected.extend_from_slice(&[b't', 0, 0, 0]);
        assert_eq!(out, expected);
    }

    #[test]
    fn split_rejects_overlong_lengths() {
        let bytes = [200u8, 0, 1, 0, 0, 0, 0, 0];
        assert!(split_attrs(&bytes).is_err());
        let mut datagram = 100u32.to_ne_bytes().to_vec();
        datagram.extend_from_slice(&[0; 12]);
        assert!(split_messages(&datagram).is_err());
    }

    fn error_datagram(errno: i32, seq: u32, text: Option<&str>) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&(-errno).to_ne_bytes());
        // Echoed request header only (capped).
        payload.extend_from_slice(&20u32.to_ne_bytes());
        payload.extend_from_slice(&0x0a06u16.to_ne_bytes());
        payload.extend_from_slice(&5u16.to_ne_bytes());
        payload.extend_from_slice(&seq.to_ne_bytes());
        payload.extend_from_slice(&0u32.to_ne_bytes());
        let mut flags = NLM_F_CAPPED;
        if let Some(text) = text {
            flags |= NLM_F_ACK_TLVS;
            let mut tlvs = Attrs::new();
            tlvs.string(NLMSGERR_ATTR_MSG, text);
            payload.extend_from_slice(tlvs.as_bytes());
        }
        let mut datagram = Vec::new();
        let len = u32::try_from(NLMSG_HDRLEN + payload.len()).expect("small");
        datagram.extend_from_slice(&len.to_ne_bytes());
        datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        datagram.extend_from_slice(&flags.to_ne_bytes());
        datagram.extend_from_slice(&seq.to_ne_bytes());
        datagram.extend_from_slice(&4242u32.to_ne_bytes());
        datagram.extend_from_slice(&payload);
        datagram
    }

    #[test]
    fn parses_ack_and_error_with_reason() {
        let ack = error_datagram(0, 9, None);
        let messages = split_messages(&ack).expect("parses");
        assert_eq!(messages.len(), 1);
        let (header, payload) = messages[0];
        assert_eq!(header.kind, NLMSG_ERROR);
        assert_eq!(header.pid, 4242);
        assert_eq!(
            parse_answer(&header, payload).expect("parses"),
            Answer {
                seq: 9,
                errno: 0,
                message: None
            }
        );

        let error = error_datagram(libc::ENOENT, 11, Some("no such expression"));
        let messages = split_messages(&error).expect("parses");
        let (header, payload) = messages[0];
        assert_eq!(
            parse_answer(&header, payload).expect("parses"),
            Answer {
                seq: 11,
                errno: libc::ENOENT,
                message: Some("no such expression".into())
            }
        );
    }
}

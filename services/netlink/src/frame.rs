//! Netlink framing without I/O: encoding one request, splitting a received datagram into
//! messages, and [`Exchange`], which follows the replies to one request (by sequence number)
//! until its ACK, its error or the end of its dump.
//!
//! ```text
//!  0               8               16              24              32
//! +---------------+---------------+---------------+---------------+
//! |                  length (header + payload)                    |
//! +---------------+---------------+---------------+---------------+
//! |          message type         |             flags             |
//! +---------------+---------------+---------------+---------------+
//! |                        sequence number                        |
//! +---------------+---------------+---------------+---------------+
//! |                     port id (sender socket)                   |
//! +---------------+---------------+---------------+---------------+
//! |  payload (ifinfomsg, ifaddrmsg, rtmsg, or nlmsgerr + TLVs)    |
//! ```
//!
//! An `NLMSG_ERROR` with code 0 is an ACK; a negative code is `-errno`. With
//! `NETLINK_EXT_ACK` the kernel appends TLVs after the echoed request, one of which
//! (`NLMSGERR_ATTR_MSG`) is a human-readable reason.

use netlink_packet_core::{
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP_INTR, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;

/// Length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Mask of the attribute type bits in a TLV header (drops the nested/byte-order flags).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// What went wrong with one request's replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kernel refused the request with an errno (and maybe an extended-ACK message).
    #[error("{}{}", .errno.desc(), reason_suffix(.reason))]
    Kernel {
        /// The errno the kernel returned.
        errno: nix::errno::Errno,
        /// The kernel's extended-ACK message, when it sent one.
        reason: Option<String>,
    },
    /// A datagram ends in the middle of a netlink header.
    #[error("truncated netlink header: {remaining} bytes left at offset {offset}")]
    TruncatedHeader {
        /// Where the header starts in the datagram.
        offset: usize,
        /// Bytes left from there.
        remaining: usize,
    },
    /// A header's length field is smaller than a header or runs past the datagram.
    #[error("netlink message at offset {offset} claims {length} bytes, {remaining} are left")]
    BadLength {
        /// Where the message starts in the datagram.
        offset: usize,
        /// The length field.
        length: usize,
        /// Bytes left from `offset`.
        remaining: usize,
    },
    /// A message could not be decoded.
    #[error("cannot decode netlink message of type {message_type}: {detail}")]
    Decode {
        /// The message type from the header.
        message_type: u16,
        /// The decoder's explanation.
        detail: String,
    },
    /// The kernel sent a message that does not belong in this exchange.
    #[error("unexpected netlink message of type {message_type} in reply to {expected}")]
    Unexpected {
        /// The message type from the header.
        message_type: u16,
        /// What the exchange was waiting for.
        expected: &'static str,
    },
    /// The kernel reported that its receive queue overran and replies were lost.
    #[error("netlink overrun: replies were lost")]
    Overrun,
    /// The objects changed while the kernel was dumping them (`NLM_F_DUMP_INTR`); the dump
    /// must be repeated.
    #[error("dump interrupted by a concurrent change")]
    DumpInterrupted,
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) => format!(" ({r})"),
        None => String::new(),
    }
}

/// Serializes one request with the given `NLM_F_*` flags and sequence number.
///
/// The port id is left 0: the kernel fills in the sender's.
pub(crate) fn encode(payload: RouteNetlinkMessage, flags: u16, sequence_number: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence_number;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    message.finalize();
    let mut buffer = vec![0; message.buffer_len()];
    message.serialize(&mut buffer);
    buffer
}

/// Splits a datagram into its netlink messages (a dump packs several into one datagram).
pub(crate) fn split(
    datagram: &[u8],
) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, FrameError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let (Some(len_bytes), Some(type_bytes)) = (rest.get(0..4), rest.get(4..6)) else {
            return Err(FrameError::TruncatedHeader {
                offset,
                remaining: rest.len(),
            });
        };
        if rest.len() < HEADER_LEN {
            return Err(FrameError::TruncatedHeader {
                offset,
                remaining: rest.len(),
            });
        }
        let length =
            u32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let message_type = u16::from_ne_bytes([type_bytes[0], type_bytes[1]]);
        let Some(bytes) = rest.get(..length).filter(|_| length >= HEADER_LEN) else {
            return Err(FrameError::BadLength {
                offset,
                length,
                remaining: rest.len(),
            });
        };
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
            FrameError::Decode {
                message_type,
                detail: e.to_string(),
            }
        })?;
        out.push(message);
        // Messages are 4-byte aligned; the last one may omit its padding.
        offset += length.next_multiple_of(4);
    }
    Ok(out)
}

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// One ACK (`NLMSG_ERROR` with code 0) or an error.
    Ack,
    /// Any number of messages ending with `NLMSG_DONE`.
    Dump,
}

/// The outcome of a finished exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The request was acknowledged.
    Ack,
    /// The dumped objects, in kernel order.
    Dump(Vec<RouteNetlinkMessage>),
}

/// Follows the replies to one request. Messages for other sequence numbers (late replies to
/// an earlier request that timed out) are ignored.
#[derive(Debug)]
pub(crate) struct Exchange {
    sequence_number: u32,
    expect: Expect,
    items: Vec<RouteNetlinkMessage>,
    interrupted: bool,
}

impl Exchange {
    /// Starts following the replies to the request sent with `sequence_number`.
    pub(crate) fn new(sequence_number: u32, expect: Expect) -> Self {
        Self {
            sequence_number,
            expect,
            items: Vec::new(),
            interrupted: false,
        }
    }

    /// Feeds one received datagram; `Some` once the exchange is complete.
    pub(crate) fn feed(&mut self, datagram: &[u8]) -> Result<Option<Reply>, FrameError> {
        for message in split(datagram)? {
            if message.header.sequence_number != self.sequence_number {
                continue;
            }
            let header = message.header;
            match message.payload {
                NetlinkPayload::Error(error) => match error.code {
                    None if self.expect == Expect::Ack => return Ok(Some(Reply::Ack)),
                    // An ACK inside a dump (only sent with NLM_F_ACK, which dumps don't set).
                    None => {}
                    Some(code) => {
                        return Err(FrameError::Kernel {
                            errno: nix::errno::Errno::from_raw(code.get().saturating_abs()),
                            reason: extack_reason(header.flags, &error.header),
                        });
                    }
                },
                NetlinkPayload::Done(done) if self.expect == Expect::Dump => {
                    if done.code != 0 {
                        return Err(FrameError::Kernel {
                            errno: nix::errno::Errno::from_raw(done.code.saturating_abs()),
                            reason: find_message_tlv(&done.extended_ack),
                        });
                    }
                    if self.interrupted {
                        return Err(FrameError::DumpInterrupted);
                    }
                    return Ok(Some(Reply::Dump(std::mem::take(&mut self.items))));
                }
                NetlinkPayload::InnerMessage(inner) if self.expect == Expect::Dump => {
                    if header.flags & NLM_F_DUMP_INTR != 0 {
                        self.interrupted = true;
                    }
                    self.items.push(inner);
                }
                NetlinkPayload::Noop => {}
                NetlinkPayload::Overrun(_) => return Err(FrameError::Overrun),
                _ => {
                    return Err(FrameError::Unexpected {
                        message_type: header.message_type,
                        expected: match self.expect {
                            Expect::Ack => "a request expecting an ACK",
                            Expect::Dump => "a dump request",
                        },
                    });
                }
            }
        }
        Ok(None)
    }
}

/// The extended-ACK message of an `NLMSG_ERROR`, if the kernel attached one.
///
/// `payload` is what follows the error code: the echoed request (only its header when
/// `NLM_F_CAPPED` is set) and then, with `NLM_F_ACK_TLVS`, the TLVs.
fn extack_reason(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        HEADER_LEN
    } else {
        let len = payload.get(0..4)?;
        u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize
    };
    find_message_tlv(payload.get(echoed_len.next_multiple_of(4)..)?)
}

/// Finds `NLMSGERR_ATTR_MSG` in a run of netlink TLVs and returns it without its NUL.
fn find_message_tlv(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & NLA_TYPE_MASK;
        let value = tlvs.get(4..len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|&b| b == 0).next().unwrap_or_default();
            let text = String::from_utf8_lossy(text).trim().to_owned();
            return (!text.is_empty()).then_some(text);
        }
        tlvs = tlvs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTIPART, NLM_F_REQUEST};
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};

    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const RTM_NEWLINK: u16 = 16;

    /// Builds a raw netlink message: header then payload, padded to 4 bytes.
    fn raw(message_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = (HEADER_LEN + payload.len()) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&message_type.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&4242u32.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn tlv(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// An `NLMSG_ERROR` carrying `code` and a capped echo of a request with `seq`.
    fn error(seq: u32, code: i32, flags: u16, tlvs: &[u8]) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend_from_slice(&raw(RTM_NEWLINK, NLM_F_REQUEST, seq, &[])[..HEADER_LEN]);
        payload.extend_from_slice(tlvs);
        raw(NLMSG_ERROR, flags, seq, &payload)
    }

    fn link_message(index: u32, name: &str) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::IfName(name.into()));
        let mut bytes = encode(RouteNetlinkMessage::NewLink(link), NLM_F_MULTIPART, 9);
        // `encode` leaves the port 0 and the type from the payload; fine for replies too.
        bytes[12..16].copy_from_slice(&4242u32.to_ne_bytes());
        bytes
    }

    #[test]
    fn encode_writes_header_fields() {
        let bytes = encode(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            7,
        );
        // 16-byte header + 16-byte ifinfomsg.
        assert_eq!(bytes.len(), 32);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 18); // RTM_GETLINK
        assert_eq!(
            u16::from_ne_bytes(bytes[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(bytes[12..16].try_into().unwrap()), 0);
    }

    #[test]
    fn ack_completes_an_ack_exchange() {
        let mut ex = Exchange::new(5, Expect::Ack);
        assert_eq!(ex.feed(&error(5, 0, 0, &[])), Ok(Some(Reply::Ack)));
    }

    #[test]
    fn replies_for_other_sequence_numbers_are_ignored() {
        let mut ex = Exchange::new(6, Expect::Ack);
        // A late error for request 5 must not be taken as the answer to 6.
        assert_eq!(ex.feed(&error(5, -17, 0, &[])), Ok(None));
        assert_eq!(ex.feed(&error(6, 0, 0, &[])), Ok(Some(Reply::Ack)));
    }

    #[test]
    fn negative_code_is_the_errno() {
        let mut ex = Exchange::new(1, Expect::Ack);
        let err = ex.feed(&error(1, -17, 0, &[])).unwrap_err();
        assert_eq!(
            err,
            FrameError::Kernel {
                errno: nix::errno::Errno::EEXIST,
                reason: None
            }
        );
        assert_eq!(err.to_string(), "File exists");
    }

    #[test]
    fn extended_ack_message_is_kept() {
        let tlvs = tlv(NLMSGERR_ATTR_MSG, b"Nexthop has invalid gateway\0");
        let mut ex = Exchange::new(2, Expect::Ack);
        let err = ex
            .feed(&error(2, -101, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlvs))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Network is unreachable (Nexthop has invalid gateway)"
        );
    }

    #[test]
    fn extended_ack_after_an_uncapped_echo() {
        // Without NLM_F_CAPPED the whole request is echoed; its length field says how long.
        let request = raw(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 3, &[0u8; 16]);
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&request);
        payload.extend_from_slice(&tlv(5, &[0, 0, 0, 0])); // another attribute first
        payload.extend_from_slice(&tlv(NLMSGERR_ATTR_MSG, b"bad thing\0"));
        let mut ex = Exchange::new(3, Expect::Ack);
        let err = ex
            .feed(&raw(NLMSG_ERROR, NLM_F_ACK_TLVS, 3, &payload))
            .unwrap_err();
        assert_eq!(err.to_string(), "Invalid argument (bad thing)");
    }

    #[test]
    fn dump_collects_until_done() {
        let mut datagram = link_message(1, "lo");
        datagram.extend(link_message(2, "eth0"));
        let mut ex = Exchange::new(9, Expect::Dump);
        assert_eq!(ex.feed(&datagram), Ok(None));
        let done = raw(NLMSG_DONE, NLM_F_MULTIPART, 9, &0i32.to_ne_bytes());
        let Ok(Some(Reply::Dump(items))) = ex.feed(&done) else {
            panic!("dump should be complete");
        };
        let names: Vec<_> = items
            .iter()
            .map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.header.index,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, [1, 2]);
    }

    #[test]
    fn done_with_error_code_is_a_kernel_error() {
        let mut ex = Exchange::new(9, Expect::Dump);
        let done = raw(NLMSG_DONE, NLM_F_MULTIPART, 9, &(-12i32).to_ne_bytes());
        assert!(matches!(
            ex.feed(&done),
            Err(FrameError::Kernel {
                errno: nix::errno::Errno::ENOMEM,
                ..
            })
        ));
    }

    #[test]
    fn interrupted_dump_is_reported() {
        let mut msg = link_message(1, "lo");
        let flags = NLM_F_MULTIPART | NLM_F_DUMP_INTR;
        msg[6..8].copy_from_slice(&flags.to_ne_bytes());
        let mut ex = Exchange::new(9, Expect::Dump);
        assert_eq!(ex.feed(&msg), Ok(None));
        let done = raw(NLMSG_DONE, NLM_F_MULTIPART, 9, &0i32.to_ne_bytes());
        assert_eq!(ex.feed(&done), Err(FrameError::DumpInterrupted));
    }

    #[test]
    fn data_message_in_an_ack_exchange_is_unexpected() {
        let mut ex = Exchange::new(9, Expect::Ack);
        assert!(matches!(
            ex.feed(&link_message(1, "lo")),
            Err(FrameError::Unexpected {
                message_type: RTM_NEWLINK,
                ..
            })
        ));
    }

    #[test]
    fn done_in_an_ack_exchange_is_unexpected() {
        let mut ex = Exchange::new(4, Expect::Ack);
        let done = raw(NLMSG_DONE, 0, 4, &0i32.to_ne_bytes());
        assert!(matches!(ex.feed(&done), Err(FrameError::Unexpected { .. })));
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(matches!(
            split(&[1, 2, 3]),
            Err(FrameError::TruncatedHeader { remaining: 3, .. })
        ));
        let mut short = raw(NLMSG_DONE, 0, 1, &0i32.to_ne_bytes());
        short[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            split(&short),
            Err(FrameError::BadLength { length: 8, .. })
        ));
        let mut long = raw(NLMSG_DONE, 0, 1, &0i32.to_ne_bytes());
        long[0..4].copy_from_slice(&400u32.to_ne_bytes());
        assert!(matches!(
            split(&long),
            Err(FrameError::BadLength { length: 400, .. })
        ));
        // A trailing partial header after a good message.
        let mut two = raw(NLMSG_DONE, 0, 1, &0i32.to_ne_bytes());
        two.extend_from_slice(&[0; 8]);
        assert!(matches!(
            split(&two),
            Err(FrameError::TruncatedHeader {
                offset: 20,
                remaining: 8
            })
        ));
    }

    #[test]
    fn undecodable_payload_is_an_error() {
        // An RTM_NEWLINK whose ifinfomsg is cut short.
        let bad = raw(RTM_NEWLINK, 0, 1, &[0; 4]);
        assert!(matches!(
            split(&bad),
            Err(FrameError::Decode {
                message_type: RTM_NEWLINK,
                ..
            })
        ));
    }

    #[test]
    fn tlv_walk_stops_at_malformed_lengths() {
        assert_eq!(find_message_tlv(&[0xff, 0, 1, 0, b'x']), None);
        assert_eq!(find_message_tlv(&[2, 0, 1, 0]), None);
        assert_eq!(find_message_tlv(&tlv(NLMSGERR_ATTR_MSG, b"\0")), None);
        assert_eq!(
            find_message_tlv(&tlv(NLMSGERR_ATTR_MSG, b"why\0")),
            Some("why".into())
        );
    }
}

//! Matching the kernel's answers to a batch's requests. No I/O.
//!
//! nfnetlink processes a batch completely before answering, then queues one `NLMSG_ERROR`
//! per request that asked for an ACK (errno 0) or failed (errno set). A failure anywhere
//! aborts the whole transaction, and the kernel may report several failures (later
//! messages often fail because of an earlier one): the lowest sequence number is the
//! cause. Errors against the batch delimiters (e.g. `ENOMEM` while queueing answers) are
//! failures too.

use std::collections::BTreeSet;

use crate::message::{
    Answer, DecodeError, NLM_F_ACK, NLMSG_ERROR, Request, parse_answer, split_messages,
};

/// The answers still expected for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    first: u32,
    last: u32,
    port: Option<u32>,
    waiting: BTreeSet<u32>,
    failure: Option<Answer>,
}

impl Pending {
    /// Expects an answer for every request in `requests` that has `NLM_F_ACK`, the first
    /// having sequence number `first_seq`. Answers addressed to another port than `port`
    /// (when known) are ignored.
    pub fn new(requests: &[Request], first_seq: u32, port: Option<u32>) -> Self {
        let mut waiting = BTreeSet::new();
        let mut seq = first_seq;
        for request in requests {
            if request.flags & NLM_F_ACK != 0 {
                waiting.insert(seq);
            }
            seq = seq.wrapping_add(1);
        }
        let count = u32::try_from(requests.len()).unwrap_or(u32::MAX);
        Self {
            first: first_seq,
            last: first_seq.wrapping_add(count.saturating_sub(1)),
            port,
            waiting,
            failure: None,
        }
    }

    fn in_batch(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    /// Takes in one received datagram. Messages for other batches (stale answers to an
    /// earlier, timed-out batch) or other ports are ignored.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<(), DecodeError> {
        for (header, payload) in split_messages(datagram)? {
            if header.kind != NLMSG_ERROR || !self.in_batch(header.seq) {
                continue;
            }
            if self.port.is_some_and(|p| p != header.pid) {
                continue;
            }
            let answer = parse_answer(&header, payload)?;
            self.waiting.remove(&answer.seq);
            if answer.errno != 0 {
                let earlier = self.failure.as_ref().is_none_or(|f| {
                    answer.seq.wrapping_sub(self.first) < f.seq.wrapping_sub(self.first)
                });
                if earlier {
                    self.failure = Some(answer);
                }
            }
        }
        Ok(())
    }

    /// Whether every expected ACK arrived.
    pub fn complete(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The earliest failure reported so far.
    pub fn failure(&self) -> Option<&Answer> {
        self.failure.as_ref()
    }

    /// Index in the batch of the request with sequence number `seq`.
    pub fn index_of(&self, seq: u32) -> usize {
        seq.wrapping_sub(self.first) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Attrs, NLM_F_REQUEST, NLMSG_HDRLEN};

    fn request(ack: bool) -> Request {
        Request {
            kind: 0x0a00,
            flags: NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 },
            family: 2,
            res_id: 0,
            attrs: Attrs::new(),
            label: String::new(),
        }
    }

    fn answer(seq: u32, errno: i32, pid: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let len = u32::try_from(NLMSG_HDRLEN * 2 + 4).expect("small");
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        out.extend_from_slice(&0x100u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&(-errno).to_ne_bytes());
        out.extend_from_slice(&20u32.to_ne_bytes());
        out.extend_from_slice(&[0; 12]);
        out
    }

    fn batch() -> Vec<Request> {
        vec![request(false), request(true), request(true), request(false)]
    }

    #[test]
    fn completes_when_every_ack_arrived() {
        let mut pending = Pending::new(&batch(), 10, Some(77));
        assert!(!pending.complete());
        pending.feed(&answer(11, 0, 77)).expect("parses");
        assert!(!pending.complete());
        // A stale answer from an earlier batch and one for another port change nothing.
        pending.feed(&answer(9, 0, 77)).expect("parses");
        pending.feed(&answer(12, 0, 78)).expect("parses");
        assert!(!pending.complete());
        let mut both = answer(12, 0, 77);
        both.extend(answer(14, 0, 77));
        pending.feed(&both).expect("parses");
        assert!(pending.complete());
        assert_eq!(pending.failure(), None);
    }

    #[test]
    fn keeps_the_earliest_failure() {
        let mut pending = Pending::new(&batch(), u32::MAX - 1, None);
        // Sequence numbers wrap: u32::MAX - 1, u32::MAX, 0, 1.
        pending.feed(&answer(0, libc::ENOENT, 5)).expect("parses");
        pending
            .feed(&answer(u32::MAX, libc::EOPNOTSUPP, 5))
            .expect("parses");
        let failure = pending.failure().expect("failed");
        assert_eq!(failure.seq, u32::MAX);
        assert_eq!(failure.errno, libc::EOPNOTSUPP);
        assert_eq!(pending.index_of(failure.seq), 1);
        assert!(pending.complete());
    }

    #[test]
    fn error_on_delimiter_is_a_failure() {
        let mut pending = Pending::new(&batch(), 1, None);
        pending.feed(&answer(1, libc::ENOMEM, 5)).expect("parses");
        assert_eq!(pending.failure().map(|f| f.errno), Some(libc::ENOMEM));
        assert!(!pending.complete());
    }
}

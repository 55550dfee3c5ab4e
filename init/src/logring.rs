//! Bounded per-service log rings fed from a service's stdout and stderr.

use std::collections::VecDeque;

use cairn_control::LogLine;

/// Longest line kept; longer output is split into several lines.
pub const MAX_LINE: usize = 4096;

/// The last `capacity` lines of a service's output, with sequence numbers so
/// that readers can follow it without missing or repeating lines.
#[derive(Debug)]
pub struct LogRing {
    lines: VecDeque<LogLine>,
    capacity: usize,
    next_seq: u64,
}

impl LogRing {
    /// An empty ring holding at most `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
        }
    }

    /// Appends a line, dropping the oldest when full.
    pub fn push(&mut self, t_ms: u64, stream: &str, text: String) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(LogLine {
            seq: self.next_seq,
            t_ms,
            stream: stream.to_owned(),
            text,
        });
        self.next_seq += 1;
    }

    /// Lines with a sequence number above `after_seq`, oldest first, at most
    /// `max` of them (readers page forward by the last `seq` they saw).
    pub fn read(&self, after_seq: u64, max: usize) -> Vec<LogLine> {
        // Sequence numbers are consecutive, so the start index is arithmetic.
        let first = self.lines.front().map_or(0, |l| l.seq);
        let skip = (after_seq + 1).saturating_sub(first) as usize;
        self.lines.iter().skip(skip).take(max).cloned().collect()
    }
}

/// Splits a byte stream into lines, keeping a partial last line until it is
/// completed or the stream ends.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns complete lines (lossy UTF-8, no trailing newline).
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            out.push(take_line(&mut self.partial));
            data = &data[pos + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            out.push(take_line(&mut self.partial));
            self.partial = rest;
        }
        out
    }

    /// The stream ended: returns the partial line, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| take_line(&mut self.partial))
    }
}

fn take_line(buf: &mut Vec<u8>) -> String {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let s = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_sequenced() {
        let mut r = LogRing::new(3);
        for i in 0..5 {
            r.push(i, "stdout", format!("l{i}"));
        }
        let all = r.read(0, 100);
        assert_eq!(
            all.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["l2", "l3", "l4"]
        );
        assert_eq!(all[0].seq, 3);
        assert_eq!(r.read(0, 1)[0].text, "l2", "oldest first");
        assert_eq!(
            r.read(3, 1)[0].text,
            "l3",
            "follow returns the oldest unseen"
        );
        assert_eq!(r.read(4, 10).len(), 1);
        assert!(r.read(5, 10).is_empty());
    }

    #[test]
    fn splitter_handles_partial_long_and_crlf_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"hel"), Vec::<String>::new());
        assert_eq!(s.feed(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.feed(b"ld\n\n"), vec!["world", ""]);
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = s.feed(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().map(|l| l.len()), Some(10));
        assert_eq!(s.finish(), None);
        assert_eq!(s.feed(&[0xff, b'\n']), vec!["\u{fffd}"]);
    }
}

//! The serial console as text: bytes split into lines, terminal escape
//! sequences removed so tests can match lines plainly.

use std::time::Duration;

/// One line of the serial console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLine {
    /// The line without its newline, terminal escapes and carriage returns.
    pub text: String,
    /// When it was complete, measured from the start of QEMU.
    pub at: Duration,
}

/// Splits a byte stream into lines; keeps the unfinished tail between pushes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes and returns the lines they complete, cleaned. A terminal
    /// reset (`ESC c`) or clear-screen (`ESC [2J`) also ends a non-empty line:
    /// firmware clears the screen without a newline, and what follows (often
    /// the kernel's or init's first line) must start a line of its own.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(clean_line(&std::mem::take(&mut self.partial)));
                continue;
            }
            self.partial.push(byte);
            if self.partial.ends_with(b"\x1bc") || self.partial.ends_with(b"\x1b[2J") {
                let line = clean_line(&std::mem::take(&mut self.partial));
                if !line.is_empty() {
                    lines.push(line);
                }
            }
        }
        lines
    }

    /// The unfinished line so far, cleaned (e.g. a prompt without newline).
    pub fn pending(&self) -> String {
        clean_line(&self.partial)
    }

    /// Returns the unfinished last line, if any (at end of stream).
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            None
        } else {
            Some(clean_line(&std::mem::take(&mut self.partial)))
        }
    }
}

/// Decodes a raw line (lossy UTF-8) and strips escapes and control characters.
pub fn clean_line(raw: &[u8]) -> String {
    strip_escapes(&String::from_utf8_lossy(raw))
}

/// Removes terminal escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL`
/// or `ESC \`, and two-character `ESC x`) and control characters other than
/// tab, as SeaBIOS, iPXE and OVMF write them to the serial port.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, up to a final byte @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // ESC followed by one character (ESC c, ESC 7, ESC =, …).
                Some(_) | None => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_pushes() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"Linux ver").is_empty());
        assert_eq!(
            splitter.push(b"sion 6.1\r\nsecond\nthi"),
            ["Linux version 6.1", "second"]
        );
        assert_eq!(splitter.push(b"\n\n"), ["thi", ""]);
        assert_eq!(splitter.finish(), None);
        splitter.push(b"no \x1b[1mnewline");
        assert_eq!(splitter.pending(), "no newline");
        assert_eq!(splitter.finish().as_deref(), Some("no newline"));
        assert_eq!(splitter.pending(), "");
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn clearing_the_screen_ends_a_line() {
        // SeaBIOS/iPXE on the serial port, split at awkward places.
        let mut splitter = LineSplitter::default();
        assert_eq!(splitter.push(b"initrd... ok\x1b"), Vec::<String>::new());
        assert_eq!(splitter.push(b"c\x1b[?7l\x1b[2"), ["initrd... ok"]);
        assert_eq!(
            splitter.push(b"JCAIRN-READY role=base\n"),
            ["CAIRN-READY role=base"]
        );
        // Clears on an empty line produce no empty lines.
        assert_eq!(
            splitter.push(b"\x1b[2J\x1b[01;01H\x1b[2JBdsDxe: loading\n"),
            ["BdsDxe: loading"]
        );
    }

    #[test]
    fn escapes_seen_on_this_console_are_removed() {
        // SeaBIOS sercon + iPXE, as captured under QEMU 7.2.
        assert_eq!(
            strip_escapes("initrd... o\u{1b}c\u{1b}[?7l\u{1b}[2JCAIRN-TEST-MARKER"),
            "initrd... oCAIRN-TEST-MARKER"
        );
        // OVMF's colours and cursor moves.
        assert_eq!(
            strip_escapes(
                "\u{1b}[05;01HPress \u{1b}[1m\u{1b}[37m\u{1b}[40mESC\u{1b}[0m in 5 seconds"
            ),
            "Press ESC in 5 seconds"
        );
        assert_eq!(
            strip_escapes("a\u{1b}]0;title\u{7}b\u{1b}]2;t\u{1b}\\c"),
            "abc"
        );
        assert_eq!(strip_escapes("tab\there\r\u{8}"), "tab\there");
        assert_eq!(strip_escapes("ends with \u{1b}"), "ends with ");
        assert_eq!(strip_escapes("ümlaut ok"), "ümlaut ok");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        assert_eq!(clean_line(b"ab\xffcd"), "ab\u{fffd}cd");
    }
}

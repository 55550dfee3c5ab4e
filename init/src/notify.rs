//! The sd_notify protocol: services send `READY=1` (and `STATUS=...`) as a
//! datagram to the unix socket named by `NOTIFY_SOCKET`; the kernel attaches
//! the sender's pid, which identifies the service.

/// What one notification datagram says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `READY=1` was present.
    pub ready: bool,
    /// `STATUS=` text, if present.
    pub status: Option<String>,
    /// `STOPPING=1` was present.
    pub stopping: bool,
}

/// Largest datagram accepted; longer ones are truncated by the kernel and ignored.
pub const MAX_DATAGRAM: usize = 4096;

/// Parses a datagram of newline-separated `KEY=value` assignments. Unknown keys
/// and malformed lines are ignored, as systemd does.
pub fn parse(data: &[u8]) -> Notification {
    let text = String::from_utf8_lossy(data);
    let mut n = Notification::default();
    for line in text.split('\n') {
        match line.split_once('=') {
            Some(("READY", "1")) => n.ready = true,
            Some(("STOPPING", "1")) => n.stopping = true,
            Some(("STATUS", s)) => n.status = Some(s.chars().take(256).collect()),
            _ => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_and_status() {
        let n = parse(b"READY=1\nSTATUS=serving 3 backends\nMAINPID=4\n");
        assert!(n.ready);
        assert_eq!(n.status.as_deref(), Some("serving 3 backends"));
        assert!(!n.stopping);
    }

    #[test]
    fn ignores_garbage_and_wrong_values() {
        let n = parse(b"READY=0\n\xff\xfe\nnonsense\n=\nSTOPPING=1");
        assert!(!n.ready);
        assert!(n.stopping);
        assert_eq!(n.status, None);
    }
}

//! The lines operators and the QEMU tests read on the console: `update: ...`, printed on
//! standard output as they are (cairn-init forwards a service's output to the console), and
//! logged with `tracing` as well.

use std::io::Write;

/// Prints one `update: ...` line and flushes it.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    tracing::debug!("{text}");
}

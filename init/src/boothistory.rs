//! The boot history on the data partition (`/var/lib/cairn/boot-history`):
//! one line per boot with the version and slot it ran, so an operator (and the
//! update tests) can see which versions a box went through, and that the data
//! partition survived every upgrade and rollback.
//!
//! ```text
//! boot=7 version=0.2.0 slot=b node=lb2 role=lb time=1764400000
//! ```
//!
//! The file keeps the last [`KEEP`] boots; the boot number keeps counting.

use std::io::Write;
use std::path::Path;

/// Where machine mode appends.
pub const FILE: &str = "/var/lib/cairn/boot-history";
/// How many lines are kept.
pub const KEEP: usize = 500;

/// One boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot<'a> {
    /// The running version.
    pub version: &'a str,
    /// `a`, `b`, or `-` (PXE or an old command line).
    pub slot: &'a str,
    /// The node this box is.
    pub node: &'a str,
    /// Its role.
    pub role: &'a str,
    /// Seconds since the epoch by the box's clock.
    pub time: u64,
}

/// The number of the last boot recorded in `text` (0 when none).
pub fn last_boot(text: &str) -> u64 {
    text.lines()
        .rev()
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("boot="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The history after adding `boot` to `text`: its new text and the boot's number.
pub fn append(text: &str, boot: &Boot<'_>) -> (String, u64) {
    let n = last_boot(text) + 1;
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = format!(
        "boot={n} version={} slot={} node={} role={} time={}",
        boot.version, boot.slot, boot.node, boot.role, boot.time
    );
    lines.push(&line);
    let from = lines.len().saturating_sub(KEEP);
    let mut out = lines[from..].join("\n");
    out.push('\n');
    (out, n)
}

/// Records `boot` in the history file at `path` (written to a temporary file,
/// synced and renamed, so a power cut leaves the old or the new history).
pub fn record(path: &Path, boot: &Boot<'_>) -> std::io::Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let (text, n) = append(&old, boot);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(version: &str) -> Boot<'_> {
        Boot {
            version,
            slot: "a",
            node: "lb2",
            role: "lb",
            time: 1_764_400_000,
        }
    }

    #[test]
    fn numbers_count_on_from_the_last_line() {
        let (t, n) = append("", &boot("0.1.0"));
        assert_eq!(n, 1);
        assert_eq!(
            t,
            "boot=1 version=0.1.0 slot=a node=lb2 role=lb time=1764400000\n"
        );
        let (t, n) = append(&t, &boot("0.2.0"));
        assert_eq!(n, 2);
        assert_eq!(last_boot(&t), 2);
        assert!(t.ends_with("boot=2 version=0.2.0 slot=a node=lb2 role=lb time=1764400000\n"));
        assert_eq!(last_boot("garbage\n\n"), 0);
    }

    #[test]
    fn only_the_last_lines_are_kept_but_the_count_goes_on() {
        let mut t = String::new();
        for _ in 0..KEEP + 20 {
            t = append(&t, &boot("1")).0;
        }
        assert_eq!(t.lines().count(), KEEP);
        assert_eq!(last_boot(&t), (KEEP + 20) as u64);
    }

    #[test]
    fn record_writes_through_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lib/cairn/boot-history");
        assert_eq!(record(&p, &boot("0.1.0")).unwrap(), 1);
        assert_eq!(record(&p, &boot("0.2.0")).unwrap(), 2);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!p.with_extension("tmp").exists());
    }
}

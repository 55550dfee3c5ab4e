//! The boot record: what the early stage (`cairn-early`) found out about the
//! box on its real root — who it is, whether the ESP is mounted, the update
//! timing — handed to PID 1 (`cairn-init`) in a small file on /run. The early
//! stage does the one-time machine setup (data partition, ESP, hostname,
//! network from the site file) so that PID 1 never links the site parser or
//! the rtnetlink code it would only run once (docs/boot.md, docs/init.md).
//!
//! The format is `key=value` lines, one value per key, `#` comments: readable
//! with `cat` on a box, and parsed without a TOML parser.

use std::fmt::Write as _;
use std::path::Path;

/// Where the early stage leaves the record for PID 1.
pub const FILE: &str = "/run/cairn/boot-record";

/// What the early stage found. Every field is optional: a box that could not
/// identify itself still has a version to count boots against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootRecord {
    /// This box's node name in the site file.
    pub node: Option<String>,
    /// The image's role (`lb`, `storage`, …).
    pub role: Option<String>,
    /// The image version (from image.toml, else the site's `[image]`).
    pub version: Option<String>,
    /// Whether the ESP is mounted on /efi (disk boots): blessing needs it.
    pub esp_mounted: bool,
    /// The site's `[update]` timing: seconds to bless after, boot deadline.
    pub update_timing: Option<(u64, u64)>,
    /// Why the box could not identify itself (it then runs no role services).
    pub error: Option<String>,
}

/// A boot record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The record file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `key=value` with a known key and a valid value.
    #[error("{path} line {line}: {reason}")]
    Line {
        /// The record file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One line's value without line breaks (an error text may hold some).
fn one_line(v: &str) -> String {
    v.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl BootRecord {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from("# written by cairn-early before it started /sbin/init\n");
        let mut put = |k: &str, v: &str| {
            let _ = writeln!(out, "{k}={}", one_line(v));
        };
        if let Some(v) = &self.node {
            put("node", v);
        }
        if let Some(v) = &self.role {
            put("role", v);
        }
        if let Some(v) = &self.version {
            put("version", v);
        }
        put("esp", if self.esp_mounted { "mounted" } else { "none" });
        if let Some((bless, deadline)) = self.update_timing {
            put("bless_after_s", &bless.to_string());
            put("boot_deadline_s", &deadline.to_string());
        }
        if let Some(v) = &self.error {
            put("error", v);
        }
        out
    }

    /// Parses a record's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<BootRecord, RecordError> {
        let mut r = BootRecord::default();
        let (mut bless, mut deadline) = (None, None);
        for (i, raw) in text.lines().enumerate() {
            let bad = |reason: String| RecordError::Line {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("{line:?} is not key=value")))?;
            let secs = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{key}: {v:?} is not whole seconds")))
            };
            let text = || Some(value.to_owned());
            match key {
                "node" => r.node = text(),
                "role" => r.role = text(),
                "version" => r.version = text(),
                "error" => r.error = text(),
                "esp" => {
                    r.esp_mounted = match value {
                        "mounted" => true,
                        "none" => false,
                        v => return Err(bad(format!("esp: {v:?} is neither mounted nor none"))),
                    }
                }
                "bless_after_s" => bless = Some(secs(value)?),
                "boot_deadline_s" => deadline = Some(secs(value)?),
                k => return Err(bad(format!("unknown key {k:?}"))),
            }
        }
        r.update_timing = match (bless, deadline) {
            (Some(b), Some(d)) => Some((b, d)),
            (None, None) => None,
            _ => {
                return Err(RecordError::Line {
                    path: path.to_owned(),
                    line: text.lines().count(),
                    reason: "bless_after_s and boot_deadline_s come together".into(),
                });
            }
        };
        Ok(r)
    }

    /// Who the box is — `(node, role, version)` — or why it does not know.
    pub fn identity(&self) -> Result<(&str, &str, &str), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match (&self.node, &self.role, &self.version) {
            (Some(n), Some(r), Some(v)) => Ok((n, r, v)),
            _ => Err("the boot record names no node, role and version".into()),
        }
    }

    /// Writes the record atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }

    /// Reads and parses the record at `path`.
    pub fn read(path: &Path) -> Result<BootRecord, RecordError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RecordError::Read {
            path: shown.clone(),
            source,
        })?;
        BootRecord::parse(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn full() -> BootRecord {
        BootRecord {
            node: Some("lb1".into()),
            role: Some("lb".into()),
            version: Some("0.1.0".into()),
            esp_mounted: true,
            update_timing: Some((60, 300)),
            error: None,
        }
    }

    #[test]
    fn round_trips() {
        for r in [full(), BootRecord::default()] {
            assert_eq!(BootRecord::parse(&r.render(), "f").unwrap(), r);
        }
        assert_eq!(full().identity().unwrap(), ("lb1", "lb", "0.1.0"));
    }

    #[test]
    fn an_error_is_kept_on_one_line_and_wins_over_the_identity() {
        let mut r = full();
        r.error = Some("site.toml: line 3\n  bad key\n".into());
        let text = r.render();
        assert!(
            text.contains("error=site.toml: line 3; bad key\n"),
            "{text}"
        );
        let back = BootRecord::parse(&text, "f").unwrap();
        assert_eq!(back.identity().unwrap_err(), "site.toml: line 3; bad key");
    }

    #[test]
    fn a_partial_record_names_no_identity() {
        let r = BootRecord {
            version: Some("0.1.0".into()),
            ..BootRecord::default()
        };
        assert!(r.identity().unwrap_err().contains("no node"));
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("node=a\nbogus\n", 2, "not key=value"),
            ("colour=red\n", 1, "unknown key \"colour\""),
            ("esp=maybe\n", 1, "neither mounted nor none"),
            (
                "bless_after_s=soon\nboot_deadline_s=1\n",
                1,
                "not whole seconds",
            ),
            ("bless_after_s=5\n", 1, "come together"),
        ];
        for (text, line, want) in cases {
            let e = BootRecord::parse(text, "/run/cairn/boot-record").unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("/run/cairn/boot-record line {line}: ")),
                "{shown}"
            );
            assert!(shown.contains(want), "{shown} lacks {want}");
        }
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/cairn/boot-record");
        full().write(&path).unwrap();
        assert_eq!(BootRecord::read(&path).unwrap(), full());
        assert!(!path.with_extension("tmp").exists());
        let e = BootRecord::read(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}

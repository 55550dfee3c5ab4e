//! Package records from apt's index, as `apt-cache show` prints them (deb822 stanzas).
//!
//! A record carries what the fetch step needs to name, verify and report a `.deb`: package,
//! version, architecture, SHA-256 and size as published in the signed index.

use std::collections::BTreeMap;

/// Errors from parsing index records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A stanza lacks a field every binary package record has.
    #[error("index record for `{package}` has no `{field}` field")]
    MissingField {
        /// The package (or `?` when the stanza has no `Package` field).
        package: String,
        /// The missing field.
        field: &'static str,
    },
    /// The `Size` field is not a number.
    #[error("index record for `{package}`: size `{value}` is not a number")]
    InvalidSize {
        /// The package.
        package: String,
        /// The field's value.
        value: String,
    },
    /// The `SHA256` field is not 64 hex digits.
    #[error("index record for `{package}`: `{value}` is not a SHA-256 digest")]
    InvalidSha256 {
        /// The package.
        package: String,
        /// The field's value.
        value: String,
    },
    /// A line is neither a field, a continuation nor a blank separator.
    #[error("index line {line}: `{text}` is not a deb822 field")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// One binary package version from apt's index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexRecord {
    /// Package name.
    pub package: String,
    /// Exact version, with epoch if any (`1:2.66-4+deb12u3+b1`).
    pub version: String,
    /// `amd64`, `all`, ...
    pub architecture: String,
    /// SHA-256 of the `.deb`, lowercase hex, from the signed index.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// Path of the `.deb` in the archive (`pool/main/h/haproxy/...`).
    pub filename: String,
}

impl IndexRecord {
    /// The file name apt gives the downloaded `.deb`: `name_version_arch.deb`, with the epoch's
    /// `:` written `%3a` as apt does.
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.architecture
        )
    }
}

/// Splits deb822 text into stanzas of (field → value); continuation lines are joined with `\n`.
pub fn parse_stanzas(text: &str) -> Result<Vec<BTreeMap<String, String>>, IndexError> {
    let mut stanzas = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut last_field: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            last_field = None;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(value) = last_field.as_ref().and_then(|f| current.get_mut(f)) else {
                return Err(IndexError::Syntax {
                    line: i + 1,
                    text: line.to_string(),
                });
            };
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(IndexError::Syntax {
                line: i + 1,
                text: line.to_string(),
            });
        };
        current.insert(field.to_string(), value.trim().to_string());
        last_field = Some(field.to_string());
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    Ok(stanzas)
}

/// Parses `apt-cache show` output into package records, in order.
pub fn parse_records(text: &str) -> Result<Vec<IndexRecord>, IndexError> {
    parse_stanzas(text)?
        .into_iter()
        .map(|stanza| record_from_stanza(&stanza))
        .collect()
}

fn record_from_stanza(stanza: &BTreeMap<String, String>) -> Result<IndexRecord, IndexError> {
    let package = stanza
        .get("Package")
        .cloned()
        .ok_or(IndexError::MissingField {
            package: "?".to_string(),
            field: "Package",
        })?;
    let field = |name: &'static str| {
        stanza
            .get(name)
            .cloned()
            .ok_or_else(|| IndexError::MissingField {
                package: package.clone(),
                field: name,
            })
    };
    let size_text = field("Size")?;
    let size = size_text
        .parse::<u64>()
        .map_err(|_| IndexError::InvalidSize {
            package: package.clone(),
            value: size_text.clone(),
        })?;
    let sha256 = field("SHA256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(IndexError::InvalidSha256 {
            package,
            value: sha256,
        });
    }
    Ok(IndexRecord {
        version: field("Version")?,
        architecture: field("Architecture")?,
        filename: field("Filename")?,
        sha256,
        size,
        package,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Package: haproxy
Version: 2.6.12-1+deb12u4
Installed-Size: 4223
Architecture: amd64
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.0)
Description: fast and reliable load balancing reverse proxy
 HAProxy is a TCP/HTTP reverse proxy which is particularly suited for high
 availability environments.
Filename: pool/updates/main/h/haproxy/haproxy_2.6.12-1+deb12u4_amd64.deb
Size: 2042596
SHA256: 97CA097D12B43FC5CB1B17AA5E84957735EF312A2E02CF8A99512FA1ABE8A955

Package: libcap2
Version: 1:2.66-4+deb12u3+b1
Architecture: amd64
Filename: pool/main/libc/libcap2/libcap2_2.66-4+deb12u3+b1_amd64.deb
Size: 27708
SHA256: 8d684c673e7483802a5c447834b0df6fce006eb3a7109e1be412f5ad425bb24f

";

    #[test]
    fn parses_records_and_names_files_like_apt() {
        let records = parse_records(SHOW).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].package, "haproxy");
        assert_eq!(records[0].version, "2.6.12-1+deb12u4");
        assert_eq!(records[0].size, 2_042_596);
        assert_eq!(
            records[0].sha256,
            "97ca097d12b43fc5cb1b17aa5e84957735ef312a2e02cf8a99512fa1abe8a955"
        );
        assert_eq!(
            records[0].deb_file_name(),
            "haproxy_2.6.12-1+deb12u4_amd64.deb"
        );
        assert_eq!(
            records[1].deb_file_name(),
            "libcap2_1%3a2.66-4+deb12u3+b1_amd64.deb"
        );
    }

    #[test]
    fn continuation_lines_join_the_previous_field() {
        let stanzas = parse_stanzas(SHOW).unwrap();
        assert_eq!(
            stanzas[0]["Description"],
            "fast and reliable load balancing reverse proxy\nHAProxy is a TCP/HTTP reverse \
             proxy which is particularly suited for high\navailability environments."
        );
    }

    #[test]
    fn missing_and_malformed_fields_name_the_package() {
        let err = parse_records("Package: foo\nVersion: 1\nArchitecture: all\nFilename: f\n")
            .unwrap_err();
        assert_eq!(
            err,
            IndexError::MissingField {
                package: "foo".into(),
                field: "Size"
            }
        );
        let err = parse_records(
            "Package: foo\nVersion: 1\nArchitecture: all\nFilename: f\nSize: 1\nSHA256: abc\n",
        )
        .unwrap_err();
        assert!(matches!(err, IndexError::InvalidSha256 { .. }), "{err}");
        let err = parse_records(" orphan continuation\n").unwrap_err();
        assert!(matches!(err, IndexError::Syntax { line: 1, .. }), "{err}");
    }
}

//! Package specs as roles and profiles write them: `name` or `name=version`.
//!
//! Specs end up as arguments of apt commands, so they are validated against Debian's rules for
//! package names and versions; nothing that could be read as an option gets through.

use std::fmt;
use std::str::FromStr;

/// Errors from parsing a package spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The name breaks Debian policy 5.6.1 (lowercase letters, digits, `+`, `-`, `.`; at least
    /// two characters; starts with a letter or digit).
    #[error(
        "package spec `{spec}`: `{name}` is not a Debian package name (lowercase letters, digits, \
         `+`, `-`, `.`, at least two characters, starting with a letter or digit)"
    )]
    InvalidName {
        /// The spec as written.
        spec: String,
        /// The name part.
        name: String,
    },
    /// The version breaks Debian policy 5.6.12 (`[epoch:]upstream[-revision]`, starting with a
    /// digit, characters from `0-9A-Za-z.+~:-`).
    #[error(
        "package spec `{spec}`: `{version}` is not a Debian version (starts with a digit; \
         letters, digits, `.`, `+`, `~`, `:`, `-`)"
    )]
    InvalidVersion {
        /// The spec as written.
        spec: String,
        /// The version part.
        version: String,
    },
}

/// A package to fetch: a name, optionally pinned to an exact version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageSpec {
    /// Debian package name, e.g. `haproxy`.
    pub name: String,
    /// Exact version (`2.6.12-1+deb12u4`); `None` means apt's candidate.
    pub version: Option<String>,
}

impl PackageSpec {
    /// A spec for apt's candidate version of `name`, validated.
    pub fn new(name: &str) -> Result<Self, SpecError> {
        name.parse()
    }

    /// The argument apt understands: `name` or `name=version`.
    pub fn apt_arg(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PackageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}={v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether `name` is a valid Debian package name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Whether `version` is a valid Debian version string.
pub fn valid_version(version: &str) -> bool {
    version.chars().next().is_some_and(|c| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
}

impl FromStr for PackageSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let (name, version) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        if !valid_name(name) {
            return Err(SpecError::InvalidName {
                spec: spec.to_string(),
                name: name.to_string(),
            });
        }
        if let Some(v) = version {
            if !valid_version(v) {
                return Err(SpecError::InvalidVersion {
                    spec: spec.to_string(),
                    version: v.to_string(),
                });
            }
        }
        Ok(Self {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_pinned_versions() {
        let s: PackageSpec = "haproxy".parse().unwrap();
        assert_eq!(s.name, "haproxy");
        assert_eq!(s.version, None);
        let s: PackageSpec = "libcap2=1:2.66-4+deb12u3+b1".parse().unwrap();
        assert_eq!(s.name, "libcap2");
        assert_eq!(s.version.as_deref(), Some("1:2.66-4+deb12u3+b1"));
        assert_eq!(s.apt_arg(), "libcap2=1:2.66-4+deb12u3+b1");
        let s: PackageSpec = "libstdc++6".parse().unwrap();
        assert_eq!(s.to_string(), "libstdc++6");
    }

    #[test]
    fn rejects_option_lookalikes_and_bad_versions() {
        assert!(matches!(
            "-oDir=/".parse::<PackageSpec>(),
            Err(SpecError::InvalidName { .. })
        ));
        assert!(matches!(
            "Haproxy".parse::<PackageSpec>(),
            Err(SpecError::InvalidName { .. })
        ));
        assert!(matches!(
            "a".parse::<PackageSpec>(),
            Err(SpecError::InvalidName { .. })
        ));
        assert!(matches!(
            "haproxy=".parse::<PackageSpec>(),
            Err(SpecError::InvalidVersion { .. })
        ));
        assert!(matches!(
            "haproxy=2.6 -x".parse::<PackageSpec>(),
            Err(SpecError::InvalidVersion { .. })
        ));
        let err = "haproxy=v2".parse::<PackageSpec>().unwrap_err();
        assert!(err.to_string().contains("`v2`"), "{err}");
    }
}

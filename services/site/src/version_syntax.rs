//! The syntax of image versions, shared by the site file (`[image] version`)
//! and the update formats (`cairn-update` re-exports it).
//!
//! Versions are 1–32 characters of `[A-Za-z0-9._~^-]`: no '+', which starts
//! systemd-boot's try counter in a UKI's file name, and nothing that needs
//! quoting in a path or URL.

/// Longest version accepted.
pub const MAX_LEN: usize = 32;

/// Why a string is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Empty string.
    #[error("version is empty")]
    Empty,
    /// More than [`MAX_LEN`] characters.
    #[error("version {0:?} is longer than 32 characters")]
    TooLong(String),
    /// A character outside `[A-Za-z0-9._~^-]`.
    #[error(
        "version {version:?} contains {bad:?} (allowed: letters, digits, '.', '_', '~', '^', '-'; '+' starts systemd-boot's try counter)"
    )]
    BadChar {
        /// The version.
        version: String,
        /// The first character not allowed.
        bad: char,
    },
}

/// Whether `c` may appear in a version.
pub fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '^' | '-')
}

/// Checks a version: 1–32 chars of `[A-Za-z0-9._~^-]`, no '+'.
pub fn validate(v: &str) -> Result<(), VersionError> {
    if v.is_empty() {
        return Err(VersionError::Empty);
    }
    if let Some(bad) = v.chars().find(|&c| !is_version_char(c)) {
        return Err(VersionError::BadChar {
            version: v.to_owned(),
            bad,
        });
    }
    if v.len() > MAX_LEN {
        return Err(VersionError::TooLong(v.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_versions_pass() {
        for v in [
            "0.1.0",
            "1",
            "2024.06.01",
            "1.0~rc1",
            "5.10^1",
            "a_b-c",
            &"9".repeat(32),
        ] {
            assert_eq!(validate(v), Ok(()), "{v}");
        }
    }

    #[test]
    fn bad_versions_say_why() {
        assert_eq!(validate(""), Err(VersionError::Empty));
        assert_eq!(
            validate(&"1".repeat(33)),
            Err(VersionError::TooLong("1".repeat(33)))
        );
        for (v, bad) in [
            ("1.0+3", '+'),
            ("1 0", ' '),
            ("1/0", '/'),
            ("1.0ü", 'ü'),
            (".:", ':'),
        ] {
            assert_eq!(
                validate(v),
                Err(VersionError::BadChar {
                    version: v.into(),
                    bad
                }),
                "{v}"
            );
        }
        assert!(
            validate("1+2")
                .unwrap_err()
                .to_string()
                .contains("'+' starts systemd-boot's try counter")
        );
    }
}

//! What image the box runs, from `/etc/os-release`: `IMAGE_ID=cairn-<role>`,
//! `IMAGE_VERSION` and `CAIRN_PROFILE`.

/// The running image as os-release describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The role, from `IMAGE_ID=cairn-<role>`.
    pub role: String,
    /// `IMAGE_VERSION`.
    pub version: String,
    /// `CAIRN_PROFILE`, the hardware profile the image was built for.
    pub profile: String,
}

/// Why os-release does not describe a cairn image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsReleaseError {
    /// A field is missing or empty.
    #[error("{file} has no {field}")]
    Missing {
        /// The file.
        file: String,
        /// The field.
        field: &'static str,
    },
    /// `IMAGE_ID` does not start with `cairn-`.
    #[error("{file}: IMAGE_ID={found:?} is not cairn-<role>")]
    NotCairn {
        /// The file.
        file: String,
        /// The value found.
        found: String,
    },
}

/// One os-release value: unquoted, `"..."` or `'...'` (no escapes are used by cairn).
fn value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(key)?.strip_prefix('=')?;
        let v = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
            .unwrap_or(rest);
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// Parses os-release `text` read from `file` (named in errors).
pub fn parse(file: &str, text: &str) -> Result<Image, OsReleaseError> {
    let get = |field: &'static str| {
        value(text, field).ok_or_else(|| OsReleaseError::Missing {
            file: file.to_owned(),
            field,
        })
    };
    let id = get("IMAGE_ID")?;
    let role = id
        .strip_prefix("cairn-")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| OsReleaseError::NotCairn {
            file: file.to_owned(),
            found: id.clone(),
        })?
        .to_owned();
    Ok(Image {
        role,
        version: get("IMAGE_VERSION")?,
        profile: get("CAIRN_PROFILE")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_role_version_and_profile() {
        let text = "NAME=cairn\nPRETTY_NAME=\"cairn 0.2.0 (lb role)\"\nIMAGE_ID=cairn-lb\n\
                    IMAGE_VERSION=0.2.0\nCAIRN_PROFILE=\"qemu-x86_64\"\n";
        assert_eq!(
            parse("os-release", text).unwrap(),
            Image {
                role: "lb".into(),
                version: "0.2.0".into(),
                profile: "qemu-x86_64".into()
            }
        );
    }

    #[test]
    fn names_what_is_missing() {
        let err = parse("/etc/os-release", "IMAGE_ID=cairn-lb\nIMAGE_VERSION=1\n").unwrap_err();
        assert_eq!(err.to_string(), "/etc/os-release has no CAIRN_PROFILE");
        let err = parse("f", "IMAGE_ID=debian\nIMAGE_VERSION=1\nCAIRN_PROFILE=p\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: IMAGE_ID=\"debian\" is not cairn-<role>"
        );
    }
}

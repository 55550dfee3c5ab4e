//! Roles as data: which Debian packages, programs, files, modules and
//! services make up a role. The builder composes `base` with the role asked
//! for; adding a role means adding a directory under `image/roles/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A role's definition, from `roles/<name>/role.toml` (+ `services.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDef {
    /// Role name; matches the directory.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Debian packages the role takes files from.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Programs (absolute paths inside the packages), with their libraries.
    #[serde(default)]
    pub binaries: Vec<PathBuf>,
    /// Data files copied as they are.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Kernel modules beyond the profile's.
    #[serde(default)]
    pub modules: Vec<String>,
    /// The role's services file text (`services.toml` beside `role.toml`).
    #[serde(skip)]
    pub services: String,
}

/// Why a role could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// No such role directory.
    #[error("unknown role {name:?} (known roles: {known})")]
    Unknown {
        /// The role asked for.
        name: String,
        /// Roles that exist, comma-separated.
        known: String,
    },
    /// The role file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The role file is malformed.
    #[error("{path}: field `{field}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted field path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// The roles that exist under `dir`.
pub fn known_roles(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("role.toml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

/// Loads a role by name from the roles directory.
pub fn load_role(dir: &Path, name: &str) -> Result<RoleDef, RoleError> {
    let known = known_roles(dir);
    if !known.iter().any(|k| k == name) {
        return Err(RoleError::Unknown {
            name: name.to_owned(),
            known: known.join(", "),
        });
    }
    let path = dir.join(name).join("role.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| RoleError::Read {
        path: path.clone(),
        source,
    })?;
    let invalid = |field: String, reason: String| RoleError::Invalid {
        path: path.clone(),
        field,
        reason,
    };
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| invalid(String::new(), e.message().to_owned()))?;
    let mut role: RoleDef = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let msg = e.into_inner().to_string();
        invalid(field, msg.lines().next().unwrap_or_default().to_owned())
    })?;
    if role.name != name {
        return Err(invalid(
            "name".into(),
            format!("{:?} does not match the directory {name:?}", role.name),
        ));
    }
    for (i, b) in role.binaries.iter().chain(&role.files).enumerate() {
        if !b.is_absolute() {
            return Err(invalid(
                format!("binaries/files[{i}]"),
                format!("{} is not an absolute path", b.display()),
            ));
        }
    }
    let services = dir.join(name).join("services.toml");
    if services.is_file() {
        role.services = std::fs::read_to_string(&services).map_err(|source| RoleError::Read {
            path: services.clone(),
            source,
        })?;
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("roles")
    }

    #[test]
    fn base_role_loads() {
        let r = load_role(&roles_dir(), "base").unwrap();
        assert!(r.binaries.contains(&PathBuf::from("/sbin/mke2fs")));
    }

    #[test]
    fn unknown_role_lists_known_ones() {
        let e = load_role(&roles_dir(), "mainframe")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown role \"mainframe\" (known roles: base"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(
            dir.path().join("x/role.toml"),
            "name = \"x\"\ndescription = \"d\"\npackages = [\"a\"]\nbinarys = []\n",
        )
        .unwrap();
        let e = load_role(dir.path(), "x").unwrap_err().to_string();
        assert!(
            e.contains("role.toml: field `binarys`: unknown field"),
            "{e}"
        );
    }
}

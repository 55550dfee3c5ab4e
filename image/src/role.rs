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
    /// Shared objects the programs `dlopen` (plugins no ELF dependency walk
    /// finds), each copied with its own shared-library closure.
    #[serde(default)]
    pub dlopen: Vec<DlopenSet>,
    /// Kernel modules beyond the profile's.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Workspace programs the role runs (cargo package and binary of the same
    /// name, built static like cairn-init), installed as `/usr/sbin/<name>`.
    #[serde(default)]
    pub box_binaries: Vec<String>,
    /// System users the role's services drop privileges to.
    #[serde(default, rename = "user")]
    pub users: Vec<RoleUser>,
    /// Configuration files rendered from the site file at build time, by
    /// renderer name (see [`SiteConfig`]).
    #[serde(default)]
    pub site_configs: Vec<SiteConfig>,
    /// The smallest root slot (each of A and B) the role needs, in MiB; a
    /// hardware profile that gives less is raised to it. Sized for the
    /// role's future versions too: a slot cannot grow after a box is flashed.
    pub root_mib: Option<u32>,
    /// The smallest data partition the role needs, in MiB (raised like `root_mib`).
    pub data_mib: Option<u32>,
    /// The role's services file text (`services.toml` beside `role.toml`).
    #[serde(skip)]
    pub services: String,
}

/// A system user (and its group of the same name and number) in the image's
/// `/etc/passwd` and `/etc/group`. Numbers are fixed in the role so every
/// build gives the same files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleUser {
    /// User and group name.
    pub name: String,
    /// User id, also the group id (1-65533: 0 is root, 65534 nobody).
    pub uid: u32,
    /// Home directory (not created; default `/nonexistent`).
    #[serde(default = "default_home")]
    pub home: PathBuf,
}

/// Plugins under one directory of a package: `dir` plus patterns relative
/// to it (`*` and `?` in the last component only). Every pattern must match
/// at least one file, so a renamed plugin fails the build instead of the box.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlopenSet {
    /// The plugin directory (absolute, inside the packages).
    pub dir: PathBuf,
    /// Files to take, relative to `dir` (`xlator/mgmt/glusterd.so`,
    /// `xlator/features/*.so`).
    pub include: Vec<String>,
}

fn default_home() -> PathBuf {
    PathBuf::from("/nonexistent")
}

/// A configuration file the builder renders from the site file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteConfig {
    /// `/etc/haproxy/haproxy.cfg` from the site's `[lb]` section.
    Haproxy,
    /// `/etc/hosts` (localhost and every node of the site with its first
    /// address) and `/etc/nsswitch.conf` (`hosts: files dns`).
    Hosts,
    /// The k8s-node role's files from the site's `[k8s]` section: containerd's
    /// config, the CNI network list, the kubelet's files when the site names
    /// one, the kubelet itself and the pause image (`build/k8s.rs`).
    K8s,
}

impl SiteConfig {
    /// Where the rendered file goes in the root tree.
    pub fn path(self) -> &'static str {
        match self {
            SiteConfig::Haproxy => "/etc/haproxy/haproxy.cfg",
            SiteConfig::Hosts => "/etc/hosts",
            SiteConfig::K8s => crate::build::k8s::CONTAINERD_CONFIG,
        }
    }
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
    check_names(&role, &invalid)?;
    check_dlopen(&role, &invalid)?;
    let services = dir.join(name).join("services.toml");
    if services.is_file() {
        role.services = std::fs::read_to_string(&services).map_err(|source| RoleError::Read {
            path: services.clone(),
            source,
        })?;
    }
    Ok(role)
}

/// Checks the `dlopen` sets: absolute directories, relative patterns without
/// `..`, wildcards only in the last component.
fn check_dlopen(
    role: &RoleDef,
    invalid: &dyn Fn(String, String) -> RoleError,
) -> Result<(), RoleError> {
    for (i, set) in role.dlopen.iter().enumerate() {
        let s = set.dir.to_string_lossy();
        if !set.dir.is_absolute() || s.split('/').any(|c| c == ".." || c == ".") {
            return Err(invalid(
                format!("dlopen[{i}].dir"),
                format!("{s} is not an absolute path without `.` or `..`"),
            ));
        }
        if s.contains(['*', '?']) {
            return Err(invalid(
                format!("dlopen[{i}].dir"),
                format!("{s}: wildcards belong in `include`, not in the directory"),
            ));
        }
        if set.include.is_empty() {
            return Err(invalid(
                format!("dlopen[{i}].include"),
                "name at least one file or pattern (the whole directory is never taken)".into(),
            ));
        }
        for (k, pat) in set.include.iter().enumerate() {
            let parts: Vec<&str> = pat.split('/').collect();
            let bad_part = parts
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == "..");
            let wild_dirs = parts[..parts.len() - 1]
                .iter()
                .any(|c| c.contains(['*', '?']));
            if pat.starts_with('/') || bad_part || wild_dirs || pat.contains("**") {
                return Err(invalid(
                    format!("dlopen[{i}].include[{k}]"),
                    format!(
                        "{pat:?} is not a relative file pattern (no leading '/', '.', '..' or '**'; `*` and `?` only in the file name)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks user and box binary names and numbers.
fn check_names(
    role: &RoleDef,
    invalid: &dyn Fn(String, String) -> RoleError,
) -> Result<(), RoleError> {
    let name_ok = |n: &str, extra: char| {
        !n.is_empty()
            && n.len() <= 32
            && n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == extra)
    };
    for (i, b) in role.box_binaries.iter().enumerate() {
        if !name_ok(b, '-') {
            return Err(invalid(
                format!("box_binaries[{i}]"),
                format!("{b:?} is not a workspace package name (lower-case letters, digits, '-')"),
            ));
        }
    }
    for (i, u) in role.users.iter().enumerate() {
        if !name_ok(&u.name, '_') {
            return Err(invalid(
                format!("user[{i}].name"),
                format!(
                    "{:?} is not a user name (lower-case letter first, then letters, digits, '-', '_'; at most 32)",
                    u.name
                ),
            ));
        }
        if !(1..=65_533).contains(&u.uid) {
            return Err(invalid(
                format!("user[{i}].uid"),
                format!(
                    "{} is reserved (use 1-65533; 0 is root, 65534 nobody)",
                    u.uid
                ),
            ));
        }
        if let Some(j) = role.users[..i]
            .iter()
            .position(|o| o.name == u.name || o.uid == u.uid)
        {
            return Err(invalid(
                format!("user[{i}]"),
                format!("name or uid of {:?} is also used by user[{j}]", u.name),
            ));
        }
        if !u.home.is_absolute() {
            return Err(invalid(
                format!("user[{i}].home"),
                format!("{} is not an absolute path", u.home.display()),
            ));
        }
    }
    Ok(())
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
    fn lb_role_loads_with_its_user_binaries_and_config() {
        let r = load_role(&roles_dir(), "lb").unwrap();
        assert!(r.binaries.contains(&PathBuf::from("/usr/sbin/haproxy")));
        assert_eq!(r.box_binaries, vec!["cairn-vipd".to_owned()]);
        assert_eq!(r.site_configs, vec![SiteConfig::Haproxy]);
        assert_eq!(r.users.len(), 1);
        assert_eq!(r.users[0].name, "haproxy");
        assert!(r.modules.contains(&"macvlan".to_owned()));
        assert!(r.services.contains("/usr/sbin/haproxy"));
        assert!(r.services.contains("/usr/sbin/cairn-vipd"));
    }

    fn role_error(body: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        std::fs::write(
            dir.path().join("x/role.toml"),
            format!("name = \"x\"\ndescription = \"d\"\n{body}"),
        )
        .unwrap();
        load_role(dir.path(), "x").unwrap_err().to_string()
    }

    #[test]
    fn bad_users_box_binaries_and_configs_are_named() {
        let cases = [
            (
                "[[user]]\nname = \"Web\"\nuid = 10\n",
                "field `user[0].name`: \"Web\" is not a user name",
            ),
            (
                "[[user]]\nname = \"web\"\nuid = 0\n",
                "field `user[0].uid`: 0 is reserved",
            ),
            (
                "[[user]]\nname = \"web\"\nuid = 10\n[[user]]\nname = \"www\"\nuid = 10\n",
                "field `user[1]`: name or uid of \"www\" is also used by user[0]",
            ),
            (
                "[[user]]\nname = \"web\"\nuid = 10\nhome = \"var\"\n",
                "field `user[0].home`: var is not an absolute path",
            ),
            (
                "box_binaries = [\"../vipd\"]\n",
                "field `box_binaries[0]`: \"../vipd\" is not a workspace package name",
            ),
            (
                "site_configs = [\"nginx\"]\n",
                "field `site_configs[0]`: unknown variant `nginx`",
            ),
        ];
        for (body, want) in cases {
            let e = role_error(body);
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn bad_dlopen_sets_are_named() {
        let cases = [
            (
                "[[dlopen]]\ndir = \"lib/x\"\ninclude = [\"a.so\"]\n",
                "field `dlopen[0].dir`: lib/x is not an absolute path",
            ),
            (
                "[[dlopen]]\ndir = \"/usr/lib/*\"\ninclude = [\"a.so\"]\n",
                "field `dlopen[0].dir`: /usr/lib/*: wildcards belong in `include`",
            ),
            (
                "[[dlopen]]\ndir = \"/usr/lib/x\"\ninclude = []\n",
                "field `dlopen[0].include`: name at least one file",
            ),
            (
                "[[dlopen]]\ndir = \"/usr/lib/x\"\ninclude = [\"a.so\", \"*/b.so\"]\n",
                "field `dlopen[0].include[1]`: \"*/b.so\" is not a relative file pattern",
            ),
            (
                "[[dlopen]]\ndir = \"/usr/lib/x\"\ninclude = [\"../b.so\"]\n",
                "field `dlopen[0].include[0]`: \"../b.so\" is not a relative file pattern",
            ),
        ];
        for (body, want) in cases {
            let e = role_error(body);
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn storage_role_declares_its_xlators_explicitly() {
        let r = load_role(&roles_dir(), "storage").unwrap();
        assert!(r.binaries.contains(&PathBuf::from("/usr/sbin/glusterd")));
        assert!(r.binaries.contains(&PathBuf::from("/sbin/mkfs.xfs")));
        assert_eq!(r.dlopen.len(), 1);
        let inc = &r.dlopen[0].include;
        assert!(
            inc.contains(&"xlator/mgmt/glusterd.so".to_owned()),
            "{inc:?}"
        );
        assert!(
            inc.contains(&"rpc-transport/socket.so".to_owned()),
            "{inc:?}"
        );
        assert!(r.modules.contains(&"xfs".to_owned()));
        assert_eq!(
            r.box_binaries,
            vec!["cairn-storage".to_owned(), "cairn-vipd".to_owned()]
        );
        assert!(r.modules.contains(&"nft_dup_ipv4".to_owned()));
        assert!(r.services.contains("glusterd"));
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

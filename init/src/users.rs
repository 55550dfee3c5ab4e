//! User and group lookups from `/etc/passwd` and `/etc/group` under a root.
//!
//! A cairn image has no NSS modules, so the files are read directly.

use std::path::{Path, PathBuf};

/// Why the user database could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct UserDbError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Users (name, uid, primary gid) and groups (name, gid).
#[derive(Debug, Default)]
pub struct UserDb {
    users: Vec<(String, u32, u32)>,
    groups: Vec<(String, u32)>,
}

impl UserDb {
    /// Reads `etc/passwd` and `etc/group` under `root`. A missing group file is
    /// treated as empty; a missing passwd file is an error only when a name
    /// has to be looked up, which is why the result is kept as a `Result`.
    pub fn load(root: &Path) -> Result<Self, UserDbError> {
        let read = |rel: &str| {
            let path = root.join(rel);
            std::fs::read_to_string(&path).map_err(|source| UserDbError { path, source })
        };
        let passwd = read("etc/passwd")?;
        let group = read("etc/group").unwrap_or_default();
        Ok(Self::parse(&passwd, &group))
    }

    /// Parses passwd and group text.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
            })
            .collect();
        Self { users, groups }
    }

    /// Uid and primary gid of a user.
    pub fn user(&self, name: &str) -> Option<(u32, u32)> {
        self.users.iter().find(|u| u.0 == name).map(|u| (u.1, u.2))
    }

    /// Gid of a group.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_skips_malformed_lines() {
        let db = UserDb::parse(
            "root:x:0:0::/root:/bin/sh\n# comment\nbad\nweb:x:33:34::/:/bin/false\n",
            "root:x:0:\nwww:x:34:web\nbroken:x:notanumber:\n",
        );
        assert_eq!(db.user("web"), Some((33, 34)));
        assert_eq!(db.user("bad"), None);
        assert_eq!(db.group("www"), Some(34));
        assert_eq!(db.group("broken"), None);
    }
}

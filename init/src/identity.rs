//! Who this box is: the image's role and version, and its node entry in the
//! site file, found by the MAC addresses of its interfaces (or by
//! `cairn.node=` on the kernel command line).

use std::path::{Path, PathBuf};

use cairn_site::{Mac, Node, Role, Site};
use serde::Deserialize;

/// Where the builder puts the image description on the root filesystem.
pub const IMAGE_FILE: &str = "/etc/cairn/image.toml";
/// Where the builder puts the site file on the root filesystem.
pub const SITE_FILE: &str = "/etc/cairn/site.toml";

/// What the builder records about an image (`/etc/cairn/image.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// The role the image was built for.
    pub role: Role,
    /// Hardware profile name.
    pub profile: String,
    /// Image version.
    pub version: String,
}

/// Why the box could not find itself.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `cairn.node=` names no node.
    #[error("cairn.node={0}: the site file has no such node")]
    NoSuchNode(String),
    /// No node has one of our MACs.
    #[error(
        "no node in the site file has one of this box's MAC addresses ({ours}); known MACs: {known}. Add this box to the site file or boot with cairn.node=<name>"
    )]
    NoMatch {
        /// This box's MACs.
        ours: String,
        /// MACs in the site file.
        known: String,
    },
    /// The node exists but is meant for another role.
    #[error("node {node:?} has role {node_role} but this image is built for {image_role}")]
    WrongRole {
        /// The node.
        node: String,
        /// Its role in the site file.
        node_role: Role,
        /// The image's role.
        image_role: Role,
    },
}

/// Reads `image.toml`.
pub fn load_image_info(path: &Path) -> Result<ImageInfo, IdentityError> {
    let err = |reason: String| IdentityError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str(&text).map_err(|e| err(e.message().to_owned()))
}

/// Reads the site file.
pub fn load_site(path: &Path) -> Result<Site, IdentityError> {
    cairn_site::load_site(path).map_err(|e| IdentityError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Interfaces and their MACs under a `/sys/class/net`-like directory
/// (loopback and interfaces without a MAC are skipped), sorted by name.
pub fn local_macs(sys_class_net: &Path) -> Vec<(String, Mac)> {
    let mut v: Vec<(String, Mac)> = std::fs::read_dir(sys_class_net)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let addr = std::fs::read_to_string(e.path().join("address")).ok()?;
            let mac: Mac = addr.trim().parse().ok()?;
            Some((name, mac))
        })
        .collect();
    v.sort();
    v
}

/// Picks this box's node: by name when `override_name` is given, else by MAC;
/// the node must have the image's role.
pub fn resolve<'a>(
    site: &'a Site,
    image_role: Role,
    macs: &[Mac],
    override_name: Option<&str>,
) -> Result<&'a Node, IdentityError> {
    let node = match override_name {
        Some(name) => site
            .node(name)
            .ok_or_else(|| IdentityError::NoSuchNode(name.to_owned()))?,
        None => site
            .node_by_mac(macs)
            .ok_or_else(|| IdentityError::NoMatch {
                ours: join(macs.iter()),
                known: join(site.nodes.iter().filter_map(|n| n.mac.as_ref())),
            })?,
    };
    if node.role != image_role {
        return Err(IdentityError::WrongRole {
            node: node.name.clone(),
            node_role: node.role,
            image_role,
        });
    }
    Ok(node)
}

fn join<'a>(macs: impl Iterator<Item = &'a Mac>) -> String {
    let v: Vec<String> = macs.map(|m| m.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = r#"
[cluster]
name = "t"
[[node]]
name = "box1"
role = "base"
mac = "52:54:00:00:00:01"
addresses = ["192.0.2.5/24"]
[[node]]
name = "box2"
role = "storage"
mac = "52:54:00:00:00:02"
addresses = ["192.0.2.6/24"]
[storage]
[[storage.volume]]
name = "gv0"
type = "distribute"
bricks = ["box2"]
"#;

    fn site() -> Site {
        cairn_site::parse_site(SITE, Path::new("site.toml")).unwrap()
    }

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn by_mac_by_name_and_errors() {
        let s = site();
        let n = resolve(
            &s,
            Role::Base,
            &[mac("52:54:00:00:00:99"), mac("52:54:00:00:00:01")],
            None,
        )
        .unwrap();
        assert_eq!(n.name, "box1");
        assert_eq!(
            resolve(&s, Role::Base, &[], Some("box1")).unwrap().name,
            "box1"
        );
        let e = resolve(&s, Role::Base, &[mac("52:54:00:00:00:99")], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(52:54:00:00:00:99)") && e.contains("52:54:00:00:00:01, 52:54:00:00:00:02"),
            "{e}"
        );
        let e = resolve(&s, Role::Base, &[], Some("ghost"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "cairn.node=ghost: the site file has no such node");
        let e = resolve(&s, Role::Base, &[mac("52:54:00:00:00:02")], None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "node \"box2\" has role storage but this image is built for base"
        );
    }

    #[test]
    fn reads_macs_from_a_sysfs_like_tree() {
        let dir = tempfile::tempdir().unwrap();
        for (name, addr) in [
            ("lo", "00:00:00:00:00:00"),
            ("eth0", "52:54:00:00:00:01"),
            ("sit0", ""),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("address"), format!("{addr}\n")).unwrap();
        }
        assert_eq!(
            local_macs(dir.path()),
            vec![("eth0".to_owned(), mac("52:54:00:00:00:01"))]
        );
    }

    #[test]
    fn image_info_parses_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("image.toml");
        std::fs::write(
            &p,
            "role = \"lb\"\nprofile = \"qemu-x86_64\"\nversion = \"1.2.0\"\n",
        )
        .unwrap();
        assert_eq!(load_image_info(&p).unwrap().role, Role::Lb);
        std::fs::write(
            &p,
            "role = \"lb\"\nprofile = \"q\"\nversion = \"1\"\nextra = 1\n",
        )
        .unwrap();
        assert!(
            load_image_info(&p)
                .unwrap_err()
                .to_string()
                .contains("unknown field `extra`")
        );
    }
}

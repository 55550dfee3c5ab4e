//! The lab's state directory: where everything lives, the saved plan
//! (`lab.json`), and the stamps that decide when a role image is rebuilt.
//!
//! ```text
//! <state>/lab.json               the plan of the running lab (removed by `down`)
//! <state>/keeper.sock            the keeper's control socket
//! <state>/keeper.pid             the keeper's pid
//! <state>/keeper.log             the keeper's log (kept after `down`)
//! <state>/images/<role>/         `cairn build` output for each role
//! <state>/images/<role>.stamp    what that image was built from
//! <state>/vms/<node>/disk.qcow2  the node's overlay on its role's disk.qcow2
//! <state>/vms/<node>/OVMF_VARS.fd its UEFI variables
//! <state>/vms/<node>/console.log its serial console (kept after `down`)
//! <state>/vms/<node>/ctl.sock    host end of its control channel (`cairn lab ctl`)
//! <state>/vms/<node>/runtime     path of QEMU's runtime directory while it runs
//! <state>/responders/<node>.log  an external node's responders
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::{LabPlan, fnv1a};

/// Reading or writing a state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `lab.json` is not a lab plan.
    #[error("{path}: not a lab plan: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Paths inside one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (should be absolute).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The saved plan.
    pub fn plan_file(&self) -> PathBuf {
        self.root.join("lab.json")
    }

    /// The keeper's control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("keeper.sock")
    }

    /// The keeper's pid file.
    pub fn keeper_pid_file(&self) -> PathBuf {
        self.root.join("keeper.pid")
    }

    /// The keeper's log.
    pub fn keeper_log(&self) -> PathBuf {
        self.root.join("keeper.log")
    }

    /// Build output of a role.
    pub fn image(&self, role: &str) -> PathBuf {
        self.root.join("images").join(role)
    }

    /// What the image of a role was built from.
    pub fn image_stamp(&self, role: &str) -> PathBuf {
        self.root.join("images").join(format!("{role}.stamp"))
    }

    /// A node's VM directory.
    pub fn vm_dir(&self, node: &str) -> PathBuf {
        self.root.join("vms").join(node)
    }

    /// A node's serial console log.
    pub fn console_log(&self, node: &str) -> PathBuf {
        self.vm_dir(node).join("console.log")
    }

    /// The host end of a node's control channel (QEMU listens on it; the
    /// box's `cairnctl agent` answers).
    pub fn ctl_socket(&self, node: &str) -> PathBuf {
        self.vm_dir(node).join("ctl.sock")
    }

    /// The lab's update repository (`cairn publish --repo` it), served at the
    /// site's `[update] url` when that is the client's address.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    /// The update repository server's log.
    pub fn repo_log(&self) -> PathBuf {
        self.root.join("responders").join("repo.log")
    }

    /// An external node's responder log.
    pub fn responder_log(&self, node: &str) -> PathBuf {
        self.root.join("responders").join(format!("{node}.log"))
    }

    /// Reads the saved plan; `None` when there is none.
    pub fn load_plan(&self) -> Result<Option<LabPlan>, StateError> {
        let path = self.plan_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source })
    }

    /// Saves the plan (atomically: written beside, then renamed).
    pub fn save_plan(&self, plan: &LabPlan) -> Result<(), StateError> {
        let path = self.plan_file();
        let text = serde_json::to_string_pretty(plan).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes())
    }

    /// The keeper's pid from its pid file, if any.
    pub fn keeper_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.keeper_pid_file())
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// What a role image was built from. The image is rebuilt when any field
/// differs (the site file's bytes, the `cairn` binary, the profile, the sources
/// the builder reads besides the site: roles, profiles, the box binaries' crates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// FNV-1a of the site file's bytes, hex.
    pub site_hash: String,
    /// Size and modification time (ns since the epoch) of the `cairn` binary.
    pub cairn: String,
    /// Hardware profile.
    pub profile: String,
    /// [`source_fingerprint`] of the workspace when the image was built.
    #[serde(default)]
    pub sources: String,
}

/// Directories of the source tree whose files go into an image besides the site file: the
/// roles and profiles `cairn build` reads, and the crates of the static box binaries it
/// compiles. A file added, removed or touched there changes the fingerprint.
pub const IMAGE_SOURCES: &[&str] = &["image/roles", "hardware-profiles", "init", "services"];

/// Count and newest modification time (ns) of the regular files under `dirs` of `root`,
/// skipping build output (`target`); cheap enough to run on every `lab up`.
pub fn source_fingerprint(root: &Path, dirs: &[&str]) -> String {
    fn walk(dir: &Path, count: &mut u64, newest: &mut u128) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if entry.file_name() != "target" {
                    walk(&path, count, newest);
                }
            } else if meta.is_file() {
                *count += 1;
                let ns = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                *newest = (*newest).max(ns);
            }
        }
    }
    let (mut count, mut newest) = (0u64, 0u128);
    for d in dirs {
        walk(&root.join(d), &mut count, &mut newest);
    }
    format!("{count}@{newest}")
}

impl Stamp {
    /// The stamp for a build from these inputs.
    pub fn new(
        site_bytes: &[u8],
        cairn_len: u64,
        cairn_mtime_ns: u128,
        profile: &str,
        sources: &str,
    ) -> Self {
        Self {
            site_hash: format!("{:016x}", fnv1a(site_bytes)),
            cairn: format!("{cairn_len}@{cairn_mtime_ns}"),
            profile: profile.to_string(),
            sources: sources.to_string(),
        }
    }

    /// Why an image stamped `old` must be rebuilt for `self`, or `None`.
    pub fn rebuild_reason(&self, old: Option<&Stamp>) -> Option<&'static str> {
        match old {
            None => Some("not built yet"),
            Some(o) if o.profile != self.profile => Some("the profile changed"),
            Some(o) if o.site_hash != self.site_hash => Some("the site file changed"),
            Some(o) if o.cairn != self.cairn => Some("the cairn binary changed"),
            Some(o) if o.sources != self.sources => {
                Some("roles, profiles or box-binary sources changed")
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stamps_say_why_an_image_is_rebuilt() {
        let s = Stamp::new(b"site", 10, 20, "qemu-x86_64", "1@2");
        assert_eq!(s.rebuild_reason(None), Some("not built yet"));
        assert_eq!(s.rebuild_reason(Some(&s.clone())), None);
        let other_site = Stamp::new(b"site2", 10, 20, "qemu-x86_64", "1@2");
        assert_eq!(
            s.rebuild_reason(Some(&other_site)),
            Some("the site file changed")
        );
        let other_bin = Stamp::new(b"site", 10, 21, "qemu-x86_64", "1@2");
        assert_eq!(
            s.rebuild_reason(Some(&other_bin)),
            Some("the cairn binary changed")
        );
        let other_sources = Stamp::new(b"site", 10, 20, "qemu-x86_64", "1@3");
        assert_eq!(
            s.rebuild_reason(Some(&other_sources)),
            Some("roles, profiles or box-binary sources changed")
        );
        let other_profile = Stamp::new(b"site", 10, 20, "x", "1@2");
        assert_eq!(
            s.rebuild_reason(Some(&other_profile)),
            Some("the profile changed")
        );
    }

    #[test]
    fn source_fingerprint_sees_files_added_and_touched_but_not_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/target")).unwrap();
        std::fs::write(dir.path().join("a/x"), "1").unwrap();
        let one = source_fingerprint(dir.path(), &["a", "missing"]);
        assert!(one.starts_with("1@"), "{one}");
        std::fs::write(dir.path().join("a/target/big"), "build output").unwrap();
        assert_eq!(source_fingerprint(dir.path(), &["a"]), one);
        std::fs::write(dir.path().join("a/y"), "2").unwrap();
        assert!(source_fingerprint(dir.path(), &["a"]).starts_with("2@"));
    }

    #[test]
    fn paths_and_plan_files() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateDir::new(dir.path().to_path_buf());
        assert!(st.load_plan().unwrap().is_none());
        assert_eq!(
            st.console_log("lb1"),
            dir.path().join("vms/lb1/console.log")
        );
        assert_eq!(st.image_stamp("lb"), dir.path().join("images/lb.stamp"));
        std::fs::write(st.plan_file(), "{").unwrap();
        let err = st.load_plan().unwrap_err().to_string();
        assert!(err.contains("lab.json: not a lab plan"), "{err}");
        std::fs::write(st.keeper_pid_file(), "123\n").unwrap();
        assert_eq!(st.keeper_pid(), Some(123));
    }
}

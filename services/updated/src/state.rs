//! What cairn-updated remembers across reboots, in `<state-dir>/state.json`: the highest
//! index serial accepted, the versions that failed to boot, what each slot holds, and a
//! downgrade under way with the last one's outcome.
//! Written atomically: a temp file, fsync, rename, fsync of the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name in the state directory.
pub const FILE: &str = "state.json";

/// A version that did not become healthy; never installed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failed {
    /// The version.
    pub version: String,
    /// Why, e.g. `did not become healthy in 3 boots; running 0.1.0 again`.
    pub reason: String,
}

/// A downgrade under way: recorded before the running entry is demoted, resolved by
/// [`crate::downgrade::judge`] once the box runs `to` blessed or is back at `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Downgrade {
    /// The version the box ran (its entry is demoted to `cairn-<from>+0.efi`).
    pub from: String,
    /// The older version installed with its tries.
    pub to: String,
}

/// The remembered state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The highest index serial accepted.
    #[serde(default)]
    pub last_serial: Option<u64>,
    /// Versions that failed to boot, oldest first.
    #[serde(default)]
    pub failed: Vec<Failed>,
    /// The version written to slot `a`, when complete and verified.
    #[serde(default)]
    pub slot_a: Option<String>,
    /// The version written to slot `b`, when complete and verified.
    #[serde(default)]
    pub slot_b: Option<String>,
    /// A downgrade under way (absent otherwise, so older agents read the file too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<Downgrade>,
    /// How the last downgrade ended, e.g. `downgraded 0.5.0 -> 0.4.0`; cleared by the
    /// next install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_downgrade: Option<String>,
}

impl State {
    /// The failed versions alone, as `cairn_update::index::choose` wants them.
    pub fn failed_versions(&self) -> Vec<String> {
        self.failed.iter().map(|f| f.version.clone()).collect()
    }

    /// Records `version` as failed (once).
    pub fn record_failed(&mut self, version: &str, reason: &str) {
        if !self.failed.iter().any(|f| f.version == version) {
            self.failed.push(Failed {
                version: version.to_owned(),
                reason: reason.to_owned(),
            });
        }
    }

    /// What slot `slot` holds, if known.
    pub fn slot(&self, slot: crate::slots::Slot) -> Option<&str> {
        match slot {
            crate::slots::Slot::A => self.slot_a.as_deref(),
            crate::slots::Slot::B => self.slot_b.as_deref(),
        }
    }

    /// Sets what slot `slot` holds.
    pub fn set_slot(&mut self, slot: crate::slots::Slot, version: Option<String>) {
        match slot {
            crate::slots::Slot::A => self.slot_a = version,
            crate::slots::Slot::B => self.slot_b = version,
        }
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid state JSON.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the field.
        reason: String,
    },
}

/// Reads the state from `dir`; a missing file is the empty state.
pub fn load(dir: &Path) -> Result<State, StateError> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => return Err(StateError::Io { path, source }),
    };
    serde_json::from_slice(&bytes).map_err(|e| StateError::Parse {
        path,
        reason: e.to_string(),
    })
}

/// Writes the state to `dir` atomically (creating `dir` if needed).
pub fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut text = serde_json::to_string_pretty(state).map_err(|e| StateError::Parse {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::slots::Slot;

    #[test]
    fn round_trips_and_starts_empty() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("var/lib/cairn/update");
        assert_eq!(load(&dir).unwrap(), State::default());
        let mut s = State {
            last_serial: Some(7),
            ..State::default()
        };
        s.record_failed(
            "0.3.0",
            "did not become healthy in 3 boots; running 0.2.0 again",
        );
        s.record_failed("0.3.0", "again");
        s.set_slot(Slot::B, Some("0.3.0".into()));
        save(&dir, &s).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.failed.len(), 1);
        assert_eq!(back.failed_versions(), vec!["0.3.0".to_owned()]);
        assert_eq!(back.slot(Slot::B), Some("0.3.0"));
        assert_eq!(back.slot(Slot::A), None);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE)]);
    }

    #[test]
    fn a_downgrade_round_trips_and_is_absent_when_none() {
        let t = tempfile::tempdir().unwrap();
        let mut s = State {
            last_serial: Some(3),
            ..State::default()
        };
        save(t.path(), &s).unwrap();
        let text = std::fs::read_to_string(t.path().join(FILE)).unwrap();
        assert!(
            !text.contains("downgrade"),
            "no downgrade fields unless one happened, so an older agent reads it: {text}"
        );
        s.downgrade = Some(Downgrade {
            from: "0.5.0".into(),
            to: "0.4.0".into(),
        });
        s.last_downgrade = Some("downgrading 0.5.0 -> 0.4.0".into());
        save(t.path(), &s).unwrap();
        let text = std::fs::read_to_string(t.path().join(FILE)).unwrap();
        assert!(
            text.contains("\"downgrade\": {") && text.contains("\"from\": \"0.5.0\""),
            "{text}"
        );
        assert_eq!(load(t.path()).unwrap(), s);
        std::fs::write(
            t.path().join(FILE),
            "{\"downgrade\": {\"from\": \"1\", \"to\": \"0\", \"why\": 1}}",
        )
        .unwrap();
        let err = load(t.path()).unwrap_err().to_string();
        assert!(err.contains("why"), "{err}");
    }

    #[test]
    fn garbage_and_unknown_fields_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(FILE), "{\"last_serial\": 1, \"extra\": 2}").unwrap();
        let err = load(t.path()).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("extra"), "{err}");
    }
}

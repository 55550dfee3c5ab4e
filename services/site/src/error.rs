//! Errors that name the file, the field and the reason, and the helpers every cairn config
//! reader uses to produce them (collect all problems, TOML with field paths).

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a site or profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: PathBuf,
    /// Dotted path of the field (e.g. `node[2].mac`), if the error is about one.
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found in a file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.0.as_slice() {
            return write!(f, "{one}");
        }
        write!(f, "{} errors:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Collects errors for one file, so validation reports every problem at once. Shared by
/// every cairn config reader (site, profile, cairn-vipd's config).
pub struct Collector {
    file: PathBuf,
    /// What was found so far.
    pub errors: Vec<FileError>,
}

impl Collector {
    /// A collector for errors in `file`.
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    /// Records a problem with `field` (empty: the whole file).
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        let field = field.into();
        self.errors.push(FileError {
            file: self.file.clone(),
            field: (!field.is_empty()).then_some(field),
            reason: reason.into(),
        });
    }

    /// `value` when nothing was found, else every error.
    pub fn finish<T>(self, value: T) -> Result<T, FileErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(FileErrors(self.errors))
        }
    }
}

/// Deserializes TOML text with field paths in errors.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, FileErrors> {
    let value: toml::Value = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .and_then(|s| text.get(..s.start))
            .map(|t| format!(" (line {})", t.lines().count().max(1)))
            .unwrap_or_default();
        single(file, "", format!("{}{line}", e.message()))
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        let msg = msg.lines().next().unwrap_or_default().to_owned();
        single(file, if path == "." { "" } else { &path }, msg)
    })
}

/// Reads a file, naming it in the error.
pub fn read(file: &Path) -> Result<String, FileErrors> {
    std::fs::read_to_string(file).map_err(|e| single(file, "", format!("cannot read: {e}")))
}

/// One error about `field` of `file` (empty field: the whole file).
pub fn single(file: &Path, field: &str, reason: impl Into<String>) -> FileErrors {
    let mut c = Collector::new(file);
    c.add(field, reason);
    FileErrors(c.errors)
}

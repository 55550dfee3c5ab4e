//! `cairn build --version V`: writes V into the site file's `[image] version`,
//! keeping the rest of the text (comments, order, layout) as it is, so the
//! site file baked into the image and written beside it says the same version
//! as the image itself.

use toml_edit::{DocumentMut, Item, Table, Value};

/// Why the version could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SiteVersionError {
    /// The text is not TOML.
    #[error("not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    /// `image` exists but is not a table.
    #[error("field `image`: not a table")]
    ImageNotTable,
}

/// Returns `text` with `[image] version = "<version>"` (the section and the
/// key are added when missing; a comment after the old value is kept).
pub fn set_version(text: &str, version: &str) -> Result<String, SiteVersionError> {
    let mut doc: DocumentMut = text.parse()?;
    let image = doc
        .entry("image")
        .or_insert_with(|| Item::Table(Table::new()));
    let table = image
        .as_table_like_mut()
        .ok_or(SiteVersionError::ImageNotTable)?;
    match table.get_mut("version").and_then(Item::as_value_mut) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = Value::from(version);
            *old.decor_mut() = decor;
        }
        None => {
            table.insert("version", Item::Value(Value::from(version)));
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replaces_the_value_and_keeps_everything_else() {
        let text = "# my site\n[cluster]\nname = \"demo\"\n\n[image]\n# when\nversion = \"0.1.0\"   # bump me\nsource_date_epoch = 1\n\n[network]\n";
        let out = set_version(text, "0.2.0").unwrap();
        assert_eq!(
            out,
            text.replace("\"0.1.0\"", "\"0.2.0\""),
            "only the value changes"
        );
    }

    #[test]
    fn adds_the_key_or_the_section_when_missing() {
        let out = set_version("[image]\nsource_date_epoch = 1\n", "3").unwrap();
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["image"]["version"].as_str(), Some("3"));
        assert_eq!(v["image"]["source_date_epoch"].as_integer(), Some(1));

        let out = set_version("[cluster]\nname = \"demo\"\n", "2.0~rc1").unwrap();
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["image"]["version"].as_str(), Some("2.0~rc1"));
        assert_eq!(v["cluster"]["name"].as_str(), Some("demo"));
    }

    #[test]
    fn refuses_an_image_that_is_not_a_table_and_bad_toml() {
        assert!(matches!(
            set_version("image = 3\n", "1"),
            Err(SiteVersionError::ImageNotTable)
        ));
        assert!(matches!(
            set_version("[image\n", "1"),
            Err(SiteVersionError::Parse(_))
        ));
    }
}

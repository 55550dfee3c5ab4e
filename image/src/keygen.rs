//! `cairn keygen`: a new Ed25519 update signing key for a site.
//!
//! The private key goes to `DIR/update-key.pem` (PKCS#8 PEM, mode 0600); the
//! public key is printed as the line to put in the site's `[update]` section.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_update::keys::SigningKey;

/// File name of the private key in `--out`.
pub const KEY_FILE: &str = "update-key.pem";

/// Writes a new key to `dir/update-key.pem`; refuses to replace an existing
/// one unless `force`. Returns the key file and the public key line.
pub fn run(dir: &Path, force: bool) -> Result<(PathBuf, String)> {
    let path = dir.join(KEY_FILE);
    if !force && std::fs::symlink_metadata(&path).is_ok() {
        bail!(
            "{} exists: it may be the key every box of the site trusts; \
             give --force to replace it",
            path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = SigningKey::generate().context("generating an Ed25519 key")?;
    let pem = key
        .to_pkcs8_pem()
        .context("encoding the key as PKCS#8 PEM")?;
    let tmp = dir.join(format!(".{KEY_FILE}.tmp-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok((path, format!("public_key = \"{}\"", key.public_key())))
}

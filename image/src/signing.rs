//! The site's update signing key on the build host: where it comes from
//! (`--update-key` or the site's `update.signing_key`) and the check that it
//! is the key the site's boxes trust.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cairn_site::Site;
use cairn_update::keys::{PublicKey, SigningKey};

/// A loaded signing key that matches the site's `update.public_key`.
pub struct Signer {
    /// The key.
    pub key: SigningKey,
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// Its public half.
    pub public: PublicKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("Signer")
            .field("path", &self.path)
            .field("public", &self.public.to_string())
            .finish()
    }
}

/// Where the key file is: `explicit` (`--update-key`), else the site's
/// `update.signing_key`, relative to `base` (the site file's directory) when
/// known. `site_file` names the site in errors.
pub fn key_path(
    site: &Site,
    site_file: &Path,
    explicit: Option<&Path>,
    base: Option<&Path>,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let update = site
        .update
        .as_ref()
        .with_context(|| format!("{}: the site has no [update] section", site_file.display()))?;
    match (&update.signing_key, base) {
        (Some(k), _) if k.is_absolute() => Ok(k.clone()),
        (Some(k), Some(base)) => Ok(base.join(k)),
        (Some(k), None) => bail!(
            "{}: update.signing_key {:?} is relative to the site file the build used, \
             which is not known here: give the key with --update-key FILE",
            site_file.display(),
            k.display()
        ),
        (None, _) => bail!(
            "{}: the site has an [update] section, so its images are signed: give the signing key \
             with --update-key FILE or `signing_key` in [update] (make one with `cairn keygen --out DIR`)",
            site_file.display()
        ),
    }
}

/// Loads the key at `path` and checks that its public key is the site's
/// `update.public_key`.
pub fn load(site: &Site, site_file: &Path, path: &Path) -> Result<Signer> {
    let update = site
        .update
        .as_ref()
        .with_context(|| format!("{}: the site has no [update] section", site_file.display()))?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the update signing key {}", path.display()))?;
    let key = SigningKey::from_pkcs8_pem(&text)
        .with_context(|| format!("{}: not an Ed25519 PKCS#8 PEM private key", path.display()))?;
    let trusted = PublicKey::parse(&update.public_key)
        .with_context(|| format!("{}: field `update.public_key`", site_file.display()))?;
    let public = key.public_key();
    if public.to_string() != trusted.to_string() {
        bail!(
            "the signing key {} (public key {public}, key id {}) is not the key the site trusts: \
             {} has update.public_key = \"{trusted}\" (key id {})",
            path.display(),
            public.keyid(),
            site_file.display(),
            trusted.keyid()
        );
    }
    Ok(Signer {
        key,
        path: path.to_path_buf(),
        public,
    })
}

//! `cairn publish`: puts a build's signed update bundle into a repository
//! directory (served by any static HTTP server) and re-signs the index; with
//! `--withdraw` it takes a version off offer instead.
//!
//! Everything is checked before the repository changes: the bundle against
//! the site's public key and its own manifest, the repository's index against
//! the same key, the signing key against the site. Files are written as
//! temporaries and renamed; the index goes last, so a box never sees an
//! index naming files that are not complete.

pub mod plan;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use cairn_debian::apt::sha256_file;
use cairn_update::index::{self, Index};
use cairn_update::keys::{PublicKey, SigningKey};
use cairn_update::manifest::{self, Manifest};
use sha2::{Digest, Sha256};

use crate::signing;

/// One `cairn publish` invocation.
#[derive(Debug, Clone)]
pub struct Request {
    /// The repository directory (created when missing).
    pub repo: PathBuf,
    /// A `cairn build` output directory with `bundle/` and `site.toml`.
    pub build: PathBuf,
    /// The signing key (else the site's `update.signing_key` when absolute).
    pub update_key: Option<PathBuf>,
    /// How long the new index stays valid.
    pub expires_days: u64,
}

/// One `cairn publish --withdraw` invocation.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    /// The repository directory.
    pub repo: PathBuf,
    /// The role of the bundle to take off offer.
    pub role: String,
    /// Its profile.
    pub profile: String,
    /// Its version.
    pub version: String,
    /// The site file: its `update.public_key` is trusted and its `update.signing_key`
    /// (relative to the site file) is the default key. Without it the signing key's own
    /// public key must verify the repository's index.
    pub site: Option<PathBuf>,
    /// The signing key.
    pub update_key: Option<PathBuf>,
    /// How long the new index stays valid.
    pub expires_days: u64,
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The new index.
    pub index: Index,
    /// The bundle's directory relative to the repository.
    pub path: String,
    /// The bundle was already in the index (re-signed, files checked).
    pub already_listed: bool,
}

/// The index files of a repository.
const INDEX: &str = "index.json";
const INDEX_SIG: &str = "index.json.sig";

/// The bundle's files in the order they are copied: the manifest last.
const BUNDLE_FILES: [&str; 4] = [
    "root.img",
    "cairn.efi",
    "manifest.json.sig",
    "manifest.json",
];

/// Publishes `req.build`'s bundle into `req.repo`.
pub fn run(req: &Request) -> Result<Published> {
    if !(1..=3650).contains(&req.expires_days) {
        bail!("--expires-days {}: must be 1 to 3650", req.expires_days);
    }
    let site_file = req.build.join("site.toml");
    let site = cairn_site::load_site(&site_file)?;
    let update = site.update.as_ref().with_context(|| {
        format!(
            "{}: the site has no [update] section, so the build has no update bundle",
            site_file.display()
        )
    })?;
    let trusted = PublicKey::parse(&update.public_key)
        .with_context(|| format!("{}: field `update.public_key`", site_file.display()))?;
    let bundle = req.build.join("bundle");
    let (m, manifest_bytes) = read_bundle(&bundle, &trusted)?;
    if m.cluster != site.cluster.name {
        bail!(
            "{}: the bundle is for cluster {:?} but {} names cluster {:?}",
            bundle.display(),
            m.cluster,
            site_file.display(),
            site.cluster.name
        );
    }
    let key_path = signing::key_path(&site, &site_file, req.update_key.as_deref(), None)?;
    let signer = signing::load(&site, &site_file, &key_path)?;

    std::fs::create_dir_all(&req.repo)
        .with_context(|| format!("creating {}", req.repo.display()))?;
    let old = read_index(&req.repo, &trusted)?;
    let manifest_sha = crate::build::manifest::hex(&Sha256::digest(&manifest_bytes));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let plan = plan::next_index(old.as_ref(), &m, &manifest_sha, now, req.expires_days)
        .with_context(|| format!("publishing into {}", req.repo.display()))?;

    let dest = req.repo.join(&plan.path);
    if !plan.already_listed {
        check_leftover(&dest, &manifest_sha, &m)?;
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
    for f in BUNDLE_FILES {
        copy_if_different(&bundle.join(f), &dest.join(f))?;
    }
    sync_dir(&dest)?;

    write_index(&req.repo, &plan.index, &signer.key, &trusted)?;
    Ok(Published {
        index: plan.index,
        path: plan.path,
        already_listed: plan.already_listed,
    })
}

/// Takes `w.role`/`w.profile` `w.version` off offer: the index is re-signed without it
/// (`serial` + 1, new `published` and `expires`), written like a publish's. The bundle's
/// files stay: a box that read the previous index may still be downloading them, and they
/// keep the version's directory taken (publish refuses other content there). Returns the
/// new index.
pub fn withdraw(w: &Withdrawal) -> Result<Index> {
    if !(1..=3650).contains(&w.expires_days) {
        bail!("--expires-days {}: must be 1 to 3650", w.expires_days);
    }
    cairn_update::version::validate(&w.version)
        .with_context(|| format!("--withdraw {:?}", w.version))?;
    let (signer, trusted) = match &w.site {
        Some(site_file) => {
            let site = cairn_site::load_site(site_file)?;
            let update = site.update.as_ref().with_context(|| {
                format!(
                    "{}: the site has no [update] section, so it has no repository",
                    site_file.display()
                )
            })?;
            let trusted = PublicKey::parse(&update.public_key)
                .with_context(|| format!("{}: field `update.public_key`", site_file.display()))?;
            let base = site_file.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            });
            let path = signing::key_path(&site, site_file, w.update_key.as_deref(), base)?;
            (signing::load(&site, site_file, &path)?.key, trusted)
        }
        None => {
            let path = w.update_key.as_deref().context(
                "--withdraw needs the signing key: --update-key FILE, or --site FILE with update.signing_key",
            )?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the update signing key {}", path.display()))?;
            let key = SigningKey::from_pkcs8_pem(&text).with_context(|| {
                format!("{}: not an Ed25519 PKCS#8 PEM private key", path.display())
            })?;
            let trusted = key.public_key();
            (key, trusted)
        }
    };
    let old = read_index(&w.repo, &trusted)?.with_context(|| {
        format!(
            "{} has no {INDEX}: nothing is on offer to withdraw",
            w.repo.display()
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let new = plan::withdraw(&old, &w.role, &w.profile, &w.version, now, w.expires_days)
        .with_context(|| format!("withdrawing from {}", w.repo.display()))?;
    write_index(&w.repo, &new, &signer, &trusted)?;
    Ok(new)
}

/// Signs `ix`, checks that the boxes will accept it, and writes `index.json.sig`, then
/// `index.json` (each through a temporary and a rename), then syncs the directory.
fn write_index(repo: &Path, ix: &Index, key: &SigningKey, trusted: &PublicKey) -> Result<()> {
    let json = ix.to_json();
    let sig = key.sign(json.as_bytes()).to_json();
    // The new index must be one the boxes accept.
    index::verify(trusted, json.as_bytes(), sig.as_bytes())
        .context("the new index does not verify against the site's key")?;
    write_atomic(&repo.join(INDEX_SIG), sig.as_bytes())?;
    write_atomic(&repo.join(INDEX), json.as_bytes())?;
    sync_dir(repo)
}

/// A bundle directory not in the index may hold a withdrawn version (or an interrupted
/// publish): refuses to put other content under the same version.
fn check_leftover(dest: &Path, manifest_sha: &str, m: &Manifest) -> Result<()> {
    let existing = dest.join("manifest.json");
    if !existing.is_file() {
        return Ok(());
    }
    let sha = sha256_file(&existing)?;
    if sha != manifest_sha {
        bail!(
            "{} holds another build of {}/{} {} (manifest sha256 {sha}, this build {manifest_sha};              withdrawn earlier?): a version names one image forever, build with a new --version",
            dest.display(),
            m.role,
            m.profile,
            m.version
        );
    }
    Ok(())
}

/// Verifies `bundle/manifest.json` with the site's key and checks the files
/// it describes; returns the manifest and its exact bytes.
fn read_bundle(bundle: &Path, trusted: &PublicKey) -> Result<(Manifest, Vec<u8>)> {
    let mpath = bundle.join("manifest.json");
    let bytes = std::fs::read(&mpath).with_context(|| {
        format!(
            "reading {} (was the build made from a site with an [update] section?)",
            mpath.display()
        )
    })?;
    let sig_path = bundle.join("manifest.json.sig");
    let sig =
        std::fs::read(&sig_path).with_context(|| format!("reading {}", sig_path.display()))?;
    let m = manifest::verify(trusted, &bytes, &sig).map_err(|e| match e {
        manifest::ManifestError::Signature(e) => anyhow::anyhow!(
            "{}: not signed by the site's key {}: {e}",
            mpath.display(),
            trusted.keyid()
        ),
        e => anyhow::anyhow!("{}: {e}", mpath.display()),
    })?;
    for (file, size, sha) in [
        (&m.root.file, m.root.size, &m.root.sha256),
        (&m.uki.file, m.uki.size, &m.uki.sha256),
    ] {
        let p = bundle.join(file);
        let len = std::fs::metadata(&p)
            .with_context(|| format!("{}", p.display()))?
            .len();
        let actual = sha256_file(&p)?;
        if len != size || &actual != sha {
            bail!(
                "{}: does not match the bundle manifest ({len} bytes, sha256 {actual}; the manifest says {size} bytes, sha256 {sha})",
                p.display()
            );
        }
    }
    Ok((m, bytes))
}

/// The repository's current index, verified with the site's key; none for a
/// new repository.
fn read_index(repo: &Path, trusted: &PublicKey) -> Result<Option<Index>> {
    let ipath = repo.join(INDEX);
    let bytes = match std::fs::read(&ipath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", ipath.display())),
    };
    let spath = repo.join(INDEX_SIG);
    let sig = std::fs::read(&spath).with_context(|| {
        format!(
            "reading {}: {} exists without its signature",
            spath.display(),
            ipath.display()
        )
    })?;
    let ix = index::verify(trusted, &bytes, &sig).map_err(|e| match e {
        index::IndexError::Signature(e) => anyhow::anyhow!(
            "{}: not signed by the site's key {} (another site's repository?): {e}",
            ipath.display(),
            trusted.keyid()
        ),
        e => anyhow::anyhow!("{}: {e}", ipath.display()),
    })?;
    Ok(Some(ix))
}

/// Copies `src` to `dst` through a temporary and a rename, unless `dst`
/// already has the same content.
fn copy_if_different(src: &Path, dst: &Path) -> Result<()> {
    if dst.is_file() && sha256_file(dst)? == sha256_file(src)? {
        return Ok(());
    }
    let tmp = temp_for(dst)?;
    let done = (|| -> std::io::Result<()> {
        std::fs::copy(src, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dst)
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("copying {} to {}", src.display(), dst.display()));
    }
    Ok(())
}

/// Writes `bytes` to `dst` through a temporary and a rename.
fn write_atomic(dst: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_for(dst)?;
    let done = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dst)
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", dst.display()));
    }
    Ok(())
}

/// `.<name>.tmp-<pid>` beside `dst` (hidden, so a directory listing or a
/// half-finished publish never offers it).
fn temp_for(dst: &Path) -> Result<PathBuf> {
    let name = dst
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no file name", dst.display()))?;
    Ok(dst.with_file_name(format!(".{name}.tmp-{}", std::process::id())))
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

//! The signed update bundle (`bundle/` in the build output): what
//! `cairn publish` puts in a repository and `cairn-updated` installs into the
//! inactive slot. Format: docs/update.md, "Bundle".

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use cairn_update::manifest::{self, CHUNK_SIZE, Manifest, RootImage, UkiFile};

use super::Inputs;
use super::rootimg::Verity;
use crate::signing::Signer;

/// The bundle's directory in the build output.
pub const DIR: &str = "bundle";
/// The bundle's files, relative to the build output, in the order written.
pub const FILES: [&str; 4] = [
    "bundle/root.img",
    "bundle/cairn.efi",
    "bundle/manifest.json",
    "bundle/manifest.json.sig",
];
/// The root image's file name in the bundle.
const ROOT: &str = "root.img";
/// The UKI's file name in the bundle.
const UKI: &str = "cairn.efi";

/// Moves `root_img` (the root slot's content, no longer needed where it is)
/// and copies `uki` into `out/bundle/`, then writes the manifest describing
/// them and its detached signature. Returns the manifest.
pub fn write(
    inputs: &Inputs,
    signer: &Signer,
    verity: &Verity,
    root_img: &Path,
    uki: &Path,
    out: &Path,
) -> Result<Manifest> {
    let dir = out.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let root_dst = dir.join(ROOT);
    std::fs::rename(root_img, &root_dst)
        .with_context(|| format!("moving the root image to {}", root_dst.display()))?;
    let uki_dst = dir.join(UKI);
    std::fs::copy(uki, &uki_dst)
        .with_context(|| format!("copying the UKI to {}", uki_dst.display()))?;
    std::fs::set_permissions(&uki_dst, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", uki_dst.display()))?;

    let open = |p: &Path| std::fs::File::open(p).with_context(|| format!("{}", p.display()));
    let (root_size, root_sha, chunks) = manifest::hash_chunks(open(&root_dst)?, CHUNK_SIZE)
        .with_context(|| format!("hashing {}", root_dst.display()))?;
    let (uki_size, uki_sha, _) = manifest::hash_chunks(open(&uki_dst)?, CHUNK_SIZE)
        .with_context(|| format!("hashing {}", uki_dst.display()))?;
    let m = Manifest {
        format: manifest::FORMAT,
        cluster: inputs.site.cluster.name.clone(),
        version: inputs.site.image.version.clone(),
        role: inputs.role.to_string(),
        profile: inputs.profile.name.clone(),
        source_date_epoch: inputs.site.image.source_date_epoch,
        root: RootImage {
            file: ROOT.into(),
            size: root_size,
            sha256: root_sha,
            chunk_size: CHUNK_SIZE,
            chunks,
            verity: manifest::Verity {
                root_hash: verity.root_hash.clone(),
                salt: verity.salt.clone(),
                data_blocks: verity.data_blocks,
                hash_offset: verity.hash_offset,
            },
        },
        uki: UkiFile {
            file: UKI.into(),
            size: uki_size,
            sha256: uki_sha,
        },
    };
    let json = m.to_json();
    let sig = signer.key.sign(json.as_bytes()).to_json();
    // What the box will do with it: a manifest it cannot verify is a bug here.
    manifest::verify(&signer.public, json.as_bytes(), sig.as_bytes())
        .context("the bundle manifest does not verify against its own key")?;
    std::fs::write(dir.join("manifest.json"), &json).context("writing bundle/manifest.json")?;
    std::fs::write(dir.join("manifest.json.sig"), sig)
        .context("writing bundle/manifest.json.sig")?;
    Ok(m)
}

//! A one-layer OCI image archive (an image layout in a tar file) written
//! byte for byte deterministically: the k8s-node role's pause image, built
//! from our own `cairn-pause` program so no registry is ever needed.
//!
//! The archive holds `oci-layout`, `index.json` and three blobs under
//! `blobs/sha256/`: an uncompressed layer with the program as `/pause`, the
//! image config (entrypoint `/pause`) and the manifest. `index.json` names
//! the image with `io.containerd.image.name` (what `ctr images import`
//! stores it as) and `org.opencontainers.image.ref.name` (its tag). Every
//! tar entry has mtime `epoch`, uid/gid 0 and a fixed order, so the same
//! program gives the same bytes.

use sha2::{Digest, Sha256};

/// Media type of the manifest.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the config.
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the (uncompressed) layer.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A tar entry name does not fit the ustar header.
    #[error("tar entry name {0:?} is longer than 100 bytes")]
    NameTooLong(String),
    /// The image name has no tag.
    #[error("image name {0:?} needs a tag (name:tag)")]
    NoTag(String),
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A minimal ustar writer: regular files and directories, root-owned, one mtime.
struct Tar {
    out: Vec<u8>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Self {
        Self {
            out: Vec::new(),
            mtime,
        }
    }

    fn header(&mut self, name: &str, mode: u32, size: usize, kind: u8) -> Result<(), OciError> {
        if name.len() > 100 {
            return Err(OciError::NameTooLong(name.to_owned()));
        }
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}", w = len - 1);
            h[at..at + len - 1].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, u64::from(mode));
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, size as u64);
        octal(&mut h, 136, 12, self.mtime);
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.extend_from_slice(&h);
        Ok(())
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), OciError> {
        self.header(name, mode, data.len(), b'0')?;
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<(), OciError> {
        self.header(name, 0o755, 0, b'5')
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
}

/// What [`pause_archive`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The archive bytes.
    pub bytes: Vec<u8>,
    /// Digest of the manifest (what containerd reports as the image's digest).
    pub manifest_digest: String,
    /// Digest of the config (the CRI's image id).
    pub config_digest: String,
}

/// An OCI image layout tar named `name` (`host/repo:tag`) whose single layer
/// holds `program` as `/pause`, run as the entrypoint.
pub fn pause_archive(name: &str, program: &[u8], epoch: u64) -> Result<Archive, OciError> {
    let tag = name
        .rsplit_once(':')
        .filter(|(repo, t)| !t.is_empty() && !t.contains('/') && !repo.is_empty())
        .map(|(_, t)| t)
        .ok_or_else(|| OciError::NoTag(name.to_owned()))?;
    let mut layer = Tar::new(epoch);
    layer.file("pause", 0o755, program)?;
    let layer = layer.finish();
    let layer_digest = digest(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/pause"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    })
    .to_string();
    let config_digest = digest(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [ { "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len() } ],
    })
    .to_string();
    let manifest_digest = digest(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [ {
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        } ],
    })
    .to_string();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut tar = Tar::new(epoch);
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.file("index.json", 0o644, index.as_bytes())?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    tar.file(&blob(&config_digest), 0o644, config.as_bytes())?;
    tar.file(&blob(&layer_digest), 0o644, &layer)?;
    tar.file(&blob(&manifest_digest), 0o644, manifest.as_bytes())?;
    Ok(Archive {
        bytes: tar.finish(),
        manifest_digest,
        config_digest,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn same_input_same_bytes_and_names_need_a_tag() {
        let a = pause_archive("cairn.invalid/pause:0.1.0", b"\x7fELF fake", 1_767_225_600).unwrap();
        let b = pause_archive("cairn.invalid/pause:0.1.0", b"\x7fELF fake", 1_767_225_600).unwrap();
        assert_eq!(a, b);
        let c =
            pause_archive("cairn.invalid/pause:0.1.0", b"\x7fELF other", 1_767_225_600).unwrap();
        assert_ne!(a.manifest_digest, c.manifest_digest);
        assert!(matches!(
            pause_archive("cairn.invalid/pause", b"x", 0),
            Err(OciError::NoTag(_))
        ));
        assert!(matches!(
            pause_archive("host:5000/pause", b"x", 0),
            Err(OciError::NoTag(_))
        ));
    }

    /// The host's GNU tar reads the archive and its layer, and every blob's
    /// name is the digest of its content.
    #[test]
    fn gnu_tar_reads_it_and_blobs_match_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let a = pause_archive("cairn.invalid/pause:1", b"#!program", 1_767_225_600).unwrap();
        let file = dir.path().join("pause.tar");
        std::fs::write(&file, &a.bytes).unwrap();
        let o = Command::new("tar")
            .args(["-xf"])
            .arg(&file)
            .arg("-C")
            .arg(dir.path())
            .output()
            .expect("GNU tar on the build host");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], a.manifest_digest.as_str());
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "cairn.invalid/pause:1"
        );
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "1");
        let blobs = dir.path().join("blobs/sha256");
        let mut n = 0;
        for e in std::fs::read_dir(&blobs).unwrap() {
            let e = e.unwrap();
            let data = std::fs::read(e.path()).unwrap();
            assert_eq!(
                digest(&data),
                format!("sha256:{}", e.file_name().to_string_lossy())
            );
            n += 1;
        }
        assert_eq!(n, 3);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blobs.join(a.manifest_digest.trim_start_matches("sha256:"))).unwrap(),
        )
        .unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let o = Command::new("tar")
            .args(["-tvf"])
            .arg(blobs.join(layer.trim_start_matches("sha256:")))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
        assert!(listing.trim_end().ends_with(" pause"), "{listing}");
        assert!(listing.contains("2026-01-01"), "{listing}");
    }
}

//! The bundle manifest (`manifest.json`): what a build produced and how to
//! check it, chunk by chunk, before a byte of it is written to a slot.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hex;
use crate::keys::{PublicKey, SignatureError, verify_detached};

/// The manifest format this crate reads and writes.
pub const FORMAT: u32 = 1;

/// Size of the chunks the root image is hashed in (1 MiB).
pub const CHUNK_SIZE: u64 = 1 << 20;

/// A bundle's manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The site's cluster name.
    pub cluster: String,
    /// The image version (see [`crate::version`]).
    pub version: String,
    /// The role the image was built for.
    pub role: String,
    /// The hardware profile the image was built for.
    pub profile: String,
    /// The build's SOURCE_DATE_EPOCH; a box whose clock is before it does not trust its clock.
    pub source_date_epoch: u64,
    /// The root image (erofs and its verity tree).
    pub root: RootImage,
    /// The unified kernel image.
    pub uki: UkiFile,
}

/// The root image: erofs followed by its dm-verity hash tree.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RootImage {
    /// File name in the bundle directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 (lower-case hex) of the whole file.
    pub sha256: String,
    /// Chunk size the `chunks` hashes are over.
    pub chunk_size: u64,
    /// sha256 of each chunk, in order; the last one may be short.
    pub chunks: Vec<String>,
    /// The dm-verity parameters.
    pub verity: Verity,
}

/// dm-verity parameters of the root image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Verity {
    /// Root hash (hex, 64 digits for sha256).
    pub root_hash: String,
    /// Salt (hex, may be empty).
    pub salt: String,
    /// Number of 4 KiB data blocks.
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the image.
    pub hash_offset: u64,
}

/// The unified kernel image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UkiFile {
    /// File name in the bundle directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 (lower-case hex) of the file.
    pub sha256: String,
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The signature does not check out.
    #[error("manifest.json: {0}")]
    Signature(#[from] SignatureError),
    /// Not JSON of the right shape.
    #[error("manifest.json: {0}")]
    Json(String),
    /// A field has a bad value.
    #[error("manifest.json: field `{field}`: {reason}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a plain file name: no '/', not `.`/`..`, not empty.
pub(crate) fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        Err(format!("{name:?} is not a plain file name"))
    } else {
        Ok(())
    }
}

fn check_hex(name: &str, value: &str, len: usize) -> Result<(), ManifestError> {
    if hex::is_lower_hex(value, len) {
        Ok(())
    } else {
        Err(field(
            name,
            format!("{value:?} is not {len} lower-case hex digits"),
        ))
    }
}

/// Checks a name (cluster, role, profile) is a non-empty, plain token.
pub(crate) fn check_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a name (letters, digits, '-', '_', '.')"
        ))
    }
}

impl Manifest {
    /// Parses and validates (format, version syntax, hex lengths, chunk count
    /// = ceil(size/chunk_size), plain file names without '/').
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks every field's value; the first problem is reported.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(field(
                "format",
                format!(
                    "format {} is not supported (this build reads {FORMAT})",
                    self.format
                ),
            ));
        }
        check_name(&self.cluster).map_err(|r| field("cluster", r))?;
        crate::version::validate(&self.version).map_err(|e| field("version", e.to_string()))?;
        check_name(&self.role).map_err(|r| field("role", r))?;
        check_name(&self.profile).map_err(|r| field("profile", r))?;
        let r = &self.root;
        check_file_name(&r.file).map_err(|e| field("root.file", e))?;
        if r.size == 0 {
            return Err(field("root.size", "the root image is empty"));
        }
        check_hex("root.sha256", &r.sha256, 64)?;
        if r.chunk_size == 0 || r.chunk_size % 4096 != 0 {
            return Err(field(
                "root.chunk_size",
                format!("{} is not a positive multiple of 4096", r.chunk_size),
            ));
        }
        let want = r.size.div_ceil(r.chunk_size);
        if r.chunks.len() as u64 != want {
            return Err(field(
                "root.chunks",
                format!(
                    "{} chunk hashes, but a {}-byte image in {}-byte chunks has {want}",
                    r.chunks.len(),
                    r.size,
                    r.chunk_size
                ),
            ));
        }
        for (i, c) in r.chunks.iter().enumerate() {
            check_hex(&format!("root.chunks[{i}]"), c, 64)?;
        }
        let v = &r.verity;
        check_hex("root.verity.root_hash", &v.root_hash, 64)?;
        if v.salt.len() % 2 != 0 || v.salt.len() > 512 || !hex::is_lower_hex(&v.salt, v.salt.len())
        {
            return Err(field(
                "root.verity.salt",
                format!("{:?} is not lower-case hex bytes (at most 256)", v.salt),
            ));
        }
        if v.data_blocks == 0 {
            return Err(field("root.verity.data_blocks", "must be at least 1"));
        }
        if v.hash_offset < v.data_blocks.saturating_mul(4096) || v.hash_offset >= r.size {
            return Err(field(
                "root.verity.hash_offset",
                format!(
                    "{} is not between the end of the data ({}) and the end of the image ({})",
                    v.hash_offset,
                    v.data_blocks.saturating_mul(4096),
                    r.size
                ),
            ));
        }
        check_file_name(&self.uki.file).map_err(|e| field("uki.file", e))?;
        if self.uki.size == 0 {
            return Err(field("uki.size", "the UKI is empty"));
        }
        check_hex("uki.sha256", &self.uki.sha256, 64)?;
        Ok(())
    }

    /// The manifest's text: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Verifies the signature, then parses: what the box calls on
/// `manifest.json` + `manifest.json.sig`.
pub fn verify(key: &PublicKey, bytes: &[u8], sig_bytes: &[u8]) -> Result<Manifest, ManifestError> {
    verify_detached(key, bytes, sig_bytes)?;
    Manifest::from_json(bytes)
}

/// Size, sha256 and per-chunk sha256 of everything `r` yields (builder side).
pub fn hash_chunks(
    mut r: impl Read,
    chunk_size: u64,
) -> std::io::Result<(u64, String, Vec<String>)> {
    let chunk = usize::try_from(chunk_size)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("chunk size {chunk_size} is not usable"),
            )
        })?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; chunk];
    let mut size = 0u64;
    loop {
        // Fill one chunk (reads may be short).
        let mut n = 0;
        while n < chunk {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        chunks.push(hex::sha256(&buf[..n]));
        size += n as u64;
        if n < chunk {
            break;
        }
    }
    Ok((size, hex::encode(&whole.finalize()), chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    /// A valid manifest for a `size`-byte image of `byte`s (one 4 KiB data
    /// block, then the verity tree: `size` must be above 4096 to validate).
    pub(crate) fn sample(size: usize, byte: u8) -> Manifest {
        let data = vec![byte; size];
        let (n, sha256, chunks) = hash_chunks(&data[..], CHUNK_SIZE).unwrap();
        Manifest {
            format: FORMAT,
            cluster: "demo".into(),
            version: "0.2.0".into(),
            role: "lb".into(),
            profile: "qemu-x86_64".into(),
            source_date_epoch: 1_700_000_000,
            root: RootImage {
                file: "root.img".into(),
                size: n,
                sha256,
                chunk_size: CHUNK_SIZE,
                chunks,
                verity: Verity {
                    root_hash: "ab".repeat(32),
                    salt: "cd".repeat(32),
                    data_blocks: 1,
                    hash_offset: 4096,
                },
            },
            uki: UkiFile {
                file: "cairn.efi".into(),
                size: 1234,
                sha256: "ef".repeat(32),
            },
        }
    }

    fn err_of(m: &Manifest) -> String {
        Manifest::from_json(m.to_json().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn json_round_trip() {
        let m = sample(3 * (1 << 20) + 5, 1);
        assert_eq!(m.root.chunks.len(), 4);
        let text = m.to_json();
        assert!(text.ends_with("}\n"));
        assert_eq!(Manifest::from_json(text.as_bytes()).unwrap(), m);
    }

    #[test]
    fn hash_chunks_splits_at_chunk_size_and_hashes_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (size, whole, chunks) = hash_chunks(&data[..], 4096).unwrap();
        assert_eq!(size, 10_000);
        assert_eq!(whole, hex::sha256(&data));
        assert_eq!(
            chunks,
            vec![
                hex::sha256(&data[..4096]),
                hex::sha256(&data[4096..8192]),
                hex::sha256(&data[8192..]),
            ]
        );
        // Exactly one chunk: no empty trailing chunk.
        let (_, _, one) = hash_chunks(&data[..4096], 4096).unwrap();
        assert_eq!(one.len(), 1);
        let (n, _, none) = hash_chunks(&b""[..], 4096).unwrap();
        assert_eq!((n, none.len()), (0, 0));
        assert!(hash_chunks(&data[..], 0).is_err());
    }

    /// A change that makes a valid value invalid.
    type Change = Box<dyn Fn(&mut Manifest)>;

    #[test]
    fn bad_fields_are_named() {
        let good = sample(5000, 2);
        good.validate().unwrap();
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|m| m.format = 2),
                "field `format`: format 2 is not supported",
            ),
            (
                Box::new(|m| m.version = "1.0+3".into()),
                "field `version`: version \"1.0+3\" contains '+'",
            ),
            (Box::new(|m| m.cluster = String::new()), "field `cluster`"),
            (Box::new(|m| m.role = "lb/x".into()), "field `role`"),
            (
                Box::new(|m| m.root.file = "../root.img".into()),
                "field `root.file`: \"../root.img\" is not a plain file name",
            ),
            (
                Box::new(|m| m.uki.file = "EFI/x.efi".into()),
                "field `uki.file`",
            ),
            (
                Box::new(|m| m.root.sha256 = "AB".repeat(32)),
                "field `root.sha256`: ",
            ),
            (
                Box::new(|m| m.root.chunks[0] = "ab".into()),
                "field `root.chunks[0]`: \"ab\" is not 64 lower-case hex digits",
            ),
            (
                Box::new(|m| m.root.chunks.push("ab".repeat(32))),
                "field `root.chunks`: 2 chunk hashes, but a 5000-byte image in 1048576-byte chunks has 1",
            ),
            (
                Box::new(|m| m.root.size = 3 << 20),
                "field `root.chunks`: 1 chunk hashes",
            ),
            (
                Box::new(|m| m.root.chunk_size = 1000),
                "field `root.chunk_size`",
            ),
            (
                Box::new(|m| m.root.verity.root_hash = "ab".into()),
                "field `root.verity.root_hash`",
            ),
            (
                Box::new(|m| m.root.verity.salt = "abc".into()),
                "field `root.verity.salt`",
            ),
            (
                Box::new(|m| m.root.verity.data_blocks = 0),
                "field `root.verity.data_blocks`",
            ),
            (
                Box::new(|m| m.root.verity.hash_offset = 5000),
                "field `root.verity.hash_offset`",
            ),
            (Box::new(|m| m.uki.size = 0), "field `uki.size`"),
            (
                Box::new(|m| m.uki.sha256 = String::new()),
                "field `uki.sha256`",
            ),
        ];
        for (change, want) in cases {
            let mut m = good.clone();
            change(&mut m);
            let e = err_of(&m);
            assert!(e.starts_with("manifest.json: "), "{e}");
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let text = sample(100, 0).to_json();
        let extra = text.replacen("\"format\"", "\"extra\": 1, \"format\"", 1);
        let e = Manifest::from_json(extra.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let missing = text.replace("\"profile\": \"qemu-x86_64\",", "");
        let e = Manifest::from_json(missing.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `profile`"), "{e}");
    }

    #[test]
    fn verify_checks_the_signature_first() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let mut m = sample(100, 0);
        m.root.size = 2 << 20;
        m.root.chunks = vec!["00".repeat(32); 2];
        let text = m.to_json();
        let sig = k.sign(text.as_bytes()).to_json();
        assert_eq!(
            verify(&k.public_key(), text.as_bytes(), sig.as_bytes()).unwrap(),
            m
        );
        let changed = text.replace("0.2.0", "0.3.0");
        assert!(matches!(
            verify(&k.public_key(), changed.as_bytes(), sig.as_bytes()),
            Err(ManifestError::Signature(SignatureError::Bad(_)))
        ));
        // Signed but invalid: the signature passes, validation refuses.
        let bad = text.replace("\"format\": 1", "\"format\": 7");
        let sig = k.sign(bad.as_bytes()).to_json();
        assert!(matches!(
            verify(&k.public_key(), bad.as_bytes(), sig.as_bytes()),
            Err(ManifestError::Field { field, .. }) if field == "format"
        ));
    }
}

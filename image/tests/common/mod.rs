//! Shared helpers for the `cairn` CLI tests: run the binary, make keys and
//! site files, and a fake build directory with a signed bundle.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_update::keys::SigningKey;
use cairn_update::manifest::{self, CHUNK_SIZE, Manifest, RootImage, UkiFile, Verity};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cairn` with `args`.
pub fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("running cairn")
}

/// stderr of an output, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A deterministic key from a seed byte.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Writes `key` as PEM to `path`.
pub fn write_key(key: &SigningKey, path: &Path) {
    std::fs::write(path, key.to_pkcs8_pem().unwrap()).unwrap();
}

/// The example site's text with its cluster name and public key replaced.
pub fn site_text(cluster: &str, key: &SigningKey) -> String {
    let text = std::fs::read_to_string(workspace().join("examples/site.toml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("public_key = ") {
            out.push_str(&format!("public_key = \"{}\"", key.public_key()));
        } else if line.starts_with("name = \"demo\"") {
            out.push_str(&format!("name = \"{cluster}\""));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(
        out.contains(&key.public_key().to_string()),
        "example has [update]"
    );
    out
}

/// A fake `cairn build` output: `site.toml` and a bundle of `version` whose
/// root image is `root` (any bytes, at least 8 KiB), signed with `key`.
pub fn fake_build(
    dir: &Path,
    cluster: &str,
    key: &SigningKey,
    version: &str,
    root: &[u8],
) -> PathBuf {
    let b = dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(dir.join("site.toml"), site_text(cluster, key)).unwrap();
    std::fs::write(b.join("root.img"), root).unwrap();
    let uki = format!("UKI of {version}").into_bytes();
    std::fs::write(b.join("cairn.efi"), &uki).unwrap();
    let (size, sha256, chunks) = manifest::hash_chunks(root, CHUNK_SIZE).unwrap();
    let (uki_size, uki_sha, _) = manifest::hash_chunks(&uki[..], CHUNK_SIZE).unwrap();
    let m = Manifest {
        format: manifest::FORMAT,
        cluster: cluster.into(),
        version: version.into(),
        role: "lb".into(),
        profile: "qemu-x86_64".into(),
        source_date_epoch: 1_767_225_600,
        root: RootImage {
            file: "root.img".into(),
            size,
            sha256,
            chunk_size: CHUNK_SIZE,
            chunks,
            verity: Verity {
                root_hash: "ab".repeat(32),
                salt: "cd".repeat(32),
                // The first half of the image is "data", the rest "hash tree".
                data_blocks: size / 4096 / 2,
                hash_offset: size / 4096 / 2 * 4096,
            },
        },
        uki: UkiFile {
            file: "cairn.efi".into(),
            size: uki_size,
            sha256: uki_sha,
        },
    };
    let json = m.to_json();
    std::fs::write(b.join("manifest.json"), &json).unwrap();
    std::fs::write(
        b.join("manifest.json.sig"),
        key.sign(json.as_bytes()).to_json(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// `n` bytes of a simple pattern that differs per `seed`.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

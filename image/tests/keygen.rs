//! `cairn keygen`: a PKCS#8 key file only its owner reads, the public key
//! line for the site, and no silent replacement of a site's key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use cairn_update::keys::{PublicKey, SigningKey};
use common::{cairn, stderr};

#[test]
fn keygen_writes_a_private_key_and_prints_the_matching_public_key_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let o = cairn(&["keygen", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = String::from_utf8(o.stdout).unwrap();
    let public = line
        .trim_end()
        .strip_prefix("public_key = \"")
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a site line: {line:?}"));
    let public = PublicKey::parse(public).unwrap();

    let pem_path = out.join("update-key.pem");
    let mode = std::fs::metadata(&pem_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is readable by its owner only");
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(key.public_key(), public, "the printed key is the file's");

    // Any PKCS#8 tool reads it.
    let o = Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&pem_path)
        .output()
        .expect("openssl must be installed for this test (apt-get install openssl)");
    assert!(o.status.success(), "openssl: {}", stderr(&o));
}

#[test]
fn keygen_refuses_to_replace_a_key_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(cairn(&["keygen", "--out", d]).status.success());
    let pem_path = dir.path().join("update-key.pem");
    let first = std::fs::read(&pem_path).unwrap();

    let o = cairn(&["keygen", "--out", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("update-key.pem exists") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&pem_path).unwrap(),
        first,
        "the key is untouched"
    );

    let o = cairn(&["keygen", "--out", d, "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&pem_path).unwrap(), first, "a new key");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "update-key.pem")
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

//! `cairn build` refuses, before writing anything, a site with `[update]`
//! but no usable signing key, a key the site does not trust, and a bad
//! `--version`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{cairn, key, site_text, stderr, write_key};

/// Runs `cairn build` of the base role and returns (exit code, stderr); the
/// output directory must not exist afterwards.
fn build(site: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec![
        "build",
        "--quiet",
        "--profile",
        "qemu-x86_64",
        "--role",
        "base",
        "--site",
        site.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = cairn(&args);
    assert!(!out.exists(), "{extra:?}: a failed build leaves no output");
    (o.status.code(), stderr(&o))
}

#[test]
fn a_site_with_update_needs_a_signing_key_the_site_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let trusted = key(1);
    write_key(&trusted, &d.join("update-key.demo.pem"));
    write_key(&key(2), &d.join("other.pem"));
    let text = site_text("demo", &trusted);

    // No signing_key in the site and no --update-key.
    let no_key = d.join("no-key.toml");
    std::fs::write(
        &no_key,
        text.lines()
            .filter(|l| !l.starts_with("signing_key"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let (code, err) = build(&no_key, &out, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no-key.toml: the site has an [update] section, so its images are signed: give the signing key with --update-key FILE"),
        "{err}"
    );

    // The site's signing_key is another key than its public_key.
    let mismatch = d.join("mismatch.toml");
    std::fs::write(
        &mismatch,
        text.replace(
            "signing_key = \"update-key.demo.pem\"",
            "signing_key = \"other.pem\"",
        ),
    )
    .unwrap();
    let (code, err) = build(&mismatch, &out, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("other.pem (public key ed25519:"), "{err}");
    assert!(err.contains("is not the key the site trusts"), "{err}");
    assert!(
        err.contains(&format!("update.public_key = \"{}\"", trusted.public_key())),
        "{err}"
    );

    // --update-key overrides the site's (good) signing_key, and is checked too.
    let good = d.join("good.toml");
    std::fs::write(&good, &text).unwrap();
    let other = d.join("other.pem");
    let (code, err) = build(&good, &out, &["--update-key", other.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not the key the site trusts"), "{err}");

    // A key file that is missing or not a key.
    let (code, err) = build(&good, &out, &["--update-key", "/nonexistent/key.pem"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("reading the update signing key /nonexistent/key.pem"),
        "{err}"
    );
    let junk = d.join("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let (code, err) = build(&good, &out, &["--update-key", junk.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not an Ed25519 PKCS#8 PEM private key"),
        "{err}"
    );
}

#[test]
fn an_update_key_for_a_site_without_update_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key(1);
    write_key(&k, &d.join("k.pem"));
    let text = site_text("demo", &k);
    let without = d.join("plain.toml");
    std::fs::write(&without, &text[..text.find("[update]").unwrap()]).unwrap();
    let (code, err) = build(
        &without,
        &d.join("out"),
        &["--update-key", d.join("k.pem").to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--update-key: ") && err.contains("plain.toml has no [update] section"),
        "{err}"
    );
}

#[test]
fn a_bad_version_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = key(1);
    write_key(&k, &d.join("update-key.demo.pem"));
    let site = d.join("site.toml");
    std::fs::write(&site, site_text("demo", &k)).unwrap();
    let long = "1".repeat(33);
    for bad in ["0.2.0+3", "", "a b", long.as_str(), "0.2/0"] {
        let (code, err) = build(&site, &d.join("out"), &["--version", bad]);
        assert_eq!(code, Some(1), "{bad:?}: {err}");
        assert!(err.contains("cairn: --version: "), "{bad:?}: {err}");
    }
    // The site file's own version is checked with the same rule.
    let bad_site = d.join("bad-version.toml");
    std::fs::write(
        &bad_site,
        site_text("demo", &k).replace("version = \"0.1.0\"", "version = \"1+1\""),
    )
    .unwrap();
    let (code, err) = build(&bad_site, &d.join("out"), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("field `image.version`"), "{err}");
}

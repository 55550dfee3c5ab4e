//! `cairn publish`: a repository the boxes can trust. Serial grows, the same
//! version never changes content, and nothing from another key or cluster
//! gets in. Bundles here are small fakes signed like real ones, so these
//! tests need no image build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use cairn_update::index;
use cairn_update::keys::SigningKey;
use common::{cairn, fake_build, files, key, pattern, stderr, write_key};

/// Runs `cairn publish` of `build` into `repo` with the key file `key`.
fn publish(repo: &Path, build: &Path, key: &Path) -> std::process::Output {
    cairn(&[
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        build.to_str().unwrap(),
        "--update-key",
        key.to_str().unwrap(),
    ])
}

/// The repository's index, verified with `key`.
fn read_index(repo: &Path, key: &SigningKey) -> index::Index {
    index::verify(
        &key.public_key(),
        &std::fs::read(repo.join("index.json")).unwrap(),
        &std::fs::read(repo.join("index.json.sig")).unwrap(),
    )
    .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    key: SigningKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = key(7);
        write_key(&key, &dir.path().join("key.pem"));
        Self { dir, key }
    }
    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }
    fn key_file(&self) -> std::path::PathBuf {
        self.path("key.pem")
    }
    /// A fake build of `version` with root image bytes `root`.
    fn build(&self, name: &str, version: &str, root: &[u8]) -> std::path::PathBuf {
        fake_build(&self.path(name), "demo", &self.key, version, root)
    }
}

#[test]
fn publish_copies_the_bundle_and_grows_the_signed_index_serial() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let v2 = f.build("v2", "0.2.0", &pattern(2_500_000, 1));
    let o = publish(&repo, &v2, &f.key_file());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("published: "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 1);
    assert_eq!(ix.cluster, "demo");
    assert_eq!(ix.expires - ix.published, 30 * 86_400, "default 30 days");
    assert_eq!(ix.bundles.len(), 1);
    let e = &ix.bundles[0];
    assert_eq!(
        (e.role.as_str(), e.profile.as_str(), e.version.as_str()),
        ("lb", "qemu-x86_64", "0.2.0")
    );
    assert_eq!(e.path, "bundles/lb/qemu-x86_64/0.2.0/");
    for f in [
        "root.img",
        "cairn.efi",
        "manifest.json",
        "manifest.json.sig",
    ] {
        assert_eq!(
            std::fs::read(repo.join(&e.path).join(f)).unwrap(),
            std::fs::read(v2.join("bundle").join(f)).unwrap(),
            "{f} copied as it is"
        );
    }
    let manifest = std::fs::read(repo.join(&e.path).join("manifest.json")).unwrap();
    let (_, sha, _) = cairn_update::manifest::hash_chunks(&manifest[..], 1 << 20).unwrap();
    assert_eq!(e.manifest_sha256, sha);

    // A second version: serial 2, both listed, --expires-days honoured.
    let v3 = f.build("v3", "0.3.0", &pattern(1_000_000, 2));
    let o = cairn(&[
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        v3.to_str().unwrap(),
        "--update-key",
        f.key_file().to_str().unwrap(),
        "--expires-days",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 2);
    assert_eq!(ix.expires - ix.published, 2 * 86_400);
    let versions: Vec<&str> = ix.bundles.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["0.2.0", "0.3.0"]);

    // The same bundle again: nothing changes but the serial and the freshness.
    let o = publish(&repo, &v3, &f.key_file());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already published"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 3);
    assert_eq!(ix.bundles.len(), 2);
    let all = files(&repo);
    assert!(
        all.iter().all(|p| !p.contains(".tmp")),
        "temporaries left: {all:?}"
    );
    assert_eq!(all.len(), 2 + 2 * 4, "{all:?}");
}

#[test]
fn the_same_version_with_other_content_is_refused_and_the_repository_is_untouched() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let a = f.build("a", "0.2.0", &pattern(300_000, 1));
    assert!(publish(&repo, &a, &f.key_file()).status.success());
    let before = std::fs::read(repo.join("index.json")).unwrap();
    let b = f.build("b", "0.2.0", &pattern(300_000, 9));
    let o = publish(&repo, &b, &f.key_file());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("lb/qemu-x86_64 0.2.0 is already published with other content"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(repo.join("index.json")).unwrap(), before);
    assert_eq!(
        std::fs::read(repo.join("bundles/lb/qemu-x86_64/0.2.0/root.img")).unwrap(),
        pattern(300_000, 1),
        "the published root image is untouched"
    );
}

#[test]
fn a_signing_key_the_site_does_not_trust_is_refused() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let build = f.build("a", "0.2.0", &pattern(20_000, 1));
    let other = f.path("other.pem");
    write_key(&key(8), &other);
    let o = publish(&repo, &build, &other);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not the key the site trusts"),
        "{}",
        stderr(&o)
    );
    assert!(!repo.join("index.json").exists());

    // Without --update-key the site's relative signing_key cannot be found.
    let o = cairn(&[
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        build.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--update-key"), "{}", stderr(&o));
}

#[test]
fn a_repository_signed_by_another_key_is_refused() {
    let f = Fixture::new();
    let repo = f.path("repo");
    // Another site (same cluster name, its own key) owns the repository.
    let stranger = key(9);
    let stranger_file = f.path("stranger.pem");
    write_key(&stranger, &stranger_file);
    let theirs = fake_build(
        &f.path("theirs"),
        "demo",
        &stranger,
        "0.1.0",
        &pattern(20_000, 3),
    );
    assert!(publish(&repo, &theirs, &stranger_file).status.success());
    let before = std::fs::read(repo.join("index.json")).unwrap();

    let ours = f.build("ours", "0.2.0", &pattern(20_000, 4));
    let o = publish(&repo, &ours, &f.key_file());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("index.json: not signed by the site's key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(repo.join("index.json")).unwrap(), before);
    assert!(!repo.join("bundles/lb/qemu-x86_64/0.2.0").exists());
}

#[test]
fn a_bundle_of_another_cluster_is_refused() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let demo = f.build("demo", "0.2.0", &pattern(20_000, 1));
    assert!(publish(&repo, &demo, &f.key_file()).status.success());
    // Same key, other cluster.
    let prod = fake_build(
        &f.path("prod"),
        "prod",
        &f.key,
        "0.3.0",
        &pattern(20_000, 2),
    );
    let o = publish(&repo, &prod, &f.key_file());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("the repository is cluster \"demo\"'s, the bundle is for cluster \"prod\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_index(&repo, &f.key).serial, 1);
}

#[test]
fn a_tampered_bundle_is_refused() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let build = f.build("a", "0.2.0", &pattern(3_000_000, 1));
    // A flipped byte in the root image.
    let root = build.join("bundle/root.img");
    let mut bytes = std::fs::read(&root).unwrap();
    bytes[2_000_000] ^= 1;
    std::fs::write(&root, &bytes).unwrap();
    let o = publish(&repo, &build, &f.key_file());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("root.img: does not match the bundle manifest"),
        "{}",
        stderr(&o)
    );
    // A manifest changed after signing.
    let build = f.build("b", "0.2.0", &pattern(20_000, 1));
    let m = build.join("bundle/manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"0.2.0\"", "\"0.9.0\"");
    std::fs::write(&m, text).unwrap();
    let o = publish(&repo, &build, &f.key_file());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not signed by the site's key"),
        "{}",
        stderr(&o)
    );
    assert!(!repo.join("index.json").exists(), "nothing published");
}

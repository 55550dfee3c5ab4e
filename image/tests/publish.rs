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

/// Runs `cairn publish --withdraw` of `version` (role lb, profile qemu-x86_64) plus `extra`.
fn withdraw(repo: &Path, version: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        "--withdraw",
        version,
        "--role",
        "lb",
        "--profile",
        "qemu-x86_64",
    ];
    args.extend_from_slice(extra);
    cairn(&args)
}

#[test]
fn withdraw_takes_a_version_off_offer_with_a_new_serial_and_keeps_its_files() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let key_file = f.key_file();
    let key = key_file.to_str().unwrap();
    let v4 = f.build("v4", "0.4.0", &pattern(300_000, 4));
    let v5 = f.build("v5", "0.5.0", &pattern(300_000, 5));
    assert!(publish(&repo, &v4, &key_file).status.success());
    assert!(publish(&repo, &v5, &key_file).status.success());
    let before = read_index(&repo, &f.key);
    assert_eq!(before.serial, 2);

    let o = withdraw(
        &repo,
        "0.5.0",
        &["--update-key", key, "--expires-days", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("withdrew lb/qemu-x86_64 0.5.0") && out.contains("index serial 3"),
        "{out}"
    );
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 3, "serial + 1");
    assert_eq!(ix.expires - ix.published, 3 * 86_400);
    assert!(ix.published >= before.published);
    let versions: Vec<&str> = ix.bundles.iter().map(|e| e.version.as_str()).collect();
    assert_eq!(versions, ["0.4.0"]);
    assert_eq!(ix.bundles[0], before.bundles[0], "the rest is unchanged");
    // The files stay (a box may be downloading them); no temporaries are left.
    assert_eq!(
        std::fs::read(repo.join("bundles/lb/qemu-x86_64/0.5.0/root.img")).unwrap(),
        pattern(300_000, 5)
    );
    let all = files(&repo);
    assert!(all.iter().all(|p| !p.contains(".tmp")), "{all:?}");
    assert_eq!(all.len(), 2 + 2 * 4, "{all:?}");

    // Publishing the same build again puts it back; another build of 0.5.0 is refused
    // although the index no longer lists the version.
    let other = f.build("v5-other", "0.5.0", &pattern(300_000, 6));
    let o = publish(&repo, &other, &key_file);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("holds another build of lb/qemu-x86_64 0.5.0"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_index(&repo, &f.key).serial, 3, "index untouched");
    assert!(publish(&repo, &v5, &key_file).status.success());
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 4);
    assert_eq!(ix.bundles.len(), 2);
}

#[test]
fn withdraw_names_what_is_on_offer_when_asked_for_something_else() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let key_file = f.key_file();
    let kf = key_file.to_str().unwrap();
    // Nothing published yet.
    let o = withdraw(&repo, "0.4.0", &["--update-key", kf]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no index.json: nothing is on offer to withdraw"),
        "{}",
        stderr(&o)
    );
    let v4 = f.build("v4", "0.4.0", &pattern(20_000, 4));
    assert!(publish(&repo, &v4, &key_file).status.success());
    let before = std::fs::read(repo.join("index.json")).unwrap();
    for (args, want) in [
        (
            vec![
                "--withdraw",
                "0.3.0",
                "--role",
                "lb",
                "--profile",
                "qemu-x86_64",
            ],
            "lb/qemu-x86_64 0.3.0 is not on offer (versions on offer: 0.4.0)",
        ),
        (
            vec![
                "--withdraw",
                "0.4.0",
                "--role",
                "web",
                "--profile",
                "qemu-x86_64",
            ],
            "the repository offers no bundle for role \"web\" (roles on offer: lb)",
        ),
        (
            vec!["--withdraw", "0.4.0", "--role", "lb", "--profile", "rpi4"],
            "the repository offers no lb bundle for profile \"rpi4\"",
        ),
        (
            vec![
                "--withdraw",
                "1+2",
                "--role",
                "lb",
                "--profile",
                "qemu-x86_64",
            ],
            "--withdraw \"1+2\"",
        ),
    ] {
        let mut all = vec![
            "publish",
            "--repo",
            repo.to_str().unwrap(),
            "--update-key",
            kf,
        ];
        all.extend_from_slice(&args);
        let o = cairn(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // --role and --profile are required; a build directory and --withdraw exclude each other.
    let o = cairn(&[
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        "--withdraw",
        "0.4.0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--role"), "{}", stderr(&o));
    let o = withdraw(&repo, "0.4.0", &[v4.to_str().unwrap(), "--update-key", kf]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Another key: the repository's index does not verify.
    let other = f.path("other.pem");
    write_key(&key(8), &other);
    let o = withdraw(&repo, "0.4.0", &["--update-key", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("index.json: not signed by the site's key"),
        "{}",
        stderr(&o)
    );
    // No key at all.
    let o = withdraw(&repo, "0.4.0", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--update-key"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(repo.join("index.json")).unwrap(),
        before,
        "nothing refused changed the index"
    );
}

#[test]
fn withdraw_with_the_site_file_uses_its_key_and_signing_key() {
    let f = Fixture::new();
    let repo = f.path("repo");
    let v4 = f.build("v4", "0.4.0", &pattern(20_000, 4));
    let v5 = f.build("v5", "0.5.0", &pattern(20_000, 5));
    assert!(publish(&repo, &v4, &f.key_file()).status.success());
    assert!(publish(&repo, &v5, &f.key_file()).status.success());
    // A site file next to its key, as a site repository keeps them.
    let site_dir = f.path("site");
    std::fs::create_dir_all(&site_dir).unwrap();
    let text = common::site_text("demo", &f.key);
    assert!(text.contains("signing_key = \"update-key.demo.pem\""));
    std::fs::write(site_dir.join("site.toml"), &text).unwrap();
    write_key(&f.key, &site_dir.join("update-key.demo.pem"));
    let site = site_dir.join("site.toml");
    let o = withdraw(&repo, "0.5.0", &["--site", site.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ix = read_index(&repo, &f.key);
    assert_eq!(ix.serial, 3);
    assert_eq!(ix.bundles.len(), 1);
    // The site's key must be the repository's: another site's file is refused.
    let strange_dir = f.path("strange");
    std::fs::create_dir_all(&strange_dir).unwrap();
    std::fs::write(
        strange_dir.join("site.toml"),
        common::site_text("demo", &key(9)),
    )
    .unwrap();
    write_key(&key(9), &strange_dir.join("update-key.demo.pem"));
    let o = withdraw(
        &repo,
        "0.4.0",
        &["--site", strange_dir.join("site.toml").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not signed by the site's key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_index(&repo, &f.key).serial, 3);
}

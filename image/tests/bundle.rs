//! A real `cairn build` of the example site with `--version`: the signed
//! update bundle matches its manifest and the disk image's slot A, the disk
//! UKI names no slot, the site file says the new version, two builds are
//! byte-identical (bundle included), and `cairn publish` takes the bundle.
//! Slow: builds the `base` image twice (the static box binaries once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use cairn_update::chunks::ChunkVerifier;
use cairn_update::index;
use cairn_update::keys::PublicKey;
use cairn_update::manifest::{self, Manifest};
use common::{cairn, files, stderr, workspace};

/// Bytes of the GPT partition named `name` in a raw disk image.
fn partition(disk: &[u8], name: &str) -> (u64, u64) {
    let le64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
    let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap());
    let hdr = &disk[512..1024];
    assert_eq!(&hdr[..8], b"EFI PART", "a GPT disk");
    let entries = le64(&hdr[72..]) * 512;
    let (count, size) = (le32(&hdr[80..]), le32(&hdr[84..]));
    for i in 0..u64::from(count) {
        let e = &disk[(entries + i * u64::from(size)) as usize..][..size as usize];
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        if String::from_utf16_lossy(&units) == name {
            let (first, last) = (le64(&e[32..]), le64(&e[40..]));
            return (first * 512, (last + 1 - first) * 512);
        }
    }
    panic!("no partition {name}");
}

fn build(out: &Path) {
    let o = cairn(&[
        "build",
        "--quiet",
        "--profile",
        "qemu-x86_64",
        "--role",
        "base",
        "--version",
        "0.2.0",
        "--site",
        workspace().join("examples/site.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "cairn build: {}", stderr(&o));
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_bundle_matches_its_manifest_and_slot_a_and_builds_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    build(&a);
    let example = std::fs::read_to_string(workspace().join("examples/site.toml")).unwrap();
    let site: cairn_site::Site = cairn_site::parse_site(&example, Path::new("site.toml")).unwrap();
    let trusted = PublicKey::parse(&site.update.unwrap().public_key).unwrap();

    // The manifest verifies with the site's public key and describes this build.
    let b = a.join("bundle");
    let m: Manifest = manifest::verify(
        &trusted,
        &std::fs::read(b.join("manifest.json")).unwrap(),
        &std::fs::read(b.join("manifest.json.sig")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            m.cluster.as_str(),
            m.version.as_str(),
            m.role.as_str(),
            m.profile.as_str()
        ),
        ("demo", "0.2.0", "base", "qemu-x86_64")
    );
    let build_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(build_manifest["version"], "0.2.0");
    assert_eq!(
        build_manifest["verity"]["root_hash"], m.root.verity.root_hash,
        "the same root"
    );
    assert_eq!(
        build_manifest["verity"]["hash_offset"],
        m.root.verity.hash_offset
    );

    // root.img: every chunk and the whole, as the box checks them.
    let root = std::fs::read(b.join("root.img")).unwrap();
    assert_eq!(root.len() as u64, m.root.size);
    let mut v = ChunkVerifier::new(&m.root);
    let mut at = 0usize;
    for i in 0..v.chunk_count() {
        let len = v.chunk_len(i) as usize;
        v.verify_next(&root[at..at + len]).unwrap();
        at += len;
    }
    v.finish().unwrap();
    // ... and it is slot A of the disk, byte for byte (the rest of the slot is zeros).
    let disk = std::fs::read(a.join("disk.img")).unwrap();
    let (start, size) = partition(&disk, "root-a");
    let slot = &disk[start as usize..(start + size) as usize];
    assert!(
        slot[..root.len()] == root[..],
        "root.img is root-a's content"
    );
    assert!(slot[root.len()..].iter().all(|&x| x == 0));
    let (b_start, b_size) = partition(&disk, "root-b");
    assert_eq!(b_size, size, "slot B is as large as slot A");
    assert!(
        disk[b_start as usize..(b_start + b_size) as usize]
            .iter()
            .all(|&x| x == 0),
        "slot B is empty"
    );
    drop(disk);

    // The UKI: its size and hash, a command line that names no slot, the profile in its os-release.
    let uki = std::fs::read(b.join("cairn.efi")).unwrap();
    assert_eq!(uki.len() as u64, m.uki.size);
    assert_eq!(
        manifest::hash_chunks(&uki[..], 1 << 20).unwrap().1,
        m.uki.sha256
    );
    assert!(contains(&uki, " cairn.root=ab cairn.verity="), "cmdline");
    assert!(
        !contains(&uki, "cairn.slot="),
        "no slot on the command line"
    );
    assert!(
        !contains(&uki, "PARTUUID="),
        "no partition on the command line"
    );
    assert!(contains(
        &uki,
        "IMAGE_VERSION=0.2.0\nCAIRN_PROFILE=qemu-x86_64\n"
    ));
    assert!(
        build_manifest["cmdline"]["disk"]
            .as_str()
            .unwrap()
            .contains(" cairn.root=ab "),
        "{}",
        build_manifest["cmdline"]
    );

    // The site file beside the image says 0.2.0 and is otherwise the example's.
    let written = std::fs::read_to_string(a.join("site.toml")).unwrap();
    assert_eq!(
        written,
        example.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
    );
    assert_ne!(written, example);

    // manifest.json lists the bundle files with their hashes.
    let listed: Vec<(String, String)> = build_manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["path"].as_str().unwrap().to_owned(),
                x["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for f in [
        "root.img",
        "cairn.efi",
        "manifest.json",
        "manifest.json.sig",
    ] {
        let bytes = std::fs::read(b.join(f)).unwrap();
        let sha = manifest::hash_chunks(&bytes[..], 1 << 20).unwrap().1;
        assert!(
            listed.contains(&(format!("bundle/{f}"), sha)),
            "bundle/{f} in artifacts: {listed:?}"
        );
    }

    // A second build is byte-identical, every file, the bundle and its signature included.
    let second = dir.path().join("b");
    build(&second);
    let names = files(&a);
    assert_eq!(names, files(&second));
    for f in &names {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(second.join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }

    // The real bundle publishes.
    let repo = dir.path().join("repo");
    let key = workspace().join("examples/update-key.demo.pem");
    let o = cairn(&[
        "publish",
        "--repo",
        repo.to_str().unwrap(),
        a.to_str().unwrap(),
        "--update-key",
        key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ix = index::verify(
        &trusted,
        &std::fs::read(repo.join("index.json")).unwrap(),
        &std::fs::read(repo.join("index.json.sig")).unwrap(),
    )
    .unwrap();
    assert_eq!(ix.bundles.len(), 1);
    assert_eq!(ix.bundles[0].path, "bundles/base/qemu-x86_64/0.2.0/");
    assert!(
        std::fs::read(repo.join("bundles/base/qemu-x86_64/0.2.0/root.img")).unwrap() == root,
        "published root.img"
    );
}

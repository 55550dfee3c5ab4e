//! Listing and extraction on small packages built with `dpkg-deb --build`: modes (setuid
//! included), relative and absolute symlinks, hard links, overlaying packages, and a package
//! that tries to write through an absolute symlink (refused, nothing lands on the host).

// Test helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_debian::deb::{self, DebError, EntryKind};

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds `<name>.deb` in `out` from a tree laid out by `fill`.
fn build(out: &Path, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
    let tree = out.join(format!("{name}-tree"));
    write(
        &tree.join("DEBIAN/control"),
        &format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\n\
             Maintainer: cairn tests <tests@example.org>\nDescription: fixture\n"
        ),
        0o644,
    );
    fill(&tree);
    let deb = out.join(format!("{name}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&tree)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    deb
}

fn tool_package(out: &Path) -> PathBuf {
    build(out, "cairn-fixture-tool", |t| {
        write(&t.join("usr/bin/tool"), "#!/bin/true\n", 0o4755);
        std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-alias")).unwrap();
        write(&t.join("usr/lib/libx.so.1.0"), "lib", 0o644);
        std::os::unix::fs::symlink("libx.so.1.0", t.join("usr/lib/libx.so.1")).unwrap();
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", t.join("etc/abs")).unwrap();
        std::fs::create_dir_all(t.join("var/empty")).unwrap();
        std::fs::set_permissions(t.join("var/empty"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    })
}

#[test]
fn lists_entries_with_kinds_and_modes() {
    let out = tempfile::tempdir().unwrap();
    let deb = tool_package(out.path());
    let entries = deb::list(&deb).unwrap();
    let find = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == Path::new(p))
            .unwrap_or_else(|| panic!("{p} not listed: {entries:?}"))
    };
    assert_eq!(find("/usr/bin/tool").mode, 0o4755);
    assert_eq!(find("/usr/bin/tool").kind, EntryKind::File { size: 12 });
    assert_eq!(
        find("/usr/lib/libx.so.1").kind,
        EntryKind::Symlink {
            target: PathBuf::from("libx.so.1.0")
        }
    );
    assert_eq!(
        find("/etc/abs").kind,
        EntryKind::Symlink {
            target: PathBuf::from("/usr/lib")
        }
    );
    assert!(matches!(
        find("/usr/bin/tool-alias").kind,
        EntryKind::HardLink { ref target } if target == Path::new("/usr/bin/tool")
    ));
    assert_eq!(find("/var/empty").kind, EntryKind::Directory);
    assert_eq!(find("/var/empty").mode, 0o700);
    assert!(!entries.iter().any(|e| e.path == Path::new("/")));
}

#[test]
fn extracts_modes_links_and_overlays() {
    let out = tempfile::tempdir().unwrap();
    let deb = tool_package(out.path());
    let second = build(out.path(), "cairn-fixture-more", |t| {
        write(&t.join("usr/lib/libx.so.1.0"), "newer lib", 0o644);
        write(&t.join("usr/share/doc/more/README"), "hi", 0o644);
    });
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let entries = deb::extract(&deb, d).unwrap();
    assert!(entries.len() >= 8, "{entries:?}");
    let meta = std::fs::metadata(d.join("usr/bin/tool")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        std::fs::metadata(d.join("usr/bin/tool-alias"))
            .unwrap()
            .ino(),
        meta.ino(),
        "hard link preserved"
    );
    assert_eq!(
        std::fs::read_link(d.join("usr/lib/libx.so.1")).unwrap(),
        Path::new("libx.so.1.0")
    );
    assert_eq!(
        std::fs::read_link(d.join("etc/abs")).unwrap(),
        Path::new("/usr/lib"),
        "absolute targets are kept as stored"
    );
    let empty = std::fs::metadata(d.join("var/empty")).unwrap();
    assert_eq!(empty.permissions().mode() & 0o7777, 0o700);

    deb::extract(&second, d).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("usr/lib/libx.so.1")).unwrap(),
        "newer lib",
        "later packages replace files, links still point at them"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("usr/share/doc/more/README")).unwrap(),
        "hi"
    );
    // Extracting the same package again over itself works (rebuilds into a used dir).
    deb::extract(&deb, d).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("usr/lib/libx.so.1.0")).unwrap(),
        "lib"
    );
}

#[test]
fn writing_through_an_absolute_symlink_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    let host_target = host_dir.path().to_string_lossy().into_owned();
    let first = build(out.path(), "cairn-fixture-link", |t| {
        std::fs::create_dir_all(t.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host_target, t.join("etc/out")).unwrap();
    });
    let second = build(out.path(), "cairn-fixture-through", |t| {
        write(&t.join("etc/out/planted"), "x", 0o644);
    });
    let dest = tempfile::tempdir().unwrap();
    deb::extract(&first, dest.path()).unwrap();
    let err = deb::extract(&second, dest.path()).unwrap_err();
    assert!(
        matches!(&err, DebError::Unpack { entry, .. } if entry.ends_with("planted")
            || entry == Path::new("/etc/out")),
        "{err:?}"
    );
    assert!(
        !host_dir.path().join("planted").exists(),
        "a file escaped the staging root"
    );
}

#[test]
fn truncated_packages_are_errors_naming_the_file() {
    let out = tempfile::tempdir().unwrap();
    let deb = tool_package(out.path());
    let bytes = std::fs::read(&deb).unwrap();
    let truncated = out.path().join("truncated.deb");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let err = deb::extract(&truncated, dest.path()).unwrap_err();
    assert!(
        matches!(err, DebError::DpkgDeb { .. } | DebError::Archive { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated.deb"), "{err}");
}

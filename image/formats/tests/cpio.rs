//! newc archives listed and extracted with GNU cpio.

// Helpers outside #[test] fns are test code too: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use cairn_formats::cpio::{Archive, CpioError, FileSource};

const MTIME: u32 = 1_700_000_000;

fn sample(dir: &Path) -> Archive {
    let busybox = dir.join("busybox-source");
    std::fs::write(&busybox, vec![0x7fu8; 70_001]).unwrap();
    let mut archive = Archive::new(MTIME);
    archive
        .add_file("init", 0o755, FileSource::Path(busybox))
        .unwrap();
    archive.add_file("etc/hostname", 0o644, "node-a\n").unwrap();
    archive.add_file("etc/shadow", 0o600, "").unwrap();
    archive.add_dir("root", 0o700).unwrap();
    archive.add_dir("tmp", 0o1777).unwrap();
    archive.add_symlink("bin", "usr/bin").unwrap();
    archive.add_symlink("usr/bin/sh", "/init").unwrap();
    archive
}

fn cpio(args: &[&str], archive: &[u8], cwd: &Path) -> String {
    use std::io::Write;
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cpio (Debian package cpio)");
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cpio {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn gnu_cpio_lists_exactly_the_entries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = sample(dir.path());
    archive.add_char_device("dev/console", 0o600, 5, 1).unwrap();
    let mut bytes = Vec::new();
    archive.write_to(&mut bytes).unwrap();
    let listing = cpio(&["-t", "--quiet"], &bytes, dir.path());
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            "bin",
            "dev",
            "dev/console",
            "etc",
            "etc/hostname",
            "etc/shadow",
            "init",
            "root",
            "tmp",
            "usr",
            "usr/bin",
            "usr/bin/sh",
        ]
    );
    let verbose = cpio(&["-tv", "--quiet", "--numeric-uid-gid"], &bytes, dir.path());
    let line = |name: &str| {
        verbose
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not in\n{verbose}"))
            .to_owned()
    };
    let console = line("dev/console");
    assert!(console.starts_with("crw-------"), "{console}");
    assert!(console.contains(" 0        0 "), "uid and gid 0: {console}");
    assert!(
        console.contains("5,   1") || console.contains("5, 1"),
        "{console}"
    );
    assert!(line("tmp").starts_with("drwxrwxrwt"), "{}", line("tmp"));
    assert!(line("bin").starts_with("lrwxrwxrwx"));
    assert!(line("bin").ends_with("bin -> usr/bin"));
    assert!(line("init").starts_with("-rwxr-xr-x"));
    assert!(line("init").contains(" 70001 "), "{}", line("init"));
    assert!(
        line("init").contains("Nov 14  2023"),
        "mtime: {}",
        line("init")
    );
}

#[test]
fn gnu_cpio_extracts_files_modes_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let archive = sample(dir.path());
    let mut bytes = Vec::new();
    archive.write_to(&mut bytes).unwrap();
    let root = dir.path().join("extracted");
    std::fs::create_dir(&root).unwrap();
    cpio(
        &[
            "-i",
            "-d",
            "--quiet",
            "--no-absolute-filenames",
            "--preserve-modification-time",
        ],
        &bytes,
        &root,
    );
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(
        std::fs::read(root.join("init")).unwrap(),
        vec![0x7fu8; 70_001]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "node-a\n"
    );
    assert_eq!(meta("init").permissions().mode() & 0o7777, 0o755);
    assert_eq!(meta("etc/shadow").permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta("etc/shadow").len(), 0);
    assert!(meta("root").is_dir());
    assert_eq!(meta("root").permissions().mode() & 0o7777, 0o700);
    assert!(meta("usr/bin").is_dir());
    assert_eq!(meta("init").mtime(), i64::from(MTIME));
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/sh")).unwrap(),
        Path::new("/init")
    );
}

#[test]
fn two_writes_are_byte_identical_and_gzip_files_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.cpio");
    let b = dir.path().join("b.cpio.gz");
    let c = dir.path().join("c.cpio.gz");
    sample(dir.path()).write_file(&a, None).unwrap();
    sample(dir.path()).write_file(&b, Some(9)).unwrap();
    sample(dir.path()).write_file(&c, Some(9)).unwrap();
    let plain = std::fs::read(&a).unwrap();
    let mut again = Vec::new();
    sample(dir.path()).write_to(&mut again).unwrap();
    assert!(plain == again, "two plain writes differ");
    let gz = std::fs::read(&b).unwrap();
    assert!(gz == std::fs::read(&c).unwrap(), "two gzip writes differ");
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&b)
        .output()
        .expect("run gzip");
    assert!(out.status.success());
    assert!(out.stdout == plain, "gzip -d gives the plain archive");
}

#[test]
fn a_missing_source_is_a_precise_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::new(0);
    let missing = dir.path().join("no-such-binary");
    archive
        .add_file("usr/bin/haproxy", 0o755, FileSource::Path(missing.clone()))
        .unwrap();
    let out = dir.path().join("initrd");
    let err = archive.write_file(&out, None).unwrap_err();
    assert!(
        matches!(&err, CpioError::ReadSource { path, source_path, .. }
            if path == "usr/bin/haproxy" && source_path == &missing),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-binary"), "{err}");
    assert!(!out.exists());
}

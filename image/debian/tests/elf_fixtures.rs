//! Library closure on small ELF objects built with `cc` (the linker Rust itself uses on Linux):
//! RUNPATH with `$ORIGIN`, a usrmerge-style `/lib -> usr/lib` link, an absolute interpreter
//! link, a wrong-machine decoy the loader would skip, and libraries that exist only on the host.

// Test helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_debian::elf::{ElfError, LibraryResolver};

fn cc(dir: &Path, args: &[&str]) {
    let out = Command::new("cc")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("`cc` runs (it is Rust's linker on Linux)");
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn install(build: &Path, root: &Path, name: &str, dest: &str) {
    let dest = root.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(build.join(name), dest).unwrap();
}

fn symlink(root: &Path, link: &str, target: &str) {
    let link = root.join(link.trim_start_matches('/'));
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// Builds the fixture objects and lays out a staging root.
fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
    let build = tempfile::tempdir().unwrap();
    let b = build.path();
    write(&b.join("c2.c"), "int c2(void) { return 2; }\n");
    write(
        &b.join("priv.c"),
        "int c2(void);\nint priv(void) { return c2() + 1; }\n",
    );
    write(
        &b.join("b.c"),
        "int priv(void);\nint b(void) { return priv() + 1; }\n",
    );
    write(
        &b.join("app.c"),
        "int b(void);\nvoid _start(void) { b(); for (;;) {} }\n",
    );
    write(&b.join("hosty.c"), "int main(void) { return 0; }\n");
    let so = ["-shared", "-fPIC", "-nostdlib"];
    cc(
        b,
        &[
            &so[..],
            &["-o", "libc2.so.1", "-Wl,-soname,libc2.so.1", "c2.c"],
        ]
        .concat(),
    );
    cc(
        b,
        &[
            &so[..],
            &[
                "-o",
                "libpriv.so.1",
                "-Wl,-soname,libpriv.so.1",
                "priv.c",
                "-L.",
                "-l:libc2.so.1",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
            ],
        ]
        .concat(),
    );
    cc(
        b,
        &[
            &so[..],
            &[
                "-o",
                "libb.so.1.0",
                "-Wl,-soname,libb.so.1",
                "b.c",
                "-L.",
                "-l:libpriv.so.1",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/private",
                "-Wl,-rpath-link,.",
            ],
        ]
        .concat(),
    );
    cc(
        b,
        &[
            "-nostdlib",
            "-o",
            "app",
            "app.c",
            "-L.",
            "-l:libb.so.1.0",
            "-Wl,--dynamic-linker=/lib64/ld-test.so.2",
            "-Wl,--enable-new-dtags,-rpath,/opt/app/lib",
            "-Wl,-rpath-link,.",
        ],
    );
    cc(
        b,
        &[
            "-o",
            "hosty",
            "hosty.c",
            "-Wl,--dynamic-linker=/lib64/ld-test.so.2",
        ],
    );

    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    install(b, r, "app", "/usr/bin/app");
    install(b, r, "hosty", "/usr/bin/hosty");
    install(b, r, "libc2.so.1", "/usr/lib/x86_64-linux-gnu/ld-test.so.2");
    install(b, r, "libc2.so.1", "/usr/lib/x86_64-linux-gnu/libc2.so.1");
    install(b, r, "libb.so.1.0", "/opt/app/lib/libb.so.1.0");
    install(b, r, "libpriv.so.1", "/opt/app/lib/private/libpriv.so.1");
    symlink(r, "/lib", "usr/lib");
    symlink(
        r,
        "/lib64/ld-test.so.2",
        "/lib/x86_64-linux-gnu/ld-test.so.2",
    );
    symlink(r, "/opt/app/lib/libb.so.1", "libb.so.1.0");
    // A decoy for another machine (e_machine = EM_AARCH64) earlier on libpriv's search path.
    let mut decoy = std::fs::read(b.join("libc2.so.1")).unwrap();
    decoy[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(r.join("opt/app/lib/private/libc2.so.1"), decoy).unwrap();
    write(&r.join("usr/bin/script"), "#!/bin/sh\necho hi\n");
    (build, root)
}

#[test]
fn follows_runpath_origin_symlinks_and_skips_foreign_machines() {
    let (_build, root) = fixture();
    let closure = LibraryResolver::new(root.path())
        .closure(&["/usr/bin/app"])
        .unwrap();
    let files: Vec<&Path> = closure.files.iter().map(PathBuf::as_path).collect();
    assert_eq!(
        files,
        [
            Path::new("/opt/app/lib/libb.so.1.0"),
            Path::new("/opt/app/lib/private/libpriv.so.1"),
            Path::new("/usr/bin/app"),
            Path::new("/usr/lib/x86_64-linux-gnu/ld-test.so.2"),
            Path::new("/usr/lib/x86_64-linux-gnu/libc2.so.1"),
        ]
    );
    let links: Vec<(&Path, &Path)> = closure
        .symlinks
        .iter()
        .map(|(l, t)| (l.as_path(), t.as_path()))
        .collect();
    assert_eq!(
        links,
        [
            (Path::new("/lib"), Path::new("usr/lib")),
            (
                Path::new("/lib64/ld-test.so.2"),
                Path::new("/lib/x86_64-linux-gnu/ld-test.so.2")
            ),
            (
                Path::new("/opt/app/lib/libb.so.1"),
                Path::new("libb.so.1.0")
            ),
        ]
    );
    assert_eq!(
        closure.sonames.get("libb.so.1").map(PathBuf::as_path),
        Some(Path::new("/opt/app/lib/libb.so.1"))
    );
    assert_eq!(
        closure.sonames.get("libpriv.so.1").map(PathBuf::as_path),
        Some(Path::new("/opt/app/lib/private/libpriv.so.1"))
    );
    // The decoy in $ORIGIN is for another machine: the default directory wins.
    assert_eq!(
        closure.sonames.get("libc2.so.1").map(PathBuf::as_path),
        Some(Path::new("/lib/x86_64-linux-gnu/libc2.so.1"))
    );
}

#[test]
fn host_libraries_never_satisfy_a_root() {
    let (_build, root) = fixture();
    // libc.so.6 exists on the host, not in the root.
    let err = LibraryResolver::new(root.path())
        .closure(&["/usr/bin/hosty"])
        .unwrap_err();
    match &err {
        ElfError::MissingLibrary {
            binary,
            soname,
            searched,
            required_by,
        } => {
            assert_eq!(binary, Path::new("/usr/bin/hosty"));
            assert_eq!(soname, "libc.so.6");
            assert_eq!(required_by, Path::new("/usr/bin/hosty"));
            assert_eq!(searched.len(), 4);
        }
        other => panic!("unexpected error: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("`/usr/bin/hosty` needs `libc.so.6`"),
        "{text}"
    );
}

#[test]
fn missing_interpreter_binary_and_non_elf_are_precise() {
    let (_build, root) = fixture();
    let resolver = LibraryResolver::new(root.path());
    std::fs::remove_file(root.path().join("usr/lib/x86_64-linux-gnu/ld-test.so.2")).unwrap();
    let err = resolver.closure(&["/usr/bin/app"]).unwrap_err();
    assert!(
        matches!(&err, ElfError::MissingInterpreter { interpreter, .. } if interpreter == "/lib64/ld-test.so.2"),
        "{err}"
    );
    let err = resolver.closure(&["/usr/bin/nope"]).unwrap_err();
    assert!(matches!(err, ElfError::BinaryNotFound { .. }), "{err}");
    let err = resolver.closure(&["/usr/bin/script"]).unwrap_err();
    assert!(
        matches!(&err, ElfError::NotElf { path, .. } if path == Path::new("/usr/bin/script")),
        "{err}"
    );
}

#[test]
fn search_dirs_can_be_replaced() {
    let (_build, root) = fixture();
    let err = LibraryResolver::new(root.path())
        .with_search_dirs(["/nowhere"])
        .closure(&["/usr/bin/app"])
        .unwrap_err();
    assert!(
        matches!(&err, ElfError::MissingLibrary { soname, .. } if soname == "libc2.so.1"),
        "{err}"
    );
}

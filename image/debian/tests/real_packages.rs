//! End to end with real Debian bookworm packages: fetch into the project cache
//! (`<workspace>/.cache/debs`, reused across runs), extract, library closure, kernel modules.
//!
//! The first run downloads (haproxy's closure ≈ 20 MB, the cloud kernel ≈ 27 MB); later runs
//! must not download anything, which the warm-fetch assertions check.

// Test helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cairn_debian::apt::{Apt, AptError, PackageSpec, Progress, sha256_file};
use cairn_debian::deb::{self, EntryKind};
use cairn_debian::elf::{ElfError, LibraryResolver, library_closure};
use cairn_debian::kernel::find_kernel;
use cairn_debian::kmod::{KmodError, ModuleIndex};

const KERNEL: &str = "linux-image-6.1.0-56-cloud-amd64";

/// The project's package cache: `$CAIRN_CACHE/debs` (as `cairn build` uses it), else `.cache/debs`.
fn cache_dir() -> PathBuf {
    std::env::var_os("CAIRN_CACHE")
        .map(|c| PathBuf::from(c).join("debs"))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/debs"))
}

fn spec(s: &str) -> PackageSpec {
    s.parse().unwrap()
}

/// Runs `f` with a progress callback and returns its result and the events seen.
fn with_progress<T>(f: impl FnOnce(&dyn Fn(Progress)) -> T) -> (T, Vec<Progress>) {
    let events = RefCell::new(Vec::new());
    let result = f(&|p| events.borrow_mut().push(p));
    (result, events.into_inner())
}

#[test]
fn haproxy_closure_fetches_extracts_and_runs_from_its_own_root() {
    let apt = Apt::new(cache_dir());
    let started = Instant::now();
    let (fetched, _) = with_progress(|p| apt.fetch_closure(&[spec("haproxy")], p));
    let fetched = fetched.unwrap();
    eprintln!(
        "haproxy closure: {} packages, {} bytes, fetched in {:?} ({} were cached)",
        fetched.packages.len(),
        fetched.packages.iter().map(|p| p.size).sum::<u64>(),
        started.elapsed(),
        fetched.packages.iter().filter(|p| p.cached).count()
    );
    for choice in &fetched.choices {
        eprintln!("  choice: {choice:?}");
    }
    let names: Vec<&str> = fetched.packages.iter().map(|p| p.name.as_str()).collect();
    for needed in ["haproxy", "libssl3", "liblua5.3-0", "libc6", "libpcre2-8-0"] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    assert!(
        !names.contains(&"libelogind0"),
        "libsystemd0 is real, its provider must not be pulled: {names:?}"
    );
    for p in &fetched.packages {
        assert_eq!(sha256_file(&p.path).unwrap(), p.sha256, "{}", p.name);
        assert_eq!(std::fs::metadata(&p.path).unwrap().len(), p.size);
        assert!(p.path.starts_with(cache_dir()), "{}", p.path.display());
    }

    // Warm: everything is cached, nothing is downloaded.
    let (again, events) = with_progress(|p| apt.fetch_closure(&[spec("haproxy")], p));
    let again = again.unwrap();
    assert!(again.packages.iter().all(|p| p.cached));
    assert_eq!(again.packages.len(), fetched.packages.len());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Progress::Fetching { .. })),
        "warm fetch downloaded: {events:?}"
    );
    assert!(events.contains(&Progress::Finished {
        fetched: 0,
        bytes: 0
    }));

    // Extract everything into one staging root.
    let staging = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut entries = 0;
    for p in &fetched.packages {
        entries += deb::extract(&p.path, staging.path()).unwrap().len();
    }
    eprintln!(
        "extracted {entries} entries of {} packages in {:?}",
        fetched.packages.len(),
        started.elapsed()
    );
    let root = staging.path();
    // Symlinks and modes survive extraction.
    assert_eq!(
        std::fs::read_link(root.join("lib64/ld-linux-x86-64.so.2")).unwrap(),
        Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("usr/sbin/haproxy"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);

    let closure = library_closure(root, &["/usr/sbin/haproxy"]).unwrap();
    for soname in [
        "libssl.so.3",
        "libcrypto.so.3",
        "liblua5.3.so.0",
        "libc.so.6",
    ] {
        assert!(
            closure.sonames.contains_key(soname),
            "{soname} missing: {:?}",
            closure.sonames
        );
    }
    assert!(closure.files.contains(Path::new("/usr/sbin/haproxy")));
    assert!(
        closure
            .files
            .contains(Path::new("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
    );
    assert_eq!(
        closure
            .symlinks
            .get(Path::new("/lib64/ld-linux-x86-64.so.2")),
        Some(&PathBuf::from("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
    );
    assert!(
        closure
            .files
            .iter()
            .all(|f| !closure.symlinks.contains_key(f)),
        "a path is both file and symlink"
    );

    // Copy exactly the closure into an empty root: the image's own loader must find every
    // library there, and haproxy must run.
    let image = tempfile::tempdir().unwrap();
    for (link, target) in &closure.symlinks {
        let dest = image.path().join(link.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &dest).unwrap();
    }
    for file in &closure.files {
        let dest = image.path().join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(root.join(file.strip_prefix("/").unwrap()), &dest).unwrap();
    }
    let ld_so = image
        .path()
        .join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    let lib_path = format!(
        "{0}/lib/x86_64-linux-gnu:{0}/usr/lib/x86_64-linux-gnu",
        image.path().display()
    );
    let haproxy = image.path().join("usr/sbin/haproxy");
    let list = Command::new(&ld_so)
        .args(["--inhibit-cache", "--library-path", &lib_path, "--list"])
        .arg(&haproxy)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listing}");
    for line in listing.lines().filter(|l| l.contains("=>")) {
        let resolved = line.split("=>").nth(1).unwrap().trim();
        assert!(
            resolved.starts_with(&*image.path().to_string_lossy()),
            "library resolved outside the copied closure: {line}"
        );
    }
    let version = Command::new(&ld_so)
        .args(["--inhibit-cache", "--library-path", &lib_path])
        .arg(&haproxy)
        .arg("-v")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.contains("HAProxy version 2.6"), "{text}");

    // A library taken away is a precise error naming binary and soname.
    std::fs::remove_file(root.join("usr/lib/x86_64-linux-gnu/liblua5.3.so.0")).unwrap();
    let err = LibraryResolver::new(root)
        .closure(&["/usr/sbin/haproxy"])
        .unwrap_err();
    match &err {
        ElfError::MissingLibrary { binary, soname, .. } => {
            assert_eq!(binary, Path::new("/usr/sbin/haproxy"));
            assert_eq!(soname, "liblua5.3.so.0");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn listing_shows_files_modes_and_symlinks() {
    let apt = Apt::new(cache_dir());
    let fetched = apt.fetch(&[spec("libc6")], &|_| {}).unwrap();
    let entries = deb::list(&fetched.packages[0].path).unwrap();
    let loader = entries
        .iter()
        .find(|e| e.path == Path::new("/lib64/ld-linux-x86-64.so.2"))
        .unwrap();
    assert_eq!(
        loader.kind,
        EntryKind::Symlink {
            target: PathBuf::from("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        }
    );
    let libc = entries
        .iter()
        .find(|e| e.path == Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
        .unwrap();
    assert!(matches!(libc.kind, EntryKind::File { size } if size > 1_000_000));
    assert_eq!(libc.mode, 0o755);
    assert!(entries.iter().all(|e| e.path.is_absolute()));
}

#[test]
fn resolution_errors_are_precise() {
    let apt = Apt::new(cache_dir());
    let err = apt
        .resolve(&[spec("haproxy"), spec("cairn-no-such-package")])
        .unwrap_err();
    assert!(
        matches!(&err, AptError::UnknownPackage { name } if name == "cairn-no-such-package"),
        "{err}"
    );
    // A virtual package has no candidate of its own.
    let err = apt.resolve(&[spec("debconf-2.0")]).unwrap_err();
    assert!(matches!(err, AptError::UnknownPackage { .. }), "{err}");

    let candidate = apt.resolve(&[spec("haproxy")]).unwrap().remove(0);
    let pinned = apt
        .resolve(&[spec(&format!("haproxy={}", candidate.version))])
        .unwrap()
        .remove(0);
    assert_eq!(pinned, candidate);

    let err = apt.resolve(&[spec("haproxy=9.9.9-1")]).unwrap_err();
    match &err {
        AptError::VersionNotAvailable {
            name,
            version,
            available,
        } => {
            assert_eq!(name, "haproxy");
            assert_eq!(version, "9.9.9-1");
            assert!(available.contains(&candidate.version), "{available:?}");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn cloud_kernel_modules_resolve_dependencies_first() {
    let apt = Apt::new(cache_dir());
    let started = Instant::now();
    let fetched = apt.fetch(&[spec(KERNEL)], &|_| {}).unwrap();
    assert_eq!(
        fetched.packages.len(),
        1,
        "the kernel alone, no dependencies"
    );
    let kernel_deb = &fetched.packages[0];
    eprintln!(
        "{KERNEL} {}: {} bytes, cached={}, {:?}",
        kernel_deb.version,
        kernel_deb.size,
        kernel_deb.cached,
        started.elapsed()
    );

    let staging = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let entries = deb::extract(&kernel_deb.path, staging.path()).unwrap();
    eprintln!(
        "extracted {} entries in {:?}",
        entries.len(),
        started.elapsed()
    );

    let kernel = find_kernel(staging.path(), KERNEL).unwrap();
    assert_eq!(kernel.version, "6.1.0-56-cloud-amd64");
    let vmlinuz = std::fs::read(&kernel.vmlinuz).unwrap();
    assert_eq!(&vmlinuz[..2], b"MZ", "vmlinuz is an EFI/PE image");
    eprintln!("vmlinuz: {} bytes", vmlinuz.len());

    let index = ModuleIndex::load(&kernel.modules_dir).unwrap();
    let started = Instant::now();
    let plan = index
        .plan(&["virtio_blk", "virtio-pci", "erofs", "dm_verity", "ext4"])
        .unwrap();
    eprintln!("planned in {:?}: {:?}", started.elapsed(), plan);
    let pos = |name: &str| {
        plan.modules
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not in plan {plan:?}"))
    };
    assert!(pos("dm_mod") < pos("dm_verity"));
    assert!(pos("dm_bufio") < pos("dm_verity"));
    assert!(pos("virtio") < pos("virtio_blk"));
    assert!(pos("virtio_ring") < pos("virtio_pci"));
    assert!(pos("erofs") < plan.modules.len());
    assert_eq!(
        plan.builtin,
        ["ext4"],
        "ext4 is built into the cloud kernel"
    );
    for m in &plan.modules {
        assert!(kernel.modules_dir.join(&m.path).is_file(), "{m:?}");
    }
    let unique: std::collections::BTreeSet<_> = plan.modules.iter().map(|m| &m.name).collect();
    assert_eq!(unique.len(), plan.modules.len(), "a module listed twice");

    // An alias resolves to its module (this scans every module's .modinfo).
    let started = Instant::now();
    let by_alias = index.plan(&["fs-erofs"]).unwrap();
    eprintln!(
        "alias lookup (scans every .modinfo): {:?}",
        started.elapsed()
    );
    assert_eq!(
        by_alias.modules.last().map(|m| m.name.as_str()),
        Some("erofs")
    );

    // The cloud flavour has no i6300esb driver.
    let err = index.plan(&["virtio_blk", "i6300esb"]).unwrap_err();
    assert!(
        matches!(&err, KmodError::UnknownModule { name, .. } if name == "i6300esb"),
        "{err}"
    );
    assert!(err.to_string().contains("6.1.0-56-cloud-amd64"), "{err}");
}

#[test]
fn missing_lists_trigger_one_update() {
    let lists = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let apt = Apt::new(cache.path()).with_lists_dir(lists.path());
    let started = Instant::now();
    let (fetched, events) = with_progress(|p| apt.fetch(&[spec("libcap2")], p));
    let fetched = fetched.unwrap();
    eprintln!(
        "apt-get update + fetch into fresh lists: {:?}",
        started.elapsed()
    );
    assert!(fetched.lists_updated);
    assert_eq!(events.first(), Some(&Progress::UpdatingLists));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::Fetching { package, .. } if package == "libcap2")),
        "{events:?}"
    );
    assert!(fetched.packages[0].path.starts_with(cache.path()));
    assert!(!fetched.packages[0].cached);
    // Lists now exist: no second update.
    let again = apt.fetch(&[spec("libcap2")], &|_| {}).unwrap();
    assert!(!again.lists_updated);
    assert!(again.packages[0].cached);
}

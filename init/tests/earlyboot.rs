//! Privileged tests of the early boot pieces that this host can run: loop
//! devices, erofs, the block device lookup against a fake sysfs tree, the
//! switch into a new root and the data partition's format-only-if-empty rule.
//! Device-mapper (dm-verity) is absent here and is exercised by the QEMU
//! tests. Every mount happens in a private mount namespace of a helper thread,
//! so nothing leaks onto the host even when a test fails. They need root and
//! fail (never skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_init::blockdev::{self, BlockdevError, Roots};
use cairn_init::cmdline::{self, DataSource, DeviceSpec, RootSource, Verity};
use cairn_init::datapart::{self, DatapartError, Outcome};
use cairn_init::{kmod, loopdev, switch_root};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Fails the test loudly when it cannot run.
fn require_root(tools: &[&str]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: must run as root (it attaches loop devices, mounts filesystems and \
         creates device nodes); run `cargo xtask test` as root"
    );
    for t in tools {
        assert!(
            Path::new(t).exists(),
            "privileged test: {t} is missing; run `cargo xtask setup`"
        );
    }
}

/// Runs `f` on a thread with its own mount namespace (everything private),
/// so its mounts vanish with the thread.
fn in_private_mount_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNS) (which implies CLONE_FS) gives only
        // this thread a new mount namespace and fs context; it touches no memory.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNS): {}",
            std::io::Error::last_os_error()
        );
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make / private in the test's namespace");
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Mount points of this thread's namespace.
fn my_mounts() -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    cairn_init::mounts::mounts_with_types(&text)
}

fn fs_type_at(p: &Path) -> Option<String> {
    my_mounts()
        .into_iter()
        .rev()
        .find(|(_, m)| m == p)
        .map(|(t, _)| t)
}

/// An erofs image of a small root tree: /hello, /sbin/init and the mount points.
fn erofs_image(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    for d in ["dev", "proc", "sys", "run", "sbin", "var"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("hello"), "from the root image\n").unwrap();
    std::fs::write(tree.join("sbin/init"), "#!/bin/true\n").unwrap();
    std::fs::set_permissions(
        tree.join("sbin/init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let img = dir.join("root.erofs");
    let out = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&img)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.erofs: {out:?}");
    img
}

fn backing_file(number: u32) -> Option<String> {
    std::fs::read_to_string(format!("/sys/block/loop{number}/loop/backing_file"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Waits (bounded) until loop `number` no longer holds `img`.
fn wait_detached(number: u32, img: &Path) {
    let img = img.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backing_file(number).as_deref() == Some(img.as_str()) {
        assert!(
            Instant::now() < deadline,
            "loop{number} still holds {img}: autoclear did not detach it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn loop_attached_erofs_mounts_read_only_and_detaches_itself() {
    require_root(&["/usr/bin/mkfs.erofs", "/dev/loop-control"]);
    let dir = tempfile::tempdir().unwrap();
    let img = erofs_image(dir.path());
    let d = dir.path().to_owned();
    let img2 = img.clone();
    let number = in_private_mount_ns(move || {
        let roots = Roots::system();
        let l = loopdev::attach(&roots, &img2, loopdev::Options::default()).unwrap();
        assert!(
            std::fs::metadata(&l.path)
                .unwrap()
                .file_type()
                .is_block_device(),
            "{} is a block device",
            l.path.display()
        );
        assert_eq!(
            backing_file(l.number).as_deref(),
            Some(img2.to_str().unwrap())
        );
        let ro = std::fs::read_to_string(format!("/sys/block/loop{}/ro", l.number)).unwrap();
        assert_eq!(ro.trim(), "1", "the loop device is read-only");
        // The lookup finds the loop device by name in the real sysfs.
        let dev = blockdev::by_name(&roots, &format!("loop{}", l.number)).unwrap();
        assert_eq!((dev.major, dev.minor), blockdev::numbers(&l.path).unwrap());

        let newroot = d.join("newroot");
        switch_root::mount_root(&l.path, &newroot, "erofs").unwrap();
        assert_eq!(fs_type_at(&newroot).as_deref(), Some("erofs"));
        assert_eq!(
            std::fs::read_to_string(newroot.join("hello")).unwrap(),
            "from the root image\n"
        );
        let w = std::fs::write(newroot.join("new-file"), "x").unwrap_err();
        assert_eq!(w.raw_os_error(), Some(libc::EROFS), "{w}");
        switch_root::check_init(&newroot, Path::new(switch_root::INIT)).unwrap();
        // The disk under a mount is found through sysfs (used to prefer the
        // data partition on the boot disk).
        assert_eq!(
            blockdev::disk_of_mount(&roots, &newroot),
            Some(format!("loop{}", l.number))
        );
        umount2(&newroot, MntFlags::empty()).unwrap();
        l.number
    });
    wait_detached(number, &img);
}

#[test]
fn mounting_garbage_as_erofs_fails_with_the_device_named() {
    require_root(&["/dev/loop-control"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("junk.img");
    std::fs::write(&img, vec![0x5au8; 1 << 20]).unwrap();
    let d = dir.path().to_owned();
    let msg = in_private_mount_ns(move || {
        let l = loopdev::attach(&Roots::system(), &img, loopdev::Options::default()).unwrap();
        let e = switch_root::mount_root(&l.path, &d.join("newroot"), "erofs").unwrap_err();
        (e.to_string(), l.path.display().to_string())
    });
    assert!(
        msg.0.starts_with(&format!("mount of {}: ", msg.1)),
        "{}",
        msg.0
    );
}

#[test]
fn switch_moves_api_mounts_and_changes_root() {
    require_root(&["/usr/bin/mkfs.erofs", "/dev/loop-control"]);
    let dir = tempfile::tempdir().unwrap();
    let img = erofs_image(dir.path());
    let d = dir.path().to_owned();
    in_private_mount_ns(move || {
        let l = loopdev::attach(&Roots::system(), &img, loopdev::Options::default()).unwrap();
        let old = d.join("old");
        let newroot = d.join("newroot");
        // A stand-in for the initramfs's /run, with something in it.
        std::fs::create_dir_all(old.join("run")).unwrap();
        mount(
            Some("tmpfs"),
            &old.join("run"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(old.join("run/marker"), "carried").unwrap();
        switch_root::mount_root(&l.path, &newroot, "erofs").unwrap();

        let mounted: Vec<PathBuf> = my_mounts().into_iter().map(|(_, p)| p).collect();
        let moved =
            switch_root::move_mounts(&old, &newroot, &switch_root::CARRIED_MOUNTS, &mounted)
                .unwrap();
        assert_eq!(moved, vec![old.join("run")], "only mounted points move");
        assert_eq!(
            std::fs::read_to_string(newroot.join("run/marker")).unwrap(),
            "carried"
        );
        assert!(
            !old.join("run/marker").exists(),
            "the old mount point is empty"
        );
        assert_eq!(fs_type_at(&newroot.join("run")).as_deref(), Some("tmpfs"));

        switch_root::switch_into(&newroot).unwrap();
        // This thread's root is now the erofs image.
        assert_eq!(
            std::fs::read_to_string("/hello").unwrap(),
            "from the root image\n"
        );
        assert_eq!(std::fs::read_to_string("/run/marker").unwrap(), "carried");
        assert_eq!(std::env::current_dir().unwrap(), PathBuf::from("/"));
        assert!(!Path::new("/old").exists());
    });
}

#[test]
fn deleting_the_initramfs_never_crosses_into_other_mounts() {
    require_root(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    in_private_mount_ns(move || {
        // The "initramfs" is a tmpfs with files, a nested mount and newroot.
        let ram = d.join("ram");
        std::fs::create_dir(&ram).unwrap();
        mount(
            Some("tmpfs"),
            &ram,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::create_dir_all(ram.join("lib/modules")).unwrap();
        std::fs::write(ram.join("lib/modules/x.ko"), vec![1u8; 4096]).unwrap();
        std::fs::write(ram.join("init"), "binary").unwrap();
        std::fs::write(ram.join("root.img"), "image").unwrap();
        std::fs::create_dir_all(ram.join("proc")).unwrap();
        mount(
            Some("tmpfs"),
            &ram.join("proc"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(ram.join("proc/other-fs"), "keep").unwrap();
        std::fs::create_dir_all(ram.join("newroot")).unwrap();
        std::fs::write(ram.join("newroot/also-kept"), "keep").unwrap();

        let r = switch_root::delete_tree(&ram, &[ram.join("newroot")]);
        assert_eq!(r.failed, 0, "{r:?}");
        assert_eq!(
            r.removed, 5,
            "lib, lib/modules, x.ko, init, root.img: {r:?}"
        );
        let mut left: Vec<String> = std::fs::read_dir(&ram)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["newroot", "proc"]);
        assert_eq!(
            std::fs::read_to_string(ram.join("proc/other-fs")).unwrap(),
            "keep"
        );
        assert!(ram.join("newroot/also-kept").exists());
    });
}

/// A fake sysfs and /dev: disk `vdz` (a GPT image made by sgdisk, as a
/// regular file in dev/) with partitions root-a and data, as the kernel lays
/// them out under /sys/devices and /sys/class/block.
struct FakeSys {
    _dir: tempfile::TempDir,
    roots: Roots,
}

const ROOT_A_UUID: &str = "6c8b0f3e-1d2a-4b5c-9d8e-7f6a5b4c3d2e";
const DATA_UUID: &str = "0b5e6f6d-9a3c-4c1e-8f2a-11d2e3f4a5b6";

impl FakeSys {
    fn new() -> FakeSys {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            sys: dir.path().join("sys"),
            dev: dir.path().join("dev"),
        };
        std::fs::create_dir_all(roots.sys.join("class/block")).unwrap();
        std::fs::create_dir_all(&roots.dev).unwrap();
        let s = FakeSys { _dir: dir, roots };
        add_disk(&s.roots.sys, "vdz", 240, 16);
        let disk = s.roots.dev.join("vdz");
        let f = std::fs::File::create(&disk).unwrap();
        f.set_len(4 << 20).unwrap();
        let out = Command::new("sgdisk")
            .args(["-n1:2048:+1M", "-c1:root-a", &format!("-u1:{ROOT_A_UUID}")])
            .args([
                "-n2:0:0",
                "-c2:data",
                &format!("-u2:{}", DATA_UUID.to_uppercase()),
            ])
            .arg(&disk)
            .output()
            .unwrap();
        assert!(out.status.success(), "sgdisk: {out:?}");
        add_partition(&s.roots.sys, "vdz", 1, "root-a");
        add_partition(&s.roots.sys, "vdz", 2, "data");
        s
    }
}

/// Adds a whole disk to a fake sysfs.
fn add_disk(sys: &Path, name: &str, major: u32, minor: u32) {
    let dev = sys.join("devices/virtual/block").join(name);
    std::fs::create_dir_all(dev.join("queue")).unwrap();
    std::fs::write(dev.join("queue/logical_block_size"), "512\n").unwrap();
    std::fs::write(
        dev.join("uevent"),
        format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ=9\n"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("../../devices/virtual/block/{name}"),
        sys.join("class/block").join(name),
    )
    .unwrap();
}

/// Adds partition `n` of `disk` to a fake sysfs; it becomes visible atomically.
fn add_partition(sys: &Path, disk: &str, n: u32, label: &str) {
    let name = format!("{disk}{n}");
    let dir = sys.join("devices/virtual/block").join(disk).join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("partition"), format!("{n}\n")).unwrap();
    // Written last: a device is visible once its uevent is.
    let tmp = dir.join("uevent.tmp");
    std::fs::write(
            &tmp,
            format!(
                "MAJOR=240\nMINOR={}\nDEVNAME={name}\nDEVTYPE=partition\nDISKSEQ=9\nPARTN={n}\nPARTNAME={label}\n",
                16 + n
            ),
        )
        .unwrap();
    std::fs::rename(&tmp, dir.join("uevent")).unwrap();
    let link = sys.join("class/block").join(&name);
    if !link.exists() {
        std::os::unix::fs::symlink(format!("../../devices/virtual/block/{disk}/{name}"), link)
            .unwrap();
    }
}

const SHORT: Duration = Duration::from_millis(200);

#[test]
fn finds_partitions_by_label_uuid_and_path_in_a_fake_sysfs() {
    require_root(&["/usr/sbin/sgdisk"]);
    let fake = FakeSys::new();
    let r = &fake.roots;

    let (dev, node) = blockdev::wait_for(
        r,
        &DeviceSpec::PartLabel("data".into()),
        None,
        SHORT,
        blockdev::POLL,
    )
    .unwrap();
    assert_eq!(dev.name, "vdz2");
    assert_eq!(dev.disk, "vdz");
    assert_eq!(node, r.dev.join("vdz2"));
    let meta = std::fs::metadata(&node).unwrap();
    assert!(
        meta.file_type().is_block_device(),
        "mknod made a block node"
    );
    assert_eq!(
        (libc::major(meta.rdev()), libc::minor(meta.rdev())),
        (240, 18)
    );
    assert_eq!(meta.mode() & 0o777, 0o600);

    // PARTUUID comes from the disk's GPT (mainline uevents lack it); the
    // command line's spelling is case-insensitive.
    let spec = cmdline::parse_device(
        cmdline::ROOT,
        &format!("PARTUUID={}", ROOT_A_UUID.to_uppercase()),
    )
    .unwrap();
    let (dev, _) = blockdev::wait_for(r, &spec, None, SHORT, blockdev::POLL).unwrap();
    assert_eq!(dev.name, "vdz1");
    let spec = DeviceSpec::PartUuid(DATA_UUID.into());
    assert_eq!(blockdev::scan(r, &spec).unwrap()[0].name, "vdz2");

    let (dev, _) = blockdev::wait_for(
        r,
        &DeviceSpec::Path("/dev/vdz1".into()),
        None,
        SHORT,
        blockdev::POLL,
    )
    .unwrap();
    assert_eq!(dev.name, "vdz1");

    // An existing node is reused, not recreated.
    let before = std::fs::metadata(r.dev.join("vdz2")).unwrap().ino();
    blockdev::wait_for(
        r,
        &DeviceSpec::PartLabel("data".into()),
        None,
        SHORT,
        blockdev::POLL,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(r.dev.join("vdz2")).unwrap().ino(), before);
}

#[test]
fn missing_device_times_out_naming_what_was_seen() {
    require_root(&["/usr/sbin/sgdisk"]);
    let fake = FakeSys::new();
    let e = blockdev::wait_for(
        &fake.roots,
        &DeviceSpec::PartUuid("00000000-0000-0000-0000-000000000001".into()),
        None,
        SHORT,
        blockdev::POLL,
    )
    .unwrap_err();
    let BlockdevError::NotFound { seen, waited, .. } = &e else {
        panic!("expected NotFound, got {e}");
    };
    assert_eq!(seen, &["vdz", "vdz1", "vdz2"]);
    assert!(*waited >= SHORT);
    assert!(
        e.to_string().starts_with(
            "no block device matches PARTUUID=00000000-0000-0000-0000-000000000001 after"
        ),
        "{e}"
    );
}

#[test]
fn waits_for_a_device_that_appears_later() {
    require_root(&["/usr/sbin/sgdisk"]);
    let fake = FakeSys::new();
    let roots = fake.roots.clone();
    let sys = fake.roots.sys.clone();
    let adder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        add_partition(&sys, "vdz", 3, "late");
    });
    let (dev, node) = blockdev::wait_for(
        &roots,
        &DeviceSpec::PartLabel("late".into()),
        None,
        Duration::from_secs(10),
        blockdev::POLL,
    )
    .unwrap();
    adder.join().unwrap();
    assert_eq!(dev.name, "vdz3");
    assert!(node.exists());
}

#[test]
fn two_data_partitions_are_ambiguous_unless_one_is_on_the_boot_disk() {
    require_root(&["/usr/sbin/sgdisk"]);
    let fake = FakeSys::new();
    add_disk(&fake.roots.sys, "sdq", 241, 0);
    add_partition(&fake.roots.sys, "sdq", 4, "data");
    let spec = DeviceSpec::PartLabel("data".into());
    let e = blockdev::wait_for(&fake.roots, &spec, None, SHORT, blockdev::POLL).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PARTLABEL=data matches more than one device: sdq4, vdz2"
    );
    let (dev, _) =
        blockdev::wait_for(&fake.roots, &spec, Some("vdz"), SHORT, blockdev::POLL).unwrap();
    assert_eq!(dev.name, "vdz2");
}

fn data_config(roots: Roots, target: &Path) -> datapart::Config {
    datapart::Config {
        roots,
        target: target.to_owned(),
        mke2fs: datapart::MKE2FS.into(),
        wait: Duration::from_secs(2),
        prefer_disk: None,
    }
}

/// The label in an ext4 superblock (s_volume_name at 1024 + 120).
fn ext4_label(img: &Path) -> String {
    let b = std::fs::read(img).unwrap();
    let raw = &b[1024 + 120..1024 + 136];
    String::from_utf8_lossy(raw)
        .trim_end_matches('\0')
        .to_owned()
}

#[test]
fn data_partition_is_formatted_only_when_empty() {
    require_root(&[datapart::MKE2FS, "/dev/loop-control"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("data.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let var = dir.path().join("var");
    std::fs::create_dir(&var).unwrap();
    let (img2, var2) = (img.clone(), var.clone());
    let number = in_private_mount_ns(move || {
        let rw = loopdev::Options {
            read_only: false,
            partscan: false,
        };
        let l = loopdev::attach(&Roots::system(), &img2, rw).unwrap();
        let cfg = data_config(Roots::system(), &var2);
        let source = DataSource::Device(DeviceSpec::Path(l.path.clone()));

        // First boot: all zeros, so mke2fs runs.
        let Outcome::Mounted {
            device,
            fstype,
            formatted,
        } = datapart::setup(&source, &cfg)
        else {
            panic!("first boot did not mount the data partition");
        };
        assert_eq!((fstype, formatted), ("ext4", true));
        assert_eq!(device, l.path);
        assert_eq!(fs_type_at(&var2).as_deref(), Some("ext4"));
        std::fs::write(var2.join("state"), "survives reboots").unwrap();
        umount2(&var2, MntFlags::empty()).unwrap();

        // Second boot: a filesystem is there; it is mounted, never reformatted.
        let Outcome::Mounted { formatted, .. } = datapart::setup(&source, &cfg) else {
            panic!("second boot did not mount the data partition");
        };
        assert!(!formatted, "an ext4 partition must never be reformatted");
        assert_eq!(
            std::fs::read_to_string(var2.join("state")).unwrap(),
            "survives reboots"
        );
        umount2(&var2, MntFlags::empty()).unwrap();
        l.number
    });
    wait_detached(number, &img);
    assert_eq!(ext4_label(&img), datapart::LABEL);
}

#[test]
fn unknown_data_is_never_formatted_and_var_falls_back_to_tmpfs() {
    require_root(&[datapart::MKE2FS, "/dev/loop-control"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("data.img");
    let mut content = vec![0u8; 8 << 20];
    // Someone else's data a few KiB in: no known signature, not all zeros.
    content[5000..5011].copy_from_slice(b"precious!!!");
    std::fs::File::create(&img)
        .unwrap()
        .write_all(&content)
        .unwrap();
    let var = dir.path().join("var");
    std::fs::create_dir(&var).unwrap();
    let (img2, var2) = (img.clone(), var.clone());
    let number = in_private_mount_ns(move || {
        let rw = loopdev::Options {
            read_only: false,
            partscan: false,
        };
        let l = loopdev::attach(&Roots::system(), &img2, rw).unwrap();
        let cfg = data_config(Roots::system(), &var2);
        let source = DataSource::Device(DeviceSpec::Path(l.path.clone()));
        let Outcome::Tmpfs {
            reason: Some(DatapartError::Refused { path }),
        } = datapart::setup(&source, &cfg)
        else {
            panic!("unknown data must be refused");
        };
        assert_eq!(path, l.path);
        assert_eq!(fs_type_at(&var2).as_deref(), Some("tmpfs"));
        umount2(&var2, MntFlags::empty()).unwrap();

        // A data partition that does not exist: tmpfs too, with the reason.
        let missing = DataSource::Device(DeviceSpec::PartLabel("no-such-cairn-label".into()));
        let cfg = datapart::Config { wait: SHORT, ..cfg };
        let Outcome::Tmpfs {
            reason: Some(DatapartError::Find(BlockdevError::NotFound { .. })),
        } = datapart::setup(&missing, &cfg)
        else {
            panic!("a missing data partition must fall back to tmpfs");
        };
        assert_eq!(fs_type_at(&var2).as_deref(), Some("tmpfs"));
        umount2(&var2, MntFlags::empty()).unwrap();

        // cairn.data=tmpfs asks for it.
        let Outcome::Tmpfs { reason: None } = datapart::setup(&DataSource::Tmpfs, &cfg) else {
            panic!("cairn.data=tmpfs gives a tmpfs");
        };
        assert_eq!(fs_type_at(&var2).as_deref(), Some("tmpfs"));
        l.number
    });
    wait_detached(number, &img);
    assert_eq!(
        std::fs::read(&img).unwrap(),
        content,
        "not one byte changed"
    );
}

#[test]
fn module_load_failures_name_the_module_and_errno() {
    require_root(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ko = dir.path().join("not-a-module.ko");
    std::fs::write(&ko, b"\x7fELF but not really").unwrap();
    let entry = kmod::ModuleEntry {
        path: ko.clone(),
        params: String::new(),
    };
    let e = kmod::load(&entry).unwrap_err();
    let kmod::KmodError::Insert { path, errno } = &e else {
        panic!("expected an Insert error, got {e}");
    };
    assert_eq!(path, &ko);
    // ENOEXEC from a kernel with modules; ENOSYS from one built without (this host).
    assert!(
        matches!(
            errno,
            nix::errno::Errno::ENOEXEC | nix::errno::Errno::ENOSYS
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("not-a-module.ko: finit_module: "),
        "{e}"
    );
}

/// The builder's flow: `veritysetup format --hash-offset=<data size>` on the
/// erofs image (with and without its superblock), its output turned into
/// `cairn.verity=`, parsed back into the dm-verity table cairn-init loads.
/// The activation itself needs device-mapper, absent here; `veritysetup
/// verify` checks the same parameters in userspace.
#[test]
fn veritysetup_output_becomes_a_verity_table() {
    require_root(&["/usr/bin/mkfs.erofs", "/usr/sbin/veritysetup"]);
    for superblock in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let img = erofs_image(dir.path());
        let size = std::fs::metadata(&img)
            .unwrap()
            .len()
            .next_multiple_of(4096);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(size)
            .unwrap();
        let mut format = Command::new("veritysetup");
        format
            .args(["format", "--data-block-size=4096", "--hash-block-size=4096"])
            .arg(format!("--hash-offset={size}"));
        if !superblock {
            format.arg("--no-superblock");
        }
        let out = format.arg(&img).arg(&img).output().unwrap();
        assert!(out.status.success(), "veritysetup: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        let (hash, salt, blocks) = (field("Root hash:"), field("Salt:"), field("Data blocks:"));
        let line = format!(
            "console=ttyS0 cairn.root=file:/root.img cairn.verity={hash}:{salt}:{blocks}:{size} cairn.data=tmpfs"
        );
        let p = cmdline::parse(&line).unwrap();
        assert_eq!(p.root, Some(RootSource::File("/root.img".into())));
        let Some(Verity::Params(v)) = p.verity else {
            panic!("verity params")
        };
        assert_eq!(v.data_bytes(), size);
        let start = cairn_init::dm::read_hash_start(&img, &v).unwrap();
        let want = size / 4096 + u64::from(superblock);
        assert_eq!(start, want, "superblock: {superblock}");
        let t = cairn_init::dm::verity_target((7, 3), &v, start);
        assert_eq!(t.length * 512, size);
        assert_eq!(
            t.params,
            format!("1 7:3 7:3 4096 4096 {blocks} {want} sha256 {hash} {salt}")
        );
        // The image verifies with exactly those parameters (userspace check).
        let mut verify = Command::new("veritysetup");
        verify.arg("verify").arg(format!("--hash-offset={size}"));
        if !superblock {
            verify.args(["--no-superblock", "--data-blocks", &blocks, "--salt", &salt]);
        }
        let ok = verify.arg(&img).arg(&img).arg(&hash).output().unwrap();
        assert!(ok.status.success(), "veritysetup verify: {ok:?}");
    }
}

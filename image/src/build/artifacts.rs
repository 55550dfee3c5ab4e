//! The build pipeline: packages → root tree → erofs + verity → initramfs →
//! UKI → ESP → GPT disk → qcow2 → PXE set → manifest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cairn_debian::apt::{Apt, PackageSpec, Progress as AptProgress};
use cairn_debian::{deb, elf, kernel, kmod};
use cairn_formats::{Guid, cpio, fat, gpt, uki};

use super::manifest::{self, Cmdlines, Kernel, Manifest, Package, Sizes};
use super::rootimg::{self, Verity};
use super::{Dirs, Inputs, bundle, rootfs};
use crate::progress::Progress;

/// Number of progress steps of every build.
const STEPS: usize = 9;

/// Number of progress steps of this build (one more with an update bundle).
pub fn steps(inputs: &Inputs) -> usize {
    STEPS + usize::from(inputs.signer.is_some())
}

const MIB: u64 = 1024 * 1024;
const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// Marker file that tells cairn-init it runs from the initramfs.
pub const INITRD_MARKER: &str = "etc/cairn/initrd";
/// Load list of kernel modules in the initramfs.
pub const MODULES_LIST: &str = "etc/cairn/modules";

/// Everything the later steps need from the packages.
struct Sysroot {
    dir: PathBuf,
    kernel: kernel::Kernel,
    packages: Vec<Package>,
}

/// Builds every artifact into `out`; returns a one-line summary.
pub fn build(inputs: &Inputs, dirs: &Dirs, out: &Path, progress: &mut Progress) -> Result<String> {
    let work = out.join(".work");
    std::fs::create_dir_all(&work)?;
    let epoch = inputs.site.image.source_date_epoch;
    let seed = format!(
        "cairn|{}|{}|{}|{}",
        inputs.site.cluster.name, inputs.site.image.version, inputs.profile.name, inputs.role
    );

    let extra_bins = inputs.box_binaries();
    progress.step(&format!(
        "building {} (static)",
        rootfs::CORE_BOX_BINARIES
            .iter()
            .copied()
            .chain(extra_bins.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let box_bin = rootfs::box_binaries(dirs, &extra_bins)?;

    progress.step("fetching Debian packages");
    let sysroot = fetch_and_extract(inputs, dirs, &work, progress)?;

    progress.step("root filesystem tree");
    let tree = work.join("root");
    let (files, executables) = root_tree(inputs, &box_bin, &sysroot, &tree)?;
    progress.note(&format!("{files} files, {executables} executables"));

    progress.step("erofs root with dm-verity hash tree");
    let root_img = work.join("root.img");
    let fs_uuid = Guid::derive("cairn-root-fs", &[seed.as_bytes()]).to_string();
    let salt =
        manifest::hex(Guid::derive("cairn-verity-salt", &[seed.as_bytes()]).as_bytes()).repeat(2);
    let verity = rootimg::build(&tree, &root_img, epoch, &fs_uuid, &salt)?;
    let root_content = std::fs::metadata(&root_img)?.len();
    let root_size = u64::from(inputs.profile.disk.root_mib) * MIB;
    if root_content > root_size {
        bail!(
            "the root filesystem needs {} MiB but profile {} gives a slot {} MiB (the profile's disk.root_mib, or the role's root_mib when larger)",
            root_content.div_ceil(MIB),
            inputs.profile.name,
            inputs.profile.disk.root_mib
        );
    }
    progress.note(&format!(
        "root {} KiB, verity root hash {}",
        verity.hash_offset / 1024,
        verity.root_hash
    ));

    progress.step("initramfs and kernel modules");
    let module_names: Vec<String> = inputs
        .profile
        .kernel
        .modules
        .iter()
        .chain(inputs.roles.iter().flat_map(|r| r.modules.iter()))
        .cloned()
        .collect();
    let index = kmod::ModuleIndex::load(&sysroot.kernel.modules_dir)?;
    let plan = index.plan(&module_names)?;
    let initrd = work.join("initrd.img");
    let initramfs = initramfs(&box_bin, &sysroot.kernel, &plan, epoch)?;
    initramfs.write_file(&initrd, Some(9))?;
    let pxe_initrd_path = work.join("pxe-initrd.img");
    let mut pxe = initramfs;
    pxe.add_file("root.img", 0o444, root_img.clone())?;
    pxe.write_file(&pxe_initrd_path, Some(9))?;

    progress.step("UKI and EFI system partition");
    let partitions = partitions(inputs, &work, &root_img);
    let base_cmdline = base_cmdline(inputs);
    // `cairn.root=ab`: the early stage boots whichever root slot holds the
    // tree with this root hash, so the same UKI works from slot A or B
    // (docs/update.md, "Finding the root").
    let disk_cmdline = format!(
        "{base_cmdline} cairn.root=ab cairn.verity={} cairn.data=PARTLABEL=data",
        verity.cmdline()
    );
    let pxe_cmdline = format!(
        "{base_cmdline} cairn.root=file:/root.img cairn.verity={} cairn.data=tmpfs",
        verity.cmdline()
    );
    let uki_path = work.join("cairn.efi");
    let os_release = std::fs::read_to_string(tree.join("etc/os-release"))?;
    uki::build_uki(
        Path::new(uki::DEFAULT_STUB),
        &sysroot.kernel.vmlinuz,
        &initrd,
        &disk_cmdline,
        &os_release,
        &uki_path,
    )?;
    let version = &inputs.site.image.version;
    let esp_files = vec![
        fat::FatFile::from_path("EFI/BOOT/BOOTX64.EFI", SYSTEMD_BOOT),
        fat::FatFile::from_path("EFI/systemd/systemd-bootx64.efi", SYSTEMD_BOOT),
        fat::FatFile::from_bytes(
            "loader/loader.conf",
            b"timeout 0\neditor no\nconsole-mode keep\n".to_vec(),
        ),
        fat::FatFile::from_path(format!("EFI/Linux/cairn-{version}.efi"), &uki_path),
    ];
    fat::build_fat(
        &work.join("esp.img"),
        &esp_files,
        &fat::FatOptions {
            size_bytes: u64::from(inputs.profile.disk.esp_mib) * MIB,
            label: "CAIRN-ESP".into(),
            seed: seed.as_bytes().to_vec(),
            timestamp: epoch as i64,
        },
    )?;

    progress.step("disk.img (GPT) and disk.qcow2");
    gpt::write_disk(&out.join("disk.img"), &partitions, seed.as_bytes(), None)?;
    qcow2(&out.join("disk.img"), &out.join("disk.qcow2"))?;

    progress.step("PXE set");
    let pxe_dir = out.join("pxe");
    std::fs::create_dir_all(&pxe_dir)?;
    std::fs::copy(&sysroot.kernel.vmlinuz, pxe_dir.join("vmlinuz"))?;
    std::fs::copy(&pxe_initrd_path, pxe_dir.join("initrd"))?;
    std::fs::write(
        pxe_dir.join("boot.ipxe"),
        format!(
            "#!ipxe\necho cairn {version} ({} on {})\nkernel vmlinuz initrd=initrd {pxe_cmdline}\ninitrd initrd\nboot\n",
            inputs.role, inputs.profile.name
        ),
    )?;

    let mut names = vec![
        "disk.img",
        "disk.qcow2",
        "pxe/vmlinuz",
        "pxe/initrd",
        "pxe/boot.ipxe",
        "site.toml",
    ];
    let mut bundle_note = None;
    if let Some(signer) = &inputs.signer {
        progress.step("signed update bundle");
        let b = bundle::write(inputs, signer, &verity, &root_img, &uki_path, out)?;
        progress.note(&format!(
            "root.img {:.1} MiB in {} chunks, cairn.efi {:.1} MiB, signed by key {}",
            b.root.size as f64 / MIB as f64,
            b.root.chunks.len(),
            b.uki.size as f64 / MIB as f64,
            signer.public.keyid()
        ));
        bundle_note = Some(format!(
            "update bundle signed by key {}",
            signer.public.keyid()
        ));
        names.extend(bundle::FILES);
    }

    progress.step("manifest.json and SBOM");
    std::fs::write(out.join("site.toml"), &inputs.site_text)?;
    let m = Manifest {
        manifest_version: 1,
        version: version.clone(),
        profile: inputs.profile.name.clone(),
        role: inputs.role.to_string(),
        cluster: inputs.site.cluster.name.clone(),
        source_date_epoch: epoch,
        kernel: Kernel {
            package: inputs.profile.kernel.package.clone(),
            package_version: inputs.profile.kernel.version.clone(),
            release: sysroot.kernel.version.clone(),
            modules: plan.modules.iter().map(|m| m.name.clone()).collect(),
        },
        verity: verity.clone(),
        cmdline: Cmdlines {
            disk: disk_cmdline,
            pxe: pxe_cmdline,
        },
        sizes: Sizes {
            rootfs: verity.hash_offset,
            root_partition_content: root_content,
            initrd: std::fs::metadata(&initrd)?.len(),
            pxe_initrd: std::fs::metadata(&pxe_initrd_path)?.len(),
            uki: std::fs::metadata(&uki_path)?.len(),
            root_files: files,
            root_executables: executables,
        },
        artifacts: manifest::artifacts(out, &names)?,
        packages: sysroot.packages.clone(),
    };
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&m)? + "\n",
    )?;
    std::fs::write(
        out.join("sbom.cdx.json"),
        serde_json::to_string_pretty(&manifest::cyclonedx(&m))? + "\n",
    )?;
    std::fs::remove_dir_all(&work).context("removing the work directory")?;
    let mut line = summary(&m, &verity);
    if let Some(n) = bundle_note {
        line.push_str(", ");
        line.push_str(&n);
    }
    Ok(line)
}

fn summary(m: &Manifest, verity: &Verity) -> String {
    let size = |p: &str| {
        m.artifacts
            .iter()
            .find(|a| a.path == p)
            .map_or(0, |a| a.size)
    };
    format!(
        "disk.qcow2 {:.1} MiB, root {:.1} MiB, PXE initrd {:.1} MiB, root hash {}",
        size("disk.qcow2") as f64 / MIB as f64,
        verity.hash_offset as f64 / MIB as f64,
        size("pxe/initrd") as f64 / MIB as f64,
        &verity.root_hash[..16]
    )
}

fn fetch_and_extract(
    inputs: &Inputs,
    dirs: &Dirs,
    work: &Path,
    progress: &Progress,
) -> Result<Sysroot> {
    let apt = Apt::new(dirs.cache().join("debs"));
    let show = |p: AptProgress| match p {
        AptProgress::UpdatingLists => {
            progress.note("apt has no package lists: running apt-get update")
        }
        AptProgress::Fetching {
            package,
            done,
            total,
        } => progress.detail(&format!("downloading {package:<30}"), done, total),
        AptProgress::Finished { fetched, bytes } => progress.note(&format!(
            "{fetched} downloaded ({:.1} MiB)",
            bytes as f64 / MIB as f64
        )),
        _ => {}
    };
    let kspec = PackageSpec {
        name: inputs.profile.kernel.package.clone(),
        version: Some(inputs.profile.kernel.version.clone()),
    };
    let kernel_pkgs = apt.fetch(&[kspec], &show)?;
    let mut role_specs = BTreeSet::new();
    for r in &inputs.roles {
        for p in &r.packages {
            role_specs.insert(PackageSpec::new(p)?);
        }
    }
    let role_specs: Vec<PackageSpec> = role_specs.into_iter().collect();
    let role_pkgs = if role_specs.is_empty() {
        Default::default()
    } else {
        apt.fetch_closure(&role_specs, &show)?
    };
    let dir = work.join("sysroot");
    std::fs::create_dir_all(&dir)?;
    let mut packages = Vec::new();
    for p in kernel_pkgs.packages.iter().chain(&role_pkgs.packages) {
        deb::extract(&p.path, &dir)?;
        packages.push(Package {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            sha256: p.sha256.clone(),
        });
    }
    packages.sort();
    packages.dedup();
    progress.note(&format!("{} packages", packages.len()));
    let kernel = kernel::find_kernel(&dir, &inputs.profile.kernel.package)?;
    Ok(Sysroot {
        dir,
        kernel,
        packages,
    })
}

/// Fills the root tree; returns (files, executables).
fn root_tree(
    inputs: &Inputs,
    box_bin: &Path,
    sysroot: &Sysroot,
    tree: &Path,
) -> Result<(usize, usize)> {
    let services: String = inputs
        .roles
        .iter()
        .map(|r| r.services.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    rootfs::config_files(inputs, tree, &services)?;
    rootfs::install(&box_bin.join("cairn-init"), tree, "sbin/init", 0o755)?;
    rootfs::install(&box_bin.join("cairnctl"), tree, "usr/bin/cairnctl", 0o755)?;
    for b in inputs.box_binaries() {
        rootfs::install(&box_bin.join(&b), tree, &format!("usr/sbin/{b}"), 0o755)?;
    }
    if let Some(p) = &inputs.k8s {
        super::k8s::install(p, box_bin, tree)?;
    }
    // Role programs and their libraries, taken from the extracted packages.
    let mut binaries: Vec<PathBuf> = inputs
        .roles
        .iter()
        .flat_map(|r| r.binaries.iter().cloned())
        .collect();
    // Plugins the programs dlopen, with their own libraries.
    for r in &inputs.roles {
        binaries.extend(super::dlopen::expand(&sysroot.dir, &r.name, &r.dlopen)?);
    }
    if !binaries.is_empty() {
        let closure = elf::library_closure(&sysroot.dir, &binaries)?;
        for f in &closure.files {
            let src = cairn_debian::rootpath::host_path(&sysroot.dir, f);
            let mode = std::fs::metadata(&src)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap_or(0o644);
            rootfs::install(&src, tree, &f.to_string_lossy(), mode)?;
        }
        for (link, target) in &closure.symlinks {
            let at = tree.join(link.strip_prefix("/").unwrap_or(link));
            if let Some(p) = at.parent() {
                std::fs::create_dir_all(p)?;
            }
            if !at.exists() {
                std::os::unix::fs::symlink(target, &at)
                    .with_context(|| format!("symlink {}", at.display()))?;
            }
        }
    }
    for f in inputs.roles.iter().flat_map(|r| r.files.iter()) {
        let src = cairn_debian::rootpath::host_path(&sysroot.dir, f);
        if !src.exists() {
            bail!(
                "role file {} is in none of the role's packages",
                f.display()
            );
        }
        rootfs::install(&src, tree, &f.to_string_lossy(), 0o644)?;
    }
    // The services file must be valid against the finished tree.
    cairn_init::config::parse(&services, Path::new("/etc/cairn/services.toml"), tree)
        .map_err(|e| anyhow::anyhow!("role services: {e}"))?;
    let files = rootfs::list(tree);
    let executables = files
        .iter()
        .filter(|p| {
            let full = tree.join(p);
            std::fs::symlink_metadata(&full)
                .map(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
                .unwrap_or(false)
        })
        .count();
    Ok((files.len(), executables))
}

fn initramfs(
    box_bin: &Path,
    kernel: &kernel::Kernel,
    plan: &kmod::ModulePlan,
    epoch: u64,
) -> Result<cpio::Archive> {
    let mut a = cpio::Archive::new(epoch as u32);
    for d in ["dev", "proc", "sys", "run", "newroot", "tmp"] {
        a.add_dir(d, 0o755)?;
    }
    a.add_char_device("dev/console", 0o600, 5, 1)?;
    a.add_char_device("dev/null", 0o666, 1, 3)?;
    a.add_file("init", 0o755, box_bin.join(rootfs::EARLY_INIT))?;
    a.add_file(INITRD_MARKER, 0o644, "cairn initramfs\n")?;
    let base = format!("lib/modules/{}", kernel.version);
    let mut list = String::new();
    for m in &plan.modules {
        let rel = format!("{base}/{}", m.path.display());
        a.add_file(&rel, 0o644, kernel.modules_dir.join(&m.path))?;
        list.push('/');
        list.push_str(&rel);
        list.push('\n');
    }
    a.add_file(MODULES_LIST, 0o644, list.as_str())?;
    Ok(a)
}

fn partitions(inputs: &Inputs, work: &Path, root_img: &Path) -> Vec<gpt::Partition> {
    let d = inputs.profile.disk;
    vec![
        gpt::Partition::new("esp", gpt::EFI_SYSTEM_PARTITION, u64::from(d.esp_mib) * MIB)
            .with_content(work.join("esp.img")),
        gpt::Partition::new(
            "root-a",
            gpt::LINUX_ROOT_X86_64,
            u64::from(d.root_mib) * MIB,
        )
        .with_content(root_img.to_path_buf()),
        gpt::Partition::new(
            "root-b",
            gpt::LINUX_ROOT_X86_64,
            u64::from(d.root_mib) * MIB,
        ),
        gpt::Partition::new("data", gpt::LINUX_DATA, u64::from(d.data_mib) * MIB),
    ]
}

fn base_cmdline(inputs: &Inputs) -> String {
    let mut words = vec![format!("console={}", inputs.profile.console)];
    words.extend(inputs.profile.kernel.cmdline.iter().cloned());
    words.join(" ")
}

fn qcow2(raw: &Path, out: &Path) -> Result<()> {
    let o = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2", "-c"])
        .arg(raw)
        .arg(out)
        .output()
        .context("running qemu-img (qemu-utils; run `cargo xtask setup`)")?;
    if !o.status.success() {
        bail!(
            "qemu-img convert failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

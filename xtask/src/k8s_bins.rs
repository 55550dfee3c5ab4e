//! `cargo xtask k8s-bins`: the Kubernetes binaries of the lab's control plane
//! and of a `k8s-node` box's kubelet, built from Debian's `kubernetes` source
//! package (no registry here ships a kubelet), plus Debian's own `kubectl`.
//!
//! Everything lives under `$CAIRN_CACHE/k8s/` (else `.cache/k8s/` in the
//! tree): private apt lists (bookworm `deb` and `deb-src`, so the host's apt
//! state is untouched), the source package, the unpacked tree with Go's
//! build cache in it (`_output/local/go/cache`, where the 1.20 build scripts
//! put it), and per Debian version `<version>/bin/` with `kubelet`,
//! `kube-apiserver`, `kube-controller-manager`, `kubectl` and a stamp file
//! naming the source. A complete `bin/` is reused without touching the
//! network. After a successful build the unpacked tree (≈ 2.5 GB, nearly all
//! Go's cache) is removed unless `--keep-tree` is given: a newer Debian
//! version gets a tree of its own, so the old one would only take space; a
//! failed build keeps it, and the next run continues where it stopped. `kubectl` is taken out of the `kubernetes-client` .deb rather than
//! installed, because a host may already have a different package owning
//! `/usr/bin/kubectl` (Google's cloud SDK does).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::{root, run_cmd, step};

/// What `make WHAT=...` builds, in `_output/bin/`.
pub const BUILT: &[&str] = &["kubelet", "kube-apiserver", "kube-controller-manager"];

/// Everything a complete `bin/` holds: the built binaries and Debian's kubectl.
pub const ALL: &[&str] = &[
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

/// The stamp file in `bin/`: `kubernetes <source version>` and
/// `kubernetes-client <binary version>`, written last.
pub const STAMP: &str = "SOURCE";

/// The Debian archive the sources come from.
const SOURCES: &str = "Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// `$CAIRN_CACHE/k8s`, else `.cache/k8s` in the tree.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CAIRN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache"))
        .join("k8s")
}

/// Makes sure the binaries are built; returns their directory (the value of
/// `CAIRN_K8S_BIN` for the tests). `keep_tree` keeps the unpacked source
/// tree and its Go cache after a successful build.
pub fn run(keep_tree: bool) -> Result<PathBuf> {
    let t = Instant::now();
    let k8s = cache_dir();
    fs::create_dir_all(&k8s).with_context(|| format!("creating {}", k8s.display()))?;
    let lock_path = k8s.join("lock");
    let lock_file =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((f, _)) => {
            println!(
                "k8s-bins: another build holds {}; waiting",
                lock_path.display()
            );
            Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .with_context(|| format!("locking {}", lock_path.display()))?
        }
    };
    if let Some(bin) = complete_build(&k8s) {
        println!(
            "k8s binaries: present in {} ({}); nothing to do",
            bin.display(),
            stamp_line(&bin)
        );
        return Ok(bin);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "building the Kubernetes binaries needs root (apt-get source/download); run `cargo xtask k8s-bins` as root"
        );
    }
    let apt = Apt::new(&k8s)?;
    step("k8s-bins: apt-get update (private lists: Debian bookworm deb + deb-src)");
    run_cmd(apt.get().args(["-q", "update"])).context("step apt-get update failed")?;
    let version = apt.source_version("kubernetes")?;
    let vdir = k8s.join(&version);
    let pkg = vdir.join("pkg");
    fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;

    step(&format!(
        "k8s-bins: downloading source package kubernetes {version}"
    ));
    run_in(
        &pkg,
        apt.get()
            .args(["-q", "source", "--download-only"])
            .arg(format!("kubernetes={version}")),
    )
    .context("step apt-get source failed")?;

    let src = vdir.join("src");
    extract(&pkg, &version, &src)?;
    build(&k8s, &src, &vdir.join("build.log"))?;

    step("k8s-bins: Debian's kubectl (kubernetes-client .deb, unpacked, not installed)");
    let client_version = kubectl_from_deb(&apt, &pkg)?;

    let bin = vdir.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    for name in BUILT {
        install(&src.join("_output/bin").join(name), &bin.join(name))?;
    }
    install(
        &pkg.join("kubernetes-client/usr/bin/kubectl"),
        &bin.join("kubectl"),
    )?;
    let stamp = bin.join(STAMP);
    fs::write(
        &stamp,
        format!("kubernetes {version}\nkubernetes-client {client_version}\n"),
    )
    .with_context(|| format!("writing {}", stamp.display()))?;

    step(&format!("k8s binaries in {}", bin.display()));
    report(&bin)?;
    if keep_tree {
        println!("    source tree kept: {}", src.display());
    } else {
        fs::remove_dir_all(&src).with_context(|| format!("removing {}", src.display()))?;
        println!(
            "    removed the source tree {} (Go's cache in it; `--keep-tree` keeps it)",
            src.display()
        );
    }
    println!(
        "built in {:.0} s (source package and apt lists stay in {})",
        t.elapsed().as_secs_f64(),
        k8s.display()
    );
    Ok(bin)
}

/// The newest `<version>/bin` under `k8s` whose stamp names its version and
/// that has every binary.
fn complete_build(k8s: &Path) -> Option<PathBuf> {
    let mut found: Vec<(SystemTime, PathBuf)> = fs::read_dir(k8s)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().into_owned();
            let bin = e.path().join("bin");
            let stamp = fs::read_to_string(bin.join(STAMP)).ok()?;
            let ok = stamp.lines().next() == Some(&format!("kubernetes {version}"))
                && ALL.iter().all(|b| bin.join(b).is_file());
            let at = fs::metadata(bin.join(STAMP))
                .and_then(|m| m.modified())
                .ok()?;
            ok.then_some((at, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn stamp_line(bin: &Path) -> String {
    fs::read_to_string(bin.join(STAMP))
        .unwrap_or_default()
        .lines()
        .collect::<Vec<_>>()
        .join(", ")
}

/// apt with lists, caches and sources of its own under `k8s/apt`.
struct Apt {
    options: Vec<String>,
}

impl Apt {
    fn new(k8s: &Path) -> Result<Self> {
        let dir = k8s.join("apt");
        for d in ["etc", "lists/partial", "cache/archives/partial"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        let sources = dir.join("etc/debian.sources");
        fs::write(&sources, SOURCES).with_context(|| format!("writing {}", sources.display()))?;
        let d = dir.display();
        Ok(Self {
            options: vec![
                "-oDir::Etc::SourceList=/dev/null".into(),
                format!("-oDir::Etc::SourceParts={d}/etc"),
                format!("-oDir::State::Lists={d}/lists"),
                format!("-oDir::Cache={d}/cache"),
                // Files land in directories the _apt user cannot write.
                "-oAPT::Sandbox::User=root".into(),
            ],
        })
    }

    fn get(&self) -> Command {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(&self.options);
        c
    }

    fn cache(&self) -> Command {
        let mut c = Command::new("apt-cache");
        c.args(&self.options);
        c
    }

    /// The version of source package `name` in the private lists.
    fn source_version(&self, name: &str) -> Result<String> {
        let o = self
            .cache()
            .args(["showsrc", name])
            .output()
            .context("cannot run apt-cache showsrc")?;
        let text = String::from_utf8_lossy(&o.stdout);
        if !o.status.success() {
            bail!(
                "step apt-cache showsrc {name} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        text.lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("step apt-cache showsrc {name}: no Version in {text:?}"))
    }
}

/// Runs `cmd` in `dir` ([`run_cmd`] always runs in the workspace root),
/// failing on a non-zero exit.
fn run_in(dir: &Path, cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let t = Instant::now();
    let st = cmd
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st}) in {}", dir.display());
    }
    println!("    ({:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}

/// A version without its epoch, as it appears in file names.
fn file_version(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, v)| v)
}

/// Unpacks the source package (Debian's patches applied) into `src`, once:
/// a marker file says the unpacking finished.
fn extract(pkg: &Path, version: &str, src: &Path) -> Result<()> {
    let marker = src.join(".cairn-unpacked");
    if marker.is_file() {
        println!("    source tree already unpacked: {}", src.display());
        return Ok(());
    }
    step("k8s-bins: dpkg-source -x (applies Debian's patches)");
    if src.exists() {
        fs::remove_dir_all(src).with_context(|| format!("removing {}", src.display()))?;
    }
    let dsc = pkg.join(format!("kubernetes_{}.dsc", file_version(version)));
    run_in(
        pkg,
        Command::new("dpkg-source")
            .args(["--no-copy", "-x"])
            .arg(&dsc)
            .arg(src),
    )
    .context("step dpkg-source -x failed")?;
    // A GOPATH holding the tree as k8s.io/kubernetes, as in the recipe verified
    // here (the 1.20 build scripts then set up their own under _output/local/go).
    let gopath = src.join(".go/src/k8s.io");
    fs::create_dir_all(&gopath).with_context(|| format!("creating {}", gopath.display()))?;
    std::os::unix::fs::symlink("../../..", gopath.join("kubernetes"))
        .with_context(|| format!("linking {}/kubernetes", gopath.display()))?;
    fs::write(&marker, version).with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// Runs the niced `make WHAT=...` in `src`, its whole output into `log`,
/// showing the `+++` progress lines and the lines indented under them.
fn build(k8s: &Path, src: &Path, log: &Path) -> Result<()> {
    let what = BUILT
        .iter()
        .map(|b| format!("cmd/{b}"))
        .collect::<Vec<_>>()
        .join(" ");
    step(&format!(
        "k8s-bins: nice -n 19 make WHAT=\"{what}\" (full output: {})",
        log.display()
    ));
    let home = k8s.join("home");
    fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
    let t = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec nice -n 19 make WHAT=\"{what}\" 2>&1"))
        .current_dir(src)
        .env("GOPATH", src.join(".go"))
        .env("CGO_ENABLED", "0")
        .env("HOME", &home)
        .env_remove("GOFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("step make: cannot start sh/make")?;
    let mut out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut tail: Vec<String> = Vec::new();
    let mut showing = false;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("step make: reading its output")?;
            writeln!(out, "{line}").with_context(|| format!("writing {}", log.display()))?;
            if line.starts_with("+++") {
                showing = true;
                println!("    [{:>5.0} s] {line}", t.elapsed().as_secs_f64());
            } else if showing && line.starts_with("    ") {
                println!("            {line}");
            } else {
                showing = false;
            }
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
    }
    let st = child.wait().context("step make: waiting for it")?;
    if !st.success() {
        bail!(
            "step make failed ({st}) in {}; last lines:\n{}\n(full output: {})",
            src.display(),
            tail.join("\n"),
            log.display()
        );
    }
    println!("    make: {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Downloads the `kubernetes-client` .deb into `pkg` and unpacks it into
/// `pkg/kubernetes-client`; returns its version.
fn kubectl_from_deb(apt: &Apt, pkg: &Path) -> Result<String> {
    run_in(pkg, apt.get().args(["-q", "download", "kubernetes-client"]))
        .context("step apt-get download kubernetes-client failed")?;
    let deb = fs::read_dir(pkg)
        .with_context(|| format!("reading {}", pkg.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kubernetes-client_"))
                && p.extension().is_some_and(|x| x == "deb")
        })
        .max()
        .with_context(|| {
            format!(
                "step apt-get download: no kubernetes-client_*.deb in {}",
                pkg.display()
            )
        })?;
    let out = pkg.join("kubernetes-client");
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&out))
        .context("step dpkg-deb -x kubernetes-client failed")?;
    let o = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Version")
        .output()
        .context("cannot run dpkg-deb -f")?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Copies `from` to `to` (through a temporary name), mode 0755.
fn install(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp).with_context(|| {
        format!(
            "step install: copying {} to {}",
            from.display(),
            tmp.display()
        )
    })?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))
}

/// Prints each binary's size and sha256.
fn report(bin: &Path) -> Result<()> {
    for name in ALL {
        let p = bin.join(name);
        let size = fs::metadata(&p)
            .with_context(|| format!("{}", p.display()))?
            .len();
        let o = Command::new("sha256sum")
            .arg(&p)
            .output()
            .context("cannot run sha256sum")?;
        let sum = String::from_utf8_lossy(&o.stdout);
        let sum = sum.split_whitespace().next().unwrap_or("?");
        println!(
            "    {name:<24} {:>7.1} MiB  sha256 {sum}",
            size as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_drop_the_epoch() {
        assert_eq!(file_version("1:2.3-1"), "2.3-1");
        assert_eq!(
            file_version("1.20.5+really1.20.2-1.1+deb12u1"),
            "1.20.5+really1.20.2-1.1+deb12u1"
        );
    }

    #[test]
    fn only_a_stamped_complete_bin_dir_counts() {
        let k8s = tempfile::tempdir().unwrap();
        let bin = k8s.path().join("1.2-3/bin");
        fs::create_dir_all(&bin).unwrap();
        for b in ALL {
            fs::write(bin.join(b), "x").unwrap();
        }
        assert_eq!(complete_build(k8s.path()), None, "no stamp yet");
        fs::write(bin.join(STAMP), "kubernetes 9.9-9\n").unwrap();
        assert_eq!(complete_build(k8s.path()), None, "stamp of another version");
        fs::write(
            bin.join(STAMP),
            "kubernetes 1.2-3\nkubernetes-client 1.2-3\n",
        )
        .unwrap();
        assert_eq!(complete_build(k8s.path()), Some(bin.clone()));
        fs::remove_file(bin.join("kubelet")).unwrap();
        assert_eq!(complete_build(k8s.path()), None, "a binary is missing");
    }
}

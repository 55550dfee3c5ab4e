//! Fetching exact Debian packages into a project-owned cache with apt's own tools.
//!
//! Only read-only apt queries (`apt-cache show`, `apt-cache depends`) and `apt-get download` are
//! used, so the host's dpkg state (`/var/lib/dpkg`) is never read or written. `apt-get download`
//! verifies every file against the signed index; this module checks size and SHA-256 again
//! before a file gets its final name in the cache, and reuses a cached file only when it still
//! matches the index, so warm builds stay off the network.
//!
//! The one write outside the cache is `apt-get update`, run once when apt has no package lists
//! at all (a fresh machine); [`Progress::UpdatingLists`] says so.

mod cache;
mod depends;
mod index;
mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use cache::{CacheError, cached_path, hex, matches_index, sha256_file};
pub use depends::{Choice, ChoiceReason, Closure, DependencyGraph, DependsError};
pub use index::{IndexError, IndexRecord, parse_records, parse_stanzas};
pub use spec::{PackageSpec, SpecError, valid_name, valid_version};

/// Where apt keeps its package lists unless told otherwise.
pub const DEFAULT_LISTS_DIR: &str = "/var/lib/apt/lists";

/// Errors from resolving and fetching packages.
#[derive(Debug, thiserror::Error)]
pub enum AptError {
    /// An apt command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An apt command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status as text.
        status: String,
        /// What the command printed on stderr.
        stderr: String,
    },
    /// `apt-cache show` printed something that is not a package record.
    #[error("cannot parse the output of `{command}`")]
    Index {
        /// The command line.
        command: String,
        /// What was wrong.
        source: IndexError,
    },
    /// The dependency closure could not be computed.
    #[error("dependency closure of {roots}")]
    Depends {
        /// The requested packages.
        roots: String,
        /// What was wrong.
        source: DependsError,
    },
    /// No package of that name has a candidate in apt's index (unknown, or purely virtual).
    #[error("package `{name}` is not in apt's index (unknown name, or a virtual package)")]
    UnknownPackage {
        /// The requested name.
        name: String,
    },
    /// The package exists, but not in the pinned version.
    #[error("package `{name}` has no version `{version}` in apt's index; available: {}", available.join(", "))]
    VersionNotAvailable {
        /// The package.
        name: String,
        /// The pinned version.
        version: String,
        /// Versions the index does have.
        available: Vec<String>,
    },
    /// The cache directory could not be prepared.
    #[error("cannot prepare the package cache `{path}`")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A cached file could not be read.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// `apt-get download` succeeded but the expected file is missing.
    #[error("`apt-get download` did not produce `{path}` for `{package}`")]
    NotDownloaded {
        /// `name=version`.
        package: String,
        /// The expected file.
        path: PathBuf,
    },
    /// A downloaded file does not match apt's index.
    #[error("`{path}` for `{package}` has SHA-256 {actual}, apt's index says {expected}")]
    Corrupt {
        /// `name=version`.
        package: String,
        /// The file.
        path: PathBuf,
        /// Digest from the index.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// The apt lists directory could not be read.
    #[error("cannot read apt's package lists in `{path}`")]
    Lists {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `apt-get update` ran but left no package lists.
    #[error("`apt-get update` left no package lists in `{path}`; check the apt sources")]
    ListsStillMissing {
        /// The directory.
        path: PathBuf,
    },
}

/// Progress of a fetch, for the CLI to draw; the library never prints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// apt had no package lists: `apt-get update` is running (once).
    UpdatingLists,
    /// Versions resolved: `total` packages, `cached` of them already in the cache.
    Resolved {
        /// Packages in the request (after the dependency closure).
        total: usize,
        /// Packages whose cached file matches the index.
        cached: usize,
    },
    /// A package download started; `done` downloads finished before it, out of `total`.
    Fetching {
        /// Package name.
        package: String,
        /// Downloads started before this one.
        done: usize,
        /// Downloads needed.
        total: usize,
    },
    /// All packages are in the cache.
    Finished {
        /// Packages downloaded.
        fetched: usize,
        /// Bytes downloaded.
        bytes: u64,
    },
}

/// A `.deb` in the cache, verified against apt's index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64` or `all`.
    pub architecture: String,
    /// SHA-256 of the `.deb` (lowercase hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The file in the cache directory.
    pub path: PathBuf,
    /// Whether it was already cached (not downloaded by this call).
    pub cached: bool,
}

/// The outcome of a fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Every package, sorted by name.
    pub packages: Vec<Package>,
    /// Choices made for alternatives and virtual packages (empty for [`Apt::fetch`]).
    pub choices: Vec<Choice>,
    /// Whether `apt-get update` had to run first.
    pub lists_updated: bool,
}

/// apt, pointed at a project-owned package cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apt {
    cache_dir: PathBuf,
    lists_dir: Option<PathBuf>,
}

impl Apt {
    /// apt with `.deb` files kept in `cache_dir` (created on first fetch).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            lists_dir: None,
        }
    }

    /// Use package lists in `dir` instead of the host's (`-o Dir::State::Lists=dir` on every apt
    /// command), e.g. a project-owned copy.
    pub fn with_lists_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.lists_dir = Some(dir.into());
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The package lists directory apt reads.
    pub fn lists_dir(&self) -> PathBuf {
        self.lists_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LISTS_DIR))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(dir) = &self.lists_dir {
            cmd.arg(format!("-oDir::State::Lists={}", dir.display()));
            // The host's binary caches describe the host's lists: neither use nor rewrite them.
            cmd.args(["-oDir::Cache::pkgcache=", "-oDir::Cache::srcpkgcache="]);
        }
        cmd
    }

    /// Runs `apt-get update` when the lists directory holds no `Packages` file; returns whether
    /// it ran.
    pub fn ensure_lists(&self, progress: &dyn Fn(Progress)) -> Result<bool, AptError> {
        let dir = self.lists_dir();
        if has_package_lists(&dir)? {
            return Ok(false);
        }
        progress(Progress::UpdatingLists);
        if self.lists_dir.is_some() {
            let partial = dir.join("partial");
            std::fs::create_dir_all(&partial).map_err(|source| AptError::Lists {
                path: partial,
                source,
            })?;
        }
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "-oAPT::Sandbox::User=root", "update"]);
        run(&mut cmd)?;
        if !has_package_lists(&dir)? {
            return Err(AptError::ListsStillMissing { path: dir });
        }
        Ok(true)
    }

    /// Resolves specs to the exact index records apt would fetch: the candidate version, or the
    /// pinned one. One record per spec, in order.
    pub fn resolve(&self, specs: &[PackageSpec]) -> Result<Vec<IndexRecord>, AptError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions"]);
        cmd.args(specs.iter().map(PackageSpec::apt_arg));
        // apt-cache exits 100 when none of the names is known; report that per name below.
        let text = run_allow_failure(&mut cmd)?;
        let records = parse_records(&text).map_err(|source| AptError::Index {
            command: describe(&cmd),
            source,
        })?;
        specs
            .iter()
            .map(|spec| {
                records
                    .iter()
                    .find(|r| {
                        r.package == spec.name
                            && spec.version.as_ref().is_none_or(|v| *v == r.version)
                    })
                    .cloned()
                    .map_or_else(|| Err(self.not_found(spec)), Ok)
            })
            .collect()
    }

    /// The precise error for a spec `apt-cache show` had no record for.
    fn not_found(&self, spec: &PackageSpec) -> AptError {
        let Some(version) = &spec.version else {
            return AptError::UnknownPackage {
                name: spec.name.clone(),
            };
        };
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", &spec.name]);
        let available: Vec<String> = run_allow_failure(&mut cmd)
            .ok()
            .and_then(|text| parse_records(&text).ok())
            .map(|records| records.into_iter().map(|r| r.version).collect())
            .unwrap_or_default();
        if available.is_empty() {
            AptError::UnknownPackage {
                name: spec.name.clone(),
            }
        } else {
            AptError::VersionNotAvailable {
                name: spec.name.clone(),
                version: version.clone(),
                available,
            }
        }
    }

    /// The dependency closure of `roots` (Depends and Pre-Depends, one satisfier per
    /// dependency; see [`DependencyGraph`]).
    pub fn closure(&self, roots: &[PackageSpec]) -> Result<Closure, AptError> {
        if roots.is_empty() {
            return Ok(Closure::default());
        }
        let names: Vec<String> = roots.iter().map(|r| r.name.clone()).collect();
        let depends_err = |source| AptError::Depends {
            roots: names.join(", "),
            source,
        };
        // Every root must be a real package; this also gives the precise error for bad pins.
        self.resolve(roots)?;
        let mut cmd = self.command("apt-cache");
        cmd.args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ]);
        cmd.args(roots.iter().map(PackageSpec::apt_arg));
        let text = run(&mut cmd)?;
        DependencyGraph::parse(&text)
            .and_then(|g| g.resolve(&names))
            .map_err(depends_err)
    }

    /// Fetches exactly `specs` (no dependencies) into the cache.
    pub fn fetch(
        &self,
        specs: &[PackageSpec],
        progress: &dyn Fn(Progress),
    ) -> Result<Fetched, AptError> {
        let lists_updated = self.ensure_lists(progress)?;
        let records = self.resolve(specs)?;
        let packages = self.fetch_records(&records, progress)?;
        Ok(Fetched {
            packages,
            choices: Vec::new(),
            lists_updated,
        })
    }

    /// Fetches `roots` and their dependency closure into the cache. Versions pinned in `roots`
    /// are kept; every other package is apt's candidate.
    pub fn fetch_closure(
        &self,
        roots: &[PackageSpec],
        progress: &dyn Fn(Progress),
    ) -> Result<Fetched, AptError> {
        let lists_updated = self.ensure_lists(progress)?;
        let closure = self.closure(roots)?;
        let pins: BTreeMap<&str, &PackageSpec> =
            roots.iter().map(|r| (r.name.as_str(), r)).collect();
        let specs: Vec<PackageSpec> = closure
            .packages
            .iter()
            .map(|name| {
                pins.get(name.as_str())
                    .map(|s| (*s).clone())
                    .unwrap_or_else(|| PackageSpec {
                        name: name.clone(),
                        version: None,
                    })
            })
            .collect();
        let records = self.resolve(&specs)?;
        let packages = self.fetch_records(&records, progress)?;
        Ok(Fetched {
            packages,
            choices: closure.choices,
            lists_updated,
        })
    }

    /// Makes sure every record's `.deb` is in the cache, downloading only what is missing or
    /// does not match the index.
    fn fetch_records(
        &self,
        records: &[IndexRecord],
        progress: &dyn Fn(Progress),
    ) -> Result<Vec<Package>, AptError> {
        let unique: BTreeSet<&IndexRecord> = records.iter().collect();
        let mut missing = Vec::new();
        let mut packages = Vec::new();
        for record in &unique {
            let path = cached_path(&self.cache_dir, record);
            if matches_index(&path, record)? {
                packages.push(package(record, path, true));
            } else {
                missing.push(*record);
            }
        }
        progress(Progress::Resolved {
            total: unique.len(),
            cached: packages.len(),
        });
        if !missing.is_empty() {
            self.download(&missing, progress)?;
            for record in &missing {
                packages.push(package(record, cached_path(&self.cache_dir, record), false));
            }
        }
        progress(Progress::Finished {
            fetched: missing.len(),
            bytes: missing.iter().map(|r| r.size).sum(),
        });
        packages.sort();
        Ok(packages)
    }

    /// Downloads `records` with one `apt-get download` in a private staging directory, verifies
    /// each file and moves it into the cache.
    fn download(
        &self,
        records: &[&IndexRecord],
        progress: &dyn Fn(Progress),
    ) -> Result<(), AptError> {
        static DOWNLOADS: AtomicUsize = AtomicUsize::new(0);
        let staging = self.cache_dir.join(format!(
            ".partial-{}-{}",
            std::process::id(),
            DOWNLOADS.fetch_add(1, Ordering::Relaxed)
        ));
        let prepare = |path: &Path| {
            std::fs::create_dir_all(path).map_err(|source| AptError::CacheDir {
                path: path.to_path_buf(),
                source,
            })
        };
        prepare(&self.cache_dir)?;
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|source| AptError::CacheDir {
                path: staging.clone(),
                source,
            })?;
        }
        prepare(&staging)?;
        let result = self.download_into(&staging, records, progress);
        // Best effort: a leftover staging directory is removed by the next run anyway.
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn download_into(
        &self,
        staging: &Path,
        records: &[&IndexRecord],
        progress: &dyn Fn(Progress),
    ) -> Result<(), AptError> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "-oAPT::Sandbox::User=root", "download"])
            .args(
                records
                    .iter()
                    .map(|r| format!("{}={}", r.package, r.version)),
            )
            .current_dir(staging);
        let command = describe(&cmd);
        let names: Vec<&str> = records.iter().map(|r| r.package.as_str()).collect();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| AptError::Spawn {
                command: command.clone(),
                source,
            })?;
        // Drain stderr on a thread so a chatty apt cannot block on a full pipe.
        let stderr_reader = child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                text
            })
        });
        let mut started = 0usize;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(package) = fetched_package(&line, &names) {
                    progress(Progress::Fetching {
                        package: package.to_string(),
                        done: started,
                        total: records.len(),
                    });
                    started += 1;
                }
            }
        }
        let status = child.wait().map_err(|source| AptError::Spawn {
            command: command.clone(),
            source,
        })?;
        let stderr = stderr_reader
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(AptError::Failed {
                command,
                status: status.to_string(),
                stderr: stderr.trim().to_string(),
            });
        }
        for record in records {
            let spec = format!("{}={}", record.package, record.version);
            let downloaded = staging.join(record.deb_file_name());
            if !downloaded.is_file() {
                return Err(AptError::NotDownloaded {
                    package: spec,
                    path: downloaded,
                });
            }
            let actual = sha256_file(&downloaded)?;
            if actual != record.sha256 {
                return Err(AptError::Corrupt {
                    package: spec,
                    path: downloaded,
                    expected: record.sha256.clone(),
                    actual,
                });
            }
            let dest = cached_path(&self.cache_dir, record);
            std::fs::rename(&downloaded, &dest).map_err(|source| AptError::CacheDir {
                path: dest.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

fn package(record: &IndexRecord, path: PathBuf, cached: bool) -> Package {
    Package {
        name: record.package.clone(),
        version: record.version.clone(),
        architecture: record.architecture.clone(),
        sha256: record.sha256.clone(),
        size: record.size,
        path,
        cached,
    }
}

/// Whether `dir` holds at least one `Packages` index (any compression).
fn has_package_lists(dir: &Path) -> Result<bool, AptError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(AptError::Lists {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| AptError::Lists {
            path: dir.to_path_buf(),
            source,
        })?;
        if is_packages_list(&entry.file_name().to_string_lossy()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a file name in apt's lists directory is a `Packages` index.
fn is_packages_list(name: &str) -> bool {
    name.ends_with("_Packages")
        || name
            .rsplit_once('.')
            .is_some_and(|(stem, _)| stem.ends_with("_Packages"))
}

/// The package an `apt-get download` progress line (`Get:3 http://... pkg amd64 1.0 [27 kB]`)
/// is about, if any.
fn fetched_package<'a>(line: &str, names: &[&'a str]) -> Option<&'a str> {
    let rest = line.strip_prefix("Get:")?;
    rest.split_whitespace()
        .find_map(|token| names.iter().find(|n| **n == token).copied())
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command to completion and returns its stdout; a non-zero exit is an error.
fn run(cmd: &mut Command) -> Result<String, AptError> {
    let (status, stdout, stderr) = output(cmd)?;
    if !status.success() {
        return Err(AptError::Failed {
            command: describe(cmd),
            status: status.to_string(),
            stderr,
        });
    }
    Ok(stdout)
}

/// Runs a command and returns its stdout whatever the exit status (for `apt-cache show`, whose
/// status says nothing per package).
fn run_allow_failure(cmd: &mut Command) -> Result<String, AptError> {
    output(cmd).map(|(_, stdout, _)| stdout)
}

fn output(cmd: &mut Command) -> Result<(std::process::ExitStatus, String, String), AptError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| AptError::Spawn {
            command: describe(cmd),
            source,
        })?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_package_lists_in_any_compression() {
        assert!(is_packages_list(
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
        ));
        assert!(is_packages_list(
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"
        ));
        assert!(!is_packages_list(
            "deb.debian.org_debian_dists_bookworm_InRelease"
        ));
        assert!(!is_packages_list(
            "deb.debian.org_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz"
        ));
    }

    #[test]
    fn missing_or_empty_lists_dirs_have_no_lists() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_package_lists(&dir.path().join("nope")).unwrap());
        assert!(!has_package_lists(dir.path()).unwrap());
        std::fs::write(
            dir.path().join("x_dists_y_main_binary-amd64_Packages.lz4"),
            b"",
        )
        .unwrap();
        assert!(has_package_lists(dir.path()).unwrap());
    }

    #[test]
    fn progress_lines_name_the_package() {
        let names = ["libcap2", "haproxy"];
        assert_eq!(
            fetched_package(
                "Get:1 http://deb.debian.org/debian bookworm/main amd64 libcap2 amd64 \
                 1:2.66-4+deb12u3+b1 [27.7 kB]",
                &names
            ),
            Some("libcap2")
        );
        assert_eq!(
            fetched_package("Fetched 27.7 kB in 0s (1545 kB/s)", &names),
            None
        );
    }

    #[test]
    fn lists_dir_option_reaches_every_command() {
        let apt = Apt::new("/c").with_lists_dir("/l");
        let cmd = apt.command("apt-cache");
        assert_eq!(
            describe(&cmd),
            "apt-cache -oDir::State::Lists=/l -oDir::Cache::pkgcache= -oDir::Cache::srcpkgcache="
        );
        assert_eq!(apt.lists_dir(), Path::new("/l"));
        assert_eq!(Apt::new("/c").lists_dir(), Path::new(DEFAULT_LISTS_DIR));
    }
}

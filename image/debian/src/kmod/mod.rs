//! Kernel module names to an ordered list of `.ko` files, dependencies first.
//!
//! The index is read from an extracted kernel package's `lib/modules/<kver>/`: module files
//! from `modules.dep` when `depmod` has run, otherwise from the directory tree with dependencies
//! from each module's `.modinfo` (`depends=`, what `depmod` would compute). `modules.builtin`
//! says what needs no loading. Requested names are matched as module names (`-` and `_` alike),
//! then built-ins, then exact aliases (`fs-erofs`, `crypto-crc32c`; from `modules.alias` or the
//! modules' `.modinfo`, and `modules.builtin.modinfo`); wildcard aliases (`pci:v...*`) are
//! device matching, not names, and are not used. Soft dependencies (`softdep=`) are optional
//! by definition and are not followed; list such modules explicitly.

mod modinfo;
mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

pub use modinfo::{Modinfo, ModinfoError, parse_modinfo, read_modinfo};
pub use tables::{
    AliasTable, DepTable, TableError, module_name, normalise, parse_builtin_modinfo,
    parse_modules_alias, parse_modules_builtin, parse_modules_dep,
};

/// Errors from indexing modules and planning what to load.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// A table or directory could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A table is malformed.
    #[error("in `{path}`")]
    Table {
        /// The table file.
        path: PathBuf,
        /// What was wrong.
        source: TableError,
    },
    /// A module's `.modinfo` could not be read.
    #[error(transparent)]
    Modinfo(#[from] ModinfoError),
    /// A requested name is neither a module, a built-in, nor an alias of either.
    #[error(
        "kernel module `{name}` is not in `{modules_dir}`: not a module, not built in, not an alias"
    )]
    UnknownModule {
        /// The name as requested.
        name: String,
        /// The kernel's modules directory.
        modules_dir: PathBuf,
    },
    /// A module depends on a module that does not exist.
    #[error("kernel module `{module}` depends on `{dependency}`, which is not in `{modules_dir}`")]
    MissingDependency {
        /// The module with the dependency.
        module: String,
        /// The missing dependency.
        dependency: String,
        /// The kernel's modules directory.
        modules_dir: PathBuf,
    },
    /// Modules depend on each other in a cycle.
    #[error("kernel module dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The modules on the cycle, first repeated at the end.
        cycle: Vec<String>,
    },
}

/// A module file to load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleFile {
    /// Module name (`dm_verity`).
    pub name: String,
    /// Path relative to the modules directory (`kernel/drivers/md/dm-verity.ko`).
    pub path: PathBuf,
}

/// What to load, in order, and what is already in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePlan {
    /// Module files, every module after all of its dependencies.
    pub modules: Vec<ModuleFile>,
    /// Requested names that are built into the kernel (normalised), in request order.
    pub builtin: Vec<String>,
}

/// The modules of one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleIndex {
    dir: PathBuf,
    paths: BTreeMap<String, PathBuf>,
    deps: Option<BTreeMap<String, Vec<String>>>,
    builtin: BTreeSet<String>,
    aliases: Option<AliasTable>,
    builtin_aliases: AliasTable,
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, KmodError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KmodError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn table<T>(path: &Path, parsed: Result<T, TableError>) -> Result<T, KmodError> {
    parsed.map_err(|source| KmodError::Table {
        path: path.to_path_buf(),
        source,
    })
}

/// Module files under `dir`, by name; real directories only (the `build` and `source` symlinks
/// of an installed kernel point at the host and are not followed).
fn walk_modules(dir: &Path) -> Result<BTreeMap<String, PathBuf>, KmodError> {
    let mut found = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let read_err = |source| KmodError::Read {
            path: here.clone(),
            source,
        };
        for entry in std::fs::read_dir(&here).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let kind = entry.file_type().map_err(read_err)?;
            let rel_path = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(rel_path);
            } else if kind.is_file() {
                if let Some(name) = module_name(&rel_path) {
                    // Two files with one name: keep the first in path order, deterministically.
                    let keep = found
                        .get(&name)
                        .is_none_or(|existing: &PathBuf| rel_path < *existing);
                    if keep {
                        found.insert(name, rel_path);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Orders `requested` and their dependencies so each module follows all of its dependencies
/// (depth first, in request order, then dependency order). `deps` must hold every module
/// reachable from `requested`.
pub fn load_order(
    requested: &[String],
    deps: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, KmodError> {
    fn visit(
        name: &str,
        deps: &BTreeMap<String, Vec<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), KmodError> {
        if done.contains(name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(name.to_string());
            return Err(KmodError::Cycle { cycle });
        }
        stack.push(name.to_string());
        for dep in deps.get(name).map(Vec::as_slice).unwrap_or_default() {
            visit(dep, deps, done, stack, out)?;
        }
        stack.pop();
        done.insert(name.to_string());
        out.push(name.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for name in requested {
        visit(name, deps, &mut done, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// How a requested name resolved.
enum Lookup {
    Modules(Vec<String>),
    Builtin(String),
}

impl ModuleIndex {
    /// Indexes the modules directory of one kernel (`<root>/lib/modules/<kver>`).
    pub fn load(modules_dir: &Path) -> Result<Self, KmodError> {
        let dep_path = modules_dir.join("modules.dep");
        let (paths, deps) = match read_optional(&dep_path)? {
            Some(bytes) => {
                let parsed = table(
                    &dep_path,
                    parse_modules_dep(&String::from_utf8_lossy(&bytes)),
                )?;
                let mut paths = BTreeMap::new();
                let mut deps = BTreeMap::new();
                for (name, (path, module_deps)) in parsed {
                    paths.insert(name.clone(), path);
                    deps.insert(name, module_deps);
                }
                (paths, Some(deps))
            }
            None => (walk_modules(modules_dir)?, None),
        };
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = match read_optional(&builtin_path)? {
            Some(bytes) => table(
                &builtin_path,
                parse_modules_builtin(&String::from_utf8_lossy(&bytes)),
            )?,
            None => BTreeSet::new(),
        };
        let alias_path = modules_dir.join("modules.alias");
        let aliases = match read_optional(&alias_path)? {
            Some(bytes) => Some(table(
                &alias_path,
                parse_modules_alias(&String::from_utf8_lossy(&bytes)),
            )?),
            None => None,
        };
        let builtin_aliases = read_optional(&modules_dir.join("modules.builtin.modinfo"))?
            .map(|bytes| parse_builtin_modinfo(&bytes))
            .unwrap_or_default();
        Ok(Self {
            dir: modules_dir.to_path_buf(),
            paths,
            deps,
            builtin,
            aliases,
            builtin_aliases,
        })
    }

    /// The modules directory this index describes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `name` is a loadable module.
    pub fn is_module(&self, name: &str) -> bool {
        self.paths.contains_key(&normalise(name))
    }

    /// Whether `name` is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalise(name))
    }

    /// The module file of `name`, relative to the modules directory.
    pub fn path_of(&self, name: &str) -> Option<&Path> {
        self.paths.get(&normalise(name)).map(PathBuf::as_path)
    }

    /// Dependencies of one module, from `modules.dep` or its `.modinfo`.
    fn deps_of(&self, name: &str) -> Result<Vec<String>, KmodError> {
        if let Some(deps) = &self.deps {
            return Ok(deps.get(name).cloned().unwrap_or_default());
        }
        match self.paths.get(name) {
            Some(path) => Ok(read_modinfo(&self.dir.join(path))?.depends),
            None => Ok(Vec::new()),
        }
    }

    /// Alias table of loadable modules: `modules.alias`, or every module's `.modinfo`.
    fn module_aliases(&self) -> Result<AliasTable, KmodError> {
        if let Some(aliases) = &self.aliases {
            return Ok(aliases.clone());
        }
        let mut table: AliasTable = BTreeMap::new();
        for (name, path) in &self.paths {
            for alias in read_modinfo(&self.dir.join(path))?.aliases {
                table.entry(alias).or_default().insert(name.clone());
            }
        }
        Ok(table)
    }

    fn lookup(
        &self,
        requested: &str,
        aliases: &mut Option<AliasTable>,
    ) -> Result<Lookup, KmodError> {
        let name = normalise(requested);
        if self.paths.contains_key(&name) {
            return Ok(Lookup::Modules(vec![name]));
        }
        if self.builtin.contains(&name) {
            return Ok(Lookup::Builtin(name));
        }
        if aliases.is_none() {
            *aliases = Some(self.module_aliases()?);
        }
        if let Some(hit) = aliases.as_ref().and_then(|a| a.get(&name)) {
            return Ok(Lookup::Modules(hit.iter().cloned().collect()));
        }
        if let Some(hit) = self.builtin_aliases.get(&name).and_then(|s| s.first()) {
            return Ok(Lookup::Builtin(hit.clone()));
        }
        Err(KmodError::UnknownModule {
            name: requested.to_string(),
            modules_dir: self.dir.clone(),
        })
    }

    /// Plans loading `names`: module files in load order (dependencies first), and the names
    /// that are built in.
    pub fn plan(&self, names: &[impl AsRef<str>]) -> Result<ModulePlan, KmodError> {
        let mut aliases = None;
        let mut roots = Vec::new();
        let mut builtin = Vec::new();
        for requested in names {
            match self.lookup(requested.as_ref(), &mut aliases)? {
                Lookup::Modules(found) => roots.extend(found),
                Lookup::Builtin(name) => {
                    if !builtin.contains(&name) {
                        builtin.push(name);
                    }
                }
            }
        }
        // Dependencies of everything reachable; built-in dependencies need no loading.
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut queue: Vec<String> = roots.clone();
        while let Some(name) = queue.pop() {
            if deps.contains_key(&name) {
                continue;
            }
            let mut module_deps = Vec::new();
            for dep in self.deps_of(&name)? {
                if self.paths.contains_key(&dep) {
                    queue.push(dep.clone());
                    module_deps.push(dep);
                } else if !self.builtin.contains(&dep) {
                    return Err(KmodError::MissingDependency {
                        module: name,
                        dependency: dep,
                        modules_dir: self.dir.clone(),
                    });
                }
            }
            deps.insert(name, module_deps);
        }
        let modules = load_order(&roots, &deps)?
            .into_iter()
            .filter_map(|name| {
                self.paths.get(&name).map(|path| ModuleFile {
                    path: path.clone(),
                    name,
                })
            })
            .collect();
        Ok(ModulePlan { modules, builtin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let d = deps(&[
            ("dm_verity", &["reed_solomon", "dm_bufio", "dm_mod"]),
            ("dm_bufio", &[]),
            ("dm_mod", &[]),
            ("reed_solomon", &[]),
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio_ring", &["virtio"]),
            ("virtio", &[]),
        ]);
        let order = load_order(&names(&["dm_verity", "virtio_blk", "dm_mod"]), &d).unwrap();
        assert_eq!(
            order,
            names(&[
                "reed_solomon",
                "dm_bufio",
                "dm_mod",
                "dm_verity",
                "virtio",
                "virtio_ring",
                "virtio_blk"
            ])
        );
    }

    #[test]
    fn cycles_are_reported_with_their_members() {
        let d = deps(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        let err = load_order(&names(&["a"]), &d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel module dependency cycle: a -> b -> c -> a"
        );
    }

    /// A modules directory with `modules.dep` (as after depmod) and empty `.ko` files.
    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("modules.dep"),
            "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-bufio.ko:\n\
             kernel/drivers/md/dm-mod.ko:\n\
             kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n\
             kernel/lib/libcrc32c.ko:\n\
             kernel/drivers/broken.ko: kernel/drivers/gone.ko\n",
        )
        .unwrap();
        std::fs::write(d.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        std::fs::write(d.join("modules.alias"), "alias fs-erofs erofs\n").unwrap();
        std::fs::write(d.join("modules.builtin.modinfo"), b"ext4.alias=fs-ext4\0").unwrap();
        dir
    }

    #[test]
    fn plans_from_modules_dep_with_builtins_and_aliases() {
        let dir = fixture();
        let index = ModuleIndex::load(dir.path()).unwrap();
        let plan = index
            .plan(&["dm-verity", "ext4", "fs-erofs", "fs-ext4", "dm_mod"])
            .unwrap();
        let loaded: Vec<&str> = plan.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            loaded,
            ["dm_bufio", "dm_mod", "dm_verity", "libcrc32c", "erofs"]
        );
        assert_eq!(
            plan.modules[2].path,
            Path::new("kernel/drivers/md/dm-verity.ko")
        );
        assert_eq!(plan.builtin, ["ext4"]);
    }

    #[test]
    fn unknown_modules_and_missing_dependencies_are_precise() {
        let dir = fixture();
        let index = ModuleIndex::load(dir.path()).unwrap();
        let err = index.plan(&["i6300esb"]).unwrap_err();
        assert!(
            matches!(&err, KmodError::UnknownModule { name, .. } if name == "i6300esb"),
            "{err}"
        );
        let err = index.plan(&["broken"]).unwrap_err();
        assert!(
            matches!(&err, KmodError::MissingDependency { module, dependency, .. }
                if module == "broken" && dependency == "gone"),
            "{err}"
        );
    }
}

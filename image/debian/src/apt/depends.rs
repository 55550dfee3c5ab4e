//! Dependency closure of role packages, from `apt-cache depends --recurse`.
//!
//! `apt-cache depends --recurse` prints every package reachable through any alternative and any
//! provider, which over-approximates what an install needs. This module parses that graph and
//! picks one satisfier per dependency, the way apt's resolver does in the simple cases, and
//! records each pick so the build can report it:
//!
//! - `Depends` and `Pre-Depends` are followed; recommends, suggests and the negative relations
//!   are not.
//! - A dependency already satisfied by a selected package (the package itself, or a selected
//!   provider) needs no choice. Unconditional dependencies (one real package, or a virtual
//!   package with exactly one provider) are settled first, so later choices can reuse them.
//! - Otherwise the first alternative that is a real package wins; when an alternative is a
//!   virtual package, its first listed provider. Callers steer a choice by naming the package
//!   they want among the roots.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Errors from parsing or resolving the dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependsError {
    /// A line of `apt-cache depends` output has an unexpected shape.
    #[error("apt-cache depends output line {line}: unexpected `{text}`")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A requested package is not in the graph (or is purely virtual).
    #[error("package `{name}` is not a real package in apt's index")]
    UnknownRoot {
        /// The requested name.
        name: String,
    },
    /// No alternative of a dependency is a real package or has a provider.
    #[error("`{package}` depends on `{dependency}`, which no package in apt's index provides")]
    Unsatisfiable {
        /// The package with the dependency.
        package: String,
        /// The dependency, alternatives joined by ` | `.
        dependency: String,
    },
}

/// One alternative of a dependency: a package name and the packages that provide it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Alternative {
    name: String,
    providers: Vec<String>,
}

/// A package in the graph: whether it is real (has a candidate) and its dependency groups, each a
/// list of alternatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    real: bool,
    groups: Vec<Vec<Alternative>>,
}

/// The package graph printed by `apt-cache depends --recurse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DependencyGraph {
    nodes: BTreeMap<String, Node>,
}

/// Why a satisfier was chosen for a dependency with more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChoiceReason {
    /// The package was already selected (a root or another package's dependency).
    AlreadySelected,
    /// Nothing selected satisfied it: the first real alternative (or first provider) was taken.
    FirstAlternative,
}

/// A dependency that could be satisfied in more than one way, and what was picked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Choice {
    /// The package that has the dependency.
    pub package: String,
    /// The dependency as apt lists it, alternatives joined by ` | `.
    pub dependency: String,
    /// The package selected to satisfy it.
    pub chosen: String,
    /// Why.
    pub reason: ChoiceReason,
}

/// The resolved closure: every package to fetch, and the choices made on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// Package names, sorted.
    pub packages: Vec<String>,
    /// Dependencies with several satisfiers and the one chosen, in resolution order.
    pub choices: Vec<Choice>,
}

/// Strips `<...>` (virtual marker) and a `:any`/`:native` multiarch qualifier from a name.
fn clean_name(raw: &str) -> (String, bool) {
    let raw = raw.trim();
    let (name, virtual_marker) = match raw.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        Some(inner) => (inner, true),
        None => (raw, false),
    };
    let name = name
        .strip_suffix(":any")
        .or_else(|| name.strip_suffix(":native"))
        .unwrap_or(name);
    (name.to_string(), virtual_marker)
}

impl DependencyGraph {
    /// Parses `LC_ALL=C apt-cache depends --recurse ...` output.
    pub fn parse(text: &str) -> Result<Self, DependsError> {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut current: Option<String> = None;
        // Whether the last dependency line was a followed kind, and whether it ended with `|`.
        let mut followed = false;
        let mut or_next = false;
        for (i, line) in text.lines().enumerate() {
            let syntax = || DependsError::Syntax {
                line: i + 1,
                text: line.to_string(),
            };
            if line.trim().is_empty() {
                continue;
            }
            if !line.starts_with(' ') && !line.starts_with('|') {
                let (name, virtual_marker) = clean_name(line);
                let node = nodes.entry(name.clone()).or_default();
                node.real |= !virtual_marker;
                current = Some(name);
                followed = false;
                or_next = false;
                continue;
            }
            let owner = current.clone().ok_or_else(syntax)?;
            if let Some(provider) = line.strip_prefix("    ") {
                if !followed {
                    continue;
                }
                let (provider, _) = clean_name(provider);
                let alternative = nodes
                    .get_mut(&owner)
                    .and_then(|n| n.groups.last_mut())
                    .and_then(|g| g.last_mut())
                    .ok_or_else(syntax)?;
                alternative.providers.push(provider);
                continue;
            }
            let (marker, rest) = line.split_at_checked(2).ok_or_else(syntax)?;
            let (kind, target) = rest.split_once(':').ok_or_else(syntax)?;
            let continues_group = or_next;
            or_next = marker == " |";
            if marker != "  " && marker != " |" {
                return Err(syntax());
            }
            followed = matches!(kind, "Depends" | "PreDepends");
            if !followed {
                continue;
            }
            let (name, _) = clean_name(target);
            let node = nodes.entry(owner).or_default();
            let alternative = Alternative {
                name,
                providers: Vec::new(),
            };
            match node.groups.last_mut() {
                Some(group) if continues_group => group.push(alternative),
                _ => node.groups.push(vec![alternative]),
            }
        }
        Ok(Self { nodes })
    }

    fn is_real(&self, name: &str) -> bool {
        self.nodes.get(name).is_some_and(|n| n.real)
    }

    /// The packages that satisfy an alternative: itself if real, then its providers.
    fn satisfiers<'a>(&'a self, alternative: &'a Alternative) -> Vec<&'a str> {
        let mut out = Vec::new();
        if self.is_real(&alternative.name) {
            out.push(alternative.name.as_str());
        }
        for p in &alternative.providers {
            if self.is_real(p) && !out.contains(&p.as_str()) {
                out.push(p.as_str());
            }
        }
        out
    }

    /// Selects the packages needed by `roots`; see the module documentation for the rules.
    pub fn resolve(&self, roots: &[String]) -> Result<Closure, DependsError> {
        let mut selected: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<String> = VecDeque::new();
        for root in roots {
            if !self.is_real(root) {
                return Err(DependsError::UnknownRoot { name: root.clone() });
            }
            if selected.insert(root.clone()) {
                queue.push_back(root.clone());
            }
        }
        let mut pending: Vec<(String, &[Alternative])> = Vec::new();
        let mut choices = Vec::new();
        loop {
            while let Some(name) = queue.pop_front() {
                if let Some(node) = self.nodes.get(&name) {
                    pending.extend(node.groups.iter().map(|g| (name.clone(), g.as_slice())));
                }
            }
            // Settle what is already satisfied, and take every unconditional dependency.
            let mut progressed = false;
            let mut still = Vec::new();
            for (owner, group) in pending.drain(..) {
                let satisfiers: Vec<&str> = group.iter().flat_map(|a| self.satisfiers(a)).collect();
                // A dependency on one real package means that package (apt prefers it over its
                // providers), unless a provider is already in.
                let named = match group {
                    [only] if self.is_real(&only.name) => Some(only.name.as_str()),
                    _ => None,
                };
                if let Some(hit) = satisfiers.iter().find(|s| selected.contains(**s)) {
                    if satisfiers.len() > 1 && named != Some(*hit) {
                        choices.push(Choice {
                            package: owner.clone(),
                            dependency: describe(group),
                            chosen: (*hit).to_string(),
                            reason: ChoiceReason::AlreadySelected,
                        });
                    }
                    continue;
                }
                if let Some(name) = named {
                    selected.insert(name.to_string());
                    queue.push_back(name.to_string());
                    progressed = true;
                    continue;
                }
                match satisfiers.as_slice() {
                    [] => {
                        return Err(DependsError::Unsatisfiable {
                            package: owner,
                            dependency: describe(group),
                        });
                    }
                    [only] => {
                        selected.insert((*only).to_string());
                        queue.push_back((*only).to_string());
                        progressed = true;
                    }
                    _ => still.push((owner, group)),
                }
            }
            pending = still;
            if progressed || !queue.is_empty() {
                continue;
            }
            // Only real choices remain: make the first one and go round again.
            let Some((owner, group)) = pending.first().cloned() else {
                break;
            };
            let chosen = group
                .iter()
                .flat_map(|a| self.satisfiers(a))
                .next()
                .map(str::to_string)
                .ok_or_else(|| DependsError::Unsatisfiable {
                    package: owner.clone(),
                    dependency: describe(group),
                })?;
            choices.push(Choice {
                package: owner,
                dependency: describe(group),
                chosen: chosen.clone(),
                reason: ChoiceReason::FirstAlternative,
            });
            pending.remove(0);
            selected.insert(chosen.clone());
            queue.push_back(chosen);
        }
        Ok(Closure {
            packages: selected.into_iter().collect(),
            choices,
        })
    }
}

fn describe(group: &[Alternative]) -> String {
    group
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from real `apt-cache depends --recurse haproxy` output on bookworm.
    const HAPROXY: &str = "\
haproxy
  PreDepends: init-system-helpers
  Depends: libc6
  Depends: libssl3
  Depends: libsystemd0
    libelogind0
  Depends: adduser
  Recommends: <nothing-real>
    something
init-system-helpers
 |Depends: usrmerge
  Depends: usr-is-merged
    usrmerge
libc6
  Depends: libgcc-s1
libssl3
  Depends: libc6
libsystemd0
  Depends: libc6
libelogind0
  Depends: libc6
adduser
  Depends: passwd
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
passwd
  Depends: libc6
usrmerge
  Depends: <perl:any>
    perl
usr-is-merged
libgcc-s1
  Depends: libc6
debconf
cdebconf
  Depends: libc6
perl
  PreDepends: libc6
something
<perl:any>
<debconf-2.0>
";

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_groups_alternatives_and_providers() {
        let g = DependencyGraph::parse(HAPROXY).unwrap();
        let ish = &g.nodes["init-system-helpers"];
        assert_eq!(ish.groups.len(), 1);
        assert_eq!(ish.groups[0].len(), 2);
        assert_eq!(ish.groups[0][1].providers, names(&["usrmerge"]));
        let adduser = &g.nodes["adduser"];
        assert_eq!(adduser.groups.len(), 2);
        assert_eq!(describe(&adduser.groups[1]), "debconf | debconf-2.0");
        assert!(!g.nodes["perl"].groups.is_empty());
        assert!(!g.is_real("debconf-2.0"));
        assert!(g.is_real("usr-is-merged"));
        // Recommends are not followed, nor their providers.
        assert_eq!(g.nodes["haproxy"].groups.len(), 5);
    }

    #[test]
    fn resolves_with_first_alternatives_and_records_choices() {
        let g = DependencyGraph::parse(HAPROXY).unwrap();
        let c = g.resolve(&names(&["haproxy"])).unwrap();
        assert_eq!(
            c.packages,
            names(&[
                "adduser",
                "debconf",
                "haproxy",
                "init-system-helpers",
                "libc6",
                "libgcc-s1",
                "libssl3",
                "libsystemd0",
                "passwd",
                "perl",
                "usrmerge",
            ])
        );
        assert!(c.choices.contains(&Choice {
            package: "adduser".into(),
            dependency: "debconf | debconf-2.0".into(),
            chosen: "debconf".into(),
            reason: ChoiceReason::FirstAlternative,
        }));
        assert!(c.choices.contains(&Choice {
            package: "init-system-helpers".into(),
            dependency: "usrmerge | usr-is-merged".into(),
            chosen: "usrmerge".into(),
            reason: ChoiceReason::FirstAlternative,
        }));
        // libsystemd0 is real: it is taken over its provider libelogind0, without a choice.
        assert!(!c.packages.contains(&"libelogind0".to_string()));
        assert!(!c.choices.iter().any(|c| c.dependency == "libsystemd0"));
        assert_eq!(c.choices.len(), 2, "{:?}", c.choices);
    }

    #[test]
    fn roots_steer_choices() {
        let g = DependencyGraph::parse(HAPROXY).unwrap();
        let c = g
            .resolve(&names(&["haproxy", "usr-is-merged", "cdebconf"]))
            .unwrap();
        assert!(!c.packages.contains(&"usrmerge".to_string()));
        assert!(!c.packages.contains(&"perl".to_string()));
        assert!(!c.packages.contains(&"debconf".to_string()));
        assert!(c.choices.contains(&Choice {
            package: "adduser".into(),
            dependency: "debconf | debconf-2.0".into(),
            chosen: "cdebconf".into(),
            reason: ChoiceReason::AlreadySelected,
        }));
    }

    #[test]
    fn a_selected_provider_satisfies_a_real_dependency() {
        let g = DependencyGraph::parse(HAPROXY).unwrap();
        let c = g.resolve(&names(&["libelogind0", "haproxy"])).unwrap();
        assert!(!c.packages.contains(&"libsystemd0".to_string()));
        assert!(c.choices.contains(&Choice {
            package: "haproxy".into(),
            dependency: "libsystemd0".into(),
            chosen: "libelogind0".into(),
            reason: ChoiceReason::AlreadySelected,
        }));
    }

    #[test]
    fn unconditional_dependencies_settle_before_choices() {
        // `a` needs `x | y`; `b` needs `y` outright: `y` satisfies both, `x` is never pulled.
        let text = "a\n |Depends: x\n  Depends: y\n  Depends: b\nb\n  Depends: y\nx\ny\n";
        let g = DependencyGraph::parse(text).unwrap();
        let c = g.resolve(&names(&["a"])).unwrap();
        assert_eq!(c.packages, names(&["a", "b", "y"]));
        assert_eq!(c.choices[0].reason, ChoiceReason::AlreadySelected);
    }

    #[test]
    fn virtual_with_one_provider_is_unconditional() {
        let text = "a\n  Depends: <v>\n    p\np\n<v>\n";
        let c = DependencyGraph::parse(text)
            .unwrap()
            .resolve(&names(&["a"]))
            .unwrap();
        assert_eq!(c.packages, names(&["a", "p"]));
        assert!(c.choices.is_empty());
    }

    #[test]
    fn unsatisfiable_and_unknown_are_precise_errors() {
        let text = "a\n |Depends: <v>\n  Depends: <w>\n<v>\n<w>\n";
        let g = DependencyGraph::parse(text).unwrap();
        assert_eq!(
            g.resolve(&names(&["a"])).unwrap_err(),
            DependsError::Unsatisfiable {
                package: "a".into(),
                dependency: "v | w".into()
            }
        );
        assert_eq!(
            g.resolve(&names(&["v"])).unwrap_err(),
            DependsError::UnknownRoot { name: "v".into() }
        );
        let err = DependencyGraph::parse("  Depends: x\n").unwrap_err();
        assert!(matches!(err, DependsError::Syntax { line: 1, .. }), "{err}");
    }
}

//! Plugins a role's programs `dlopen` (Gluster's translators): the role names
//! them as patterns under one directory of its packages; they are expanded
//! here against the extracted packages and then go through the same ELF
//! closure as the programs, so their own libraries come along.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::role::DlopenSet;

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The files (absolute paths inside `sysroot`) the sets name, sorted. A
/// pattern that matches nothing is an error naming the set and the pattern.
pub fn expand(sysroot: &Path, role: &str, sets: &[DlopenSet]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for set in sets {
        for pat in &set.include {
            let (sub, file_pat) = match pat.rsplit_once('/') {
                Some((d, f)) => (Some(d), f),
                None => (None, pat.as_str()),
            };
            let dir_in_root = match sub {
                Some(d) => set.dir.join(d),
                None => set.dir.clone(),
            };
            let host = cairn_debian::rootpath::host_path(sysroot, &dir_in_root);
            let mut found: Vec<PathBuf> = std::fs::read_dir(&host)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|name| matches(file_pat, name))
                .map(|name| dir_in_root.join(name))
                .collect();
            if found.is_empty() {
                bail!(
                    "role {role}: dlopen pattern {pat:?} under {} matches nothing in the role's packages",
                    set.dir.display()
                );
            }
            found.sort();
            out.extend(found);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(matches("*.so", "afr.so"));
        assert!(matches("a?r.so", "afr.so"));
        assert!(matches("*", "x"));
        assert!(matches("io-*.so", "io-threads.so"));
        assert!(!matches("*.so", "afr.so.1"));
        assert!(!matches("afr.so", "afr.sox"));
        assert!(!matches("?fr.so", "fr.so"));
        assert!(matches("*-*.so", "open-behind.so"));
    }

    #[test]
    fn patterns_expand_in_the_sysroot_and_empty_ones_fail() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("usr/lib/p/xlator/features");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(d.join("sub.so")).unwrap();
        for f in ["a.so", "b.so", "notes.txt"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::write(root.path().join("usr/lib/p/top.so"), "").unwrap();
        let set = DlopenSet {
            dir: PathBuf::from("/usr/lib/p"),
            include: vec!["xlator/features/*.so".into(), "top.so".into()],
        };
        let got = expand(root.path(), "r", std::slice::from_ref(&set)).unwrap();
        assert_eq!(
            got,
            vec![
                PathBuf::from("/usr/lib/p/top.so"),
                PathBuf::from("/usr/lib/p/xlator/features/a.so"),
                PathBuf::from("/usr/lib/p/xlator/features/b.so"),
            ]
        );
        let missing = DlopenSet {
            dir: PathBuf::from("/usr/lib/p"),
            include: vec!["xlator/mgmt/*.so".into()],
        };
        let e = expand(root.path(), "r", &[missing])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role r: dlopen pattern \"xlator/mgmt/*.so\" under /usr/lib/p matches nothing in the role's packages"
        );
    }
}

//! `cairn build --role k8s-node` refuses, before writing anything, a kubelet
//! whose SHA-256 is not the one the site pins, a kubelet that is not there,
//! and a pod network that overlaps a node's network — each naming the file,
//! the field and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{cairn, stderr, workspace};

/// Runs `cairn build` of the k8s-node role; returns (exit code, stderr) and
/// checks that no output was left.
fn build(site: &Path, out: &Path) -> (Option<i32>, String) {
    let o = cairn(&[
        "build",
        "--quiet",
        "--profile",
        "qemu-x86_64",
        "--role",
        "k8s-node",
        "--site",
        site.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!out.exists(), "a failed build leaves no output");
    (o.status.code(), stderr(&o))
}

fn example() -> String {
    std::fs::read_to_string(workspace().join("examples/k8s-site.toml")).unwrap()
}

/// The example with a kubelet (and the bootstrap token it needs) pinned to `sha`.
fn with_kubelet(sha: &str) -> String {
    example().replace(
        "# bootstrap_token_file = \"/var/lib/cairn/k8s/bootstrap-token\"\n# kubelet = { path = \"bin/kubelet\", sha256 = \"<64 hex digits>\" }",
        &format!(
            "bootstrap_token_file = \"/var/lib/cairn/k8s/bootstrap-token\"\nkubelet = {{ path = \"bin/kubelet\", sha256 = \"{sha}\" }}"
        ),
    )
}

#[test]
fn a_kubelet_with_another_hash_is_refused_with_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("bin")).unwrap();
    std::fs::write(d.join("bin/kubelet"), b"a kubelet someone swapped\n").unwrap();
    // sha256 of the content above.
    let actual = {
        use std::process::Command;
        let o = Command::new("sha256sum")
            .arg(d.join("bin/kubelet"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)[..64].to_owned()
    };
    let pinned = "ab".repeat(32);
    let text = with_kubelet(&pinned);
    assert!(
        text.contains(&pinned),
        "the example's kubelet comment changed"
    );
    let site = d.join("site.toml");
    std::fs::write(&site, text).unwrap();
    let (code, err) = build(&site, &d.join("out"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "site.toml: field `k8s.kubelet.sha256`: {} has SHA-256 {actual}, but the site pins {pinned}: refusing a kubelet the site did not name",
            d.join("bin/kubelet").display()
        )),
        "{err}"
    );
}

#[test]
fn a_missing_kubelet_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site = d.join("site.toml");
    std::fs::write(&site, with_kubelet(&"cd".repeat(32))).unwrap();
    let (code, err) = build(&site, &d.join("out"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "site.toml: field `k8s.kubelet.path`: cannot read the kubelet binary {}",
            d.join("bin/kubelet").display()
        )),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
}

#[test]
fn a_pod_network_overlapping_a_node_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        example().replace(
            "pod_cidr = \"198.51.100.0/24\"",
            "pod_cidr = \"192.0.2.0/25\"",
        ),
    )
    .unwrap();
    let (code, err) = build(&site, &d.join("out"));
    assert_eq!(code, Some(1), "{err}");
    for node in ["k1", "k2"] {
        let ip = if node == "k1" {
            "192.0.2.41"
        } else {
            "192.0.2.42"
        };
        assert!(
            err.contains(&format!(
                "site.toml: field `k8s.pod_cidr`: 192.0.2.0/25 overlaps the network {ip}/24 of node \"{node}\""
            )),
            "{err}"
        );
    }
}

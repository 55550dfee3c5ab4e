//! The lab's test Kubernetes control plane (qemu_tests::k8s_control) on its
//! own, in a network namespace of this test: etcd, kube-apiserver and
//! kube-controller-manager come up; a bootstrap token may create CSRs but not
//! read secrets, a wrong token is refused; a node client CSR created with
//! the token is approved automatically and signed by the controller manager
//! with the cluster CA, as a kubelet's TLS bootstrap needs; dropping the
//! control plane ends (and reaps) exactly its three processes.
//! Needs root and the binaries of `cargo xtask k8s-bins` (CAIRN_K8S_BIN);
//! fails loudly without.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::k8s_control::{ControlPlane, k8s_bins, manifests, output_text, pki};
use qemu_tests::labcli::require_root;
use qemu_tests::scratch;

/// The lab client namespace's address, which the control plane serves on.
const ADDR: &str = "192.0.2.250";

/// How long the controller manager may take to approve and sign a CSR.
const SIGN_TIMEOUT: Duration = Duration::from_secs(60);

/// A network namespace of this test, deleted (with its links) on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        output_text(&o)
    );
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "{cmd}: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_bootstrap_token_may_only_create_csrs_and_its_node_client_csr_is_approved_and_signed() {
    require_root();
    let bins = k8s_bins();
    let pid = std::process::id();
    // No dummy netdev on the host kernel: a veth pair kept whole inside the
    // namespace carries the address.
    let ns = Netns::new(format!("k8scp{pid}"));
    let (a, b) = (format!("cpa{pid}"), format!("cpb{pid}"));
    ip(&[
        "-n", &ns.0, "link", "add", &a, "type", "veth", "peer", "name", &b,
    ]);
    ip(&["-n", &ns.0, "link", "set", &a, "up"]);
    ip(&["-n", &ns.0, "link", "set", &b, "up"]);
    ip(&["-n", &ns.0, "addr", "add", &format!("{ADDR}/24"), "dev", &a]);

    let dir = scratch().join(format!("k8s-control-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let addr: IpAddr = ADDR.parse().unwrap();
    let cp = ControlPlane::start(&ns.0, addr, &dir, &bins)
        .unwrap_or_else(|e| panic!("the control plane did not start: {e}"));
    eprintln!(
        "control plane ready (readyz ok, serviceaccount/default made) {:.1} s after start",
        cp.startup().as_secs_f64()
    );

    let (token, ca) = cp.create_bootstrap_token().unwrap();
    let id = token.split('.').next().unwrap().to_owned();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(
        std::fs::read_to_string(&cp.pki().ca_crt).unwrap(),
        ca,
        "the CA handed out is the cluster's"
    );

    let can_i = |token: &str, args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        cp.kubectl_with_token(token, &all)
    };
    let o = can_i(&token, &["create", "certificatesigningrequests"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "yes",
        "the bootstrap token may create CSRs: {}",
        output_text(&o)
    );
    let o = can_i(&token, &["get", "secrets", "-n", "kube-system"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "no",
        "the bootstrap token may not read secrets: {}",
        output_text(&o)
    );
    let wrong = format!("{id}.{}", "0".repeat(16));
    let o = can_i(&wrong, &["create", "certificatesigningrequests"]);
    assert!(
        !o.status.success() && output_text(&o).contains("Unauthorized"),
        "a wrong secret is refused: {}",
        output_text(&o)
    );

    // A kubelet's first CSR, made with the token.
    let key = dir.join("t1.key");
    let request = pki::node_client_request("t1", &key, &pki::req_config(cp.dir())).unwrap();
    let csr_file = dir.join("t1-csr.yaml");
    std::fs::write(
        &csr_file,
        manifests::node_client_csr("node-csr-t1", &request),
    )
    .unwrap();
    let t = Instant::now();
    let o = cp.kubectl_with_token(&token, &["create", "-f", csr_file.to_str().unwrap()]);
    assert!(o.status.success(), "creating the CSR: {}", output_text(&o));

    let mut polls = 0;
    let csr = loop {
        polls += 1;
        let o = cp.kubectl(&["get", "csr", "node-csr-t1", "-o", "json"]);
        assert!(o.status.success(), "kubectl get csr: {}", output_text(&o));
        let csr: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if csr["status"]["certificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
        {
            break csr;
        }
        assert!(
            t.elapsed() < SIGN_TIMEOUT,
            "the CSR was not approved and signed within {SIGN_TIMEOUT:?}; status {}\n\
             controller manager:\n{}",
            csr["status"],
            cp.log_tail("kube-controller-manager", 30)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "CSR approved and signed {:.1} s after it was created ({polls} polls)",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(csr["spec"]["username"], format!("system:bootstrap:{id}"));
    let groups = csr["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:cairn"),
        "the token's extra group: {groups}"
    );
    let approved = csr["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Approved")
        .unwrap_or_else(|| panic!("no Approved condition: {}", csr["status"]));
    assert_eq!(approved["reason"], "AutoApproved", "{approved}");

    let crt = dir.join("t1.crt");
    std::fs::write(
        dir.join("t1.crt.b64"),
        csr["status"]["certificate"].as_str().unwrap(),
    )
    .unwrap();
    sh(&format!("base64 -d < {0}.b64 > {0}", crt.to_str().unwrap()));
    let subject = sh(&format!(
        "openssl x509 -noout -subject -in {}",
        crt.to_str().unwrap()
    ));
    assert!(
        subject.contains("O = system:nodes, CN = system:node:t1"),
        "{subject}"
    );
    sh(&format!(
        "openssl verify -CAfile {} {}",
        cp.pki().ca_crt.to_str().unwrap(),
        crt.to_str().unwrap()
    ));

    let pids = cp.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager"]);
    drop(cp);
    for (name, pid) in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} (pid {pid}) still exists after the control plane was dropped"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

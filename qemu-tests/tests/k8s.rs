//! The `k8s-node` role end to end, with the real `cairn` binary: a k8s-node
//! box of examples/k8s-site.toml (no kubelet) boots to CAIRN-READY with the
//! container runtime ready and says the kubelet is not configured;
//! `cairnctl k8s check` drives containerd through the CRI (pod sandbox with
//! CNI, a container from the locally imported pause image, its log) and
//! passes; with `--keep` the container's host port 30080 answers
//! "cairn-selfcheck" to the lab's client namespace (portmap DNAT) and still
//! does after containerd restarts; after a reboot the pause image and the kept pod's metadata are still on the data
//! partition and the self-check passes again.
//! Needs root and QEMU; fails loudly without.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qemu_tests::k8s_control::{ControlPlane, k8s_bins, output_text};
use qemu_tests::labcli::*;
use qemu_tests::{extract_root, scratch, workspace};

/// The VM-booting tests of this file run one at a time.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

const NODE: &str = "k1";
const NODE_IP: &str = "192.0.2.41";
const HOST_PORT: u16 = 30080;
const SAY: &str = "cairn-selfcheck";
/// The lab's client address, where the kubelet test's API server listens.
const API_ADDR: &str = "192.0.2.250";

/// Seconds since the box's kernel started (`cairnctl sysinfo --json`).
fn uptime_s(state: &str) -> f64 {
    let o = ctl(state, NODE, &["sysinfo", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    j["uptime_ms"].as_u64().unwrap() as f64 / 1000.0
}

/// `cairnctl k8s check --json` on the box: the parsed report, and whether it passed.
fn check(state: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["k8s", "check", "--json"];
    args.extend_from_slice(extra);
    let o = ctl(state, NODE, &args);
    let report: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout))
        .unwrap_or_else(|e| panic!("k8s check printed no report ({e}): {}", text(&o)));
    assert!(
        o.status.success() && report["passed"] == true,
        "the self-check failed: {report:#}"
    );
    report
}

/// Reads what `addr:port` sends from inside the client namespace, with
/// curl's telnet mode (the host has curl: `cargo xtask setup`); stdin is
/// empty, and the server closes after its line.
fn read_from_client(ns: &str, addr: &str, port: u16) -> Result<String, String> {
    read_said(ns, addr, port, SAY)
}

/// Like [`read_from_client`], expecting `say`.
fn read_said(ns: &str, addr: &str, port: u16, say: &str) -> Result<String, String> {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "3"])
        .arg(format!("telnet://{addr}:{port}"))
        .output()
        .map_err(|e| format!("cannot run curl in {ns}: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if out.trim_end() == say {
        Ok(out)
    } else {
        Err(format!(
            "{addr}:{port} answered {out:?} (curl {})",
            o.status
        ))
    }
}

#[test]
fn a_k8s_node_boots_runtime_ready_passes_the_cri_self_check_and_survives_a_reboot() {
    require_root();
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch().join(format!("k8s-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    let _down = Down(state_path.clone());
    let site = workspace().join("examples/k8s-site.toml");

    // --- Boot one box: CAIRN-READY means containerd answered the CRI and the
    // pause image was imported (k8s-import is `after` containerd).
    let t_up = Instant::now();
    let out = lab_up_with(&site, &state, Some(NODE), Some(768));
    assert!(out.contains("is up (1 VM(s)"), "{out}");
    eprintln!(
        "FIGURE lab up (build included): {:.1} s",
        t_up.elapsed().as_secs_f64()
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path.join("lab.json")).unwrap())
            .unwrap();
    let ns = plan["client"]["netns"].as_str().unwrap().to_string();

    // The image: containerd, the shim, runc, ctr, the four CNI plugins,
    // iptables-nft with its links, the pause archive; no kubelet, no shell.
    let root = dir.join("root");
    extract_root(&state_path.join("images/k8s-node"), &root);
    for f in [
        "usr/bin/containerd",
        "usr/bin/containerd-shim-runc-v2",
        "usr/sbin/runc",
        "usr/bin/ctr",
        "usr/lib/cni/bridge",
        "usr/lib/cni/host-local",
        "usr/lib/cni/loopback",
        "usr/lib/cni/portmap",
        "usr/sbin/xtables-nft-multi",
        "usr/sbin/cairn-k8s",
        "usr/share/cairn/k8s/pause-oci.tar",
        "etc/containerd/config.toml",
        "etc/cni/net.d/10-cairn.conflist",
    ] {
        assert!(root.join(f).exists(), "{f} is missing from the image");
    }
    assert_eq!(
        std::fs::read_link(root.join("usr/sbin/iptables")).unwrap(),
        std::path::Path::new("iptables-nft")
    );
    for f in [
        "usr/bin/kubelet",
        "bin/sh",
        "etc/kubernetes/kubelet-config.yaml",
    ] {
        assert!(
            !root.join(f).exists(),
            "{f} must not be in a kubelet-less image"
        );
    }

    // --- Role state: runtime ready, kubelet not configured.
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(st.contains("runtime:     containerd 1.6."), "{st}");
    assert!(st.contains("RuntimeReady: true"), "{st}");
    assert!(st.contains("NetworkReady: true"), "{st}");
    assert!(st.contains("runc:        runc version 1.1."), "{st}");
    assert!(st.contains("cni:         cairn (bridge, portmap)"), "{st}");
    assert!(
        st.contains("pause image: cairn.invalid/pause:0.1.0 sha256:"),
        "{st}"
    );
    assert!(st.contains("kubelet:     not configured"), "{st}");
    let svc = ok(&ctl(&state, NODE, &["status", "--json"]));
    assert!(svc.contains("\"containerd\""), "{svc}");
    let console = ok(&cairn(&["lab", "console", NODE, "--state", &state]));
    assert!(
        console.contains("kubelet: not configured (the site names no [k8s] kubelet)"),
        "the console does not say the kubelet is not configured"
    );

    // --- The CRI self-check passes and removes everything.
    let t = Instant::now();
    let r = check(&state, &[]);
    eprintln!("FIGURE k8s check: {:.1} s", t.elapsed().as_secs_f64());
    let names: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "run pod sandbox",
        "container output (CRI log)",
        "pod network",
        "host port",
        "remove pod sandbox",
    ] {
        assert!(names.contains(&want), "step {want:?} missing: {names:?}");
    }
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(
        st.contains("pods:        0 sandboxes, 0 containers"),
        "{st}"
    );

    // --- --keep: the host port answers from the client namespace (portmap).
    let r = check(&state, &["--keep"]);
    assert!(r["kept_sandbox"].is_string(), "{r:#}");
    let t = Instant::now();
    loop {
        match read_from_client(&ns, NODE_IP, HOST_PORT) {
            Ok(_) => break,
            Err(e) => assert!(t.elapsed() < Duration::from_secs(30), "{e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // --- A containerd restart keeps the pod: the shims live in their own
    // cgroup (ShimCgroup), out of the one cairn-init empties.
    ok(&ctl(&state, NODE, &["restart", "containerd"]));
    let t = Instant::now();
    loop {
        let o = ctl(&state, NODE, &["k8s", "status"]);
        if o.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "containerd not back: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    read_from_client(&ns, NODE_IP, HOST_PORT)
        .unwrap_or_else(|e| panic!("the kept pod died with containerd: {e}"));

    // --- Reboot (orderly, from the box): the image store and the kept pod's
    // metadata are on the data partition; the self-check passes again.
    let t_reboot = Instant::now();
    ok(&ctl(&state, NODE, &["reboot"]));
    let t = Instant::now();
    loop {
        let o = ctl(&state, NODE, &["k8s", "status"]);
        if o.status.success() && uptime_s(&state) < t_reboot.elapsed().as_secs_f64() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(400),
            "{NODE} did not come back"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "FIGURE reboot -> runtime ready again: {:.1} s",
        t_reboot.elapsed().as_secs_f64()
    );
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    // The kept sandbox survived as metadata (NOTREADY after the reboot).
    assert!(
        st.contains("pods:        1 sandboxes, 1 containers"),
        "{st}"
    );
    assert!(
        st.contains("pause image: cairn.invalid/pause:0.1.0 sha256:"),
        "{st}"
    );
    let r = check(&state, &[]);
    let cleaned = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "clean up earlier checks")
        .unwrap();
    assert!(
        cleaned["detail"]
            .as_str()
            .unwrap()
            .starts_with("1 left over"),
        "{cleaned}"
    );
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(
        st.contains("pods:        0 sandboxes, 0 containers"),
        "{st}"
    );
}

/// The kubelet test's pod: the imported pause image serving a line on a host port.
const POD: &str = "hello";
const POD_PORT: u16 = 30081;
const POD_SAY: &str = "hello-from-kubelet";

fn pod_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {POD}, namespace: default}}\nspec:\n  \
         nodeName: {NODE}\n  automountServiceAccountToken: false\n  containers:\n  \
         - name: {POD}\n    image: cairn.invalid/pause:0.1.0\n    imagePullPolicy: Never\n    \
         args: [\"--serve\", \"8080\", \"--say\", \"{POD_SAY}\"]\n    \
         ports: [{{containerPort: 8080, hostPort: {POD_PORT}}}]\n"
    )
}

/// `kubectl get <what> -o jsonpath=<path>` through the control plane's admin kubeconfig.
fn jsonpath(cp: &ControlPlane, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("-o=jsonpath={path}");
    args.push(&p);
    let o = cp.kubectl(&args);
    assert!(o.status.success(), "kubectl {args:?}: {}", output_text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Waits (bounded) until `addr:port` answers `say` from the client namespace.
fn wait_said(ns: &str, port: u16, say: &str, limit: Duration, what: &str) -> Duration {
    let t = Instant::now();
    loop {
        match read_said(ns, NODE_IP, port, say) {
            Ok(_) => return t.elapsed(),
            Err(e) => assert!(t.elapsed() < limit, "{what}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_kubelet_named_by_the_site_joins_a_real_control_plane_runs_a_pod_and_rejoins_after_a_reboot() {
    require_root();
    let bins = k8s_bins();
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch().join(format!("k8s-join-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    let _down = Down(state_path.clone());

    // --- The site: examples/k8s-site.toml with its kubelet lines enabled
    // (the kubelet built from Debian's kubernetes source, pinned by hash)
    // and the API server in the lab's client namespace.
    std::fs::copy(bins.join("kubelet"), dir.join("bin/kubelet")).unwrap();
    let sha = {
        let o = Command::new("sha256sum")
            .arg(dir.join("bin/kubelet"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)[..64].to_owned()
    };
    let example = std::fs::read_to_string(workspace().join("examples/k8s-site.toml")).unwrap();
    let mut site_text = String::new();
    for line in example.lines() {
        let line = if line.starts_with("api_endpoint = ") {
            format!("api_endpoint = \"https://{API_ADDR}:6443\"")
        } else if line.starts_with("# bootstrap_token_file = ") {
            line.trim_start_matches("# ").to_owned()
        } else if line.starts_with("# kubelet = ") {
            format!("kubelet = {{ path = \"bin/kubelet\", sha256 = \"{sha}\" }}")
        } else {
            line.to_owned()
        };
        site_text.push_str(&line);
        site_text.push('\n');
    }
    assert!(
        site_text.contains(&sha),
        "the example lost its kubelet line:\n{site_text}"
    );
    let site = dir.join("site.toml");
    std::fs::write(&site, &site_text).unwrap();

    let t_up = Instant::now();
    let out = lab_up_with(&site, &state, Some(NODE), Some(1024));
    assert!(out.contains("is up (1 VM(s)"), "{out}");
    eprintln!(
        "FIGURE lab up with a kubelet (build included): {:.1} s",
        t_up.elapsed().as_secs_f64()
    );
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path.join("lab.json")).unwrap())
            .unwrap();
    let ns = plan["client"]["netns"].as_str().unwrap().to_string();
    let client = plan["client"]["address"].to_string();
    assert!(
        client.contains(API_ADDR),
        "the lab's client is {client}, not the API server address {API_ADDR} the site names"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state_path.join("images/k8s-node/manifest.json")).unwrap(),
    )
    .unwrap();
    eprintln!(
        "FIGURE k8s-node image with kubelet: {}",
        serde_json::to_string(&manifest["sizes"]).unwrap_or_default()
    );

    // --- Before the join: the kubelet waits for credentials and says so.
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(
        st.contains("kubelet:     configured (/usr/bin/kubelet): waiting for join credentials"),
        "{st}"
    );
    let console = ok(&cairn(&["lab", "console", NODE, "--state", &state]));
    assert!(
        console.contains("kubelet: waiting for join credentials"),
        "the console does not say the kubelet waits for its credentials"
    );

    // --- The control plane, in the client namespace.
    let cp = ControlPlane::start(&ns, API_ADDR.parse().unwrap(), &dir.join("cp"), &bins)
        .unwrap_or_else(|e| panic!("control plane: {e}"));
    eprintln!(
        "FIGURE control plane start (etcd, apiserver, controller manager): {:.1} s",
        cp.startup().as_secs_f64()
    );
    let (token, ca) = cp.create_bootstrap_token().unwrap();

    // Bad credentials are refused before anything is written.
    let o = ctl(
        &state,
        NODE,
        &["k8s", "join", "--token", "not-a-token", "--ca-cert", &ca],
    );
    assert!(
        !o.status.success(),
        "a bad token was accepted: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("--token: \"not-a-token\" is not a bootstrap token"),
        "{}",
        text(&o)
    );
    let o = ctl(
        &state,
        NODE,
        &["k8s", "join", "--token", &token, "--ca-cert", "hello"],
    );
    assert!(!o.status.success(), "a bad CA was accepted: {}", text(&o));
    assert!(
        text(&o).contains("--ca-cert: not a PEM certificate"),
        "{}",
        text(&o)
    );
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(st.contains("waiting for join credentials"), "{st}");

    // --- Join: the kubelet bootstraps (CSR approved and signed by the
    // controller manager) and registers; the node turns Ready.
    let t_join = Instant::now();
    let out = ok(&ctl(
        &state,
        NODE,
        &["k8s", "join", "--token", &token, "--ca-cert", &ca],
    ));
    assert!(out.contains("join credentials stored"), "{out}");
    let ready = cp
        .wait_node_ready(NODE, Duration::from_secs(300))
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nkubelet log:\n{}",
                ok(&ctl(&state, NODE, &["logs", "kubelet", "--lines", "40"]))
            )
        });
    eprintln!(
        "FIGURE join -> node Ready: {:.1} s",
        t_join.elapsed().as_secs_f64()
    );
    let _ = ready;
    let csr = jsonpath(
        &cp,
        &["csr"],
        "{range .items[*]}{.spec.username} {.status.conditions[*].type};{end}",
    );
    assert!(
        csr.contains(&format!("system:bootstrap:{} Approved;", &token[..6])),
        "the kubelet's bootstrap CSR: {csr}"
    );
    let info = jsonpath(
        &cp,
        &["node", NODE],
        "{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion} {.status.nodeInfo.osImage}",
    );
    assert!(info.starts_with("v1.20.2 containerd://1.6."), "{info}");
    assert!(info.contains("cairn 0.1.0"), "{info}");
    let addr = jsonpath(
        &cp,
        &["node", NODE],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    assert_eq!(addr, NODE_IP);
    let node_uid = jsonpath(&cp, &["node", NODE], "{.metadata.uid}");
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(
        st.contains("kubelet:     configured (/usr/bin/kubelet): joined"),
        "{st}"
    );

    // --- A pod scheduled to the node: the kubelet runs it through the CRI
    // (CNI network, the locally imported image), its host port answers.
    let t_pod = Instant::now();
    cp.apply(&pod_yaml()).unwrap();
    let t = Instant::now();
    loop {
        let phase = cp.pod_phase("default", POD).unwrap_or_default();
        if phase == "Running" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "pod {POD} is {phase:?}: {}",
            output_text(&cp.kubectl(&["describe", "pod", POD]))
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "FIGURE pod created -> Running: {:.1} s",
        t_pod.elapsed().as_secs_f64()
    );
    wait_said(
        &ns,
        POD_PORT,
        POD_SAY,
        Duration::from_secs(60),
        "the pod's host port",
    );
    eprintln!(
        "FIGURE pod created -> host port answers: {:.1} s",
        t_pod.elapsed().as_secs_f64()
    );
    let pod_ip = jsonpath(&cp, &["pod", POD], "{.status.podIP}");
    assert!(
        pod_ip.starts_with("198.51.100."),
        "pod IP {pod_ip} is not from the site's pod_cidr"
    );

    // --- Reboot: the node's identity (client certificate, kubeconfig) is on
    // the data partition; the kubelet comes back as the same node without a
    // new bootstrap, and restarts the pod.
    let t_reboot = Instant::now();
    ok(&ctl(&state, NODE, &["reboot"]));
    let t = Instant::now();
    loop {
        let restarts = jsonpath(
            &cp,
            &["pod", POD],
            "{.status.containerStatuses[0].restartCount}",
        );
        if restarts.trim().parse::<u32>().unwrap_or(0) >= 1
            && cp.pod_phase("default", POD).unwrap_or_default() == "Running"
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(400),
            "the pod did not come back after the reboot: {}",
            output_text(&cp.kubectl(&["describe", "pod", POD]))
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    wait_said(
        &ns,
        POD_PORT,
        POD_SAY,
        Duration::from_secs(60),
        "the pod's host port after the reboot",
    );
    eprintln!(
        "FIGURE reboot -> pod answering again: {:.1} s",
        t_reboot.elapsed().as_secs_f64()
    );
    assert!(
        uptime_s(&state) < t_reboot.elapsed().as_secs_f64(),
        "the box did not reboot"
    );
    assert_eq!(
        jsonpath(&cp, &["node", NODE], "{.metadata.uid}"),
        node_uid,
        "the node was registered anew"
    );
    let csrs = jsonpath(&cp, &["csr"], "{range .items[*]}{.spec.username};{end}");
    assert_eq!(
        csrs.matches("system:bootstrap:").count(),
        1,
        "the kubelet bootstrapped again after the reboot: {csrs}"
    );
    let st = ok(&ctl(&state, NODE, &["k8s", "status"]));
    assert!(st.contains("joined"), "{st}");
}

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

use qemu_tests::labcli::*;
use qemu_tests::{extract_root, scratch, workspace};

/// The VM-booting tests of this file run one at a time.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

const NODE: &str = "k1";
const NODE_IP: &str = "192.0.2.41";
const HOST_PORT: u16 = 30080;
const SAY: &str = "cairn-selfcheck";

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
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "--max-time", "3"])
        .arg(format!("telnet://{addr}:{port}"))
        .output()
        .map_err(|e| format!("cannot run curl in {ns}: {e}"))?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    if out.trim_end() == SAY {
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
    let up = cairn(&[
        "lab",
        "up",
        "--site",
        &site.to_string_lossy(),
        "--state",
        &state,
        "--nodes",
        NODE,
        "--memory",
        "768",
        "--timeout",
        &UP_TIMEOUT_S.to_string(),
    ]);
    let out = ok(&up);
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

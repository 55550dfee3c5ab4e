//! The `lb` image: what its root holds, and lb1 booted under QEMU serving
//! HTTP through HAProxy to two backends the host answers for.
//!
//! The box keeps its site address (192.0.2.11) on a QEMU user network moved
//! onto 192.0.2.0/24: the host reaches HAProxy's port 80 through a host
//! forward, and the guest's connections to the site's backends
//! (192.0.2.21:8080, 192.0.2.22:8080) are answered by a small host script.
//! Failover between two boxes needs a shared L2 network: that is the lab's job.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::{
    BOOT_TIMEOUT, SiteUserNet, boot_disk_on_site_net, cairn_build, extract_root, free_port,
    http_get, lb_image, mac, scratch, workspace,
};

const LB1: &str = "52:54:00:c0:00:11";

/// Answers one HTTP request on stdin/stdout with its first argument as body;
/// a health check that only connects gets nothing.
const BACKEND_SCRIPT: &str = r#"#!/bin/sh
IFS= read -r request || exit 0
while IFS= read -r header; do
    case "$header" in ''|"$(printf '\r')") break ;; esac
done
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n%s\n' "$((${#1} + 1))" "$1"
"#;

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .len()
}

/// Size of `zstd -19` of a file (a USB image download).
fn zstd_size(p: &Path) -> u64 {
    let o = Command::new("zstd")
        .args(["-19", "-T0", "-q", "-c"])
        .arg(p)
        .output()
        .unwrap_or_else(|e| panic!("cannot run zstd: {e}"));
    assert!(o.status.success(), "zstd failed");
    o.stdout.len() as u64
}

#[test]
fn lb1_boots_to_cairn_ready_and_haproxy_serves_both_backends() {
    let img = lb_image();
    let dir = scratch().join("lb-backends");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("backend.sh");
    std::fs::write(&script, BACKEND_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let net = SiteUserNet {
        net: "192.0.2.0/24".into(),
        host: "192.0.2.1".into(),
        hostfwd: vec![(port, "192.0.2.11:80".into())],
        guestfwd: vec![
            (
                "192.0.2.21:8080".into(),
                format!("{} web1", script.display()).into(),
            ),
            (
                "192.0.2.22:8080".into(),
                format!("{} web2", script.display()).into(),
            ),
        ],
    };
    let t = Instant::now();
    let vm = boot_disk_on_site_net("lb1", &img.join("disk.qcow2"), mac(LB1), &net);
    let line = vm
        .wait_for_text("CAIRN-READY", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let ready_s = t.elapsed().as_secs_f64();
    assert!(
        line.text
            .starts_with("CAIRN-READY role=lb node=lb1 version=0.1.0 t_ms="),
        "{}",
        line.text
    );
    let console = vm.console_text();
    for needle in [
        "haproxy: ready (notify)",
        "vipd: ready (notify)",
        "network configured interface=eth0 addresses=192.0.2.11/24",
    ] {
        assert!(console.contains(needle), "{needle:?} missing:\n{console}");
    }

    // HAProxy answers on port 80 and spreads requests over both backends
    // once its health checks (inter 1s, rise 2) see them up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut first_200 = None;
    let mut last = String::new();
    while Instant::now() < deadline && seen.len() < 6 {
        match http_get(port, "/") {
            Ok((200, body)) => {
                first_200.get_or_insert_with(|| t.elapsed().as_secs_f64());
                seen.push(body.trim().to_owned());
            }
            Ok((code, body)) => last = format!("{code} {body}"),
            Err(e) => last = e,
        }
        let pause = if seen.is_empty() { 250 } else { 10 };
        std::thread::sleep(Duration::from_millis(pause));
    }
    assert!(
        seen.len() == 6,
        "no steady HTTP 200 through HAProxy within 60 s (last: {last}); got {seen:?}\n{}",
        vm.console_text()
    );
    assert!(
        seen.iter().any(|b| b == "web1") && seen.iter().any(|b| b == "web2"),
        "round robin over both backends: {seen:?}"
    );
    let console = vm.console_text();
    assert!(
        !console.contains("haproxy: stopped") && !console.contains("vipd: stopped"),
        "no service restarted:\n{console}"
    );

    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    eprintln!(
        "lb image: disk.qcow2 {:.1} MiB, disk.img zstd -19 {:.1} MiB, rootfs {:.1} MiB, {} files, {} executables; \
         lb1: QEMU start -> CAIRN-READY {ready_s:.1} s ({}), first HTTP 200 via HAProxy {:.1} s",
        file_size(&img.join("disk.qcow2")) as f64 / 1048576.0,
        zstd_size(&img.join("disk.img")) as f64 / 1048576.0,
        m["sizes"]["rootfs"].as_u64().unwrap_or(0) as f64 / 1048576.0,
        m["sizes"]["root_files"],
        m["sizes"]["root_executables"],
        line.text,
        first_200.unwrap_or(f64::NAN),
    );
}

#[test]
fn lb_root_holds_haproxy_its_config_user_and_vipd_and_no_package_clutter() {
    let img = lb_image();
    let root = scratch().join("lb-root");
    extract_root(img, &root);
    let cfg = std::fs::read_to_string(root.join("etc/haproxy/haproxy.cfg")).unwrap();
    for line in [
        "    master-worker\n",
        "    stats socket /run/haproxy/admin.sock mode 600 level admin\n",
        "    uid 110\n",
        "    chroot /var/lib/haproxy\n",
        "frontend web\n    mode http\n    bind *:80\n",
        "    server web1 192.0.2.21:8080 check inter 1s fall 2 rise 2\n",
        "    server web2 192.0.2.22:8080 check inter 1s fall 2 rise 2\n",
    ] {
        assert!(cfg.contains(line), "{line:?} missing from:\n{cfg}");
    }
    assert!(!cfg.contains("daemon"), "cairn-init supervises: {cfg}");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("haproxy:x:110:110:haproxy:/var/lib/haproxy:/usr/sbin/nologin\n"),
        "{passwd}"
    );
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.contains("haproxy:x:110:\n"), "{group}");
    for exe in ["usr/sbin/haproxy", "usr/sbin/cairn-vipd", "sbin/init"] {
        let mode = std::fs::metadata(root.join(exe))
            .unwrap_or_else(|e| panic!("{exe}: {e}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{exe} is executable ({mode:o})");
    }
    let services = std::fs::read_to_string(root.join("etc/cairn/services.toml")).unwrap();
    for line in [
        "exec = [\"/usr/sbin/haproxy\", \"-Ws\", \"-f\", \"/etc/haproxy/haproxy.cfg\"]\n",
        "dirs = [\"/run/haproxy\", \"/var/lib/haproxy\"]\n",
        "exec = [\"/usr/sbin/cairn-vipd\", \"--site\", \"/etc/cairn/site.toml\"]\n",
    ] {
        assert!(
            services.contains(line),
            "{line:?} missing from:\n{services}"
        );
    }
    for absent in [
        "usr/share/doc",
        "usr/share/man",
        "etc/haproxy/errors",
        "bin/sh",
        "bin/mkdir",
    ] {
        assert!(
            !root.join(absent).exists(),
            "{absent} must not be in the image"
        );
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["role"], "lb");
    let modules = m["kernel"]["modules"].as_array().unwrap();
    assert!(
        modules.iter().any(|x| x == "macvlan"),
        "macvlan for use_vmac: {modules:?}"
    );
    assert!(
        m["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "haproxy"
                && p["version"].as_str().is_some_and(|v| v.starts_with("2.6."))),
        "haproxy 2.6 recorded in the manifest"
    );
}

#[test]
fn lb_sites_without_frontends_or_with_clashing_names_fail_with_the_field() {
    let dir = scratch().join("lb-bad");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(workspace().join("examples/site.toml")).unwrap();
    let no_frontends = good.split("[[lb.frontend]]").next().unwrap().to_owned();
    let no_lb = good.split("[lb]").next().unwrap().to_owned();
    let dup_server = good.replace("name = \"web2\"\naddress", "name = \"web1\"\naddress");
    let cases = [
        (
            no_frontends,
            "field `lb.frontend`: the load balancer has no [[lb.frontend]]",
        ),
        (
            no_lb,
            "field `lb`: the site has load-balancer nodes but no [lb] section",
        ),
        (
            dup_server,
            "field `lb.frontend[0].backend[1].name`: backend name \"web1\" is also used by lb.frontend[0].backend[0]",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let site = dir.join(format!("site{i}.toml"));
        std::fs::write(&site, text).unwrap();
        let out = dir.join(format!("out{i}"));
        let o = cairn_build(&site, "lb", &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{expected}: {err}");
        assert!(
            err.contains(&format!("site{i}.toml: {expected}")),
            "expected {expected:?} in {err}"
        );
        assert!(!out.exists(), "no output for a failed build");
    }
}

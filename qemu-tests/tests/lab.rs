//! `cairn lab` end to end, with the real `cairn` binary: a lab of two `base`
//! VMs and one external responder proves up/status/exec/kill/start/cut/heal/
//! down and that `down` leaves nothing behind; a lab of the example site's
//! load-balancer pair proves VIP failover under client load and preemption.
//! Needs root (network namespaces, taps) and QEMU; fails loudly without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qemu_tests::labcli::*;
use qemu_tests::{BOOT_TIMEOUT, cairn_bin, scratch, workspace};

/// The VM-booting tests run one at a time: two cores are shared with builds.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The node's services, from `cairnctl status --json` run on the box.
fn box_services(state: &str, node: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&ctl(state, node, &["status", "--json"]))).unwrap()
}

/// The node's first VRRP instance, from `cairnctl vip --json` run on the box.
fn box_vrrp(state: &str, node: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&ok(&ctl(state, node, &["vip", "--json"]))).unwrap();
    all[0].clone()
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 1..].split_whitespace().next();
            !matches!(state, Some("Z" | "X"))
        })
        .unwrap_or(false)
}

/// The client's neighbour entry for `ip` after poking it from the client.
fn client_resolves(state: &str, ip: &str) -> Option<String> {
    let script = format!(
        "ip neigh flush to {ip}; {cairn} lab poke {ip}; sleep 1.5; ip neigh show to {ip}",
        cairn = cairn_bin().display()
    );
    let o = cairn(&[
        "lab", "exec", "client", "--state", state, "--", "sh", "-c", &script,
    ]);
    let out = ok(&o);
    let words: Vec<&str> = out.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "lladdr")?;
    words.get(i + 1).map(|s| s.to_string())
}

const BASE_SITE: &str = r#"
[cluster]
name = "labtest"

[image]
version = "0.1.0"

[network]
gateway = "192.0.2.1"

[[node]]
name = "b1"
role = "base"
mac = "52:54:00:c1:00:01"
addresses = ["192.0.2.31/24"]

[[node]]
name = "b2"
role = "base"
mac = "52:54:00:c1:00:02"
addresses = ["192.0.2.32/24"]

[[node]]
name = "web1"
role = "base"
external = true
addresses = ["192.0.2.41/24"]
"#;

#[test]
fn base_lab_up_status_exec_kill_start_cut_heal_down_leaves_nothing() {
    require_root();
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = scratch().join("lab-base");
    let site = write_site(&dir, BASE_SITE);
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    // A crashed earlier run may have left a lab: down is idempotent.
    ok(&cairn(&["lab", "down", "--state", &state]));
    let _down = Down(state_path.clone());

    let t = Instant::now();
    let up = cairn(&[
        "lab",
        "up",
        "--site",
        &site.to_string_lossy(),
        "--state",
        &state,
        "--timeout",
        &UP_TIMEOUT_S.to_string(),
    ]);
    let out = ok(&up);
    eprintln!("lab up (2 base VMs): {:.1} s", t.elapsed().as_secs_f64());
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path.join("lab.json")).unwrap())
            .unwrap();
    let prefix = format!("{}-", plan["lab"].as_str().unwrap());
    assert!(out.contains("is up (2 VM(s)"), "{out}");
    assert!(
        out.contains("client address 192.0.2.250/24"),
        "the client takes .250: {out}"
    );
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(stderr.contains("b1: CAIRN-READY"), "{stderr}");
    assert!(stderr.contains("b2: CAIRN-READY"), "{stderr}");
    assert_eq!(lab_namespaces(&prefix).len(), 3, "sw, client, web1");

    // A second lab in the same state directory is refused.
    failed_with(
        &cairn(&[
            "lab",
            "up",
            "--site",
            &site.to_string_lossy(),
            "--state",
            &state,
        ]),
        "already has a running lab",
    );

    // Status: both VMs ran to CAIRN-READY, the responder runs.
    let table = ok(&cairn(&["lab", "status", "--state", &state]));
    for (name, want) in [("b1", "running (boot 1)"), ("b2", "running (boot 1)")] {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {table}"));
        assert!(line.contains(want), "{line}");
        assert!(line.contains(" UTC "), "ready time shown: {line}");
        assert!(line.contains(" up "), "{line}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web1") && l.contains("responding")),
        "{table}"
    );
    let s = status_json(&state);
    let b1_ready = node(&s, "b1")["ready"]["line"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        b1_ready.starts_with("CAIRN-READY role=base node=b1 "),
        "{b1_ready}"
    );
    let b2_pid = node(&s, "b2")["pid"].as_u64().unwrap();
    let keeper_pid: u64 = std::fs::read_to_string(state_path.join("keeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Console.
    let console = ok(&cairn(&["lab", "console", "b1", "--state", &state]));
    assert!(
        console.contains("CAIRN-READY role=base node=b1"),
        "{console}"
    );
    failed_with(
        &cairn(&["lab", "console", "nope", "--state", &state]),
        "no VM \"nope\"",
    );

    // Ctl: cairnctl on the box through the virtio-serial control channel.
    let services = box_services(&state, "b1");
    let agent = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ctl-agent")
        .unwrap_or_else(|| panic!("no ctl-agent in {services}"));
    assert_eq!(agent["state"], "ready", "{services}");
    assert_eq!(agent["ready"], true, "{services}");
    let version = ok(&ctl(&state, "b2", &["--version"]));
    assert!(version.starts_with("cairnctl "), "{version}");
    let nosuch = ctl(&state, "b1", &["stop", "nosuch"]);
    assert_eq!(nosuch.status.code(), Some(1), "{}", text(&nosuch));
    assert!(
        String::from_utf8_lossy(&nosuch.stderr).contains("no such service \"nosuch\""),
        "the box's stderr is relayed: {}",
        text(&nosuch)
    );
    let usage = ctl(&state, "b1", &["nosuch-command"]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
    failed_with(
        &ctl(&state, "b1", &["agent"]),
        "b1: cairnctl agent refused the request: request: field `args`: `agent` cannot be run through the agent",
    );
    failed_with(&ctl(&state, "web1", &["status"]), "web1 is not a VM");
    failed_with(
        &ctl(&state, "nope", &["status"]),
        "no node \"nope\" in this lab",
    );
    // Calls in parallel take turns (QEMU serves one client at a time).
    let t = Instant::now();
    let parallel: Vec<_> = (0..4)
        .map(|_| {
            let state = state.clone();
            std::thread::spawn(move || ctl(&state, "b1", &["--version"]))
        })
        .collect();
    for p in parallel {
        let o = p.join().unwrap();
        assert!(ok(&o).starts_with("cairnctl "), "{}", text(&o));
    }
    eprintln!(
        "4 parallel `lab ctl b1 -- --version`: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Exec: the responder answers with its name; exit codes pass through.
    let body = ok(&cairn(&[
        "lab",
        "exec",
        "client",
        "--state",
        &state,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "http://192.0.2.41:8080/",
    ]));
    assert_eq!(body, "web1\n");
    let seven = cairn(&[
        "lab", "exec", "client", "--state", &state, "--", "sh", "-c", "exit 7",
    ]);
    assert_eq!(seven.status.code(), Some(7), "{}", text(&seven));
    let in_web1 = ok(&cairn(&[
        "lab", "exec", "web1", "--state", &state, "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]));
    assert!(in_web1.contains("192.0.2.41/24"), "{in_web1}");
    failed_with(
        &cairn(&["lab", "exec", "b1", "--state", &state, "--", "true"]),
        "b1 is a VM",
    );
    failed_with(
        &cairn(&["lab", "exec", "nope", "--state", &state, "--", "true"]),
        "no node \"nope\" in this lab (known: b1, b2, web1, client)",
    );

    // The VMs are on the bridge: the client resolves their MACs.
    assert_eq!(
        client_resolves(&state, "192.0.2.31").as_deref(),
        Some("52:54:00:c1:00:01")
    );
    assert_eq!(
        client_resolves(&state, "192.0.2.32").as_deref(),
        Some("52:54:00:c1:00:02")
    );

    // Cut: b1 stops answering ARP; heal: it answers again.
    let o = ok(&cairn(&["lab", "cut", "b1", "--state", &state]));
    assert!(o.contains("b1: cable pulled"), "{o}");
    let table = ok(&cairn(&["lab", "status", "--state", &state]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("b1") && l.contains(" cut ")),
        "{table}"
    );
    assert_eq!(client_resolves(&state, "192.0.2.31"), None, "b1 is cut off");
    ok(&cairn(&["lab", "heal", "b1", "--state", &state]));
    assert_eq!(
        client_resolves(&state, "192.0.2.31").as_deref(),
        Some("52:54:00:c1:00:01"),
        "b1 is back after heal"
    );

    // Kill: QEMU is gone at once; start boots it again on its overlay.
    let t = Instant::now();
    let o = ok(&cairn(&["lab", "kill", "b2", "--state", &state]));
    assert!(o.contains("b2 powered off"), "{o}");
    assert!(!alive(b2_pid), "QEMU of b2 (pid {b2_pid}) still runs");
    let s = status_json(&state);
    assert_eq!(node(&s, "b2")["running"], false, "{s}");
    failed_with(
        &cairn(&["lab", "kill", "b2", "--state", &state]),
        "b2 is not running",
    );
    failed_with(
        &ctl(&state, "b2", &["status"]),
        "b2 is not running, so its control channel",
    );
    failed_with(
        &cairn(&["lab", "kill", "b9", "--state", &state]),
        "no node \"b9\" in this lab",
    );
    ok(&cairn(&["lab", "start", "b2", "--state", &state]));
    failed_with(
        &cairn(&["lab", "start", "b2", "--state", &state]),
        "b2 is already running",
    );
    let s = wait_status(&state, "b2 ready again", BOOT_TIMEOUT, |s| {
        node(s, "b2")["ready"].is_object()
    });
    assert_eq!(node(&s, "b2")["boots"], 2, "{s}");
    // The channel works again after the reboot.
    let services = box_services(&state, "b2");
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "ctl-agent" && s["ready"] == true),
        "{services}"
    );
    eprintln!(
        "kill → start → CAIRN-READY of b2: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let console = ok(&cairn(&["lab", "console", "b2", "--state", &state]));
    assert_eq!(
        console.matches("CAIRN-READY role=base node=b2").count(),
        2,
        "two boots in one console log: {console}"
    );
    let qemu_pids: Vec<u64> = ["b1", "b2"]
        .iter()
        .map(|n| node(&s, n)["pid"].as_u64().unwrap())
        .collect();

    // Down: nothing is left: no namespace, no QEMU, no keeper; a console
    // follower ends with the lab.
    let mut follow = Command::new(cairn_bin())
        .args(["lab", "console", "b1", "--state", &state, "--follow"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read while it runs: the console is larger than a pipe buffer.
    let mut follow_out = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut follow_out, &mut text).unwrap();
        text
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "console --follow keeps running while the lab is up"
    );
    let o = ok(&cairn(&["lab", "down", "--state", &state]));
    let t = Instant::now();
    while follow.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "console --follow outlived the lab"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let followed = reader.join().unwrap();
    assert!(
        followed.contains("CAIRN-READY role=base node=b1"),
        "{followed}"
    );
    assert!(o.contains("keeper stopped its VMs and responders"), "{o}");
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
    assert!(!alive(keeper_pid), "keeper {keeper_pid} survived down");
    for pid in qemu_pids {
        assert!(!alive(pid), "QEMU {pid} survived down");
    }
    assert!(!state_path.join("lab.json").exists());
    assert!(!state_path.join("keeper.sock").exists());
    assert!(!state_path.join("vms/b1/disk.qcow2").exists());
    assert!(
        state_path.join("vms/b1/console.log").exists(),
        "consoles are kept"
    );
    // Idempotent; and the commands say there is no lab.
    let o = ok(&cairn(&["lab", "down", "--state", &state]));
    assert!(o.contains("nothing to remove"), "{o}");
    failed_with(&cairn(&["lab", "status", "--state", &state]), "no lab here");
}

#[test]
fn down_cleans_up_after_a_dead_keeper() {
    require_root();
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The same state directory as the other base test (the tests take turns),
    // so the base image is built once; one VM is enough here.
    let dir = scratch().join("lab-base");
    let site = write_site(&dir, BASE_SITE);
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    ok(&cairn(&["lab", "down", "--state", &state]));
    let _down = Down(state_path.clone());
    ok(&cairn(&[
        "lab",
        "up",
        "--site",
        &site.to_string_lossy(),
        "--state",
        &state,
        "--nodes",
        "b1,web1",
        "--timeout",
        &UP_TIMEOUT_S.to_string(),
    ]));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path.join("lab.json")).unwrap())
            .unwrap();
    let prefix = format!("{}-", plan["lab"].as_str().unwrap());
    let s = status_json(&state);
    let qemu = node(&s, "b1")["pid"].as_u64().unwrap();
    let responder = node(&s, "web1")["pid"].as_u64().unwrap();
    let keeper: u64 = std::fs::read_to_string(state_path.join("keeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The keeper dies without a word; QEMU and the responder are orphans.
    assert!(
        Command::new("kill")
            .args(["-KILL", &keeper.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    while alive(keeper) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(keeper));
    assert!(alive(qemu), "QEMU outlives its keeper until down");
    failed_with(
        &cairn(&["lab", "status", "--state", &state]),
        "has no keeper any more",
    );
    failed_with(
        &cairn(&[
            "lab",
            "up",
            "--site",
            &site.to_string_lossy(),
            "--state",
            &state,
        ]),
        "remains of a lab whose keeper is gone",
    );
    let o = ok(&cairn(&["lab", "down", "--state", &state]));
    assert!(o.contains("keeper was not running"), "{o}");
    assert!(!alive(qemu), "QEMU {qemu} survived down");
    assert!(!alive(responder), "responder {responder} survived down");
    assert_eq!(lab_namespaces(&prefix), Vec::<String>::new());
}

#[test]
fn lab_refuses_bad_requests_precisely() {
    require_root();
    let dir = scratch().join("lab-errors");
    let site = write_site(&dir, BASE_SITE);
    let state = dir.join("state").to_string_lossy().into_owned();
    failed_with(
        &cairn(&[
            "lab",
            "up",
            "--site",
            &site.to_string_lossy(),
            "--state",
            &state,
            "--nodes",
            "b1,nosuch",
        ]),
        "--nodes: unknown node \"nosuch\" (the site has: b1, b2, web1)",
    );
    failed_with(
        &cairn(&[
            "lab",
            "up",
            "--site",
            &site.to_string_lossy(),
            "--state",
            &state,
            "--nodes",
            "web1",
        ]),
        "the lab would boot no VM",
    );
    failed_with(
        &cairn(&[
            "lab",
            "up",
            "--site",
            "/nonexistent/site.toml",
            "--state",
            &state,
        ]),
        "--site /nonexistent/site.toml: no such file",
    );
    failed_with(&cairn(&["lab", "status", "--state", &state]), "no lab here");
    failed_with(
        &cairn(&["lab", "kill", "b1", "--state", &state]),
        "no lab here",
    );
    failed_with(
        &cairn(&["lab", "exec", "client", "--state", &state, "--", "true"]),
        "no lab here",
    );
    failed_with(
        &cairn(&["lab", "status", "--state", "/nonexistent/state"]),
        "--state /nonexistent/state: no such directory",
    );
}

#[test]
fn lb_pair_serves_through_the_vip_fails_over_under_load_and_preempts() {
    require_root();
    let _one = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = scratch().join("lab-lb");
    std::fs::create_dir_all(&dir).unwrap();
    let site = workspace().join("examples/site.toml");
    let state_path = dir.join("state");
    let state = state_path.to_string_lossy().into_owned();
    ok(&cairn(&["lab", "down", "--state", &state]));
    let _down = Down(state_path.clone());

    lab_up(&site, &state, "lb1,lb2,web1,web2");

    // lb1 (priority 200) holds the VIP.
    let t = Instant::now();
    while vip_holder(&state).as_deref() != Some("lb1") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "lb1 never held the VIP: {:?}",
            vip_holder(&state)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Round robin over both backends through the VIP.
    let mut bodies = Vec::new();
    for _ in 0..6 {
        let b = ok(&cairn(&[
            "lab",
            "exec",
            "client",
            "--state",
            &state,
            "--",
            "curl",
            "-s",
            "-m",
            "5",
            "http://192.0.2.100/",
        ]));
        bodies.push(b.trim().to_string());
    }
    assert!(bodies.iter().any(|b| b == "web1"), "{bodies:?}");
    assert!(bodies.iter().any(|b| b == "web2"), "{bodies:?}");

    // Kill the master under one request every 10 ms.
    let probe_bin = cairn_bin().with_file_name("cairn-lab-probe");
    assert!(
        probe_bin.is_file(),
        "{} missing: build cairn-labnet",
        probe_bin.display()
    );
    let probe_out = dir.join("failover.jsonl");
    let probe_s = probe_out.to_string_lossy().into_owned();
    let mut probe = Command::new(cairn_bin())
        .args([
            "lab",
            "exec",
            "client",
            "--state",
            &state,
            "--",
            &probe_bin.to_string_lossy(),
            "--target",
            "192.0.2.100:80",
            "--every-ms",
            "10",
            "--timeout-ms",
            "100",
            "--duration-ms",
            "12000",
            "--out",
            &probe_s,
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = Instant::now();
    ok(&cairn(&["lab", "kill", "lb1", "--state", &state]));
    eprintln!(
        "lab kill lb1 took {:.2} s",
        killed_at.elapsed().as_secs_f64()
    );
    let status = probe.wait().unwrap();
    assert!(status.success(), "probe: {status}");
    let attempts = read_probe(&probe_out);
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    let first_fail = failed.first().map(|a| a.t_ms).unwrap_or(0.0);
    let last_fail = failed.last().map(|a| a.t_ms).unwrap_or(0.0);
    eprintln!(
        "failover under load: {} requests, {} failed, outage {:.0} ms (first failure at {:.0} ms, last at {:.0} ms)",
        attempts.len(),
        failed.len(),
        last_fail - first_fail,
        first_fail,
        last_fail
    );
    assert!(attempts.len() > 300, "the probe ran: {}", attempts.len());
    // The backup serves: the last two seconds of the run all succeed.
    let end = attempts.last().unwrap().t_ms;
    let tail: Vec<&Attempt> = attempts.iter().filter(|a| a.t_ms > end - 2000.0).collect();
    assert!(
        !tail.is_empty() && tail.iter().all(|a| a.ok),
        "the backup serves"
    );
    assert!(tail.iter().any(|a| a.body == "web1" || a.body == "web2"));
    assert_eq!(vip_holder(&state).as_deref(), Some("lb2"));

    // lb1 comes back and preempts (priority 200 > 100, preempt = true), under
    // the same load; the probe runs until the VIP moved and 2 s more.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path.join("lab.json")).unwrap())
            .unwrap();
    let client_ns = plan["client"]["netns"].as_str().unwrap().to_string();
    let preempt_out = dir.join("preempt.jsonl");
    // `ip netns exec` execs the probe, so this child's pid is the probe's.
    let mut probe = Command::new("ip")
        .args(["netns", "exec", &client_ns])
        .arg(&probe_bin)
        .args([
            "--target",
            "192.0.2.100:80",
            "--every-ms",
            "10",
            "--timeout-ms",
            "100",
            "--duration-ms",
            "0",
            "--out",
            &preempt_out.to_string_lossy(),
        ])
        .spawn()
        .unwrap();
    let t = Instant::now();
    ok(&cairn(&["lab", "start", "lb1", "--state", &state]));
    wait_status(&state, "lb1 ready again", BOOT_TIMEOUT, |s| {
        node(s, "lb1")["ready"].is_object()
    });
    let ready = t.elapsed();
    while vip_holder(&state).as_deref() != Some("lb1") {
        assert!(
            t.elapsed() < ready + Duration::from_secs(30),
            "lb1 did not take the VIP back: {:?}",
            vip_holder(&state)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "lb1 restarted: ready after {:.1} s, VIP back on lb1 after {:.1} s",
        ready.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        Command::new("kill")
            .args(["-TERM", &probe.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let stop = Instant::now();
    while probe.try_wait().unwrap().is_none() {
        assert!(
            stop.elapsed() < Duration::from_secs(10),
            "the probe ignores SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let attempts = read_probe(&preempt_out);
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    eprintln!(
        "preemption under load: {} requests, {} failed{}",
        attempts.len(),
        failed.len(),
        match (failed.first(), failed.last()) {
            (Some(a), Some(b)) =>
                format!(", between {:.0} ms and {:.0} ms of the run", a.t_ms, b.t_ms),
            _ => String::new(),
        }
    );
    assert!(attempts.len() > 100, "the probe ran: {}", attempts.len());
    let end = attempts.last().unwrap().t_ms;
    let tail: Vec<&Attempt> = attempts.iter().filter(|a| a.t_ms > end - 1500.0).collect();
    assert!(
        !tail.is_empty() && tail.iter().all(|a| a.ok),
        "lb1 serves after preempting"
    );
    let body = ok(&cairn(&[
        "lab",
        "exec",
        "client",
        "--state",
        &state,
        "--",
        "curl",
        "-s",
        "-m",
        "5",
        "http://192.0.2.100/",
    ]));
    assert!(body == "web1\n" || body == "web2\n", "{body}");

    // Stop HAProxy on the master through cairnctl: the VIP moves. lb1's vipd
    // sees its haproxy service not ready, its priority drops below lb2's, lb2
    // takes over; the client's load is counted across the move.
    let master = box_vrrp(&state, "lb1");
    assert_eq!(master["state"], "master", "{master}");
    assert_eq!(box_vrrp(&state, "lb2")["state"], "backup");
    let stop_out = dir.join("stop-haproxy.jsonl");
    let probe = Probe::start(&probe_bin, &client_ns, &stop_out);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    ok(&ctl(&state, "lb1", &["stop", "haproxy"]));
    let stopped = t.elapsed();
    let haproxy = |node: &str| {
        let services = box_services(&state, node);
        services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "haproxy")
            .cloned()
            .unwrap_or_else(|| panic!("no haproxy in {services}"))
    };
    // `stop` returns once the stop began; HAProxy's soft stop lets requests in flight finish.
    while haproxy("lb1")["state"] != "stopped" {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "haproxy on lb1 did not stop: {}",
            haproxy("lb1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    while box_vrrp(&state, "lb2")["state"] != "master" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "lb2 did not take over after haproxy stopped on lb1: lb1 {}",
            box_vrrp(&state, "lb1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let moved = t.elapsed();
    let lb1 = box_vrrp(&state, "lb1");
    eprintln!(
        "stop haproxy on lb1: call {:.2} s, lb2 master after {:.2} s; lb1 now {} at priority {}/{}, checks {}",
        stopped.as_secs_f64(),
        moved.as_secs_f64(),
        lb1["state"],
        lb1["effective_priority"],
        lb1["priority"],
        lb1["checks"]
    );
    assert_eq!(lb1["state"], "backup", "{lb1}");
    assert!(
        lb1["effective_priority"].as_u64().unwrap() < 100,
        "lb1's priority dropped below lb2's: {lb1}"
    );
    assert!(
        lb1["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("haproxy=failing")),
        "{lb1}"
    );
    assert_eq!(vip_holder(&state).as_deref(), Some("lb2"));
    std::thread::sleep(Duration::from_secs(2));
    let attempts = probe.stop();
    report_tail_ok("haproxy stopped on the master", &attempts, 1500.0);

    // Start it again: lb1's check recovers and it preempts.
    let start_out = dir.join("start-haproxy.jsonl");
    let probe = Probe::start(&probe_bin, &client_ns, &start_out);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    ok(&ctl(&state, "lb1", &["start", "haproxy"]));
    while box_vrrp(&state, "lb1")["state"] != "master" {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "lb1 did not preempt after haproxy started: {}",
            box_vrrp(&state, "lb1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "start haproxy on lb1: lb1 master again after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(haproxy("lb1")["ready"], true);
    assert_eq!(box_vrrp(&state, "lb2")["state"], "backup");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(vip_holder(&state).as_deref(), Some("lb1"));
    let attempts = probe.stop();
    report_tail_ok("haproxy started on lb1 (preempt)", &attempts, 1500.0);

    // Graceful reboot of the master (as an upgrade does it): cairn-init stops vipd first
    // (priority 0; it keeps the VIP until lb2 has taken it), then HAProxy (`stop_after`), so
    // clients of the pair see no failed request while lb2 takes over.
    assert_eq!(box_vrrp(&state, "lb1")["state"], "master");
    let reboot_out = dir.join("reboot-master.jsonl");
    let probe = Probe::start(&probe_bin, &client_ns, &reboot_out);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let from = monotonic_ms();
    // The agent relays cairnctl's exit status before cairn-init's shutdown stops it.
    ok(&ctl(&state, "lb1", &["reboot"]));
    while box_vrrp(&state, "lb2")["state"] != "master" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "lb2 did not take over while lb1 rebooted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took_over = t.elapsed();
    // Until lb1 is back and has preempted: the whole reboot is under load. While it reboots
    // its control channel does not answer.
    let lb1_master = || {
        let out = ctl(&state, "lb1", &["vip", "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v[0]["state"] == "master")
    };
    std::thread::sleep(Duration::from_secs(2));
    while !lb1_master() {
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "lb1 did not take the VIP back after its reboot"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    let attempts = probe.stop();
    let failed: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| !a.ok && a.mono_ms >= from)
        .collect();
    eprintln!(
        "graceful reboot of lb1 under load: lb2 master after {:.2} s, lb1 back as master after {:.1} s; {} of {} requests failed",
        took_over.as_secs_f64(),
        t.elapsed().as_secs_f64(),
        failed.len(),
        attempts.len()
    );
    assert!(attempts.len() > 300, "the probe ran: {}", attempts.len());
    assert!(
        failed.is_empty(),
        "no request fails across a graceful reboot of the master: {} failed, first at {:.0} ms",
        failed.len(),
        failed.first().map(|a| a.t_ms).unwrap_or(0.0)
    );

    // Stop one backend: HAProxy's checks (inter 1 s, fall 2) mark it DOWN, and from then on
    // no client request fails: they all go to the other backend.
    let backend_out = dir.join("stop-backend.jsonl");
    let probe = Probe::start(&probe_bin, &client_ns, &backend_out);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    ok(&cairn(&["lab", "kill", "web2", "--state", &state]));
    let server_state = |node: &str, server: &str| -> String {
        let out = ctl(&state, node, &["lb", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("cairnctl lb --json on {node}: {e}: {}", text(&out)));
        v["haproxy"]["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["servers"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == server)
            .map(|s| s["state"].as_str().unwrap_or("?").to_string())
            .unwrap_or_else(|| panic!("no server {server} in {v}"))
    };
    let detected = loop {
        if server_state("lb1", "web2") == "down" {
            break monotonic_ms();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "HAProxy on lb1 never marked web2 down"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "web2 stopped: HAProxy on lb1 marked it down after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let attempts = probe.stop();
    let before: Vec<&Attempt> = attempts.iter().filter(|a| a.mono_ms < detected).collect();
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.mono_ms >= detected).collect();
    eprintln!(
        "backend stop under load: {} requests failed before detection (of {}), {} after (of {})",
        before.iter().filter(|a| !a.ok).count(),
        before.len(),
        after.iter().filter(|a| !a.ok).count(),
        after.len()
    );
    assert!(
        after.len() > 100,
        "the probe ran after detection: {}",
        after.len()
    );
    assert!(
        after.iter().all(|a| a.ok && a.body == "web1"),
        "after HAProxy marked web2 down every request is answered by web1"
    );

    ok(&cairn(&["lab", "down", "--state", &state]));
}

/// Prints the failed requests of a run and asserts the last `tail_ms` all succeeded.
fn report_tail_ok(what: &str, attempts: &[Attempt], tail_ms: f64) {
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    eprintln!(
        "{what}: {} requests, {} failed{}",
        attempts.len(),
        failed.len(),
        match (failed.first(), failed.last()) {
            (Some(a), Some(b)) => format!(
                ", between {:.0} ms and {:.0} ms of the run (outage {:.0} ms)",
                a.t_ms,
                b.t_ms,
                b.t_ms - a.t_ms
            ),
            _ => String::new(),
        }
    );
    assert!(
        attempts.len() > 100,
        "{what}: the probe ran: {}",
        attempts.len()
    );
    let end = attempts.last().unwrap().t_ms;
    let tail: Vec<&Attempt> = attempts.iter().filter(|a| a.t_ms > end - tail_ms).collect();
    assert!(
        !tail.is_empty() && tail.iter().all(|a| a.ok),
        "{what}: requests fail at the end of the run"
    );
    assert!(
        tail.iter().any(|a| a.body == "web1" || a.body == "web2"),
        "{what}: the backends answer"
    );
}

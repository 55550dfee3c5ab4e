//! Privileged tests: cairn-init as PID 1 of its own PID namespace, checked
//! through cairnctl. They need root and fail (never skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Lab, children, proc_state};
use nix::sys::signal::Signal;

/// A oneshot that brings up lo in the lab's network namespace.
const NET: &str = r#"
[[service]]
name = "net"
exec = ["/usr/sbin/ip", "link", "set", "lo", "up"]
oneshot = true
"#;

#[test]
fn orphans_are_reaped_with_no_zombies_left() {
    let lab = Lab::start(
        r#"
[[service]]
name = "orphans"
exec = ["/bin/sh", "-c", "i=0; while [ $i -lt 300 ]; do (sleep 5 &); i=$((i+1)); done; echo spawned; exec sleep 1000"]
"#,
    );
    lab.wait_until("orphans spawned", Duration::from_secs(30), || {
        lab.logs("orphans").iter().any(|l| l.2 == "spawned")
    });
    let init = lab.init_pid();
    let service_pid = lab.service("orphans")["pid"].as_u64().unwrap();
    // The orphaned sleeps were re-parented to cairn-init (PID 1 of the namespace). They
    // sleep 5 s: on a loaded machine spawning 300 takes seconds, and 1 s sleeps were
    // already gone before they were counted.
    let orphans = children(init).len();
    assert!(
        orphans > 200,
        "expected >200 orphans re-parented to init, saw {orphans}"
    );
    // When they exit, init reaps every one of them. Besides the service's own process
    // init has one child of its own: the control-API server (init/src/control_api.rs).
    let others = || -> Vec<u32> {
        children(init)
            .into_iter()
            .filter(|p| !cmdline(*p).contains("serve-init-api"))
            .collect()
    };
    lab.wait_until("all orphans gone", Duration::from_secs(30), || {
        others().len() == 1
    });
    let kids = children(init);
    assert_eq!(
        others().len(),
        1,
        "only the service's own process and the control-API server may remain: {kids:?}"
    );
    let zombies: Vec<u32> = kids
        .iter()
        .copied()
        .filter(|&p| proc_state(p) == Some('Z'))
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");
    // The service itself is untouched (its pid is the namespace pid, so compare counts instead).
    assert_eq!(lab.service("orphans")["state"], "ready");
    assert_eq!(lab.service("orphans")["pid"].as_u64().unwrap(), service_pid);
}

#[test]
fn crashing_service_backs_off_and_hits_the_start_limit() {
    let lab = Lab::start(
        r#"
[[service]]
name = "crash"
exec = ["/bin/sh", "-c", "echo crashing; exit 3"]
restart_delay_ms = 100
start_limit = { burst = 5, interval_ms = 60000, cooldown_ms = 0 }

[[service]]
name = "steady"
exec = ["/bin/sleep", "1000"]
"#,
    );
    lab.wait_until("crash marked failed", Duration::from_secs(20), || {
        lab.service("crash")["state"] == "failed"
    });
    let crash = lab.service("crash");
    assert_eq!(crash["restarts"], 4, "{crash}");
    assert!(
        crash["detail"]
            .as_str()
            .unwrap()
            .contains("start limit hit"),
        "{crash}"
    );
    let logs = lab.logs("crash");
    let starts: Vec<u64> = logs
        .iter()
        .filter(|l| l.2 == "crashing")
        .map(|l| l.0)
        .collect();
    assert_eq!(starts.len(), 5, "{logs:?}");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (k, delay) in [100u64, 200, 400, 800].iter().enumerate() {
        assert!(
            gaps[k] >= *delay,
            "gap {k} was {} ms, below the {delay} ms backoff: {gaps:?}",
            gaps[k]
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0]),
        "backoff must grow: {gaps:?}"
    );
    for d in [100, 200, 400, 800] {
        let needle = format!("exited with status 3; restarting in {d} ms");
        assert!(
            logs.iter().any(|l| l.1 == "init" && l.2 == needle),
            "missing {needle:?}: {logs:?}"
        );
    }
    // The rest keep running.
    assert_eq!(lab.service("steady")["state"], "ready");
    // An operator start clears the failure.
    lab.ctl(&["start", "crash"]);
    lab.wait_until("crash started again", Duration::from_secs(5), || {
        lab.logs("crash")
            .iter()
            .filter(|l| l.2 == "crashing")
            .count()
            >= 6
    });
}

#[test]
fn dependency_and_readiness_order_holds() {
    let services = format!(
        r#"{NET}
[[service]]
name = "db"
exec = ["/bin/sh", "-c", "sleep 0.4; touch @DIR@/db.ready; exec sleep 1000"]
after = ["net"]
ready = {{ exec = ["/usr/bin/test", "-f", "@DIR@/db.ready"] }}

[[service]]
name = "web"
exec = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "@DIR@"]
after = ["db"]
ready = {{ tcp = "127.0.0.1:8080" }}

[[service]]
name = "app"
exec = ["/bin/sh", "-c", "sleep 0.3; @CTL@ notify READY=1 'STATUS=serving'; exec sleep 1000"]
after = ["web"]
ready = {{ notify = true }}

[[service]]
name = "last"
exec = ["/bin/sleep", "1000"]
after = ["app", "net"]
"#
    );
    let lab = Lab::start(&services);
    lab.wait_until("everything ready", Duration::from_secs(20), || {
        lab.status()
            .iter()
            .all(|s| s["state"] == "ready" || s["state"] == "done")
    });
    let note_time = |svc: &str, prefix: &str| -> u64 {
        lab.logs(svc)
            .iter()
            .find(|l| l.1 == "init" && l.2.starts_with(prefix))
            .unwrap_or_else(|| panic!("{svc}: no {prefix:?} note: {:?}", lab.logs(svc)))
            .0
    };
    let chain = [
        ("db", "net"),
        ("web", "db"),
        ("app", "web"),
        ("last", "app"),
    ];
    for (svc, dep) in chain {
        let started = note_time(svc, "started");
        let dep_ready = if dep == "net" {
            note_time(dep, "exited with status 0")
        } else {
            note_time(dep, "ready")
        };
        assert!(
            started >= dep_ready,
            "{svc} started at {started} ms before {dep} was ready at {dep_ready} ms"
        );
    }
    // db became ready through its exec probe only after its 0.4 s delay.
    assert!(note_time("db", "ready") - note_time("db", "started") >= 400);
    assert_eq!(lab.service("net")["state"], "done");
    assert_eq!(
        lab.service("app")["detail"],
        "serving",
        "STATUS= from sd_notify"
    );
    assert!(lab.log().contains("all services ready"), "{}", lab.log());
}

#[test]
fn sigterm_stops_everything_in_reverse_order_within_the_grace_period() {
    let trap = r#"trap 'echo got-term; exit 0' TERM; while :; do sleep 0.05; done"#;
    let services = format!(
        r#"
[[service]]
name = "a"
exec = ["/bin/sh", "-c", "{trap}"]
[[service]]
name = "b"
exec = ["/bin/sh", "-c", "{trap}"]
after = ["a"]
[[service]]
name = "c"
exec = ["/bin/sh", "-c", "{trap}"]
after = ["b"]
[[service]]
name = "stubborn"
exec = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
stop_grace_ms = 700
"#
    );
    let mut lab = Lab::start(&services);
    lab.wait_until("all ready", Duration::from_secs(10), || {
        lab.status().iter().all(|s| s["state"] == "ready")
    });
    let t0 = Instant::now();
    lab.signal_init(Signal::SIGTERM);
    let status = lab.wait_exit(Duration::from_secs(20));
    let took = t0.elapsed();
    assert!(
        status.success(),
        "supervise-only mode exits 0 after an orderly stop: {status}"
    );
    let log = lab.log();
    let pos = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in log:\n{log}"))
    };
    // Reverse dependency order: c, then b, then a.
    let stop_c = pos(" c: stopped");
    let stop_b = pos(" b: stopped");
    let stop_a = pos(" a: stopped");
    assert!(
        stop_c < stop_b && stop_b < stop_a,
        "stop order wrong:\n{log}"
    );
    assert!(
        log.contains("[c] got-term") && log.contains("[a] got-term"),
        "{log}"
    );
    // The stubborn one got SIGKILL after its grace period, not before.
    assert!(
        log.contains("stubborn: did not stop within 700 ms, sending SIGKILL"),
        "{log}"
    );
    assert!(
        took >= Duration::from_millis(700),
        "stopped in {took:?}: the grace period was not honoured"
    );
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[test]
fn bad_services_files_give_precise_errors_and_start_nothing() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let cases = [
        (
            "unknown key",
            format!(
                "[[service]]\nname = \"ok\"\nexec = [\"/usr/bin/touch\", \"{}\"]\n[[service]]\nname = \"web\"\nexec = [\"/bin/true\"]\nrestrat = \"always\"\n",
                marker.display()
            ),
            "service \"web\": field `restrat`",
        ),
        (
            "cycle",
            "[[service]]\nname = \"a\"\nexec = [\"/bin/true\"]\nafter = [\"b\"]\n[[service]]\nname = \"b\"\nexec = [\"/bin/true\"]\nafter = [\"a\"]\n".to_owned(),
            "dependency cycle: a -> b -> a",
        ),
        (
            "missing executable",
            "[[service]]\nname = \"ghost\"\nexec = [\"/usr/sbin/no-such-daemon\"]\n".to_owned(),
            "service \"ghost\": field `exec`: /usr/sbin/no-such-daemon: No such file or directory",
        ),
        (
            "duplicate",
            "[[service]]\nname = \"x\"\nexec = [\"/bin/true\"]\n[[service]]\nname = \"x\"\nexec = [\"/bin/true\"]\n".to_owned(),
            "service \"x\": field `name`: duplicate service name",
        ),
    ];
    for (what, text, expected) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, &text).unwrap();
        let out = std::process::Command::new("/usr/bin/unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_cairn-init"))
            .arg("--services")
            .arg(&file)
            .arg("--control")
            .arg(dir.path().join("control.sock"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: exit status, stderr: {stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "{what}: names the file: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in {stderr}"
        );
        assert!(
            !marker.exists(),
            "{what}: a valid service started although the file is bad"
        );
        assert!(
            !dir.path().join("control.sock").exists(),
            "{what}: nothing may be served"
        );
    }
}

#[test]
fn services_get_no_leaked_fds_or_signal_mask_and_their_own_group_and_cgroup() {
    let lab = Lab::start(
        r#"
[[service]]
name = "probe"
exec = ["/bin/sh", "-c", "echo stat: $(cut -d' ' -f1,5,6 /proc/$$/stat); echo cgroup: $(grep '^0::' /proc/$$/cgroup); echo env: $(env | sort | tr '\\n' ' '); exec sleep 1000"]
env = { GREETING = "hello" }

# The exec'd program reports its own mask (a shell would block signals around
# the fork of a child that reads it, which is a race).
[[service]]
name = "plain"
exec = ["/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
oneshot = true

# Prints the target of each open descriptor 0-15 (readlink opens none itself).
[[service]]
name = "fds"
exec = ["/usr/bin/readlink", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "/proc/self/fd/3", "/proc/self/fd/4", "/proc/self/fd/5", "/proc/self/fd/6", "/proc/self/fd/7", "/proc/self/fd/8", "/proc/self/fd/9", "/proc/self/fd/10", "/proc/self/fd/11", "/proc/self/fd/12", "/proc/self/fd/13", "/proc/self/fd/14", "/proc/self/fd/15"]
restart = "never"
"#,
    );
    lab.wait_until("probe output", Duration::from_secs(10), || {
        lab.logs("probe").iter().any(|l| l.2.starts_with("env:"))
    });
    let logs = lab.logs("probe");
    let line = |p: &str| {
        logs.iter()
            .find(|l| l.2.starts_with(p))
            .map(|l| l.2.clone())
            .unwrap_or_else(|| panic!("no {p} line: {logs:?}"))
    };
    lab.wait_until("fds exited", Duration::from_secs(10), || {
        lab.service("fds")["pid"] == 0
    });
    let fds: Vec<String> = lab
        .logs("fds")
        .into_iter()
        .filter(|l| l.1 == "stdout")
        .map(|l| l.2)
        .collect();
    assert_eq!(
        fds.len(),
        3,
        "only stdin, stdout and stderr may be open: {fds:?}"
    );
    assert_eq!(fds[0], "/dev/null", "stdin is /dev/null");
    assert!(
        fds[1].starts_with("pipe:") && fds[2].starts_with("pipe:"),
        "stdout and stderr are pipes: {fds:?}"
    );
    // pid, pgrp and session are equal: the service leads its own session and group.
    let stat: Vec<String> = line("stat:")
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(stat.len(), 3, "{stat:?}");
    assert!(
        stat[0] == stat[1] && stat[1] == stat[2],
        "own process group and session: {stat:?}"
    );
    lab.wait_until("plain done", Duration::from_secs(10), || {
        lab.service("plain")["state"] == "done"
    });
    let plain: Vec<String> = lab
        .logs("plain")
        .into_iter()
        .filter(|l| l.1 == "stdout")
        .map(|l| l.2)
        .collect();
    assert_eq!(
        plain,
        ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"],
        "signal mask or ignored signals leaked into an exec'd program"
    );
    let cg = line("cgroup:");
    let has_cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - cgroup2 ");
    assert!(
        has_cgroup2,
        "this host has no cgroup2 mount; the cgroup check cannot run"
    );
    assert!(
        cg.ends_with("/probe.service"),
        "service runs in its own cgroup: {cg}"
    );
    let env = line("env:");
    assert!(
        env.contains("GREETING=hello") && env.contains("NOTIFY_SOCKET="),
        "{env}"
    );
    assert!(
        !env.contains("CAIRN_LOG"),
        "init's own environment leaked: {env}"
    );
}

#[test]
fn control_api_start_stop_restart_and_uid_check() {
    let lab = Lab::start(
        r#"
[[service]]
name = "worker"
exec = ["/bin/sleep", "1000"]
"#,
    );
    let pid0 = lab.service("worker")["pid"].as_u64().unwrap();
    assert!(pid0 > 1);
    lab.ctl(&["stop", "worker"]);
    lab.wait_until("worker stopped", Duration::from_secs(5), || {
        lab.service("worker")["state"] == "stopped"
    });
    assert_eq!(lab.service("worker")["pid"], 0);
    lab.ctl(&["start", "worker"]);
    lab.wait_until("worker ready", Duration::from_secs(5), || {
        lab.service("worker")["state"] == "ready"
    });
    let pid1 = lab.service("worker")["pid"].as_u64().unwrap();
    lab.ctl(&["restart", "worker"]);
    lab.wait_until("worker restarted", Duration::from_secs(5), || {
        let s = lab.service("worker");
        s["state"] == "ready" && s["pid"].as_u64().unwrap() != pid1
    });
    // Unknown service: a precise error, exit 1.
    let out = lab.try_ctl(&["stop", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{out:?}"
    );
    // Non-root may read but not change anything.
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::cairnctl())
            .arg("--control")
            .arg(&lab.control)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        as_nobody(&["status"]).status.success(),
        "read-only calls are open to everyone"
    );
    let denied = as_nobody(&["stop", "worker"]);
    assert_eq!(denied.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(msg.contains("denied") && msg.contains("65534"), "{msg}");
    assert_eq!(
        lab.service("worker")["state"],
        "ready",
        "a refused call changes nothing"
    );
}

#[test]
fn poweroff_over_the_control_api_ends_the_namespace() {
    let mut lab = Lab::start(
        r#"
[[service]]
name = "w"
exec = ["/bin/sleep", "1000"]
"#,
    );
    lab.ctl(&["poweroff"]);
    let st = lab.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st}");
    assert!(
        lab.log().contains("exiting action=\"poweroff\""),
        "{}",
        lab.log()
    );
}

#[test]
fn a_service_that_cannot_start_is_failed_and_the_rest_keep_running() {
    common::require_root();
    // Executable and present at validation, but exec(2) fails: its interpreter is missing.
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("broken");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(
        &script,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let lab = Lab::start(&format!(
        r#"
[[service]]
name = "broken"
exec = ["{}"]
restart = "never"

[[service]]
name = "fine"
exec = ["/bin/sleep", "1000"]
"#,
        script.display()
    ));
    lab.wait_until("broken marked failed", Duration::from_secs(10), || {
        lab.service("broken")["state"] == "failed"
    });
    let detail = lab.service("broken")["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("cannot start") && detail.contains("broken"),
        "{detail}"
    );
    assert_eq!(lab.service("fine")["state"], "ready");
    // PID 1 is still alive and serving.
    assert!(lab.try_ctl(&["status"]).status.success());
}

/// `/proc/<pid>/cmdline` with NULs as spaces.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_control_api_is_served_outside_pid1_and_comes_back_when_its_server_dies() {
    let lab = Lab::start(
        r#"
[[service]]
name = "worker"
exec = ["/bin/sleep", "1000"]
"#,
    );
    let init = lab.init_pid();
    let server = |lab: &Lab| {
        common::children(lab.init_pid())
            .into_iter()
            .find(|p| cmdline(*p).contains("serve-init-api"))
    };
    let first = server(&lab).expect("PID 1 has no control-API server child");
    // PID 1 relays; the D-Bus server thread lives in the child only.
    let names = thread_names(init);
    assert!(names.iter().any(|n| n == "cairn-relay"), "{names:?}");
    assert!(!names.iter().any(|n| n == "cairn-control"), "{names:?}");
    assert!(
        thread_names(first).iter().any(|n| n == "cairn-control"),
        "{:?}",
        thread_names(first)
    );
    let worker = lab.service("worker")["pid"].as_u64().unwrap();

    // Kill the server: PID 1 and the services stay, the API comes back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    lab.wait_until("a new control-API server", Duration::from_secs(10), || {
        server(&lab).is_some_and(|p| p != first)
    });
    lab.wait_until("the API answers again", Duration::from_secs(10), || {
        lab.try_ctl(&["status"]).status.success()
    });
    assert_eq!(lab.service("worker")["pid"].as_u64().unwrap(), worker);
    assert_eq!(lab.init_pid(), init);
    lab.ctl(&["restart", "worker"]);
    lab.wait_until("worker restarted", Duration::from_secs(5), || {
        let s = lab.service("worker");
        s["state"] == "ready" && s["pid"].as_u64().unwrap() != worker
    });
    assert!(
        lab.log()
            .contains("control API server process ended; starting it again"),
        "{}",
        lab.log()
    );
}

#[test]
fn a_service_runs_at_its_nice_value() {
    let lab = Lab::start(
        r#"
[[service]]
name = "background"
exec = ["/bin/sleep", "1001"]
nice = 7

[[service]]
name = "serving"
exec = ["/bin/sleep", "1002"]
"#,
    );
    lab.wait_until("both running", Duration::from_secs(5), || {
        common::children(lab.init_pid()).len() >= 2
    });
    // Field 19 of /proc/<pid>/stat (after the command in parentheses) is the nice value.
    let nice_of = |arg: &str| -> i32 {
        let pid = common::children(lab.init_pid())
            .into_iter()
            .find(|p| cmdline(*p).contains(arg))
            .unwrap_or_else(|| panic!("no sleep {arg}"));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    };
    assert_eq!(nice_of("1001"), 7);
    assert_eq!(nice_of("1002"), 0);
}

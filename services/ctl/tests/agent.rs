//! `cairnctl agent` end to end, on a unix socket standing in for the
//! virtio-serial port (`--device`): the real cairnctl answering `--version`
//! and failing to reach a control socket, refusals that leave the agent
//! serving, a host that hangs up and comes back, the per-command deadline,
//! and a command killed when its host goes away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Bound for any single answer line (the agent answers within a second or two).
const LINE_WAIT: Duration = Duration::from_secs(20);

/// The agent process, killed when the test ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(socket: &Path, extra: &[&str]) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("agent")
        .arg("--device")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Agent(child)
}

/// Waits (bounded) for the agent to connect to our listening "host" socket.
fn accept(listener: &UnixListener, agent: &mut Agent) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let t = Instant::now();
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(LINE_WAIT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent exited instead of connecting"
        );
        assert!(t.elapsed() < LINE_WAIT, "the agent did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What came back for one request: stdout, stderr, and the last line.
#[derive(Debug)]
struct Answer {
    stdout: String,
    stderr: String,
    last: Value,
}

fn ask(conn: &UnixStream, request: &str) -> Answer {
    let mut w = conn;
    w.write_all(request.as_bytes()).unwrap();
    w.write_all(b"\n").unwrap();
    read_answer(conn)
}

fn read_answer(conn: &UnixStream) -> Answer {
    let mut reader = BufReader::new(conn);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the agent closed the connection mid-answer");
        let v: Value = serde_json::from_str(&line).unwrap();
        match v["stream"].as_str() {
            Some("stdout") => stdout.push_str(v["data"].as_str().unwrap()),
            Some("stderr") => stderr.push_str(v["data"].as_str().unwrap()),
            _ => {
                return Answer {
                    stdout,
                    stderr,
                    last: v,
                };
            }
        }
    }
}

#[test]
fn agent_runs_cairnctl_refuses_bad_requests_and_survives_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("host.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut agent = start_agent(&sock, &[]);

    let conn = accept(&listener, &mut agent);
    // The real cairnctl, with the requested arguments.
    let a = ask(&conn, r#"{"id": "v1", "args": ["--version"]}"#);
    assert_eq!(
        a.stdout,
        format!("cairnctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(a.stderr, "");
    assert_eq!(a.last, json!({"id": "v1", "exit": 0}));

    // Its failures come back as stderr and exit code.
    let a = ask(
        &conn,
        r#"{"id": 2, "args": ["--control", "/nonexistent/control.sock", "status"]}"#,
    );
    assert_eq!(a.last, json!({"id": 2, "exit": 1}));
    assert!(a.stderr.starts_with("cairnctl: "), "{a:?}");
    assert!(a.stderr.contains("/nonexistent/control.sock"), "{a:?}");

    // Refusals: bad JSON, recursion, too many arguments. The agent keeps serving.
    let a = ask(&conn, "status --json");
    assert!(
        a.last["error"]
            .as_str()
            .unwrap()
            .starts_with("request is not JSON"),
        "{a:?}"
    );
    let a = ask(&conn, r#"{"id": "r", "args": ["agent"]}"#);
    assert_eq!(a.last["id"], "r");
    assert!(
        a.last["error"]
            .as_str()
            .unwrap()
            .contains("`agent` cannot be run through the agent"),
        "{a:?}"
    );
    let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
    let a = ask(&conn, &json!({ "args": many }).to_string());
    assert!(
        a.last["error"]
            .as_str()
            .unwrap()
            .contains("33 arguments, at most 32"),
        "{a:?}"
    );
    let a = ask(&conn, r#"{"args": ["--version"]}"#);
    assert_eq!(a.last, json!({"exit": 0}), "still serving after refusals");

    // The host hangs up in the middle of a line and comes back: the partial
    // line is forgotten, the new connection is served.
    let mut w = &conn;
    w.write_all(br#"{"args": ["--ver"#).unwrap();
    drop(conn);
    let conn = accept(&listener, &mut agent);
    let a = ask(&conn, r#"{"id": "again", "args": ["--version"]}"#);
    assert_eq!(a.last, json!({"id": "again", "exit": 0}));
    assert!(a.stdout.starts_with("cairnctl "), "{a:?}");

    // Two requests in one write are answered in order.
    let mut w = &conn;
    w.write_all(b"{\"id\":1,\"args\":[\"--version\"]}\n{\"id\":2,\"args\":[\"nosuch\"]}\n")
        .unwrap();
    let first = read_answer(&conn);
    assert_eq!(first.last, json!({"id": 1, "exit": 0}));
    let second = read_answer(&conn);
    assert_eq!(second.last, json!({"id": 2, "exit": 2}), "clap usage error");
    assert!(second.stderr.contains("nosuch"), "{second:?}");
}

#[test]
fn agent_kills_commands_at_the_deadline_and_when_the_host_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("host.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // A stand-in program, so a command can run long and show its pid.
    let mut agent = start_agent(&sock, &["--program", "/bin/sh", "--timeout", "1"]);
    let conn = accept(&listener, &mut agent);

    // Output on both streams, non-UTF-8 bytes replaced, exit code passed through.
    let a = ask(
        &conn,
        r#"{"args": ["-c", "echo out; printf 'caf\\351\\n' >&2; exit 3"]}"#,
    );
    assert_eq!(a.stdout, "out\n");
    assert_eq!(a.stderr, "caf\u{fffd}\n");
    assert_eq!(a.last, json!({"exit": 3}));

    // Over the deadline: output so far, a note, exit 124; the process is gone.
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}; echo started; exec sleep 30",
        pid_file.display()
    );
    let t = Instant::now();
    let a = ask(&conn, &json!({"args": ["-c", script]}).to_string());
    assert_eq!(a.stdout, "started\n");
    assert!(a.stderr.contains("killed after 1 s"), "{a:?}");
    assert_eq!(a.last, json!({"exit": 124}));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(!alive(pid.trim()), "the timed-out command still runs");

    // The host goes away while a command runs (here within the 1 s limit it
    // would still be running): the agent kills it and serves the next host.
    // A second agent with a long deadline shows it is the hang-up that kills.
    drop(conn);
    drop(agent);
    std::fs::remove_file(&pid_file).unwrap();
    let mut agent = start_agent(&sock, &["--program", "/bin/sh", "--timeout", "600"]);
    let conn = accept(&listener, &mut agent);
    let script = format!("echo $$ > {}; exec sleep 600", pid_file.display());
    let mut w = &conn;
    w.write_all(format!("{}\n", json!({"args": ["-c", script]})).as_bytes())
        .unwrap();
    let t = Instant::now();
    while !pid_file.exists() {
        assert!(t.elapsed() < LINE_WAIT, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.trim().to_string();
    assert!(alive(&pid));
    drop(conn);
    let t = Instant::now();
    while alive(&pid) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the command outlived its host by 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let conn = accept(&listener, &mut agent);
    let a = ask(&conn, r#"{"args": ["-c", "echo next"]}"#);
    assert_eq!(a.stdout, "next\n");
    assert_eq!(a.last, json!({"exit": 0}));
}

#[test]
fn agent_without_a_port_has_nothing_to_do() {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(["agent", "--port-name", "org.cairn.test-no-such-port"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "no host control channel; nothing to do\n"
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 1..].split_whitespace().next();
            !matches!(state, Some("Z" | "X"))
        })
        .unwrap_or(false)
}

/// The agent's stop signal (SIGHUP, its `stop_signal` on a box) while a command runs: the
/// command's answer still reaches the host (a `reboot` relayed through the agent makes
/// cairn-init stop the agent at once), then the agent exits 0. A command still running a
/// second after the signal is killed, and that is said too.
#[test]
fn agent_stops_after_relaying_the_running_command() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("host.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut agent = start_agent(&sock, &["--program", "/bin/sh", "--timeout", "600"]);
    let conn = accept(&listener, &mut agent);
    let pid = agent.0.id().to_string();
    let mut w = &conn;
    w.write_all(br#"{"args": ["-c", "sleep 0.5; echo done"]}"#)
        .unwrap();
    w.write_all(b"\n").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let st = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(st.success());
    let a = read_answer(&conn);
    assert_eq!(a.stdout, "done\n");
    assert_eq!(a.last, json!({"exit": 0}));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < LINE_WAIT,
            "the agent did not exit after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    // A command that outlasts the grace is killed, with a note, and the agent exits.
    let mut agent = start_agent(&sock, &["--program", "/bin/sh", "--timeout", "600"]);
    let conn = accept(&listener, &mut agent);
    let pid = agent.0.id().to_string();
    let mut w = &conn;
    w.write_all(br#"{"args": ["-c", "echo started; exec sleep 30"]}"#)
        .unwrap();
    w.write_all(b"\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let t = Instant::now();
    let a = read_answer(&conn);
    assert_eq!(a.stdout, "started\n");
    assert!(a.stderr.contains("the agent is stopping"), "{a:?}");
    assert_eq!(a.last, json!({"exit": 124}));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let t = Instant::now();
    while agent.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < LINE_WAIT,
            "the agent did not exit after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

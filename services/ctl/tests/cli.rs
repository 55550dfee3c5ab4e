//! Runs the built `cairnctl` against a fake cairn-init served with `serve_init` in this test
//! process (or, to test losing the server, in a child process this binary re-runs itself as).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_control::{BackendError, InitBackend, LogLine, PowerAction, ServiceStatus, serve_init};

const ROLE_VAR: &str = "CAIRNCTL_TEST_ROLE";
const SOCKET_VAR: &str = "CAIRNCTL_TEST_SOCKET";

struct Fake {
    logs: Mutex<Vec<LogLine>>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn new() -> Arc<Self> {
        Arc::new(Fake {
            logs: Mutex::new(
                (1..=5)
                    .map(|seq| log_line(seq, seq * 1001, &format!("line {seq}")))
                    .collect(),
            ),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, name: &str, call: &str) -> Result<(), BackendError> {
        if name != "web" && name != "db" {
            return Err(BackendError::UnknownService(name.into()));
        }
        self.calls.lock().unwrap().push(format!("{call} {name}"));
        Ok(())
    }
}

fn log_line(seq: u64, t_ms: u64, text: &str) -> LogLine {
    LogLine {
        seq,
        t_ms,
        stream: if seq == 2 { "stderr" } else { "stdout" }.into(),
        text: text.into(),
    }
}

impl InitBackend for Fake {
    fn list_services(&self) -> Vec<ServiceStatus> {
        vec![
            ServiceStatus {
                name: "web".into(),
                state: "ready".into(),
                pid: 4242,
                restarts: 1,
                ready: true,
                detail: "listening on :80".into(),
            },
            ServiceStatus {
                name: "db".into(),
                state: "backoff".into(),
                pid: 0,
                restarts: 17,
                ready: false,
                detail: "exited with status 2".into(),
            },
        ]
    }
    fn start(&self, name: &str) -> Result<(), BackendError> {
        self.check(name, "start")
    }
    fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.check(name, "stop")
    }
    fn restart(&self, name: &str) -> Result<(), BackendError> {
        self.check(name, "restart")
    }
    fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
        if name != "web" {
            return Err(BackendError::UnknownService(name.into()));
        }
        Ok(self
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.seq > after_seq)
            .take(max as usize)
            .cloned()
            .collect())
    }
    fn power(&self, action: PowerAction) -> Result<(), BackendError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("power {}", action.as_str()));
        Ok(())
    }
}

struct Served {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    fake: Arc<Fake>,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let fake = Fake::new();
    serve_init(&socket, fake.clone()).unwrap();
    Served {
        _dir: dir,
        socket,
        fake,
    }
}

fn cairnctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("--control")
        .arg(socket)
        .arg("--updated")
        .arg(socket.with_file_name("no-updated.sock"))
        .args(args)
        .env_remove("CAIRN_CONTROL")
        .env_remove("CAIRN_UPDATED")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn status_prints_an_aligned_table() {
    let served = serve();
    let output = cairnctl(&served.socket, &["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "NAME  STATE    PID   RESTARTS  READY  DETAIL\n\
         web   ready    4242  1         yes    listening on :80\n\
         db    backoff  -     17        no     exited with status 2\n\
         updates: agent not running\n"
    );
}

#[test]
fn status_json_has_exactly_the_documented_keys() {
    let served = serve();
    let output = cairnctl(&served.socket, &["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let services = value.as_array().unwrap();
    assert_eq!(services.len(), 2);
    for service in services {
        let mut keys: Vec<_> = service.as_object().unwrap().keys().cloned().collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["detail", "name", "pid", "ready", "restarts", "state"]
        );
    }
    assert_eq!(
        services[1],
        serde_json::json!({
            "name": "db", "state": "backoff", "pid": 0, "restarts": 17,
            "ready": false, "detail": "exited with status 2"
        })
    );
    assert_eq!(services[0]["pid"], 4242);
    assert_eq!(services[0]["ready"], true);
}

#[test]
fn env_var_selects_the_socket() {
    let served = serve();
    let output = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("status")
        .env("CAIRN_CONTROL", &served.socket)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("NAME"));
}

#[test]
fn logs_prints_the_last_n_lines() {
    let served = serve();
    let output = cairnctl(&served.socket, &["logs", "web", "-n", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[    4.004] line 4\n[    5.005] line 5\n");
    let output = cairnctl(&served.socket, &["logs", "web"]);
    assert_eq!(
        stdout(&output),
        "[    1.001] line 1\n\
         [    2.002] (stderr) line 2\n\
         [    3.003] line 3\n\
         [    4.004] line 4\n\
         [    5.005] line 5\n"
    );
    let output = cairnctl(&served.socket, &["logs", "web", "-n", "0"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "");
}

#[test]
fn unknown_service_is_one_line_and_exit_code_1() {
    let served = serve();
    for args in [&["start", "foo"][..], &["logs", "foo"], &["restart", "foo"]] {
        let output = cairnctl(&served.socket, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&output), "cairnctl: no such service \"foo\"\n");
        assert_eq!(stdout(&output), "");
    }
}

#[test]
fn mutating_commands_reach_the_backend() {
    let served = serve();
    for args in [
        &["start", "web"][..],
        &["stop", "db"],
        &["restart", "web"],
        &["reboot"],
        &["poweroff"],
    ] {
        let output = cairnctl(&served.socket, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(
        served.fake.calls(),
        [
            "start web",
            "stop db",
            "restart web",
            "power reboot",
            "power poweroff"
        ]
    );
}

#[test]
fn missing_socket_asks_whether_cairn_init_runs() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing-here.sock");
    let output = cairnctl(&socket, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.starts_with("cairnctl: cannot connect to "), "{text}");
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("is cairn-init running?"), "{text}");
    assert_eq!(text.matches("No such file").count(), 1, "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unused.sock");
    assert_eq!(cairnctl(&socket, &["logs"]).status.code(), Some(2));
    assert_eq!(cairnctl(&socket, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(cairnctl(&socket, &["notify"]).status.code(), Some(2));
}

fn notify(notify_socket: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairnctl"));
    command.arg("notify").args(args).env_remove("NOTIFY_SOCKET");
    if let Some(target) = notify_socket {
        command.env("NOTIFY_SOCKET", target);
    }
    command.output().unwrap()
}

fn receive(socket: &UnixDatagram) -> Vec<u8> {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn notify_sends_one_datagram_to_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let output = notify(
        Some(path.to_str().unwrap()),
        &["--ready", "STATUS=warming up", "MAINPID=7"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(receive(&receiver), b"READY=1\nSTATUS=warming up\nMAINPID=7");

    let output = notify(Some(path.to_str().unwrap()), &["--ready"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(receive(&receiver), b"READY=1");
}

#[test]
fn notify_supports_abstract_sockets() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("cairnctl-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let receiver = UnixDatagram::bind_addr(&address).unwrap();
    let output = notify(Some(&format!("@{name}")), &["STATUS=ok", "READY=1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(receive(&receiver), b"STATUS=ok\nREADY=1");
}

#[test]
fn notify_errors_are_clear() {
    let output = notify(None, &["--ready"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("cairnctl: NOTIFY_SOCKET is not set"),
        "{}",
        stderr(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let _receiver = UnixDatagram::bind(&path).unwrap();
    let output = notify(Some(path.to_str().unwrap()), &["READY"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "cairnctl: invalid assignment \"READY\" (expected KEY=VALUE on one line)\n"
    );

    let output = notify(Some(dir.path().join("absent").to_str().unwrap()), &["A=1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("cairnctl: cannot send to NOTIFY_SOCKET "),
        "{}",
        stderr(&output)
    );
}

/// In the child role: serve a fake whose `web` log grows by one line every 100 ms, for at
/// most 30 s (the parent kills us long before).
fn serve_growing_logs(socket: &Path) {
    let fake = Fake::new();
    serve_init(socket, fake.clone()).unwrap();
    for tick in 1..=300u64 {
        std::thread::sleep(Duration::from_millis(100));
        let mut logs = fake.logs.lock().unwrap();
        let seq = logs.len() as u64 + 1;
        logs.push(log_line(seq, seq * 1001, &format!("tick {tick}")));
    }
}

#[test]
fn logs_follow_prints_new_lines_and_fails_when_the_server_goes_away() {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        assert_eq!(role, "server");
        serve_growing_logs(Path::new(&std::env::var_os(SOCKET_VAR).unwrap()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args([
            "logs_follow_prints_new_lines_and_fails_when_the_server_goes_away",
            "--exact",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, "server")
        .env(SOCKET_VAR, &socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "server child never bound");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut follower = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("--control")
        .arg(&socket)
        .args(["logs", "web", "-n", "1", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.ends_with("line 5") || first.contains("tick"),
        "{first}"
    );
    // Three more lines appended after the follower started.
    let mut ticks = Vec::new();
    while ticks.len() < 3 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.contains("] tick "), "{line}");
        ticks.push(line);
    }

    server.kill().unwrap();
    server.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "follower did not notice");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.starts_with(
            "cairnctl: lost cairn-init while following logs: Logs: connection to cairn-init lost"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    eprintln!("follower said: {err}");
    drop(dir);
}

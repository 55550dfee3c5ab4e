//! End-to-end tests of the control server and client over real unix sockets.
//!
//! A fake backend is served with `serve_init` on a socket in a temp dir. Two tests re-run
//! this test binary as a child process (selected by `CAIRN_CONTROL_TEST_ROLE`): one drops the
//! child to uid 65534 to check the uid rule (needs root, fails loudly without), one checks
//! that `serve_init` leaves signals alone and starts exactly one thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_control::{
    BackendError, ClientError, InitBackend, InitClient, LogLine, MAX_LOG_LINES_PER_CALL,
    MAX_ROOT_CONNECTIONS, PowerAction, ServerError, ServiceStatus, error_names, serve_init,
};

const ROLE_VAR: &str = "CAIRN_CONTROL_TEST_ROLE";
const SOCKET_VAR: &str = "CAIRN_CONTROL_TEST_SOCKET";

/// A supervisor stand-in: two services, `web` with ten log lines, and a call journal.
struct Fake {
    services: Vec<ServiceStatus>,
    logs: HashMap<String, Vec<LogLine>>,
    calls: Mutex<Vec<String>>,
    list_delay: Duration,
}

fn services() -> Vec<ServiceStatus> {
    vec![
        ServiceStatus {
            name: "web".into(),
            state: "ready".into(),
            pid: 4242,
            restarts: 3,
            ready: true,
            detail: "listening on :80 — ünïcode".into(),
        },
        ServiceStatus {
            name: "db".into(),
            state: "backoff".into(),
            pid: 0,
            restarts: u32::MAX,
            ready: false,
            detail: String::new(),
        },
    ]
}

fn web_logs() -> Vec<LogLine> {
    (1..=10)
        .map(|seq| LogLine {
            seq,
            t_ms: seq * 1500,
            stream: if seq % 2 == 0 { "stderr" } else { "stdout" }.into(),
            text: format!("line {seq}"),
        })
        .collect()
}

impl Fake {
    fn new() -> Arc<Self> {
        Self::with_list_delay(Duration::ZERO)
    }

    fn with_list_delay(list_delay: Duration) -> Arc<Self> {
        Arc::new(Fake {
            services: services(),
            logs: HashMap::from([("web".to_owned(), web_logs()), ("db".to_owned(), vec![])]),
            calls: Mutex::new(Vec::new()),
            list_delay,
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn known(&self, name: &str) -> Result<(), BackendError> {
        match name {
            "web" | "db" => Ok(()),
            "stopping" => Err(BackendError::ShuttingDown),
            "broken" => Err(BackendError::Internal("disk on fire".into())),
            _ => Err(BackendError::UnknownService(name.into())),
        }
    }
}

impl InitBackend for Fake {
    fn list_services(&self) -> Vec<ServiceStatus> {
        std::thread::sleep(self.list_delay);
        self.services.clone()
    }
    fn start(&self, name: &str) -> Result<(), BackendError> {
        self.known(name)?;
        self.record(format!("start {name}"));
        Ok(())
    }
    fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.known(name)?;
        self.record(format!("stop {name}"));
        Ok(())
    }
    fn restart(&self, name: &str) -> Result<(), BackendError> {
        self.known(name)?;
        self.record(format!("restart {name}"));
        Ok(())
    }
    fn logs(&self, name: &str, after_seq: u64, max: u32) -> Result<Vec<LogLine>, BackendError> {
        self.known(name)?;
        self.record(format!("logs {name} {after_seq} {max}"));
        Ok(self.logs[name]
            .iter()
            .filter(|l| l.seq > after_seq)
            .take(max as usize)
            .cloned()
            .collect())
    }
    fn power(&self, action: PowerAction) -> Result<(), BackendError> {
        self.record(format!("power {}", action.as_str()));
        Ok(())
    }
}

/// A served fake; the temp dir lives as long as this.
struct Served {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    fake: Arc<Fake>,
}

fn serve(fake: Arc<Fake>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/cairn/control.sock");
    serve_init(&socket, fake.clone()).unwrap();
    Served {
        _dir: dir,
        socket,
        fake,
    }
}

/// Reads until EOF or `deadline`; returns whether the peer closed the connection.
fn closed_within(stream: &mut UnixStream, deadline: Duration) -> bool {
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if start.elapsed() > deadline {
            return false;
        }
    }
}

/// Runs the authentication handshake by hand; returns the stream after `BEGIN`.
fn raw_authenticated(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // EXTERNAL's response is our uid in decimal, hex-encoded: uid 0 is "30".
    let uid: String = nix::unistd::getuid()
        .as_raw()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    stream
        .write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
        .unwrap();
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).unwrap();
    assert!(reply[..n].starts_with(b"OK "), "{:?}", &reply[..n]);
    stream.write_all(b"BEGIN\r\n").unwrap();
    stream
}

#[test]
fn list_services_round_trips_exact_values() {
    let served = serve(Fake::new());
    let client = InitClient::connect(&served.socket).unwrap();
    assert_eq!(client.list_services().unwrap(), services());
}

#[test]
fn logs_respect_after_seq_and_max() {
    let served = serve(Fake::new());
    let client = InitClient::connect(&served.socket).unwrap();
    let all = client.logs("web", 0, 100).unwrap();
    assert_eq!(all, web_logs());
    let page = client.logs("web", 4, 3).unwrap();
    assert_eq!(
        page.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert_eq!(page[0], web_logs()[4]);
    assert!(client.logs("web", 10, 100).unwrap().is_empty());
    assert!(client.logs("db", 0, 100).unwrap().is_empty());
    // The server caps `max` before it reaches the backend.
    client.logs("web", 0, u32::MAX).unwrap();
    assert!(
        served
            .fake
            .calls()
            .contains(&format!("logs web 0 {MAX_LOG_LINES_PER_CALL}")),
        "{:?}",
        served.fake.calls()
    );
}

#[test]
fn mutating_calls_reach_the_backend_for_root() {
    let served = serve(Fake::new());
    let client = InitClient::connect(&served.socket).unwrap();
    client.start("web").unwrap();
    client.stop("db").unwrap();
    client.restart("web").unwrap();
    client.power(PowerAction::Reboot).unwrap();
    client.power(PowerAction::Poweroff).unwrap();
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
fn unknown_service_maps_to_client_error() {
    let served = serve(Fake::new());
    let client = InitClient::connect(&served.socket).unwrap();
    for result in [
        client.start("nope"),
        client.stop("nope"),
        client.restart("nope"),
        client.logs("nope", 0, 1).map(drop),
    ] {
        match result {
            Err(ClientError::UnknownService(name)) => assert_eq!(name, "nope"),
            other => panic!("expected UnknownService, got {other:?}"),
        }
    }
    assert_eq!(
        client.start("nope").unwrap_err().to_string(),
        "no such service \"nope\""
    );
}

#[test]
fn other_backend_errors_keep_their_name_and_message() {
    let served = serve(Fake::new());
    let client = InitClient::connect(&served.socket).unwrap();
    match client.start("stopping") {
        Err(ClientError::DBus { name, message }) => {
            assert_eq!(name, error_names::SHUTTING_DOWN);
            assert_eq!(message, "cairn-init is shutting down");
        }
        other => panic!("expected ShuttingDown, got {other:?}"),
    }
    match client.restart("broken") {
        Err(ClientError::DBus { name, message }) => {
            assert_eq!(name, error_names::FAILED);
            assert_eq!(message, "cairn-init failed: disk on fire");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// Calls `method` with a raw zbus connection, for arguments the typed client cannot send.
fn raw_call_error(socket: &Path, method: &str, arg: &str) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let conn = zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .build()
            .await
            .unwrap();
        let error = conn
            .call_method(
                None::<&str>,
                cairn_control::INIT_PATH,
                Some(cairn_control::INIT_INTERFACE),
                method,
                &(arg,),
            )
            .await
            .unwrap_err();
        match error {
            zbus::Error::MethodError(name, message, _) => {
                (name.to_string(), message.unwrap_or_default())
            }
            other => panic!("expected a method error, got {other:?}"),
        }
    })
}

#[test]
fn bad_arguments_are_invalid_argument() {
    let served = serve(Fake::new());
    let (name, message) = raw_call_error(&served.socket, "Power", "dance");
    assert_eq!(name, error_names::INVALID_ARGUMENT);
    assert!(message.contains("\"dance\""), "{message}");
    let (name, _) = raw_call_error(&served.socket, "Start", "");
    assert_eq!(name, error_names::INVALID_ARGUMENT);
    assert!(served.fake.calls().is_empty());
}

#[test]
fn concurrent_clients_are_all_served() {
    let served = serve(Fake::new());
    let socket = served.socket.clone();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let client = InitClient::connect(&socket).unwrap();
                for _ in 0..25 {
                    assert_eq!(client.list_services().unwrap(), services());
                    assert_eq!(client.logs("web", i, 1).unwrap()[0].seq, i + 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn garbage_and_hanging_clients_do_not_block_others() {
    let served = serve(Fake::new());
    // Half a handshake line, then silence.
    let mut hanging = UnixStream::connect(&served.socket).unwrap();
    hanging.write_all(b"\0AUTH EXTER").unwrap();
    // Connected, never sends anything.
    let _silent = UnixStream::connect(&served.socket).unwrap();
    // Garbage that would panic zbus's own handshake (LF as the first byte), then hangs.
    let mut garbage = UnixStream::connect(&served.socket).unwrap();
    garbage.write_all(b"\n\xff\xfe\x00garbage\r\n").unwrap();
    // Authenticated, then bytes that are not a D-Bus message.
    let mut bad_message = raw_authenticated(&served.socket);
    bad_message.write_all(b"this is not a header").unwrap();

    let start = Instant::now();
    let client = InitClient::connect(&served.socket).unwrap();
    assert_eq!(client.list_services().unwrap(), services());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    assert!(closed_within(&mut garbage, Duration::from_secs(2)));
    assert!(closed_within(&mut bad_message, Duration::from_secs(2)));
    // Still pending, and still harmless.
    assert_eq!(client.list_services().unwrap(), services());
}

#[test]
fn silent_connections_are_dropped_after_the_handshake_timeout() {
    let served = serve(Fake::new());
    let mut silent = UnixStream::connect(&served.socket).unwrap();
    let start = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

/// A method call message serialized by zbus, to send over a raw socket.
fn list_services_message() -> Vec<u8> {
    let msg = zbus::Message::method_call(cairn_control::INIT_PATH, "ListServices")
        .unwrap()
        .interface(cairn_control::INIT_INTERFACE)
        .unwrap()
        .build(&())
        .unwrap();
    msg.data().to_vec()
}

#[test]
fn oversized_message_header_closes_the_connection() {
    let served = serve(Fake::new());

    // Control: the hand-made handshake plus a real message gets a method return (type 2).
    let mut ok = raw_authenticated(&served.socket);
    ok.write_all(&list_services_message()).unwrap();
    let mut reply = [0u8; 16];
    ok.read_exact(&mut reply).unwrap();
    assert_eq!(reply[1], 2, "method return: {reply:?}");

    // A header announcing a 100 MiB body: without the frame guard zbus would allocate it and
    // wait for the body; with it the server hangs up at once.
    let mut big = raw_authenticated(&served.socket);
    let mut header = vec![b'l', 1, 0, 1];
    header.extend_from_slice(&(100u32 << 20).to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&8u32.to_le_bytes());
    big.write_all(&header).unwrap();
    assert!(closed_within(&mut big, Duration::from_secs(2)));

    let client = InitClient::connect(&served.socket).unwrap();
    assert_eq!(client.list_services().unwrap(), services());
}

#[test]
fn connection_limit_applies_and_frees_slots() {
    let served = serve(Fake::new());
    let idle: Vec<_> = (0..MAX_ROOT_CONNECTIONS)
        .map(|_| UnixStream::connect(&served.socket).unwrap())
        .collect();
    let refused = InitClient::connect_with_timeout(&served.socket, Duration::from_secs(3));
    assert!(
        matches!(refused, Err(ClientError::Handshake { .. })),
        "{refused:?}"
    );
    drop(idle);
    // The server notices the closed sockets on its next read; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match InitClient::connect(&served.socket) {
            Ok(client) => {
                assert_eq!(client.list_services().unwrap(), services());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("slots were not freed: {e}"),
        }
    }
}

#[test]
fn socket_setup_creates_dir_sets_mode_and_replaces_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("a/b/control.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A stale socket: bound, then its listener dropped.
    drop(UnixListener::bind(&socket).unwrap());
    let server = serve_init(&socket, Fake::new()).unwrap();
    assert_eq!(server.socket(), socket);
    assert_eq!(server.thread().name(), Some("cairn-control"));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    assert_eq!(
        InitClient::connect(&socket)
            .unwrap()
            .list_services()
            .unwrap(),
        services()
    );

    // A live server is not replaced.
    match serve_init(&socket, Fake::new()) {
        Err(e @ ServerError::InUse { .. }) => {
            assert!(e.to_string().contains(&socket.display().to_string()));
        }
        other => panic!("expected InUse, got {other:?}"),
    }

    // Nor is a regular file.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    assert!(matches!(
        serve_init(&file, Fake::new()),
        Err(ServerError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    // Parent that cannot be created.
    let blocked = file.join("control.sock");
    match serve_init(&blocked, Fake::new()) {
        Err(e @ ServerError::CreateDir { .. }) => {
            assert!(e.to_string().contains("not-a-socket"), "{e}");
        }
        other => panic!("expected CreateDir, got {other:?}"),
    }
}

#[test]
fn connecting_to_a_missing_socket_says_whether_init_runs() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("missing.sock");
    let error = InitClient::connect(&socket).unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("is cairn-init running?"), "{text}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("wedged.sock");
    // Bound and listening, but nobody accepts or answers.
    let _listener = UnixListener::bind(&socket).unwrap();
    let start = Instant::now();
    let error = InitClient::connect_with_timeout(&socket, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_slow_call_times_out() {
    let served = serve(Fake::with_list_delay(Duration::from_secs(2)));
    let client =
        InitClient::connect_with_timeout(&served.socket, Duration::from_millis(300)).unwrap();
    let error = client.list_services().unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("ListServices"), "{error}");
}

// ---- Tests that re-run this binary as a child process. ----

/// Runs this test binary again, only `test`, with `role` set; returns (success, stdout+stderr).
fn rerun(test: &str, role: &str, socket: &Path, uid: Option<u32>) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(SOCKET_VAR, socket);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE_VAR).ok()?;
    let socket = std::env::var_os(SOCKET_VAR).expect("role without socket");
    Some((role, PathBuf::from(socket)))
}

#[test]
fn mutating_calls_need_uid_0() {
    if let Some((role, socket)) = role() {
        assert_eq!(role, "uid-65534");
        assert_eq!(nix::unistd::getuid().as_raw(), 65534);
        let client = InitClient::connect(&socket).unwrap();
        assert_eq!(client.list_services().unwrap(), services());
        assert_eq!(client.logs("web", 8, 10).unwrap().len(), 2);
        for (method, result) in [
            ("Start", client.start("web")),
            ("Stop", client.stop("web")),
            ("Restart", client.restart("web")),
            ("Power", client.power(PowerAction::Reboot)),
        ] {
            match result {
                Err(ClientError::AccessDenied(message)) => {
                    assert!(message.contains("uid 65534"), "{message}");
                    assert!(message.contains(method), "{message}");
                }
                other => panic!("{method}: expected AccessDenied, got {other:?}"),
            }
        }
        // Unknown names are not revealed either: the uid check comes first.
        assert!(matches!(
            client.start("nope"),
            Err(ClientError::AccessDenied(_))
        ));
        println!("CHILD-DONE");
        return;
    }

    assert!(
        nix::unistd::geteuid().is_root(),
        "mutating_calls_need_uid_0 must run as root: it starts a client as uid 65534 to check \
         that the server refuses it (run `cargo test` as root)"
    );
    let served = serve(Fake::new());
    // The child (uid 65534) must reach the socket through the temp dir.
    let dir = served.socket.ancestors().nth(3).unwrap();
    for d in served.socket.ancestors().skip(1).take(3) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(dir.exists());
    let (ok, output) = rerun(
        "mutating_calls_need_uid_0",
        "uid-65534",
        &served.socket,
        Some(65534),
    );
    assert!(ok, "child failed:\n{output}");
    assert!(
        output.contains("CHILD-DONE"),
        "child did not run:\n{output}"
    );
    // Only the reads reached the backend.
    assert_eq!(served.fake.calls(), ["logs web 8 10"]);
    // And root on the same server may change things.
    InitClient::connect(&served.socket)
        .unwrap()
        .start("web")
        .unwrap();
    assert_eq!(served.fake.calls(), ["logs web 8 10", "start web"]);
}

/// `(tid, comm)` of every thread of this process.
fn threads() -> Vec<(String, String)> {
    let mut threads: Vec<_> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|entry| {
            let tid = entry.unwrap().file_name().into_string().unwrap();
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
            (tid, comm.trim_end().to_owned())
        })
        .collect();
    threads.sort();
    threads
}

/// Numbers of this process's open file descriptors.
fn open_fds() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().to_str()?.parse().ok())
        .collect()
}

/// One `Key:\tvalue` line of a `/proc/.../status` file.
fn status_field(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn serve_init_starts_one_thread_and_leaves_signals_alone() {
    if let Some((role, socket)) = role() {
        assert_eq!(role, "footprint");
        // Like PID 1: block every signal first, then start the server.
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&nix::sys::signal::SigSet::all()),
            None,
        )
        .unwrap();
        let my_mask = status_field("/proc/thread-self/status", "SigBlk");
        let caught = status_field("/proc/self/status", "SigCgt");
        let ignored = status_field("/proc/self/status", "SigIgn");
        let before = threads();
        let fds_before = open_fds();

        let server = serve_init(&socket, Fake::new()).unwrap();
        let client = InitClient::connect(&socket).unwrap();
        assert_eq!(client.list_services().unwrap(), services());
        client.start("web").unwrap();
        assert_eq!(client.logs("web", 0, 3).unwrap().len(), 3);

        // Every descriptor the server opened (listener, runtime, connections) is close-on-exec,
        // so services started by PID 1 cannot inherit a connection authenticated as root.
        let new_fds: Vec<_> = open_fds().difference(&fds_before).copied().collect();
        assert!(
            new_fds.len() >= 3,
            "listener, runtime, connections: {new_fds:?}"
        );
        for fd in new_fds {
            let info = format!("/proc/self/fdinfo/{fd}");
            if !Path::new(&info).exists() {
                continue; // the directory handle `open_fds` itself used
            }
            let flags = status_field(&info, "flags");
            let flags = u32::from_str_radix(&flags, 8).unwrap();
            assert_ne!(flags & 0o2000000, 0, "fd {fd} is not O_CLOEXEC");
        }

        let after = threads();
        let new: Vec<_> = after.iter().filter(|t| !before.contains(t)).collect();
        assert_eq!(new.len(), 1, "new threads: {new:?}");
        assert_eq!(new[0].1, "cairn-control");
        assert_eq!(server.thread().name(), Some("cairn-control"));
        let tid = &new[0].0;
        assert_eq!(
            status_field(&format!("/proc/self/task/{tid}/status"), "SigBlk"),
            my_mask,
            "the control thread inherits the caller's signal mask"
        );
        assert_eq!(status_field("/proc/thread-self/status", "SigBlk"), my_mask);
        assert_eq!(status_field("/proc/self/status", "SigCgt"), caught);
        assert_eq!(status_field("/proc/self/status", "SigIgn"), ignored);
        // Connections coming and going start no threads either.
        drop(client);
        for _ in 0..3 {
            let client = InitClient::connect(&socket).unwrap();
            assert_eq!(client.list_services().unwrap(), services());
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(threads(), after, "threads changed after reconnects");
        for (tid, _) in &after {
            let children =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).unwrap();
            assert_eq!(children.trim(), "", "thread {tid} started processes");
        }
        println!("CHILD-DONE");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let (ok, output) = rerun(
        "serve_init_starts_one_thread_and_leaves_signals_alone",
        "footprint",
        &socket,
        None,
    );
    assert!(ok, "child failed:\n{output}");
    assert!(
        output.contains("CHILD-DONE"),
        "child did not run:\n{output}"
    );
}

/// `RssAnon` of process `pid`, in kB.
fn rss_anon_kb(pid: u32) -> u64 {
    status_field(&format!("/proc/{pid}/status"), "RssAnon")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_client_that_never_reads_replies_cannot_grow_server_memory() {
    if let Some((role, socket)) = role() {
        assert_eq!(role, "server");
        serve_init(&socket, Fake::new()).unwrap();
        // The parent kills us; this bound only matters if it does not.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let mut server = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_client_that_never_reads_replies_cannot_grow_server_memory",
            "--exact",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, "server")
        .env(SOCKET_VAR, &socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        let client = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match InitClient::connect(&socket) {
                    Ok(client) => break client,
                    Err(e) => assert!(Instant::now() < deadline, "server never came up: {e}"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        assert_eq!(client.list_services().unwrap(), services());
        let before = rss_anon_kb(server.id());

        // Pipelined calls, replies never read: Peer.Ping (which zbus's object server would
        // answer in a task per call) and ListServices.
        let mut flood = raw_authenticated(&socket);
        let ping = zbus::Message::method_call("/", "Ping")
            .unwrap()
            .interface("org.freedesktop.DBus.Peer")
            .unwrap()
            .build(&())
            .unwrap();
        let mut burst = Vec::new();
        for _ in 0..200 {
            burst.extend_from_slice(ping.data());
            burst.extend_from_slice(&list_services_message());
        }
        flood
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_secs(2) {
            match flood.write(&burst) {
                Ok(n) => sent += n,
                Err(_) => break, // our send buffer is full: the server stopped reading
            }
        }
        let after = rss_anon_kb(server.id());
        // Others are still served while the flood connection is stalled.
        assert_eq!(client.list_services().unwrap(), services());
        assert!(
            after < before + 8 * 1024,
            "server RssAnon grew from {before} kB to {after} kB after {sent} bytes of calls"
        );
        // The server stopped reading long before 2 s of flooding could be absorbed.
        assert!(sent < 64 << 20, "server kept reading: {sent} bytes");
    });
    server.kill().unwrap();
    server.wait().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

//! End-to-end tests of `org.cairn.Vip1`: a fake cairn-vipd served with `serve_vip` on a temp
//! socket, read with `VipClient` and with raw zbus calls. One test re-runs this binary as uid
//! 65534 (needs root, fails loudly without) to check that every uid may read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_control::{
    ClientError, InitClient, VIP_INTERFACE, VIP_PATH, VipBackend, VipClient, VipInstanceStatus,
    serve_vip,
};

const ROLE_VAR: &str = "CAIRN_VIP_TEST_ROLE";
const SOCKET_VAR: &str = "CAIRN_VIP_TEST_SOCKET";

fn instances() -> Vec<VipInstanceStatus> {
    vec![
        VipInstanceStatus {
            name: "lb-v4".into(),
            vrid: 51,
            interface: "eth1".into(),
            state: "master".into(),
            priority: 100,
            effective_priority: 90,
            master: "192.0.2.2".into(),
            vips: vec!["192.0.2.10/24".into(), "192.0.2.11/24".into()],
            checks: vec![
                "haproxy=ok".into(),
                "dns=failing (timeout — ünïcode)".into(),
            ],
            counters: vec![
                ("adverts_rx".into(), 0),
                ("adverts_tx".into(), u64::MAX),
                ("dropped_bad_checksum".into(), 3),
            ],
            in_state_ms: 125_000,
            maintenance: false,
        },
        VipInstanceStatus {
            name: "lb-v6".into(),
            vrid: 255,
            interface: "eth2".into(),
            state: "initialize".into(),
            priority: 255,
            effective_priority: 0,
            master: String::new(),
            vips: vec![],
            checks: vec![],
            counters: vec![],
            in_state_ms: 0,
            maintenance: false,
        },
    ]
}

/// A cairn-vipd stand-in that counts the calls reaching it and records maintenance switches.
#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
    maintenance: std::sync::Mutex<Vec<bool>>,
}

impl VipBackend for Fake {
    fn instances(&self) -> Vec<VipInstanceStatus> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        instances()
    }

    fn set_maintenance(&self, on: bool) -> Result<(), cairn_control::BackendError> {
        self.maintenance.lock().unwrap().push(on);
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
    let socket = dir.path().join("run/cairn/vipd.sock");
    let fake = Arc::new(Fake::default());
    let server = serve_vip(&socket, fake.clone()).unwrap();
    assert_eq!(server.socket(), socket);
    assert_eq!(server.thread().name(), Some("cairn-control"));
    Served {
        _dir: dir,
        socket,
        fake,
    }
}

#[test]
fn instances_round_trip_exact_values() {
    let served = serve();
    let mode = std::fs::metadata(&served.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
    let client = VipClient::connect(&served.socket).unwrap();
    assert_eq!(client.instances().unwrap(), instances());
    assert_eq!(client.instances().unwrap(), instances());
    assert_eq!(served.fake.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn root_switches_maintenance_on_and_off() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "root_switches_maintenance_on_and_off must run as root: SetMaintenance needs uid 0"
    );
    let served = serve();
    let client = VipClient::connect(&served.socket).unwrap();
    client.set_maintenance(true).unwrap();
    client.set_maintenance(false).unwrap();
    assert_eq!(*served.fake.maintenance.lock().unwrap(), vec![true, false]);
}

/// Calls `member` of `interface` at `path` with a raw zbus connection; returns the reply's
/// body signature and, for a string body, the string, or the error name and message.
fn raw_call(
    socket: &Path,
    path: &str,
    interface: &str,
    member: &str,
) -> Result<(String, Option<String>), (String, String)> {
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
        match conn
            .call_method(None::<&str>, path, Some(interface), member, &())
            .await
        {
            Ok(reply) => {
                let body = reply.body();
                let signature = body.signature().to_string();
                let text = body.deserialize::<String>().ok();
                Ok((signature, text))
            }
            Err(zbus::Error::MethodError(name, message, _)) => {
                Err((name.to_string(), message.unwrap_or_default()))
            }
            Err(other) => panic!("expected a reply or method error, got {other:?}"),
        }
    })
}

#[test]
fn introspect_ping_and_foreign_calls() {
    let served = serve();
    let (signature, xml) = raw_call(
        &served.socket,
        VIP_PATH,
        "org.freedesktop.DBus.Introspectable",
        "Introspect",
    )
    .unwrap();
    assert_eq!(signature, "s");
    let xml = xml.unwrap();
    assert!(xml.contains("<interface name=\"org.cairn.Vip1\">"), "{xml}");
    assert!(xml.contains("type=\"a(syssyysasasa(st)tb)\""), "{xml}");

    let (signature, _) =
        raw_call(&served.socket, "/", "org.freedesktop.DBus.Peer", "Ping").unwrap();
    assert_eq!(signature, "");
    let (signature, _) = raw_call(&served.socket, VIP_PATH, VIP_INTERFACE, "Instances").unwrap();
    assert_eq!(signature, "a(syssyysasasa(st)tb)");

    // Properties are not implemented (there are none), as on Init1.
    let (name, message) = raw_call(
        &served.socket,
        VIP_PATH,
        "org.freedesktop.DBus.Properties",
        "GetAll",
    )
    .unwrap_err();
    assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod");
    assert!(
        message.contains("org.freedesktop.DBus.Properties"),
        "{message}"
    );
    let (name, message) = raw_call(&served.socket, "/", VIP_INTERFACE, "Instances").unwrap_err();
    assert_eq!(name, "org.freedesktop.DBus.Error.UnknownObject");
    assert_eq!(message, "no object at /; cairn-vipd serves /org/cairn/Vip1");
    assert_eq!(served.fake.calls.load(Ordering::SeqCst), 1);

    // An Init1 client pointed at cairn-vipd's socket gets a clear error, not a hang.
    let init = InitClient::connect(&served.socket).unwrap();
    match init.list_services() {
        Err(ClientError::DBus { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod");
            assert_eq!(message, "unknown interface org.cairn.Init1");
        }
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
}

#[test]
fn the_hardened_machinery_guards_vip1_too() {
    let served = serve();
    // A header announcing a 100 MiB body is refused at once, as on Init1.
    let mut big = UnixStream::connect(&served.socket).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let uid: String = nix::unistd::getuid()
        .as_raw()
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    big.write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
        .unwrap();
    let mut reply = [0u8; 64];
    let n = big.read(&mut reply).unwrap();
    assert!(reply[..n].starts_with(b"OK "), "{:?}", &reply[..n]);
    big.write_all(b"BEGIN\r\n").unwrap();
    let mut header = vec![b'l', 1, 0, 1];
    header.extend_from_slice(&(100u32 << 20).to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&8u32.to_le_bytes());
    big.write_all(&header).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    match big.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to hang up, got {other:?}"),
    }
    let client = VipClient::connect(&served.socket).unwrap();
    assert_eq!(client.instances().unwrap(), instances());
}

#[test]
fn init1_and_vip1_servers_run_side_by_side() {
    struct NoServices;
    impl cairn_control::InitBackend for NoServices {
        fn list_services(&self) -> Vec<cairn_control::ServiceStatus> {
            vec![]
        }
        fn start(&self, _: &str) -> Result<(), cairn_control::BackendError> {
            Ok(())
        }
        fn stop(&self, _: &str) -> Result<(), cairn_control::BackendError> {
            Ok(())
        }
        fn restart(&self, _: &str) -> Result<(), cairn_control::BackendError> {
            Ok(())
        }
        fn logs(
            &self,
            _: &str,
            _: u64,
            _: u32,
        ) -> Result<Vec<cairn_control::LogLine>, cairn_control::BackendError> {
            Ok(vec![])
        }
        fn power(&self, _: cairn_control::PowerAction) -> Result<(), cairn_control::BackendError> {
            Ok(())
        }
    }
    let served = serve();
    let control = served.socket.with_file_name("control.sock");
    cairn_control::serve_init(&control, Arc::new(NoServices)).unwrap();
    let init = InitClient::connect(&control).unwrap();
    let vip = VipClient::connect(&served.socket).unwrap();
    assert_eq!(init.list_services().unwrap(), vec![]);
    assert_eq!(vip.instances().unwrap(), instances());
    // Each socket serves only its own interface.
    assert!(VipClient::connect(&control).unwrap().instances().is_err());
}

#[test]
fn missing_socket_names_cairn_vipd() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipd.sock");
    let error = VipClient::connect(&socket).unwrap_err();
    match &error {
        ClientError::Connect { path, server, .. } => {
            assert_eq!(path, &socket);
            assert_eq!(*server, "cairn-vipd");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("is cairn-vipd running?"), "{text}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("wedged.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let error = VipClient::connect_with_timeout(&socket, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("cairn-vipd is not answering"),
        "{error}"
    );
}

#[test]
fn every_uid_may_read_instances() {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        assert_eq!(role, "uid-65534");
        assert_eq!(nix::unistd::getuid().as_raw(), 65534);
        let socket = PathBuf::from(std::env::var_os(SOCKET_VAR).unwrap());
        let client = VipClient::connect(&socket).unwrap();
        assert_eq!(client.instances().unwrap(), instances());
        match client.set_maintenance(true) {
            Err(ClientError::AccessDenied(message)) => {
                assert!(message.contains("uid 65534"), "{message}")
            }
            other => panic!("expected AccessDenied, got {other:?}"),
        }
        println!("CHILD-DONE");
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "every_uid_may_read_instances must run as root: it starts a client as uid 65534 to \
         check that Vip1 is open to it (run `cargo test` as root)"
    );
    let served = serve();
    for d in served.socket.ancestors().skip(1).take(3) {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "every_uid_may_read_instances",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, "uid-65534")
        .env(SOCKET_VAR, &served.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{text}");
    assert!(text.contains("CHILD-DONE"), "child did not run:\n{text}");
    assert_eq!(served.fake.calls.load(Ordering::SeqCst), 1);
    assert!(served.fake.maintenance.lock().unwrap().is_empty());
}

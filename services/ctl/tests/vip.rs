//! Runs the built `cairnctl vip` against a fake cairn-vipd served with `serve_vip` in this
//! test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use cairn_control::{VipBackend, VipClient, VipInstanceStatus, serve_vip};

struct Fake;

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
            checks: vec!["haproxy=ok".into(), "dns=failing (timeout)".into()],
            counters: vec![
                ("adverts_rx".into(), 0),
                ("adverts_tx".into(), 12),
                ("dropped_bad_checksum".into(), 3),
            ],
            in_state_ms: 3_725_000,
            maintenance: false,
        },
        VipInstanceStatus {
            name: "lb-v6".into(),
            vrid: 52,
            interface: "eth1".into(),
            state: "backup".into(),
            priority: 50,
            effective_priority: 50,
            master: "2001:db8::1".into(),
            vips: vec!["2001:db8::10/64".into()],
            checks: vec![],
            counters: vec![("adverts_rx".into(), 0)],
            in_state_ms: 4_200,
            maintenance: false,
        },
    ]
}

impl VipBackend for Fake {
    fn instances(&self) -> Vec<VipInstanceStatus> {
        instances()
    }

    fn set_maintenance(&self, _on: bool) -> Result<(), cairn_control::BackendError> {
        Err(cairn_control::BackendError::Internal(
            "not in this test".into(),
        ))
    }
}

struct Served {
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipd.sock");
    serve_vip(&socket, Arc::new(Fake)).unwrap();
    Served { _dir: dir, socket }
}

fn cairnctl_vip(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .arg("vip")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("CAIRN_VIPD")
        .env_remove("CAIRN_CONTROL")
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
fn vip_prints_the_table_checks_and_non_zero_counters() {
    let served = serve();
    let output = cairnctl_vip(&served.socket, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "NAME   VRID  IF    STATE   PRIO(eff/conf)  MASTER       VIPS                         IN-STATE\n\
         lb-v4  51    eth1  master  90/100          192.0.2.2    192.0.2.10/24,192.0.2.11/24  1h02m\n\
         lb-v6  52    eth1  backup  50/50           2001:db8::1  2001:db8::10/64              4.2s\n\
         \n\
         lb-v4:\n\
         \x20 checks:   haproxy=ok\n\
         \x20           dns=failing (timeout)\n\
         \x20 counters: adverts_tx=12\n\
         \x20           dropped_bad_checksum=3\n\
         \n\
         lb-v6:\n\
         \x20 checks:   none\n\
         \x20 counters: all zero\n"
    );
}

#[test]
fn vip_json_is_the_instances_array() {
    let served = serve();
    let output = cairnctl_vip(&served.socket, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let parsed: Vec<VipInstanceStatus> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed, instances());
    // The same values the library client reads.
    assert_eq!(
        VipClient::connect(&served.socket)
            .unwrap()
            .instances()
            .unwrap(),
        parsed
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut keys: Vec<_> = value[0].as_object().unwrap().keys().cloned().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "checks",
            "counters",
            "effective_priority",
            "in_state_ms",
            "interface",
            "maintenance",
            "master",
            "name",
            "priority",
            "state",
            "vips",
            "vrid"
        ]
    );
    assert_eq!(
        value[0]["counters"][2],
        serde_json::json!(["dropped_bad_checksum", 3])
    );
}

#[test]
fn env_var_selects_the_vip_socket() {
    let served = serve();
    let output = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
        .args(["vip", "--json"])
        .env("CAIRN_VIPD", &served.socket)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let parsed: Vec<VipInstanceStatus> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed.len(), 2);
}

#[test]
fn missing_vipd_socket_names_it_and_the_role() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vipd.sock");
    let output = cairnctl_vip(&socket, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        format!(
            "cairnctl: cannot reach cairn-vipd at {}: No such file or directory — is the lb role running?\n",
            socket.display()
        )
    );
}

#[test]
fn init_socket_is_not_a_vipd_socket() {
    // Pointing `vip` at cairn-init's socket fails with the server's reason, exit code 1.
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
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    cairn_control::serve_init(&socket, Arc::new(NoServices)).unwrap();
    let output = cairnctl_vip(&socket, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "cairnctl: unknown interface org.cairn.Vip1 (org.freedesktop.DBus.Error.UnknownMethod)\n"
    );
}

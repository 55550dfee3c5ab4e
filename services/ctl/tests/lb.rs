//! Runs the built `cairnctl lb` against Debian's haproxy 2.6 in a network lab
//! (root and /usr/sbin/haproxy needed; fails loudly without them) and against a
//! fake cairn-vipd served in this test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../haproxy/tests/lab/mod.rs"]
mod lab;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use cairn_control::{VipBackend, VipInstanceStatus, serve_vip};
use lab::HaproxyLab;

struct FakeVipd {
    state: &'static str,
}

impl VipBackend for FakeVipd {
    fn instances(&self) -> Vec<VipInstanceStatus> {
        vec![VipInstanceStatus {
            name: "lb-v4".into(),
            vrid: 51,
            interface: "eth0".into(),
            state: self.state.into(),
            priority: 100,
            effective_priority: 100,
            master: "192.0.2.10".into(),
            vips: vec!["192.0.2.100/24".into()],
            checks: vec!["haproxy=ok".into()],
            counters: vec![("adverts_tx".into(), 3)],
            in_state_ms: 61_000,
            maintenance: false,
        }]
    }

    fn set_maintenance(&self, _on: bool) -> Result<(), cairn_control::BackendError> {
        Err(cairn_control::BackendError::Internal(
            "not in this test".into(),
        ))
    }
}

fn cairnctl_lb(haproxy: &Path, vipd: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairnctl"));
    command
        .arg("lb")
        .arg("--haproxy-socket")
        .arg(haproxy)
        .arg("--vip-socket")
        .arg(vipd)
        .env_remove("CAIRN_VIPD")
        .env_remove("CAIRN_HAPROXY")
        .env_remove("CAIRN_CONTROL");
    if json {
        command.arg("--json");
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// The server line of `name` in the view (`    web1  192.0.2.21:8080  UP ...`).
fn server_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

#[test]
fn without_vipd_the_haproxy_part_is_still_shown_and_the_exit_code_is_1() {
    let lab = HaproxyLab::start();
    let vipd = lab.dir().join("no-vipd.sock");
    let output = cairnctl_lb(&lab.socket, &vipd, false);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}{}", stderr(&output));
    let vipd_error = format!(
        "cannot reach cairn-vipd at {}: No such file or directory — is the lb role running?",
        vipd.display()
    );
    assert!(
        text.starts_with(&format!("VRRP\n  error: {vipd_error}\n\nHAProxy 2.6.")),
        "{text}"
    );
    let web1 = server_line(&text, "web1");
    assert!(
        web1.starts_with("    web1  192.0.2.21:8080  UP    (L7OK 200 "),
        "{text}"
    );
    assert!(web1.ends_with("weight 1  sessions 0/0"), "{text}");
    assert_eq!(
        server_line(&text, "web2"),
        "    web2  192.0.2.22:8080  DOWN  (L4CON Connection refused)  weight 1  sessions 0/0",
        "{text}"
    );
    assert!(server_line(&text, "db2").contains("  no check  "), "{text}");
    assert!(
        text.ends_with("\ndegraded: cairn-vipd unreachable\n"),
        "{text}"
    );
    assert_eq!(stderr(&output), format!("cairnctl: {vipd_error}\n"));
}

#[test]
fn json_without_vipd_lists_the_error_and_has_haproxy() {
    let lab = HaproxyLab::start();
    let vipd = lab.dir().join("no-vipd.sock");
    let output = cairnctl_lb(&lab.socket, &vipd, true);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["vrrp"], serde_json::Value::Null);
    assert_eq!(value["errors"].as_array().unwrap().len(), 1, "{value:#}");
    assert_eq!(value["errors"][0]["source"], "cairn-vipd");
    assert_eq!(value["errors"][0]["socket"], vipd.display().to_string());
    assert_eq!(value["verdict"]["state"], "degraded");
    let haproxy = &value["haproxy"];
    assert_eq!(haproxy["socket"], lab.socket.display().to_string());
    assert!(
        haproxy["info"]["version"]
            .as_str()
            .unwrap()
            .starts_with("2.6."),
        "{value:#}"
    );
    let web = &haproxy["backends"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["status"], "UP");
    assert_eq!(web["servers"][0]["state"], "up");
    assert_eq!(web["servers"][0]["check"]["status"], "L7OK");
    assert_eq!(web["servers"][1]["state"], "down");
    assert_eq!(web["servers"][1]["check"]["info"], "Connection refused");
}

#[test]
fn master_with_haproxy_up_is_serving() {
    let lab = HaproxyLab::start();
    let vipd = lab.dir().join("vipd.sock");
    serve_vip(&vipd, Arc::new(FakeVipd { state: "master" })).unwrap();
    let output = cairnctl_lb(&lab.socket, &vipd, false);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(
        text.starts_with(
            "VRRP\n\
             \x20 NAME   VRID  IF    STATE   PRIO(eff/conf)  MASTER      VIPS            IN-STATE\n\
             \x20 lb-v4  51    eth0  master  100/100         192.0.2.10  192.0.2.100/24  1m01s\n\
             \n\
             HAProxy 2.6."
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\nserving: 2/2 backends up, 1 server down, VRRP master\n"),
        "{text}"
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn without_haproxy_the_vrrp_part_is_still_shown() {
    // No lab needed: nothing listens at the haproxy socket.
    let dir = tempfile::tempdir().unwrap();
    let vipd = dir.path().join("vipd.sock");
    let haproxy = dir.path().join("admin.sock");
    serve_vip(&vipd, Arc::new(FakeVipd { state: "backup" })).unwrap();
    let output = cairnctl_lb(&haproxy, &vipd, false);
    assert_eq!(output.status.code(), Some(1));
    let haproxy_error = format!(
        "cannot reach haproxy at {}: No such file or directory",
        haproxy.display()
    );
    assert_eq!(
        stdout(&output),
        format!(
            "VRRP\n\
             \x20 NAME   VRID  IF    STATE   PRIO(eff/conf)  MASTER      VIPS            IN-STATE\n\
             \x20 lb-v4  51    eth0  backup  100/100         192.0.2.10  192.0.2.100/24  1m01s\n\
             \n\
             HAProxy\n\
             \x20 error: {haproxy_error}\n\
             \n\
             degraded: haproxy unreachable\n"
        )
    );
    assert_eq!(stderr(&output), format!("cairnctl: {haproxy_error}\n"));
}

//! Runs the real binary: it says its line, answers TCP connections with it,
//! reaps, and exits 0 on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serves_its_line_and_stops_on_sigterm() {
    // A port unlikely to be taken, derived from our pid.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-pause"))
        .args(["--serve", &port.to_string(), "--say", "cairn-selfcheck"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "cairn-selfcheck\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = String::new();
    for _ in 0..2 {
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => {
                    got.clear();
                    s.read_to_string(&mut got).unwrap();
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot connect to cairn-pause on {port}: {e}"),
            }
        }
        assert_eq!(got, "cairn-selfcheck\n");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_arguments_exit_2() {
    let o = Command::new(env!("CARGO_BIN_EXE_cairn-pause"))
        .arg("--serve")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--serve needs a port"));
}

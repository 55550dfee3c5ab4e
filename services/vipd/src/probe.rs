//! Running health checks: the probes (TCP connect, a command, a cairn-init service's
//! readiness) and the worker threads that run them on their intervals and report to the
//! main loop through a channel plus a [`Waker`].

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Probe, Track};

/// How often a running command is polled for its exit.
const EXEC_POLL: Duration = Duration::from_millis(10);

/// One probe result for the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Index of the instance in the config.
    pub instance: usize,
    /// Index of the track in the instance.
    pub track: usize,
    /// Ok, or why the probe failed.
    pub outcome: Result<(), String>,
}

/// Wakes the main loop's `poll` from another thread: one byte on a socket pair.
#[derive(Debug, Clone)]
pub struct Waker {
    tx: Arc<UnixStream>,
}

impl Waker {
    /// A waker and the end the main loop polls and drains.
    pub fn pair() -> io::Result<(Waker, UnixStream)> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok((Waker { tx: Arc::new(tx) }, rx))
    }

    /// Wakes the main loop; a full buffer means it is awake already.
    pub fn wake(&self) {
        let _ = (&*self.tx).write(&[1]);
    }
}

/// Where the `service` probe asks cairn-init: `$CAIRN_CONTROL`, else the default socket.
pub fn init_control_socket() -> PathBuf {
    std::env::var_os("CAIRN_CONTROL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(cairn_control::DEFAULT_CONTROL_SOCKET))
}

/// Runs one probe with its time limit.
pub fn run_probe(probe: &Probe, timeout: Duration) -> Result<(), String> {
    match probe {
        Probe::Tcp(target) => probe_tcp(target, timeout),
        Probe::Exec(argv) => probe_exec(argv, timeout),
        Probe::Service(name) => probe_service(name, timeout),
    }
}

fn probe_tcp(target: &str, timeout: Duration) -> Result<(), String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?;
    let mut last = format!("{target} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                last = format!("connect to {addr}: timed out after {timeout:?}");
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn probe_exec(argv: &[String], timeout: Duration) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} timed out after {timeout:?} and was killed"
                ));
            }
            Ok(None) => std::thread::sleep(EXEC_POLL),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for {program}: {e}"));
            }
        }
    }
}

fn probe_service(name: &str, timeout: Duration) -> Result<(), String> {
    probe_service_at(&init_control_socket(), name, timeout)
}

fn probe_service_at(socket: &std::path::Path, name: &str, timeout: Duration) -> Result<(), String> {
    let client = cairn_control::InitClient::connect_with_timeout(socket, timeout)
        .map_err(|e| format!("cairn-init at {}: {e}", socket.display()))?;
    let services = client
        .list_services()
        .map_err(|e| format!("cairn-init at {}: {e}", socket.display()))?;
    match services.iter().find(|s| s.name == name) {
        Some(s) if s.ready => Ok(()),
        Some(s) => Err(format!("service {name} is {} (not ready)", s.state)),
        None => Err(format!("cairn-init has no service {name}")),
    }
}

/// Starts one thread per check: probe, report, sleep the interval, until `stop` is set.
/// `checks` holds (instance index, track index, track).
pub fn spawn_workers(
    checks: Vec<(usize, usize, Track)>,
    results: &Sender<CheckResult>,
    waker: &Waker,
    stop: &Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (instance, track, spec) in checks {
        let results = results.clone();
        let waker = waker.clone();
        let stop = Arc::clone(stop);
        let handle = std::thread::Builder::new()
            .name(format!("check-{}", spec.name))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = run_probe(&spec.probe, spec.timeout);
                    if results
                        .send(CheckResult {
                            instance,
                            track,
                            outcome,
                        })
                        .is_err()
                    {
                        return;
                    }
                    waker.wake();
                    std::thread::sleep(spec.interval);
                }
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn tcp_probe_sees_listener_and_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert_eq!(
            run_probe(&Probe::Tcp(addr.clone()), Duration::from_secs(1)),
            Ok(())
        );
        drop(listener);
        let e = run_probe(&Probe::Tcp(addr.clone()), Duration::from_secs(1)).unwrap_err();
        assert!(e.starts_with(&format!("connect to {addr}: ")), "{e}");
        let e = run_probe(
            &Probe::Tcp("no-such-host.invalid:80".into()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            e.starts_with("cannot resolve no-such-host.invalid:80"),
            "{e}"
        );
    }

    #[test]
    fn exec_probe_reports_status_and_kills_on_timeout() {
        let argv = |a: &[&str]| Probe::Exec(a.iter().map(|s| s.to_string()).collect());
        let t = Duration::from_secs(5);
        assert_eq!(run_probe(&argv(&["true"]), t), Ok(()));
        let e = run_probe(&argv(&["sh", "-c", "exit 3"]), t).unwrap_err();
        assert_eq!(e, "sh exited with exit status: 3");
        let e = run_probe(&argv(&["/nonexistent/check"]), t).unwrap_err();
        assert!(e.starts_with("cannot run /nonexistent/check: "), "{e}");
        let e = run_probe(&argv(&["sleep", "10"]), Duration::from_millis(50)).unwrap_err();
        assert_eq!(e, "sleep timed out after 50ms and was killed");
    }

    #[test]
    fn service_probe_without_init_fails_with_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("none.sock");
        let e = probe_service_at(&sock, "haproxy", Duration::from_millis(100)).unwrap_err();
        assert!(
            e.starts_with(&format!("cairn-init at {}: ", sock.display())),
            "{e}"
        );
    }

    #[test]
    fn workers_report_and_wake() {
        let (waker, mut rx) = Waker::pair().unwrap();
        let (tx, results) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let track = Track {
            name: "t".into(),
            probe: Probe::Exec(vec!["true".into()]),
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(5),
            fall: 1,
            rise: 1,
            weight: 1,
        };
        let handles = spawn_workers(vec![(3, 1, track)], &tx, &waker, &stop).unwrap();
        let first = results.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            first,
            CheckResult {
                instance: 3,
                track: 1,
                outcome: Ok(())
            }
        );
        let second = results.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second.instance, 3);
        let mut byte = [0u8; 16];
        assert!(rx.read(&mut byte).unwrap() >= 1, "the waker wrote");
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
    }
}

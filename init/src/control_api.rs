//! The control API, served from a child process instead of PID 1.
//!
//! PID 1 binds the control socket (so it exists, and clients queue, before any service
//! starts) and hands it to a child — `cairnctl serve-init-api <socket>`, which every image
//! has — that speaks D-Bus (zbus on a tokio runtime) to clients and forwards each call to
//! PID 1 over a private stream socket ([`cairn_control::relay`]).
//! PID 1's side is one thread running a blocking loop that hands each call to the main loop,
//! as the in-process server used to. So PID 1 neither runs nor even links the D-Bus,
//! async-runtime and authentication code (the linker drops it: a smaller binary, and fewer
//! of its pages in PID 1's resident set), and a fault in that code takes down the server
//! process, which PID 1 starts again, never PID 1 itself.
//!
//! The child gets the listening socket as its stdin and its end of the relay as its stdout
//! (the only way to hand a process descriptors at fixed numbers without `unsafe`).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_control::InitBackend;
use tracing::{error, warn};

/// cairnctl's subcommand that serves the control API for PID 1.
pub const SERVE_SUBCOMMAND: &str = "serve-init-api";

/// Where cairnctl is on a box.
pub const BOX_CAIRNCTL: &str = "/usr/bin/cairnctl";

/// Set at shutdown: the server process is killed with the stragglers and not started again.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Stops restarting the server process (the end of an orderly shutdown).
pub fn stop_restarting() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// The cairnctl to run the server with: the one beside this program when there is one (a
/// build tree), else [`BOX_CAIRNCTL`].
pub fn default_program() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("cairnctl"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(BOX_CAIRNCTL))
}

/// First pause before starting a server process that exited again.
const RESTART_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between restarts of a server process that keeps exiting.
const RESTART_MAX: Duration = Duration::from_secs(10);
/// A server process that ran this long counts as healthy: the next pause is the first again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Binds `socket` and keeps a control-API server process (`program serve-init-api socket`)
/// running for it, answering its calls with `backend` on a thread named `cairn-relay`.
pub fn start(
    socket: &Path,
    program: &Path,
    backend: impl InitBackend,
) -> Result<(), cairn_control::ServerError> {
    let listener = cairn_control::bind_socket(socket)?;
    let path = socket.to_path_buf();
    let program = program.to_path_buf();
    std::thread::Builder::new()
        .name("cairn-relay".to_owned())
        .spawn(move || relay(&listener, &path, &program, &backend))
        .map_err(|source| cairn_control::ServerError::Thread {
            path: socket.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Pause before the next start, after a server process that lived `lived` (`last` was the
/// previous pause).
pub fn next_pause(last: Duration, lived: Duration) -> Duration {
    if lived >= HEALTHY_AFTER {
        RESTART_FIRST
    } else {
        (last * 2).clamp(RESTART_FIRST, RESTART_MAX)
    }
}

fn relay(listener: &UnixListener, socket: &Path, program: &Path, backend: &dyn InitBackend) {
    let mut pause = Duration::ZERO;
    while !STOPPING.load(Ordering::SeqCst) {
        let started = Instant::now();
        match spawn_server(listener, socket, program) {
            Ok(mut stream) => {
                if let Err(e) = cairn_control::relay::serve_relay(&mut stream, backend) {
                    warn!(error = %e, "control API relay failed");
                }
                if STOPPING.load(Ordering::SeqCst) {
                    break;
                }
                warn!(
                    after_ms = started.elapsed().as_millis() as u64,
                    "control API server process ended; starting it again"
                );
            }
            Err(e) => error!(
                error = %e,
                program = %program.display(),
                "cannot start the control API server process"
            ),
        }
        pause = next_pause(pause, started.elapsed());
        std::thread::sleep(pause);
    }
}

/// Starts `program serve-init-api <socket>` with the listener as stdin and its end of a new
/// relay as stdout; returns PID 1's end. The process is reaped by the main loop like any
/// orphan.
fn spawn_server(listener: &UnixListener, socket: &Path, program: &Path) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let listener = OwnedFd::from(listener.try_clone()?);
    Command::new(program)
        .arg(SERVE_SUBCOMMAND)
        .arg(socket)
        .stdin(Stdio::from(listener))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_a_healthy_run_resets_the_pause() {
        let mut p = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..10 {
            p = next_pause(p, Duration::from_millis(5));
            seen.push(p.as_millis());
        }
        assert_eq!(
            seen,
            [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        assert_eq!(next_pause(p, HEALTHY_AFTER), RESTART_FIRST);
    }
}

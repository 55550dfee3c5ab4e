//! `cairn-pause`: PID 1 of a pod sandbox. It waits for SIGTERM or SIGINT
//! (then exits 0) and reaps every child that is handed to it, so the pod's
//! PID namespace never fills with zombies.
//!
//! `cairn-pause --serve PORT --say TEXT` also prints TEXT on stdout and
//! answers every TCP connection on 0.0.0.0:PORT with TEXT and a newline:
//! the k8s-node self-check uses it as its container, to read the container's
//! log and to reach it through a host port.
//!
//! Built static into the image's pause image (`/pause`), so it needs no
//! libraries in the container's root.

mod args;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cairn-pause: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    // Block the signals we wait for before any thread exists, so every
    // thread inherits the mask and they are only ever taken by `wait` below.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("cairn-pause: cannot block signals: {e}");
        return ExitCode::from(1);
    }
    if let Some(serve) = opts.serve {
        let listener = match TcpListener::bind(("0.0.0.0", serve.port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cairn-pause: cannot listen on 0.0.0.0:{}: {e}", serve.port);
                return ExitCode::from(1);
            }
        };
        let line = format!("{}\n", serve.say);
        print!("{line}");
        let _ = std::io::stdout().flush();
        std::thread::spawn(move || answer(&listener, line.as_bytes()));
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGTERM | Signal::SIGINT) => return ExitCode::SUCCESS,
            Ok(_) | Err(_) => {}
        }
    }
}

/// Answers every connection with `line`, one at a time (it is short).
fn answer(listener: &TcpListener, line: &[u8]) {
    for mut c in listener.incoming().flatten() {
        let _ = c.write_all(line);
    }
}

/// Collects every child that has exited.
fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

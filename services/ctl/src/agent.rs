//! `cairnctl agent`: runs cairnctl for the hypervisor over a virtio-serial port.
//!
//! Boxes have no shell and no SSH. On a QEMU VM the lab adds a virtio-serial
//! port named `org.cairn.control` whose host end is a unix socket only root
//! on the hypervisor can reach; this agent (a service of the base role) reads
//! one JSON request per line from it, runs this same cairnctl binary with
//! exactly the requested arguments (no shell), streams its output back and
//! ends with its exit code (format: [`frame`]). Requests are served one at a
//! time. Real hardware has no such port: the agent says so and exits 0.

mod frame;
mod port;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use frame::{Line, LineSplitter, Stream, Utf8Chunker};
use port::{Channel, Received, WriteError};

/// The virtio-serial port name the lab gives the channel.
pub const DEFAULT_PORT_NAME: &str = "org.cairn.control";

/// After the host hangs up (or before it first connects), look again this often.
const HANGUP_RETRY: Duration = Duration::from_millis(250);
/// How long to wait for the port to show up in sysfs when virtio-serial exists.
const PORT_APPEAR_WAIT: Duration = Duration::from_secs(2);
/// How often a running command's output, deadline and host are checked.
const TICK: Duration = Duration::from_millis(100);
/// After the command exited, how long to wait for its pipes to close (a
/// descendant may hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// The exit code reported for a command killed at its deadline (as timeout(1)).
const TIMED_OUT: i32 = 124;
/// After the stop signal, how long a running command may still take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The agent's stop signal (its `stop_signal` in the base role's services file). It is
/// blocked and polled rather than fatal, so that a command that makes the box shut down
/// (`reboot`, `poweroff`) still gets its exit status relayed to the host before the agent
/// exits. Blocked in every thread (children inherit the mask; cairnctl does not use it).
struct StopSignal(Option<nix::sys::signalfd::SignalFd>);

impl StopSignal {
    fn install() -> Self {
        use nix::sys::signal::{SigSet, Signal};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGHUP);
        if let Err(e) = mask.thread_block() {
            log(&format!(
                "cannot block SIGHUP ({e}); a stop ends the agent at once"
            ));
            return Self(None);
        }
        match nix::sys::signalfd::SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
        ) {
            Ok(fd) => Self(Some(fd)),
            Err(e) => {
                log(&format!(
                    "cannot watch SIGHUP ({e}); a stop ends the agent at once"
                ));
                let _ = mask.thread_unblock();
                Self(None)
            }
        }
    }

    /// Whether the stop signal has arrived (consumes it).
    fn arrived(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|fd| matches!(fd.read_signal(), Ok(Some(_))))
    }
}

/// `cairnctl agent` options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The virtio-serial port's name.
    pub port_name: String,
    /// Serve on this device or unix socket instead of finding the port (tests).
    pub device: Option<PathBuf>,
    /// The program to run instead of this cairnctl (tests).
    pub program: Option<PathBuf>,
    /// How long one command may run before it is killed.
    pub timeout: Duration,
}

fn log(message: &str) {
    eprintln!("cairnctl agent: {message}");
}

/// Serves requests until an I/O error on the port; returns at once (Ok) when
/// there is no port.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let device = match &options.device {
        Some(d) => d.clone(),
        None => match wait_for_port(Path::new(port::SYS_VIRTIO_PORTS), &options.port_name) {
            Some(d) => d,
            None => {
                println!("no host control channel; nothing to do");
                return Ok(());
            }
        },
    };
    let program = match &options.program {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find the cairnctl binary itself")?,
    };
    let mut channel = Channel::open(&device)
        .with_context(|| format!("cannot open the host control channel {}", device.display()))?;
    log(&format!(
        "serving host requests on {} ({}), one at a time, {} s per command",
        channel.path().display(),
        options.port_name,
        options.timeout.as_secs()
    ));
    let stop = StopSignal::install();
    let mut stopping = false;
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stopping || stop.arrived() {
            log("stop signal: the last answer is delivered; exiting");
            return Ok(());
        }
        let received = channel
            .read(&mut buf)
            .with_context(|| format!("reading {}", device.display()))?;
        match received {
            Received::Data(n) => {
                for line in splitter.push(&buf[..n]) {
                    if let Err(e) = serve(&mut channel, &program, options.timeout, &stop, line) {
                        log(&format!("answer not delivered: {e}"));
                        // What is left belongs to a host that went away.
                        splitter.reset();
                        break;
                    }
                    if stop.arrived() {
                        stopping = true;
                        break;
                    }
                }
            }
            Received::Idle => {}
            Received::Hangup => {
                splitter.reset();
                std::thread::sleep(HANGUP_RETRY);
            }
        }
    }
}

/// The port's device once it shows up; `None` at once when the machine has no
/// virtio-serial ports, or after [`PORT_APPEAR_WAIT`] when ours is missing.
fn wait_for_port(class_dir: &Path, name: &str) -> Option<PathBuf> {
    let since = Instant::now();
    loop {
        if let Some(dev) = port::find_port(class_dir, name).filter(|d| d.exists()) {
            return Some(dev);
        }
        if !class_dir.is_dir() || since.elapsed() >= PORT_APPEAR_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Answers one request line.
fn serve(
    channel: &mut Channel,
    program: &Path,
    timeout: Duration,
    stop: &StopSignal,
    line: Line,
) -> Result<(), WriteError> {
    let bytes = match line {
        Line::Complete(bytes) => bytes,
        Line::TooLong => {
            let e = frame::RequestError::LineTooLong.to_string();
            log(&e);
            return channel.write_all(frame::error_line(None, &e).as_bytes());
        }
    };
    match frame::parse_request(&bytes) {
        Ok(request) => {
            let stopped = execute(
                channel,
                program,
                timeout,
                stop,
                request.id.as_ref(),
                &request.args,
            )?;
            if stopped {
                // The signal was consumed while the command ran: raise it again for the
                // main loop.
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP);
            }
            Ok(())
        }
        Err((id, e)) => {
            log(&format!("refused: {e}"));
            channel.write_all(frame::error_line(id.as_ref(), &e.to_string()).as_bytes())
        }
    }
}

/// Runs the program, streams its output and sends its exit code. Returns an
/// error only when the host could not be told (it went away: the command is
/// killed then).
fn execute(
    channel: &mut Channel,
    program: &Path,
    timeout: Duration,
    stop_signal: &StopSignal,
    id: Option<&Value>,
    args: &[String],
) -> Result<bool, WriteError> {
    let started = Instant::now();
    log(&format!("running cairnctl {}", args.join(" ")));
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let e = format!("cannot run {}: {e}", program.display());
            log(&e);
            return channel
                .write_all(frame::error_line(id, &e).as_bytes())
                .map(|()| false);
        }
    };
    let mut stop_at: Option<Instant> = None;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        copy_in_background(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        copy_in_background(err, Stream::Stderr, tx);
    }
    let mut chunkers = [Utf8Chunker::default(), Utf8Chunker::default()];
    let mut open_pipes = 2;
    let mut exited: Option<(i32, Instant)> = None;
    let mut timed_out = false;
    loop {
        if open_pipes == 0 && exited.is_some() {
            break;
        }
        match rx.recv_timeout(TICK) {
            Ok((stream, bytes)) => {
                let eof = bytes.is_none();
                let chunker = &mut chunkers[stream as usize];
                for piece in chunker.push(&bytes.unwrap_or_default(), eof) {
                    let line = frame::output_line(id, stream, &piece);
                    if let Err(e) = channel.write_all(line.as_bytes()) {
                        stop(&mut child);
                        return Err(e);
                    }
                }
                if eof {
                    open_pipes -= 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open_pipes = 0,
        }
        if stop_at.is_none() && stop_signal.arrived() {
            stop_at = Some(Instant::now() + STOP_GRACE);
        }
        match exited {
            None => {
                if let Ok(Some(status)) = child.try_wait() {
                    use std::os::unix::process::ExitStatusExt;
                    let code = frame::exit_code(status.code(), status.signal());
                    exited = Some((code, Instant::now()));
                } else if (started.elapsed() >= timeout
                    || stop_at.is_some_and(|at| Instant::now() >= at))
                    && !timed_out
                {
                    timed_out = true;
                    let _ = child.kill();
                } else if channel.hung_up() {
                    stop(&mut child);
                    return Err(WriteError::Hangup);
                }
            }
            Some((_, at)) if at.elapsed() >= PIPE_GRACE => break,
            Some(_) => {}
        }
    }
    let mut code = exited.map_or(1, |(c, _)| c);
    if timed_out {
        code = TIMED_OUT;
        let note = if stop_at.is_some() {
            "cairnctl agent: killed: the agent is stopping (the box is shutting down)\n".to_owned()
        } else {
            format!(
                "cairnctl agent: killed after {} s (the agent's limit per command)\n",
                timeout.as_secs_f64()
            )
        };
        channel.write_all(frame::output_line(id, Stream::Stderr, &note).as_bytes())?;
    }
    channel.write_all(frame::exit_line(id, code).as_bytes())?;
    log(&format!(
        "exit {code} after {} ms",
        started.elapsed().as_millis()
    ));
    Ok(stop_at.is_some())
}

/// Kills the command (the host is gone) and reaps it.
fn stop(child: &mut Child) {
    log(&format!("the host hung up; killing pid {}", child.id()));
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies a pipe into the channel as (stream, bytes) messages; `None` at the end.
fn copy_in_background(
    mut pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Option<Vec<u8>>)>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; frame::MAX_CHUNK_BYTES];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((stream, Some(buf[..n].to_vec()))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send((stream, None));
    });
}

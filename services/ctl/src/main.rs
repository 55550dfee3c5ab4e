//! cairnctl: the operator CLI of a cairn box. Talks to cairn-init over its control socket
//! (`org.cairn.Init1`, see docs/control-api.md), to cairn-vipd over its own
//! (`org.cairn.Vip1`), to cairn-updated over its own (`org.cairn.Update1`), and sends
//! sd_notify-style readiness messages.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cairn_control::{
    DEFAULT_CONTROL_SOCKET, DEFAULT_UPDATE_SOCKET, DEFAULT_VIP_SOCKET, InitClient, LogLine,
    MAX_LOG_LINES_PER_CALL, PowerAction, ServiceStatus,
};
use clap::{Parser, Subcommand};

mod agent;
mod k8s;
mod lb;
mod notify;
mod storage;
mod sysinfo;
mod table;
mod upgrade;
mod vip;

/// How often `logs -f` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Operate a cairn box: inspect and control the services cairn-init supervises.
#[derive(Debug, Parser)]
#[command(name = "cairnctl", version)]
struct Cli {
    /// cairn-init's control socket.
    #[arg(
        long,
        global = true,
        value_name = "SOCKET",
        env = "CAIRN_CONTROL",
        default_value = DEFAULT_CONTROL_SOCKET
    )]
    control: PathBuf,

    /// cairn-updated's control socket (`status` shows the slots from it; `upgrade` uses it).
    #[arg(
        long,
        global = true,
        value_name = "SOCKET",
        env = "CAIRN_UPDATED",
        default_value = DEFAULT_UPDATE_SOCKET
    )]
    updated: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every service: state, pid, restarts, readiness; then the update slots.
    Status {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a service's recent log lines.
    Logs {
        /// The service.
        name: String,
        /// How many of the most recent lines to print.
        #[arg(short = 'n', long = "lines", default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Print a JSON array of {seq, t_ms, stream, text} (with -f: one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Start a service (root only).
    Start {
        /// The service.
        name: String,
    },
    /// Stop a service (root only).
    Stop {
        /// The service.
        name: String,
    },
    /// Restart a service (root only).
    Restart {
        /// The service.
        name: String,
    },
    /// Ask cairn-updated to check for an update now (root only).
    Upgrade {
        /// Reboot as soon as an update is installed, without the site's reboot policy.
        #[arg(long)]
        now: bool,
        /// Print progress until the check ends (installed, up to date or refused).
        #[arg(long)]
        wait: bool,
        /// Print JSON: {"check": n}, or with --wait (or --status) the status.
        #[arg(long)]
        json: bool,
        /// Only print cairn-updated's status (slots, state, failed versions); start no check.
        #[arg(long, conflicts_with_all = ["now", "wait"])]
        status: bool,
    },
    /// Stop everything and reboot (root only).
    Reboot,
    /// Stop everything and power off (root only).
    Poweroff,
    /// Serve cairn-init's control API on SOCKET for PID 1, which starts this with the
    /// listening socket as stdin and its relay as stdout (docs/init.md).
    #[command(hide = true, name = "serve-init-api")]
    ServeInitApi {
        /// The control socket (for messages; it is already bound).
        socket: PathBuf,
    },
    /// Show cairn-vipd's virtual routers: state, priority, master, addresses, checks, counters.
    Vip {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// cairn-vipd's control socket.
        #[arg(
            long,
            value_name = "SOCKET",
            env = "CAIRN_VIPD",
            default_value = DEFAULT_VIP_SOCKET
        )]
        socket: PathBuf,
    },
    /// The k8s-node role: `check` (CRI self-check) and `status` (runtime state), run by
    /// the role's cairn-k8s.
    K8s {
        #[command(subcommand)]
        cmd: k8s::K8sCommand,
        /// The role's helper.
        #[arg(long, value_name = "PATH", default_value = k8s::PROGRAM, hide = true)]
        program: PathBuf,
    },
    /// Show the storage role: Gluster peers, volumes, bricks online and pending heal
    /// entries, with a one-line verdict. Exit 1 when glusterd cannot be asked.
    Storage {
        /// Print one JSON object {verdict, peers, volumes, errors} instead of the view.
        #[arg(long)]
        json: bool,
        /// The gluster CLI.
        #[arg(long, value_name = "PATH", default_value = "/usr/sbin/gluster")]
        gluster: PathBuf,
        /// The site file (names the nodes behind the addresses).
        #[arg(long, value_name = "PATH", default_value = "/etc/cairn/site.toml")]
        site: PathBuf,
    },
    /// Show the load-balancer role: VRRP (cairn-vipd) and HAProxy's frontends, backends and
    /// servers, with a one-line verdict. Exit 1 when either cannot be reached.
    Lb {
        /// Print one JSON object {verdict, vrrp, haproxy, errors} instead of the view.
        #[arg(long)]
        json: bool,
        /// HAProxy's runtime API socket (`stats socket` in haproxy.cfg).
        #[arg(
            long,
            value_name = "SOCKET",
            env = "CAIRN_HAPROXY",
            default_value = cairn_haproxy::DEFAULT_SOCKET
        )]
        haproxy_socket: PathBuf,
        /// cairn-vipd's control socket.
        #[arg(
            long,
            value_name = "SOCKET",
            env = "CAIRN_VIPD",
            default_value = DEFAULT_VIP_SOCKET
        )]
        vip_socket: PathBuf,
    },
    /// Show memory in use (MemTotal − MemAvailable), PID 1's resident memory and uptime.
    Sysinfo {
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Send KEY=VALUE assignments to the supervisor's $NOTIFY_SOCKET, like systemd-notify.
    Notify {
        /// Shorthand for READY=1.
        #[arg(long)]
        ready: bool,
        /// Assignments such as READY=1 or "STATUS=warming up".
        #[arg(value_name = "ASSIGNMENT", required_unless_present = "ready")]
        assignments: Vec<String>,
        /// Whose pid the message carries: "parent" (default: the script that runs
        /// cairnctl, which outlives this process), "self", or a number. Other
        /// than "self" needs root; without it the own pid is sent.
        #[arg(long, default_value = "parent")]
        pid: String,
    },
    /// Serve cairnctl to the hypervisor over the VM's virtio-serial port (a base role
    /// service; without such a port it exits 0 at once).
    Agent {
        /// The virtio-serial port's name.
        #[arg(long, default_value = agent::DEFAULT_PORT_NAME)]
        port_name: String,
        /// Seconds one command may run before it is killed.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Serve on this device or unix socket instead of finding the port (tests).
        #[arg(long, hide = true)]
        device: Option<PathBuf>,
        /// Run this program instead of cairnctl itself (tests).
        #[arg(long, hide = true)]
        program: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `cairnctl status | head` is not an error worth reporting.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .map(|e| e.kind())
                .or_else(|| {
                    e.downcast_ref::<serde_json::Error>()
                        .and_then(|e| e.io_error_kind())
                })
                == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairnctl: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", skipping causes whose text is already shown
/// (our error types print their source inline).
fn one_line(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message.replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli.control.as_path();
    match cli.command {
        Command::ServeInitApi { socket } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time()
                .init();
            std::process::exit(cairn_control::relay::serve_relayed(&socket))
        }
        Command::Status { json } => status(socket, &cli.updated, json),
        Command::Upgrade {
            status: true, json, ..
        } => upgrade::print_status(&cli.updated, json),
        Command::Upgrade {
            now, wait, json, ..
        } => {
            if upgrade::upgrade(&cli.updated, now, wait, json)? {
                Ok(())
            } else {
                Err(anyhow::anyhow!("the check ended with an error"))
            }
        }
        Command::Logs {
            name,
            lines,
            follow,
            json,
        } => logs(socket, &name, lines, follow, json),
        Command::Start { name } => Ok(InitClient::connect(socket)?.start(&name)?),
        Command::Stop { name } => Ok(InitClient::connect(socket)?.stop(&name)?),
        Command::Restart { name } => Ok(InitClient::connect(socket)?.restart(&name)?),
        Command::Reboot => power(socket, PowerAction::Reboot),
        Command::Poweroff => power(socket, PowerAction::Poweroff),
        Command::Vip { json, socket } => vip::show(&socket, json),
        Command::Sysinfo { json } => sysinfo::show(json),
        Command::Storage {
            json,
            gluster,
            site,
        } => storage::show(&gluster, &site, json),
        Command::K8s { cmd, program } => Err(k8s::exec(&program, &cmd)),
        Command::Lb {
            json,
            haproxy_socket,
            vip_socket,
        } => lb::show(&haproxy_socket, &vip_socket, json),
        Command::Notify {
            ready,
            assignments,
            pid,
        } => notify::send(ready, &assignments, &pid),
        Command::Agent {
            port_name,
            timeout,
            device,
            program,
        } => agent::run(&agent::Options {
            port_name,
            device,
            program,
            timeout: Duration::from_secs(timeout),
        }),
    }
}

/// Asks for a reboot or power-off. cairn-init may finish before its reply
/// reaches us (nothing left to stop); a connection lost then means success.
fn power(socket: &Path, action: PowerAction) -> anyhow::Result<()> {
    match InitClient::connect(socket)?.power(action) {
        Ok(()) | Err(cairn_control::ClientError::Disconnected { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn status(socket: &Path, updated: &Path, json: bool) -> anyhow::Result<()> {
    let services = InitClient::connect(socket)?.list_services()?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &services)?;
        writeln!(out)?;
    } else {
        out.write_all(status_table(&services).as_bytes())?;
        out.write_all(upgrade::slots_section(updated).as_bytes())?;
    }
    Ok(out.flush()?)
}

/// NAME STATE PID RESTARTS READY DETAIL, columns padded to their widest cell.
fn status_table(services: &[ServiceStatus]) -> String {
    let mut rows = vec![["NAME", "STATE", "PID", "RESTARTS", "READY", "DETAIL"].map(str::to_owned)];
    for s in services {
        rows.push([
            s.name.clone(),
            s.state.clone(),
            if s.pid == 0 {
                "-".to_owned()
            } else {
                s.pid.to_string()
            },
            s.restarts.to_string(),
            if s.ready { "yes" } else { "no" }.to_owned(),
            s.detail.clone(),
        ]);
    }
    table::render(&rows)
}

/// `[   12.345] text`; lines from stderr are marked `[   12.345] (stderr) text`.
fn format_log_line(line: &LogLine) -> String {
    let marker = if line.stream == "stderr" {
        "(stderr) "
    } else {
        ""
    };
    format!(
        "[{:>5}.{:03}] {marker}{}",
        line.t_ms / 1000,
        line.t_ms % 1000,
        line.text
    )
}

fn logs(socket: &Path, name: &str, count: usize, follow: bool, json: bool) -> anyhow::Result<()> {
    let client = InitClient::connect(socket)?;
    let mut out = std::io::stdout().lock();
    // The API pages forward from a sequence number; keep the last `count` lines seen.
    let mut last = VecDeque::with_capacity(count.min(4096));
    let mut after_seq = 0;
    loop {
        let batch = client.logs(name, after_seq, MAX_LOG_LINES_PER_CALL)?;
        let Some(newest) = batch.last().map(|l| l.seq) else {
            break;
        };
        if newest <= after_seq {
            break;
        }
        after_seq = newest;
        let full = batch.len() == MAX_LOG_LINES_PER_CALL as usize;
        for line in batch {
            if last.len() == count {
                last.pop_front();
            }
            if count > 0 {
                last.push_back(line);
            }
        }
        if !full {
            break;
        }
    }
    if json && !follow {
        let lines: Vec<&LogLine> = last.iter().collect();
        serde_json::to_writer_pretty(&mut out, &lines)?;
        writeln!(out)?;
    } else {
        for line in &last {
            write_log_line(&mut out, line, json)?;
        }
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let batch = client
            .logs(name, after_seq, MAX_LOG_LINES_PER_CALL)
            .context("lost cairn-init while following logs")?;
        for line in &batch {
            write_log_line(&mut out, line, json)?;
        }
        out.flush()?;
        if let Some(newest) = batch.last() {
            after_seq = after_seq.max(newest.seq);
        }
    }
}

/// One line of `logs` output: human-readable, or one JSON object.
fn write_log_line(out: &mut impl Write, line: &LogLine, json: bool) -> anyhow::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, line)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", format_log_line(line))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align_and_pid_0_is_a_dash() {
        let services = [
            ServiceStatus {
                name: "haproxy".into(),
                state: "ready".into(),
                pid: 312,
                restarts: 0,
                ready: true,
                detail: "".into(),
            },
            ServiceStatus {
                name: "vipd".into(),
                state: "backoff".into(),
                pid: 0,
                restarts: 12,
                ready: false,
                detail: "exited with status 1".into(),
            },
        ];
        assert_eq!(
            status_table(&services),
            "NAME     STATE    PID  RESTARTS  READY  DETAIL\n\
             haproxy  ready    312  0         yes\n\
             vipd     backoff  -    12        no     exited with status 1\n"
        );
    }

    #[test]
    fn log_line_format() {
        let line = |t_ms, stream: &str| LogLine {
            seq: 1,
            t_ms,
            stream: stream.into(),
            text: "hello".into(),
        };
        assert_eq!(
            format_log_line(&line(12_345, "stdout")),
            "[   12.345] hello"
        );
        assert_eq!(
            format_log_line(&line(7, "stderr")),
            "[    0.007] (stderr) hello"
        );
        assert_eq!(
            format_log_line(&line(123_456_789, "stdout")),
            "[123456.789] hello"
        );
    }
}

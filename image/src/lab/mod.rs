//! `cairn lab`: boot a whole site as QEMU VMs on a bridge inside network
//! namespaces, with a client namespace and HTTP responders for the external
//! nodes, and drive it (status, console, exec, ctl, kill, start, cut, heal,
//! down).
//!
//! `up` plans the lab from the site file ([`plan`]), builds missing role
//! images, creates the namespaces ([`net`]) and starts a detached
//! [`keeper`] in the switch namespace that owns QEMU and the responders; the
//! other subcommands talk to the keeper over a unix socket ([`protocol`]),
//! or act on the namespaces directly. See docs/lab.md.

mod client;
mod ctl;
mod down;
mod keeper;
mod net;
mod plan;
mod procs;
mod protocol;
mod state;
mod status;
mod up;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use protocol::Request;
use state::StateDir;

/// How long a node request (kill waits for QEMU to die) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `cairn lab` subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build what is missing and boot every node of the site; returns once all are ready.
    Up {
        /// The site file.
        #[arg(long)]
        site: PathBuf,
        /// State directory: images, VM overlays, consoles, the keeper's socket.
        #[arg(long)]
        state: PathBuf,
        /// Only these nodes (comma-separated); default: every node of the site.
        #[arg(long, value_delimiter = ',')]
        nodes: Option<Vec<String>>,
        /// Hardware profile of the images.
        #[arg(long, default_value = "qemu-x86_64")]
        profile: String,
        /// Guest memory per VM, MiB.
        #[arg(long, default_value_t = 384)]
        memory: u32,
        /// Seconds to wait for every VM to print CAIRN-READY.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Per node: role, running, CAIRN-READY, link, MAC, addresses; the VIP holder.
    Status {
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
        /// Print the keeper's answer as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's serial console log.
    Console {
        /// The node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
        /// Keep printing new output until the lab goes down (or Ctrl-C).
        #[arg(long)]
        follow: bool,
    },
    /// Run a command in the client namespace (or an external node's); exit status passed through.
    Exec {
        /// `client` or an external node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run cairnctl on a VM through its control channel; its output and exit code are passed through.
    Ctl {
        /// The VM.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
        /// Seconds to wait for the whole answer (the box kills a command after 60 s).
        #[arg(long, default_value_t = 90)]
        timeout: u64,
        /// cairnctl's arguments (after `--`), e.g. `-- status --json`.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Hard power-off: SIGKILL to the node's QEMU (an external node: its responders).
    Kill {
        /// The node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// Boot a stopped node again on its overlay (an external node: its responders).
    Start {
        /// The node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// Pull the node's network cable (QMP set_link down; the veth for external nodes).
    Cut {
        /// The node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// Plug the node's network cable back in.
    Heal {
        /// The node.
        node: String,
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// Remove everything: VMs, responders, keeper, namespaces, taps. Idempotent.
    Down {
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// The process that owns the lab's VMs (started by `up`).
    #[command(hide = true)]
    Keeper {
        /// State directory of the lab.
        #[arg(long)]
        state: PathBuf,
    },
    /// Send one UDP datagram to an address so the kernel resolves its MAC (used by `status`).
    #[command(hide = true)]
    Poke {
        /// The address.
        address: std::net::IpAddr,
    },
}

/// Runs a `cairn lab` subcommand; the exit code is the command's (for `exec`).
pub fn run(cmd: LabCommand) -> Result<ExitCode> {
    match cmd {
        LabCommand::Up {
            site,
            state,
            nodes,
            profile,
            memory,
            timeout,
        } => up::run(&up::UpArgs {
            site,
            state,
            nodes,
            profile,
            memory_mib: memory,
            timeout: Duration::from_secs(timeout),
        })
        .map(|()| ExitCode::SUCCESS),
        LabCommand::Status { state, json } => status_cmd(&state_dir(&state)?, json),
        LabCommand::Console {
            node,
            state,
            follow,
        } => console(&state_dir(&state)?, &node, follow),
        LabCommand::Exec {
            node,
            state,
            command,
        } => exec(&state_dir(&state)?, &node, &command),
        LabCommand::Ctl {
            node,
            state,
            timeout,
            args,
        } => ctl::run(
            &state_dir(&state)?,
            &node,
            &args,
            Duration::from_secs(timeout),
        ),
        LabCommand::Kill { node, state } => node_request(&state, Request::Kill(node)),
        LabCommand::Start { node, state } => node_request(&state, Request::Start(node)),
        LabCommand::Cut { node, state } => node_request(&state, Request::Cut(node)),
        LabCommand::Heal { node, state } => node_request(&state, Request::Heal(node)),
        LabCommand::Down { state } if !state.exists() => {
            println!("no lab in {} (no such directory)", state.display());
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { state } => down::run(&state_dir(&state)?).map(|()| ExitCode::SUCCESS),
        LabCommand::Keeper { state } => {
            keeper::run(&state_dir(&state)?)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Poke { address } => {
            let bind = if address.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = std::net::UdpSocket::bind(bind).context("binding a UDP socket")?;
            // Discard port: nobody needs to answer, the ARP request is the point.
            let _ = sock.send_to(b"cairn-lab", (address, 9));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The state directory, made absolute (it must exist).
fn state_dir(state: &Path) -> Result<StateDir> {
    let abs = std::fs::canonicalize(state)
        .with_context(|| format!("--state {}: no such directory", state.display()))?;
    Ok(StateDir::new(abs))
}

/// The saved plan, or a precise error when no lab was brought up here.
fn require_plan(state: &StateDir) -> Result<plan::LabPlan> {
    state.load_plan()?.with_context(|| {
        format!(
            "{}: no lab here (no lab.json); start one with `cairn lab up --site <site.toml> --state {}`",
            state.root().display(),
            state.root().display()
        )
    })
}

/// The `cairn` binary itself, by its path (for programs that run it, e.g. `ip netns exec`).
fn cairn_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the cairn binary itself")
}

/// The `cairn` binary for a program this process starts and waits on (the keeper, through
/// `setsid ip netns exec`): `/proc/<our pid>/exe`, which still runs this very binary when a
/// rebuild has replaced the file meanwhile (the path `current_exe` gives then names a
/// deleted file that cannot be executed). Valid only while this process lives.
fn cairn_exe_while_alive() -> Result<PathBuf> {
    let proc_exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
    if proc_exe.exists() {
        return Ok(proc_exe);
    }
    cairn_exe()
}

/// The HTTP responder of cairn-labnet: `$CAIRN_LAB_RESPONDER`, else
/// `cairn-lab-responder` next to the `cairn` binary, else on `PATH`.
pub(crate) fn responder_program() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_LAB_RESPONDER") {
        return PathBuf::from(p);
    }
    let sibling = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("cairn-lab-responder"));
    match sibling {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("cairn-lab-responder"),
    }
}

fn status_cmd(state: &StateDir, json: bool) -> Result<ExitCode> {
    let plan = require_plan(state)?;
    let response = ask_keeper(state, &Request::Status)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", status::table(&plan, &response.nodes));
    if !plan.vips.is_empty() {
        let holders = status::vip_holders(&plan, &cairn_exe()?);
        print!("{}", status::vip_lines(&holders));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the keeper of a lab whose plan exists; a keeper that does not answer
/// means it died, and `down` is the way out.
fn ask_keeper(state: &StateDir, req: &Request) -> Result<protocol::Response> {
    let source = match client::ask(state, req, REQUEST_TIMEOUT) {
        Ok(r) => return Ok(r),
        Err(client::ClientError::Connect { source, .. }) => source,
        // A keeper killed a moment ago can still hold its socket while its last threads
        // exit: the connection is taken into the backlog, then reset. Same verdict.
        Err(client::ClientError::Io { source, .. }) if keeper_vanished(&source) => source,
        Err(e) => return Err(e.into()),
    };
    bail!(
        "the lab in {root} has no keeper any more ({}: {source}); `cairn lab down --state {root}` removes what is left",
        state.socket().display(),
        root = state.root().display()
    )
}

/// Whether an error in the middle of a keeper conversation means the keeper went away.
fn keeper_vanished(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), BrokenPipe | ConnectionReset | UnexpectedEof)
}

fn node_request(state: &Path, req: Request) -> Result<ExitCode> {
    let state = state_dir(state)?;
    require_plan(&state)?;
    let response = ask_keeper(&state, &req)?;
    if !response.ok {
        bail!(
            "{}",
            response
                .error
                .unwrap_or_else(|| "the keeper refused".into())
        );
    }
    if let Some(m) = response.message {
        println!("{m}");
    }
    Ok(ExitCode::SUCCESS)
}

fn console(state: &StateDir, node: &str, follow: bool) -> Result<ExitCode> {
    match state.load_plan()? {
        Some(p) if p.vm(node).is_none() => bail!(
            "no VM {node:?} in this lab (VMs: {})",
            p.vms
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // After `down` the plan is gone but the console logs are kept.
        None if !state.console_log(node).is_file() => {
            require_plan(state)?;
        }
        _ => {}
    }
    let path = state.console_log(node);
    let mut file = std::fs::File::open(&path)
        .with_context(|| format!("{}: no console log for {node}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n > 0 {
            if out.write_all(&buf[..n]).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            continue;
        }
        let _ = out.flush();
        if !follow || !state.plan_file().exists() {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
        // A fresh `up` truncates the log: start again from its beginning.
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let pos = file.stream_position().unwrap_or(0);
        if len < pos {
            let _ = file.seek(SeekFrom::Start(0));
        }
    }
}

fn exec(state: &StateDir, node: &str, command: &[String]) -> Result<ExitCode> {
    let plan = require_plan(state)?;
    let netns = if node == plan::CLIENT {
        plan.client.netns.clone()
    } else if let Some(e) = plan.external(node) {
        e.netns.clone()
    } else if plan.vm(node).is_some() {
        bail!(
            "{node} is a VM: exec runs in the client namespace or an external node's ({}); use `cairn lab console {node}`",
            std::iter::once(plan::CLIENT)
                .chain(plan.externals.iter().map(|e| e.name.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        bail!(
            "no node {node:?} in this lab (known: {})",
            plan.known_names()
        );
    };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(command)
        .status()
        .with_context(|| format!("cannot run `ip netns exec {netns}`"))?;
    Ok(exit_code(status))
}

/// The exit status as an exit code: the code, or 128 + signal like a shell.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

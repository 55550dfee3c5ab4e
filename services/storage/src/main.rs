//! cairn-storage: the storage role's boot-time programs. `prepare` readies
//! the data partition and the brick disk for glusterd; `bootstrap` forms the
//! pool and the volumes from the site file and keeps them so; `healthy` is
//! cairn-vipd's check for holding the storage VIP.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The storage role's bootstrap (docs/storage.md).
#[derive(Debug, Parser)]
#[command(name = "cairn-storage", version)]
struct Cli {
    /// The site file.
    #[arg(long, global = true, default_value = "/etc/cairn/site.toml")]
    site: PathBuf,
    /// This node's name (default: $CAIRN_NODE, set by cairn-init).
    #[arg(long, global = true, env = "CAIRN_NODE")]
    node: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare the box for glusterd (run directory, state, brick disk).
    Prepare,
    /// Form the pool and the volumes; keeps watching unless --once.
    Bootstrap {
        /// Stop once everything is in place (or at the first error).
        #[arg(long)]
        once: bool,
        /// The gluster CLI.
        #[arg(long, default_value = "/usr/sbin/gluster")]
        gluster: PathBuf,
    },
    /// Exit 0 iff glusterd answers and every volume of the site exists and is
    /// Started (cairn-vipd's check for the storage VIP); prints one line.
    Healthy {
        /// The gluster CLI.
        #[arg(long, default_value = "/usr/sbin/gluster")]
        gluster: PathBuf,
        /// Kill the CLI and report glusterd as not answering after this long.
        #[arg(long, default_value_t = 5000, value_name = "MS")]
        timeout_ms: u64,
    },
    /// Print the plan for this node as JSON and change nothing.
    Plan {
        /// The gluster CLI.
        #[arg(long, default_value = "/usr/sbin/gluster")]
        gluster: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn-storage: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let site = cairn_site::load_site(&cli.site)?;
    if let Command::Healthy {
        gluster,
        timeout_ms,
    } = &cli.command
    {
        let healthy = healthy(&site, gluster, *timeout_ms)?;
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let me = cli
        .node
        .context("which node is this? pass --node or set CAIRN_NODE")?;
    let node = site
        .node(&me)
        .with_context(|| format!("node {me:?} is not in {}", cli.site.display()))?;
    if node.role != cairn_site::Role::Storage {
        anyhow::bail!("node {me:?} has role {}, not storage", node.role);
    }
    match cli.command {
        Command::Prepare => {
            let done = cairn_storage::prepare::prepare(
                &site,
                &me,
                &cairn_storage::prepare::Paths::default(),
            )?;
            if done.is_empty() {
                tracing::info!("already prepared");
            }
            for d in done {
                tracing::info!("{d}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bootstrap { once, gluster } => {
            let g = cairn_storage::gluster::Cli {
                program: gluster,
                ..Default::default()
            };
            cairn_storage::bootstrap::run(&site, &me, &g, once)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthy { .. } => Ok(ExitCode::SUCCESS),
        Command::Plan { gluster } => {
            let g = cairn_storage::gluster::Cli {
                program: gluster,
                ..Default::default()
            };
            let p = cairn_storage::plan::plan(&site, &me, &g.peers()?, &g.volumes()?);
            println!("{}", serde_json::to_string_pretty(&p)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `healthy`: prints the verdict in one line; `Ok(false)` when unhealthy. Needs
/// no node name (any box of the pool answers for itself).
fn healthy(
    site: &cairn_site::Site,
    gluster: &std::path::Path,
    timeout_ms: u64,
) -> anyhow::Result<bool> {
    let storage = site
        .storage
        .as_ref()
        .context("the site has no [storage] section")?;
    let limit = std::time::Duration::from_millis(timeout_ms);
    let g = cairn_storage::gluster::Cli {
        program: gluster.to_owned(),
        // The CLI's own bound, in whole seconds, at most the kill limit.
        timeout_s: u32::try_from(timeout_ms / 1000).unwrap_or(u32::MAX).max(1),
    };
    match cairn_storage::health::check(&g, storage, limit) {
        Ok(summary) => {
            println!("healthy: {summary}");
            Ok(true)
        }
        Err(e) => {
            println!("unhealthy: {e}");
            Ok(false)
        }
    }
}

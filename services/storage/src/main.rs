//! cairn-storage: the storage role's boot-time programs. `prepare` readies
//! the data partition and the brick disk for glusterd; `bootstrap` forms the
//! pool and the volumes from the site file and keeps them so.

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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-storage: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let site = cairn_site::load_site(&cli.site)?;
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
            Ok(())
        }
        Command::Bootstrap { once, gluster } => {
            let g = cairn_storage::gluster::Cli {
                program: gluster,
                ..Default::default()
            };
            cairn_storage::bootstrap::run(&site, &me, &g, once)?;
            Ok(())
        }
        Command::Plan { gluster } => {
            let g = cairn_storage::gluster::Cli {
                program: gluster,
                ..Default::default()
            };
            let p = cairn_storage::plan::plan(&site, &me, &g.peers()?, &g.volumes()?);
            println!("{}", serde_json::to_string_pretty(&p)?);
            Ok(())
        }
    }
}

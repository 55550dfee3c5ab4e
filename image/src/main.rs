//! `cairn`: builds immutable appliance images per hardware profile and role,
//! and boots them in QEMU.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod build;
mod lab;
mod progress;
mod role;
mod run;

/// cairn image builder.
#[derive(Debug, Parser)]
#[command(name = "cairn", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build disk.img, disk.qcow2, the PXE set and manifest.json for one role and profile.
    Build {
        /// The site file.
        #[arg(long)]
        site: PathBuf,
        /// Hardware profile name (a file in the profiles directory).
        #[arg(long)]
        profile: String,
        /// Role to build.
        #[arg(long)]
        role: String,
        /// Output directory (replaced only when the build succeeds).
        #[arg(long)]
        out: PathBuf,
        /// Print errors only.
        #[arg(long, conflicts_with = "json")]
        quiet: bool,
        /// Print progress and the result as JSON lines on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: build::Dirs,
    },
    /// Boot a build in QEMU and print its serial console.
    Run {
        /// A build output directory.
        dir: PathBuf,
        /// Boot over the network (iPXE, QEMU's TFTP) instead of from the disk.
        #[arg(long)]
        pxe: bool,
        /// Give the VM this node's MAC address (default: the first node of the build's role).
        #[arg(long)]
        node: Option<String>,
        /// Stop the VM after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Boot a whole site as QEMU VMs on a bridge in network namespaces, and drive it.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            site,
            profile,
            role,
            out,
            quiet,
            json,
            dirs,
        } => {
            let style = if json {
                progress::Style::Json
            } else if quiet {
                progress::Style::Quiet
            } else {
                progress::Style::Human
            };
            build::run(
                &build::Request {
                    site,
                    profile,
                    role,
                    out,
                    dirs,
                },
                style,
            )
        }
        Command::Run {
            dir,
            pxe,
            node,
            timeout,
        } => run::run(&dir, pxe, node.as_deref(), timeout),
        Command::Lab(cmd) => match lab::run(cmd) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = String::new();
            for cause in e.chain() {
                let t = cause.to_string();
                if !msg.contains(&t) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&t);
                }
            }
            eprintln!("cairn: {msg}");
            ExitCode::FAILURE
        }
    }
}

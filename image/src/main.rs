//! `cairn`: builds immutable appliance images per hardware profile and role,
//! and boots them in QEMU.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod build;
mod keygen;
mod lab;
mod progress;
mod publish;
mod role;
mod run;
mod signing;

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
        /// Image version, instead of the site file's `[image] version` (the
        /// site file in the image and the output says this version too).
        #[arg(long)]
        version: Option<String>,
        /// The update signing key (PKCS#8 PEM from `cairn keygen`), instead
        /// of the site's `update.signing_key`.
        #[arg(long)]
        update_key: Option<PathBuf>,
        #[command(flatten)]
        dirs: build::Dirs,
    },
    /// Make a new update signing key: DIR/update-key.pem and the site's public_key line.
    Keygen {
        /// Directory for update-key.pem (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing update-key.pem.
        #[arg(long)]
        force: bool,
    },
    /// Put a build's signed update bundle into a repository and re-sign its index; or take
    /// a version off offer with --withdraw.
    Publish {
        /// The repository directory (any static HTTP server serves it).
        #[arg(long)]
        repo: PathBuf,
        /// A `cairn build` output directory.
        #[arg(required_unless_present = "withdraw")]
        build: Option<PathBuf>,
        /// The update signing key (default: the site's `update.signing_key` when absolute,
        /// or relative to --site).
        #[arg(long)]
        update_key: Option<PathBuf>,
        /// Days the new index stays valid for the boxes.
        #[arg(long, default_value_t = 30)]
        expires_days: u64,
        /// Take this version off offer instead of publishing (needs --role and --profile);
        /// its files stay in the repository.
        #[arg(
            long,
            value_name = "VERSION",
            conflicts_with = "build",
            requires_all = ["role", "profile"]
        )]
        withdraw: Option<String>,
        /// The role of the version to withdraw.
        #[arg(long, requires = "withdraw")]
        role: Option<String>,
        /// The profile of the version to withdraw.
        #[arg(long, requires = "withdraw")]
        profile: Option<String>,
        /// With --withdraw: the site file whose public key the repository is checked with
        /// (default: the signing key's own public key).
        #[arg(long, requires = "withdraw")]
        site: Option<PathBuf>,
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
            version,
            update_key,
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
                    version,
                    update_key,
                },
                style,
            )
        }
        Command::Keygen { out, force } => keygen::run(&out, force).map(|(path, line)| {
            eprintln!(
                "wrote {} (keep it secret); put this in the site's [update] section:",
                path.display()
            );
            println!("{line}");
        }),
        Command::Publish {
            repo,
            build: None,
            update_key,
            expires_days,
            withdraw: Some(version),
            role: Some(role),
            profile: Some(profile),
            site,
        } => publish::withdraw(&publish::Withdrawal {
            repo: repo.clone(),
            role: role.clone(),
            profile: profile.clone(),
            version: version.clone(),
            site,
            update_key,
            expires_days,
        })
        .map(|ix| {
            let repo = repo.display().to_string().trim_end_matches('/').to_owned() + "/";
            println!(
                "withdrew {role}/{profile} {version} from {repo}index.json (index serial {}, expires {} = published + {expires_days} days); \
                 its files stay in {repo}bundles/{role}/{profile}/{version}/",
                ix.serial, ix.expires,
            );
        }),
        Command::Publish {
            repo,
            build: Some(build),
            update_key,
            expires_days,
            withdraw: None,
            ..
        } => publish::run(&publish::Request {
            repo: repo.clone(),
            build,
            update_key,
            expires_days,
        })
        .map(|p| {
            let what = if p.already_listed {
                "already published; index re-signed"
            } else {
                "published"
            };
            println!(
                "{what}: {}{} (index serial {}, expires {} = published + {expires_days} days)",
                repo.display().to_string().trim_end_matches('/').to_owned() + "/",
                p.path,
                p.index.serial,
                p.index.expires,
            );
        }),
        Command::Publish { .. } => Err(anyhow::anyhow!(
            "publish needs a build directory, or --withdraw VERSION with --role and --profile"
        )),
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

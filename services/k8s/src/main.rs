//! `cairn-k8s`: the k8s-node role's helper (docs/k8s-node.md).
//!
//! - `prep`: kernel settings (services.toml: `k8s-prep`);
//! - `ready`: exit 0 when the CRI answers (containerd's readiness probe);
//! - `import`: the pause image into containerd (`k8s-import`);
//! - `kubelet`: run the kubelet once it can join, or say it is not configured (`kubelet`);
//! - `join --token --ca-cert`: store the join credentials (`cairnctl k8s join`);
//! - `check [--keep] [--json]`: the CRI self-check (`cairnctl k8s check`);
//! - `status [--json]`: the runtime's state (`cairnctl k8s status`).

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_k8s::cri::Cri;
use cairn_k8s::{import, kubelet, prep, selfcheck, status};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn-k8s", version, about = "The k8s-node role's helper")]
struct Cli {
    /// containerd's CRI socket.
    #[arg(long, default_value = cairn_k8s::CRI_SOCKET)]
    socket: PathBuf,
    /// The site file.
    #[arg(long, default_value = cairn_k8s::SITE_FILE)]
    site: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set the kernel settings the runtime needs.
    Prep,
    /// Exit 0 when the CRI answers Version (readiness probe).
    Ready {
        /// Also require the pause image to be listed by the CRI.
        #[arg(long)]
        pause_image: bool,
    },
    /// Import the pause image into containerd and wait until the CRI sees it.
    Import {
        /// The OCI archive.
        #[arg(long, default_value = cairn_k8s::PAUSE_ARCHIVE)]
        archive: PathBuf,
        /// The ctr program.
        #[arg(long, default_value = "/usr/bin/ctr")]
        ctr: PathBuf,
    },
    /// Run the kubelet when the image has one (once it has credentials to
    /// join with); otherwise say so and exit 0.
    Kubelet,
    /// Store the credentials the kubelet joins the cluster with: a bootstrap
    /// token and the cluster's CA certificate (on the data partition).
    Join {
        /// The bootstrap token, `<id>.<secret>` (`kubeadm token create` prints one).
        #[arg(long)]
        token: String,
        /// The cluster CA certificate, PEM text.
        #[arg(long, allow_hyphen_values = true)]
        ca_cert: String,
    },
    /// Drive containerd through the CRI as the kubelet would, then clean up.
    Check {
        /// Leave the pod running (host port 30080 answers "cairn-selfcheck").
        #[arg(long)]
        keep: bool,
        /// Only remove what an earlier `--keep` left.
        #[arg(long, conflicts_with = "keep")]
        clean: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the container's output and ports.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Show the runtime: CRI, runc, CNI, pause image, pods, kubelet.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn load_site(path: &Path) -> Result<cairn_site::Site> {
    Ok(cairn_site::load_site(path)?)
}

/// This box's node name: CAIRN_NODE (set by cairn-init), else the hostname.
fn node_name() -> Option<String> {
    std::env::var("CAIRN_NODE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
}

fn node_addr(site: &cairn_site::Site) -> Option<IpAddr> {
    let name = node_name()?;
    site.node(&name)?
        .addresses
        .iter()
        .map(|a| a.addr)
        .find(IpAddr::is_ipv4)
}

async fn connect(socket: &Path) -> Result<Cri> {
    Ok(Cri::connect(socket, Duration::from_secs(120)).await?)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn-k8s: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Prep => {
            let done = prep::apply(Path::new("/proc/sys"))?;
            let shims = prep::cgroups(Path::new("/sys/fs/cgroup"))?;
            println!(
                "k8s-prep: {}; shim cgroup {}",
                done.join(" "),
                shims.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ready { pause_image } => {
            let image = if pause_image {
                Some(cairn_k8s::pause_image_name(&load_site(&cli.site)?))
            } else {
                None
            };
            runtime()?.block_on(async {
                let mut c = Cri::connect(&cli.socket, Duration::from_secs(4)).await?;
                cairn_k8s::cri::call(
                    "Version",
                    c.runtime
                        .version(k8s_cri::v1::VersionRequest::default())
                        .await,
                )?;
                if let Some(image) = image {
                    let r = cairn_k8s::cri::call(
                        "ImageStatus",
                        c.images
                            .image_status(k8s_cri::v1::ImageStatusRequest {
                                image: Some(k8s_cri::v1::ImageSpec {
                                    image: image.clone(),
                                    ..Default::default()
                                }),
                                verbose: false,
                            })
                            .await,
                    )?;
                    if r.image.is_none() {
                        bail!("{image} is not imported yet");
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Cmd::Import { archive, ctr } => {
            let site = load_site(&cli.site)?;
            let image = cairn_k8s::pause_image_name(&site);
            let t = Instant::now();
            let out = import::import(&ctr, &cli.socket, &archive)?;
            println!(
                "k8s-import: {}",
                if out.is_empty() { "imported" } else { &out }
            );
            runtime()?.block_on(async {
                let mut c = connect(&cli.socket).await?;
                for _ in 0..300 {
                    let r = cairn_k8s::cri::call(
                        "ImageStatus",
                        c.images
                            .image_status(k8s_cri::v1::ImageStatusRequest {
                                image: Some(k8s_cri::v1::ImageSpec {
                                    image: image.clone(),
                                    ..Default::default()
                                }),
                                verbose: false,
                            })
                            .await,
                    )?;
                    if let Some(i) = r.image {
                        println!(
                            "k8s-import: {image} ready for the CRI as {} after {} ms",
                            i.id,
                            t.elapsed().as_millis()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                bail!("{image} was imported but the CRI does not list it after 30 s")
            })
        }
        Cmd::Kubelet => {
            let site = load_site(&cli.site)?;
            let k8s = site.k8s.as_ref();
            let named = k8s.is_some_and(|k| k.kubelet.is_some());
            let bin = Path::new(cairn_k8s::KUBELET);
            let (Some(k8s), true, true) = (k8s, named, bin.is_file()) else {
                println!("{}", kubelet::NOT_CONFIGURED);
                if named {
                    bail!("the site names a kubelet but {} is missing", bin.display());
                }
                return Ok(ExitCode::SUCCESS);
            };
            let node = node_name().context("cannot tell this node's name (CAIRN_NODE)")?;
            let (token, ca) = (k8s.token_file(), k8s.ca_file());
            let kubeconfig = Path::new(kubelet::KUBECONFIG);
            let mut said = false;
            while kubelet::credentials(kubeconfig, &token, &ca) == kubelet::Credentials::Missing {
                if !said {
                    println!(
                        "kubelet: waiting for join credentials: {} and {} (`cairnctl k8s join --token <id.secret> --ca-cert <PEM>`)",
                        token.display(),
                        ca.display()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            let version = std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| kubelet::parse_version(&String::from_utf8_lossy(&o.stdout)));
            let args = kubelet::args(&node, node_addr(&site), version);
            println!("kubelet: starting {} {}", bin.display(), args.join(" "));
            let err = std::process::Command::new(bin).args(&args).exec();
            bail!("cannot exec {}: {err}", bin.display())
        }
        Cmd::Join { token, ca_cert } => {
            let site = load_site(&cli.site)?;
            let Some(k8s) = site.k8s.as_ref().filter(|k| k.kubelet.is_some()) else {
                bail!(
                    "this box has no kubelet (the site names no [k8s] kubelet): there is nothing to join with"
                );
            };
            let (token_file, ca_file) = (k8s.token_file(), k8s.ca_file());
            kubelet::join(&token_file, &ca_file, &token, &ca_cert)?;
            println!(
                "join credentials stored: {} and {}; the kubelet bootstraps with them{}",
                token_file.display(),
                ca_file.display(),
                if Path::new(kubelet::KUBECONFIG).is_file() {
                    " when its client certificate can no longer be used (it has bootstrapped already)"
                } else {
                    " now"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            keep,
            clean,
            json,
            wait,
        } => {
            let site = load_site(&cli.site)?;
            let opts = selfcheck::Options {
                image: cairn_k8s::pause_image_name(&site),
                keep,
                node_addr: node_addr(&site),
                wait: Duration::from_secs(wait),
            };
            runtime()?.block_on(async {
                let mut c = connect(&cli.socket).await?;
                if clean {
                    let n = selfcheck::remove_leftovers(&mut c).await?;
                    println!("removed {n} self-check pod(s)");
                    return Ok(ExitCode::SUCCESS);
                }
                let r = selfcheck::run(&mut c, &opts).await;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print!("{}", r.render());
                    if let Some(id) = &r.kept_sandbox {
                        println!(
                            "kept pod sandbox {id}: host port {} answers {:?}; remove it with `cairnctl k8s check --clean`",
                            selfcheck::HOST_PORT,
                            selfcheck::SAY
                        );
                    }
                }
                Ok(if r.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
            })
        }
        Cmd::Status { json } => {
            let site = load_site(&cli.site)?;
            let kubelet = status::kubelet_state(site.k8s.as_ref(), Path::new(cairn_k8s::KUBELET));
            let image = cairn_k8s::pause_image_name(&site);
            runtime()?.block_on(async {
                let mut c = Cri::connect(&cli.socket, Duration::from_secs(10))
                    .await
                    .ok();
                let s = status::gather(c.as_mut(), &image, kubelet).await;
                if json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    print!("{}", s.render());
                }
                Ok(if s.healthy() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            })
        }
    }
}

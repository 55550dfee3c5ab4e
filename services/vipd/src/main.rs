//! `cairn-vipd`: the VRRP daemon. See docs/vipd.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cairn_vipd::config::{ConfigErrors, ConfigFile, load_config};
use cairn_vipd::runtime::{Options, run};
use cairn_vipd::site;

/// Exit status for an unusable config.
const EXIT_CONFIG: u8 = 2;

/// Moves virtual IPs between boxes with VRRPv3 (RFC 5798).
#[derive(Debug, Parser)]
#[command(name = "cairn-vipd", version, about)]
struct Args {
    /// Config file with [[instance]] tables.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "site",
        required_unless_present = "site"
    )]
    config: Option<PathBuf>,
    /// Derive the config from the site file ([lb] or [storage] and this node's entry).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
    /// This node's name in the site file (default: $CAIRN_NODE, else the node whose MAC an
    /// interface of this box has).
    #[arg(long, value_name = "NAME", requires = "site")]
    node: Option<String>,
    /// Run on this interface instead of the one with the node's MAC (site mode).
    #[arg(long, value_name = "IFNAME", requires = "site")]
    interface: Option<String>,
    /// Where to serve the org.cairn.Vip1 control API.
    #[arg(long, value_name = "SOCKET", default_value = cairn_control::DEFAULT_VIP_SOCKET)]
    control: PathBuf,
    /// Validate the config, print it as a config file and exit (0 valid, 2 invalid).
    #[arg(long)]
    check: bool,
}

fn init_logging() {
    let level = match std::env::var("CAIRN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .as_deref()
    {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
}

/// Why no config could be built: bad file contents (exit 2), something else (exit 1), or
/// nothing to hold (a storage node of a site without `[storage] vip`: exit 0, so cairn-init
/// marks the service done instead of restarting it).
enum LoadError {
    Config(String),
    Other(anyhow::Error),
    NothingToHold(String),
}

impl From<ConfigErrors> for LoadError {
    fn from(e: ConfigErrors) -> Self {
        LoadError::Config(e.to_string())
    }
}

/// The node owning one of this box's MACs (when neither `--node` nor `$CAIRN_NODE` say).
fn node_by_mac(
    site: &cairn_site::Site,
    nl: &mut cairn_netlink::Netlink,
) -> Result<String, LoadError> {
    let links = nl
        .links()
        .context("listing links to find this node by MAC")
        .map_err(LoadError::Other)?;
    let macs: Vec<cairn_site::Mac> = links
        .iter()
        .filter_map(|l| l.mac.map(cairn_site::Mac))
        .collect();
    match site.node_by_mac(&macs) {
        Some(n) => Ok(n.name.clone()),
        None => Err(LoadError::Config(
            site::SiteError::NoNodeForMacs(
                macs.iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .to_string(),
        )),
    }
}

fn load(args: &Args) -> Result<ConfigFile, LoadError> {
    if let Some(path) = &args.config {
        let (file, _) = load_config(path)?;
        return Ok(file);
    }
    let Some(path) = &args.site else {
        return Err(LoadError::Config("give --config or --site".into()));
    };
    let site = cairn_site::load_site(path).map_err(|e| LoadError::Config(e.to_string()))?;
    let site_error = |e: site::SiteError| match e {
        site::SiteError::NoStorageVip(_) => LoadError::NothingToHold(e.to_string()),
        e => LoadError::Config(format!("{}: {e}", path.display())),
    };
    let mut nl = None;
    let netlink = || -> Result<cairn_netlink::Netlink, LoadError> {
        cairn_netlink::Netlink::open()
            .context("opening rtnetlink")
            .map_err(LoadError::Other)
    };
    let node = match (&args.node, std::env::var("CAIRN_NODE")) {
        (Some(n), _) => n.clone(),
        (None, Ok(n)) if !n.is_empty() => n,
        _ => {
            let mut handle = netlink()?;
            let n = node_by_mac(&site, &mut handle)?;
            nl = Some(handle);
            n
        }
    };
    let mac = site::node_mac(&site, &node).map_err(site_error)?;
    let interface = match &args.interface {
        Some(i) => i.clone(),
        None => {
            let mut handle = match nl.take() {
                Some(h) => h,
                None => netlink()?,
            };
            let link = handle
                .link_by_mac(&mac)
                .context("listing links")
                .map_err(LoadError::Other)?;
            match link {
                Some(l) => l.name,
                None => {
                    return Err(site_error(site::SiteError::NoInterface {
                        node: node.clone(),
                        mac: cairn_site::Mac(mac).to_string(),
                    }));
                }
            }
        }
    };
    site::derive_with_site_path(&site, path, &node, &interface).map_err(site_error)
}

fn config_file_name(args: &Args) -> &Path {
    args.config
        .as_deref()
        .or(args.site.as_deref())
        .unwrap_or(Path::new("config"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let file = match load(&args) {
        Ok(f) => f,
        Err(LoadError::Config(e)) => {
            eprintln!("cairn-vipd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(LoadError::Other(e)) => {
            eprintln!("cairn-vipd: {e:#}");
            return ExitCode::FAILURE;
        }
        Err(LoadError::NothingToHold(why)) => {
            tracing::info!("{why}; exiting");
            return ExitCode::SUCCESS;
        }
    };
    let config = match file.validate(config_file_name(&args)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn-vipd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        match toml::to_string(&file) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("cairn-vipd: cannot print the config: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let options = Options {
        control_socket: args.control.clone(),
    };
    tracing::info!(
        "cairn-vipd {} starting with {} instance(s)",
        env!("CARGO_PKG_VERSION"),
        config.instances.len()
    );
    match run(config, &options) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cairn-vipd: {e}");
            ExitCode::FAILURE
        }
    }
}

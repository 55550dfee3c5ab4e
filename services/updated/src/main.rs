//! `cairn-updated`: the box's A/B update agent. See docs/update.md ("On the box").

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use cairn_site::{RebootPolicy, Site};
use cairn_update::keys::PublicKey;
use cairn_updated::agent::{Agent, Config, Peers};
use cairn_updated::apply::Setup;
use cairn_updated::esp::Esp;
use cairn_updated::{osrelease, slots, state};

/// Polls the site's signed update repository and installs new versions into the inactive slot.
#[derive(Debug, Parser)]
#[command(name = "cairn-updated", version, about)]
struct Args {
    /// The site file.
    #[arg(long, value_name = "FILE", default_value = "/etc/cairn/site.toml")]
    site: PathBuf,
    /// Where to serve org.cairn.Update1.
    #[arg(long, value_name = "SOCKET", default_value = cairn_control::DEFAULT_UPDATE_SOCKET)]
    control: PathBuf,
    /// Where state.json lives.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/cairn/update")]
    state_dir: PathBuf,
    /// Where the ESP is mounted.
    #[arg(long, value_name = "DIR", default_value = "/efi")]
    esp: PathBuf,
    /// The early stage's record of the booted slot.
    #[arg(long, value_name = "FILE", default_value = "/run/cairn/boot-slot")]
    boot_slot_file: PathBuf,
    /// sysfs root (partitions are found under class/block).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sys: PathBuf,
    /// Device node root.
    #[arg(long, value_name = "DIR", default_value = "/dev")]
    dev: PathBuf,
    /// The running image's os-release.
    #[arg(long, value_name = "FILE", default_value = "/etc/os-release")]
    os_release: PathBuf,
    /// cairn-init's control socket (for the reboot).
    #[arg(long, value_name = "SOCKET", env = "CAIRN_CONTROL", default_value = cairn_control::DEFAULT_CONTROL_SOCKET)]
    init_control: PathBuf,
    /// cairn-vipd's control socket (for the reboot gate).
    #[arg(long, value_name = "SOCKET", default_value = cairn_control::DEFAULT_VIP_SOCKET)]
    vip_control: PathBuf,
    /// This node's name in the site file (default: $CAIRN_NODE).
    #[arg(long, value_name = "NAME", env = "CAIRN_NODE")]
    node: Option<String>,
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

/// What the agent needs, or why it stays idle.
fn setup(
    args: &Args,
    site: &Site,
    image: &Result<osrelease::Image, String>,
) -> Result<Setup, String> {
    let update = site
        .update
        .as_ref()
        .ok_or("the site has no [update] section")?;
    let booted = slots::booted_slot(&args.boot_slot_file)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "not booted from disk (no {})",
                args.boot_slot_file.display()
            )
        })?;
    let image = image.clone()?;
    let key = PublicKey::parse(&update.public_key)
        .map_err(|e| format!("{}: [update] public_key: {e}", args.site.display()))?;
    let partitions = slots::find_partitions(&args.sys, &args.dev).map_err(|e| e.to_string())?;
    Ok(Setup {
        url: update.url.clone(),
        key,
        cluster: site.cluster.name.clone(),
        image,
        source_date_epoch: site.image.source_date_epoch,
        tries: update.tries,
        allow_downgrade: update.allow_downgrade,
        esp: Esp::new(&args.esp),
        state_dir: args.state_dir.clone(),
        partitions,
        booted,
    })
}

fn peers(site: &Site, role: Option<&str>, me: Option<String>) -> Peers {
    Peers {
        me,
        nodes: site
            .nodes
            .iter()
            .filter(|n| !n.external && Some(n.role.as_str()) == role)
            .map(|n| (n.name.clone(), n.addresses.iter().map(|a| a.addr).collect()))
            .collect(),
        ports: site
            .lb
            .as_ref()
            .map(|lb| lb.frontends.iter().map(|f| f.port).collect())
            .unwrap_or_default(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    // Before any thread starts, so every thread inherits it.
    if let Err(e) = cairn_updated::priority::lower() {
        tracing::warn!("cannot lower the CPU and I/O priority: {e}");
    }
    let site = match cairn_site::load_site(&args.site) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cairn-updated: {e}");
            return ExitCode::from(2);
        }
    };
    let image = std::fs::read_to_string(&args.os_release)
        .map_err(|e| format!("{}: {e}", args.os_release.display()))
        .and_then(|text| {
            osrelease::parse(&args.os_release.display().to_string(), &text)
                .map_err(|e| e.to_string())
        });
    let setup = setup(&args, &site, &image);
    let role = image.as_ref().ok().map(|i| i.role.clone());
    let policy = site.reboot_policy(
        site.nodes
            .iter()
            .find(|n| Some(&n.name) == args.node.as_ref())
            .map(|n| n.role)
            .or_else(|| {
                cairn_site::Role::ALL
                    .into_iter()
                    .find(|r| Some(r.as_str()) == role.as_deref())
            })
            .unwrap_or(cairn_site::Role::Base),
    );
    let remembered = match state::load(&args.state_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}; starting from an empty state");
            state::State::default()
        }
    };
    let update = site.update.as_ref();
    let config = Config {
        running_version: image
            .as_ref()
            .map(|i| i.version.clone())
            .unwrap_or_else(|_| site.image.version.clone()),
        url: update.map(|u| u.url.clone()).unwrap_or_default(),
        policy,
        interval: update
            .map(|u| u.interval_s)
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        init_socket: args.init_control.clone(),
        vip_socket: args.vip_control.clone(),
        peers: peers(&site, role.as_deref(), args.node.clone()),
        setup,
    };
    match &config.setup {
        Ok(s) => tracing::info!(
            "cairn-updated {}: running {} ({}/{}) from slot {}, repository {}, reboot policy {}",
            env!("CARGO_PKG_VERSION"),
            s.image.version,
            s.image.role,
            s.image.profile,
            s.booted,
            s.url,
            match policy {
                RebootPolicy::Immediately => "immediately",
                RebootPolicy::PeerHoldsVip => "peer-holds-vip",
            }
        ),
        Err(reason) => tracing::info!("updates disabled: {reason}"),
    }
    let agent = Agent::new(config, remembered);
    let backend: Arc<dyn cairn_control::UpdateBackend> = agent.clone();
    let _server = match cairn_control::serve_update(&args.control, backend) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cairn-updated: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "control API org.cairn.Update1 on {}",
        args.control.display()
    );
    notify_ready();
    agent.run();
    // Disabled, or rebooting: keep serving Status until stopped.
    loop {
        std::thread::park();
    }
}

/// Sends `READY=1` when started with `NOTIFY_SOCKET` (cairn-init's readiness protocol).
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    use std::os::linux::net::SocketAddrExt;
    let text = path.to_string_lossy().into_owned();
    let result = std::os::unix::net::UnixDatagram::unbound().and_then(|s| {
        let addr = match text.strip_prefix('@') {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?,
            None => std::os::unix::net::SocketAddr::from_pathname(Path::new(&path))?,
        };
        s.send_to_addr(b"READY=1", &addr)
    });
    if let Err(e) = result {
        tracing::warn!("cannot notify readiness on {text}: {e}");
    }
}

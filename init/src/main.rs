//! cairn-init's entry point: argument handling, mode selection, logging.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cairn_control::DEFAULT_CONTROL_SOCKET;
use cairn_init::bless::{self, Timing};
use cairn_init::runtime::{self, BlessSetup, Runtime, Settings};
use cairn_init::{abroot, blockdev, boot, cmdline, config, esp, identity, network, power};
use tracing::{error, info, warn};

const DEFAULT_SERVICES: &str = "/etc/cairn/services.toml";
const USAGE: &str = "\
usage: cairn-init [--services FILE] [--control SOCKET] [--notify-socket PATH]
                  [--watchdog DEVICE] [--ready-line TEXT] [--check] [--version]
                  [--esp DIR --running-version V [--bless-after S] [--boot-deadline S]]

As the machine's PID 1 (no --services): mounts the API filesystems and
supervises /etc/cairn/services.toml. With --services: supervise-only mode,
for PID namespaces and containers. --check validates the services file and
exits. --esp (supervise-only, for tests) blesses a boot-counted entry of
version V found in DIR/EFI/Linux as machine mode does with /efi.";

#[derive(Debug, Default)]
struct Args {
    services: Option<PathBuf>,
    control: Option<PathBuf>,
    notify: Option<PathBuf>,
    watchdog: Option<PathBuf>,
    ready_line: Option<String>,
    check: bool,
    esp: Option<PathBuf>,
    running_version: Option<String>,
    bless_after_s: Option<u64>,
    boot_deadline_s: Option<u64>,
}

/// Parses arguments. As a machine's PID 1 the kernel may pass words of its
/// command line it did not understand, so unknown words are then ignored.
fn parse_args(argv: &[String], lenient: bool) -> Result<Option<Args>, String> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--services" => a.services = Some(value("--services")?.into()),
            "--control" => a.control = Some(value("--control")?.into()),
            "--notify-socket" => a.notify = Some(value("--notify-socket")?.into()),
            "--watchdog" => a.watchdog = Some(value("--watchdog")?.into()),
            "--ready-line" => a.ready_line = Some(value("--ready-line")?),
            "--esp" => a.esp = Some(value("--esp")?.into()),
            "--running-version" => a.running_version = Some(value("--running-version")?),
            "--bless-after" => a.bless_after_s = Some(seconds("--bless-after", value)?),
            "--boot-deadline" => a.boot_deadline_s = Some(seconds("--boot-deadline", value)?),
            "--check" => a.check = true,
            "--version" => {
                println!("cairn-init {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other if lenient => {
                let _ = other;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

fn seconds(
    name: &str,
    mut value: impl FnMut(&str) -> Result<String, String>,
) -> Result<u64, String> {
    let v = value(name)?;
    v.parse()
        .map_err(|_| format!("{name} {v:?}: expected whole seconds"))
}

impl Args {
    /// Blessing in supervise-only mode, from --esp and its companions.
    fn bless_setup(&self) -> Result<Option<BlessSetup>, String> {
        let Some(esp) = &self.esp else {
            return Ok(None);
        };
        let version = self
            .running_version
            .clone()
            .ok_or("--esp needs --running-version")?;
        Ok(Some(BlessSetup {
            esp: esp.clone(),
            version,
            timing: Timing::from_secs(
                self.bless_after_s.unwrap_or(bless::DEFAULT_BLESS_AFTER_S),
                self.boot_deadline_s
                    .unwrap_or(bless::DEFAULT_BOOT_DEADLINE_S),
            ),
            fatal: None,
        }))
    }
}

fn init_logging() {
    let level = match std::env::var("CAIRN_LOG").as_deref() {
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
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .init();
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let pid1 = std::process::id() == 1;
    let supervise = argv.iter().any(|a| a == "--services" || a == "--check");
    // --- early boot (initramfs stage, docs/boot.md): set up the verified
    // root and exec its /sbin/init; never returns.
    if pid1 && !supervise && cairn_init::earlyboot::in_initramfs() {
        cairn_init::earlyboot::run();
    }
    // --- end early boot
    let args = match parse_args(&argv, pid1 && !supervise) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            eprintln!("cairn-init: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if args.check {
        let path = args.services.unwrap_or_else(|| DEFAULT_SERVICES.into());
        match config::load(&path, Path::new("/")) {
            Ok(f) => println!("{}: {} services, ok", path.display(), f.services.len()),
            Err(e) => {
                eprintln!("cairn-init: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    if supervise {
        supervise_only(args);
    } else if pid1 {
        machine(args);
    } else {
        eprintln!("cairn-init: not PID 1; use --services FILE for supervise-only mode\n{USAGE}");
        std::process::exit(2);
    }
}

fn settings(args: &Args, watchdog: Option<PathBuf>) -> Settings {
    let control = args
        .control
        .clone()
        .unwrap_or_else(|| DEFAULT_CONTROL_SOCKET.into());
    let notify = args.notify.clone().unwrap_or_else(|| {
        control
            .parent()
            .unwrap_or(Path::new("/run/cairn"))
            .join("notify.sock")
    });
    Settings {
        control_socket: control,
        control_server: cairn_init::control_api::default_program(),
        notify_socket: notify,
        watchdog,
        ready_line: args.ready_line.clone(),
        bless: None,
    }
}

/// Runs the runtime, restarting its loop if something panics: PID 1 must not die.
fn run_forever(
    mut rt: Runtime,
) -> (
    cairn_control::PowerAction,
    Option<cairn_init::watchdog::Watchdog>,
) {
    loop {
        match catch_unwind(AssertUnwindSafe(|| rt.run())) {
            Ok(done) => return done,
            Err(_) => error!("main loop panicked; continuing"),
        }
    }
}

fn supervise_only(args: Args) {
    init_logging();
    let signals = match runtime::signal_fd() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cairn-init: cannot set up signal handling: {e}");
            std::process::exit(1);
        }
    };
    let Some(path) = args.services.clone() else {
        eprintln!("cairn-init: --services is required in supervise-only mode");
        std::process::exit(2);
    };
    let file = match config::load(&path, Path::new("/")) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cairn-init: {e}");
            std::process::exit(2);
        }
    };
    if std::process::id() != 1 {
        // Orphans of our services come to us rather than to the real init.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            error!(error = %e, "cannot become a child subreaper");
        }
    }
    let bless = match args.bless_setup() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cairn-init: {e}");
            std::process::exit(2);
        }
    };
    info!(services = file.services.len(), file = %path.display(), pid = std::process::id(), "cairn-init supervising");
    let mut settings = settings(&args, args.watchdog.clone());
    settings.bless = bless;
    let rt = match Runtime::new(file.services, settings, signals) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn-init: {e}");
            std::process::exit(1);
        }
    };
    let (action, watchdog) = run_forever(rt);
    power::kill_stragglers();
    if let Some(w) = watchdog {
        let _ = w.close();
    }
    info!(action = action.as_str(), "supervise-only mode: exiting");
    std::process::exit(0);
}

fn machine(args: Args) {
    boot::mount_api_filesystems();
    boot::attach_console();
    init_logging();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "cairn-init starting as PID 1"
    );
    // --- data partition (docs/boot.md): /var from cairn.data=, tmpfs on any error.
    cairn_init::datapart::setup_machine();
    let esp_mounted = mount_esp_on_disk_boots();
    boot::configure_system();
    let identity = identify_and_configure();
    let path = args
        .services
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICES.into());
    let mut fatal = identity
        .as_ref()
        .err()
        .map(|e| format!("this box could not identify itself: {e}"));
    let services = match (&identity, config::load(&path, Path::new("/"))) {
        (Err(_), _) => Vec::new(),
        (Ok((image, _, node)), Ok(f)) => with_identity_env(f.services, image, node),
        (Ok(_), Err(e)) => {
            error!("{e}");
            error!("no services started; the control API stays up for diagnosis");
            fatal = Some(format!("no services: {e}"));
            Vec::new()
        }
    };
    let watchdog = args.watchdog.clone().or_else(|| {
        let dev = PathBuf::from("/dev/watchdog");
        dev.exists().then_some(dev)
    });
    let mut settings = settings(&args, watchdog);
    if let Ok((image, _, node)) = &identity {
        record_boot(image, node);
        settings.ready_line = Some(format!(
            "CAIRN-READY role={} node={node} version={} t_ms={{t_ms}}",
            image.role, image.version
        ));
    }
    if esp_mounted {
        settings.bless = machine_bless_setup(identity.as_ref().ok(), fatal);
    }
    let rt = loop {
        let signals = match runtime::signal_fd() {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot set up signal handling; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
        };
        match Runtime::new(services.clone(), settings.clone(), signals) {
            Ok(rt) => break rt,
            Err(e) => {
                error!(error = %e, "runtime setup failed; retrying without the watchdog");
                settings.watchdog = None;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    };
    let (action, watchdog) = run_forever(rt);
    power::finish_machine(action, watchdog);
}

/// Appends this boot to the history on the data partition (docs/init.md).
fn record_boot(image: &identity::ImageInfo, node: &str) {
    let slot = abroot::read_boot_slot(Path::new(abroot::BOOT_SLOT_FILE));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let boot = cairn_init::boothistory::Boot {
        version: &image.version,
        slot: slot.map_or("-", |s| s.as_str()),
        node,
        role: image.role.as_str(),
        time,
    };
    match cairn_init::boothistory::record(Path::new(cairn_init::boothistory::FILE), &boot) {
        Ok(n) => {
            info!(boot = n, version = %image.version, slot = boot.slot, "boot recorded in {}", cairn_init::boothistory::FILE)
        }
        Err(e) => warn!(error = %e, "cannot record the boot in {}", cairn_init::boothistory::FILE),
    }
}

/// Tells every service who the box is (`CAIRN_NODE`, `CAIRN_ROLE`, `CAIRN_VERSION`), so
/// daemons such as cairn-vipd find their node entry in the site file without a per-node
/// services file. A value the services file sets itself wins.
fn with_identity_env(
    mut services: Vec<config::Service>,
    image: &identity::ImageInfo,
    node: &str,
) -> Vec<config::Service> {
    for svc in &mut services {
        for (key, value) in [
            ("CAIRN_NODE", node),
            ("CAIRN_ROLE", image.role.as_str()),
            ("CAIRN_VERSION", image.version.as_str()),
        ] {
            svc.env
                .entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    services
}

/// On a disk boot (`cairn.root=` names a partition or `ab`, or the early
/// stage recorded a slot) mounts the ESP on /efi. Failures are logged, never
/// fatal: the box runs on, it just cannot install updates or bless a boot.
fn mount_esp_on_disk_boots() -> bool {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let root = cmdline::parse(&text).ok().and_then(|p| p.root);
    let slot = abroot::read_boot_slot(Path::new(abroot::BOOT_SLOT_FILE));
    let disk = slot.is_some()
        || matches!(
            root,
            Some(cmdline::RootSource::Device(_) | cmdline::RootSource::AbSlots)
        );
    if !disk {
        return false;
    }
    match esp::mount_esp(&blockdev::Roots::system(), Path::new(esp::MOUNT_POINT)) {
        Ok(dev) => {
            info!(device = %dev.display(), target = esp::MOUNT_POINT, slot = slot.map_or("-", |s| s.as_str()), "ESP mounted");
            true
        }
        Err(e) => {
            error!("ESP not mounted: {e}; updates and blessing are off for this boot");
            false
        }
    }
}

/// Blessing on a machine: the ESP on /efi, the version from image.toml
/// (or the site), the times from the site's `[update]` section.
fn machine_bless_setup(
    identity: Option<&(identity::ImageInfo, cairn_site::Site, String)>,
    fatal: Option<String>,
) -> Option<BlessSetup> {
    let (version, update) = match identity {
        Some((image, site, _)) => (image.version.clone(), site.update.clone()),
        None => {
            let image = identity::load_image_info(Path::new(identity::IMAGE_FILE)).ok();
            let site = identity::load_site(Path::new(identity::SITE_FILE)).ok();
            let version = image
                .map(|i| i.version)
                .or_else(|| site.as_ref().map(|s| s.image.version.clone()));
            let Some(version) = version else {
                error!("no image version known: cannot tell whether this boot is counted");
                return None;
            };
            (version, site.and_then(|s| s.update))
        }
    };
    let timing = update.map_or_else(Timing::default, |u| {
        Timing::from_secs(u.bless_after_s, u.boot_deadline_s)
    });
    Some(BlessSetup {
        esp: esp::MOUNT_POINT.into(),
        version,
        timing,
        fatal,
    })
}

/// Finds this box's node in the site file (by MAC, or `cairn.node=`), sets
/// the hostname and configures the network. When the box cannot find
/// itself it says so on the console and returns the reason: it then runs no
/// role services but stays up, with its control API, for diagnosis.
fn identify_and_configure()
-> Result<(identity::ImageInfo, cairn_site::Site, String), identity::IdentityError> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let override_name = cairn_init::cmdline::words(&cmdline)
        .into_iter()
        .find(|(k, _)| k == "cairn.node")
        .and_then(|(_, v)| v);
    let found = (|| {
        let image = identity::load_image_info(Path::new(identity::IMAGE_FILE))?;
        let site = identity::load_site(Path::new(identity::SITE_FILE))?;
        // NICs appear while their drivers probe; give them a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let node = loop {
            let macs: Vec<_> = identity::local_macs(Path::new("/sys/class/net"))
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            match identity::resolve(&site, image.role, &macs, override_name.as_deref()) {
                Ok(n) => break n.clone(),
                Err(identity::IdentityError::NoMatch { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        Ok::<_, identity::IdentityError>((image, site, node))
    })();
    let (image, site, node) = match found {
        Ok(v) => v,
        Err(e) => {
            error!("cannot identify this box: {e}");
            runtime::console_line(&format!(
                "cairn-init: this box could not identify itself: {e}; no role services will start"
            ));
            return Err(e);
        }
    };
    match nix::unistd::sethostname(&node.name) {
        Ok(()) => info!(hostname = %node.name, role = %image.role, "identified"),
        Err(e) => error!(error = %e, "cannot set hostname"),
    }
    match cairn_netlink::Netlink::open()
        .map_err(network::NetworkError::from)
        .and_then(|mut nl| network::configure(&mut nl, &site, &node))
    {
        Ok(c) => info!(
            interface = %c.interface,
            addresses = %c.addresses.join(" "),
            gateway = ?c.gateway,
            "network configured"
        ),
        Err(e) => error!("network: {e}"),
    }
    let name = node.name.clone();
    Ok((image, site, name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn strict_mode_rejects_unknown_arguments() {
        assert!(parse_args(&args(&["--services", "x", "--bogus"]), false).is_err());
        assert!(parse_args(&args(&["--services"]), false).is_err());
        let a = parse_args(
            &args(&["--services", "s.toml", "--control", "c.sock"]),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(a.services, Some(PathBuf::from("s.toml")));
        assert_eq!(a.control, Some(PathBuf::from("c.sock")));
    }

    #[test]
    fn esp_flags_make_a_bless_setup() {
        let a = parse_args(
            &args(&[
                "--services",
                "s.toml",
                "--esp",
                "/tmp/esp",
                "--running-version",
                "0.2.0",
                "--bless-after",
                "2",
            ]),
            false,
        )
        .unwrap()
        .unwrap();
        let b = a.bless_setup().unwrap().unwrap();
        assert_eq!(b.esp, PathBuf::from("/tmp/esp"));
        assert_eq!(b.version, "0.2.0");
        assert_eq!(b.timing, Timing::from_secs(2, 300));
        let a = parse_args(&args(&["--esp", "/e"]), false).unwrap().unwrap();
        assert_eq!(
            a.bless_setup().unwrap_err(),
            "--esp needs --running-version"
        );
        assert!(parse_args(&args(&["--boot-deadline", "soon"]), false).is_err());
        let a = parse_args(&args(&["--services", "s"]), false)
            .unwrap()
            .unwrap();
        assert_eq!(a.bless_setup().unwrap(), None);
    }

    #[test]
    fn kernel_command_line_words_are_ignored_as_pid1() {
        let a = parse_args(&args(&["quiet", "single", "--watchdog", "/dev/wd"]), true)
            .unwrap()
            .unwrap();
        assert_eq!(a.watchdog, Some(PathBuf::from("/dev/wd")));
    }
}

//! cairn-init's entry point: argument handling, mode selection, logging.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cairn_control::DEFAULT_CONTROL_SOCKET;
use cairn_init::bless::{self, Timing};
use cairn_init::bootrecord::{self, BootRecord};
use cairn_init::runtime::{self, BlessSetup, Runtime, Settings};
use cairn_init::{boot, config, esp, power};
use tracing::{error, info};

const DEFAULT_SERVICES: &str = "/etc/cairn/services.toml";
const USAGE: &str = "\
usage: cairn-init [--services FILE] [--control SOCKET] [--notify-socket PATH]
                  [--watchdog DEVICE] [--ready-line TEXT] [--check] [--version]
                  [--esp DIR --running-version V [--bless-after S] [--boot-deadline S]]

As the machine's PID 1 (no --services): mounts the API filesystems and
supervises /etc/cairn/services.toml as the box the early stage (cairn-early)
identified in /run/cairn/boot-record. With --services: supervise-only mode,
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

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let pid1 = std::process::id() == 1;
    let supervise = argv.iter().any(|a| a == "--services" || a == "--check");
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
    cairn_init::logging::init(false);
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
    cairn_init::logging::init(false);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "cairn-init starting as PID 1"
    );
    // The early stage set up the machine and says who the box is (docs/boot.md).
    let record = match BootRecord::read(Path::new(bootrecord::FILE)) {
        Ok(r) => r,
        Err(e) => {
            let reason = format!("no boot record from the early stage (cairn-early): {e}");
            error!("{reason}");
            runtime::console_line(&format!(
                "cairn-init: {reason}; no role services will start"
            ));
            BootRecord {
                error: Some(reason),
                ..BootRecord::default()
            }
        }
    };
    let identity = record.identity();
    let path = args
        .services
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICES.into());
    let mut fatal = identity.as_ref().err().cloned();
    let services = match (&identity, config::load(&path, Path::new("/"))) {
        (Err(_), _) => Vec::new(),
        (Ok((node, role, version)), Ok(f)) => with_identity_env(f.services, node, role, version),
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
    if let Ok((node, role, version)) = &identity {
        settings.ready_line = Some(format!(
            "CAIRN-READY role={role} node={node} version={version} t_ms={{t_ms}}"
        ));
    }
    if record.esp_mounted {
        settings.bless = machine_bless_setup(&record, fatal);
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

/// Tells every service who the box is (`CAIRN_NODE`, `CAIRN_ROLE`, `CAIRN_VERSION`), so
/// daemons such as cairn-vipd find their node entry in the site file without a per-node
/// services file. A value the services file sets itself wins.
fn with_identity_env(
    mut services: Vec<config::Service>,
    node: &str,
    role: &str,
    version: &str,
) -> Vec<config::Service> {
    for svc in &mut services {
        for (key, value) in [
            ("CAIRN_NODE", node),
            ("CAIRN_ROLE", role),
            ("CAIRN_VERSION", version),
        ] {
            svc.env
                .entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
    }
    services
}

/// Blessing on a machine: the ESP on /efi, the version and the site's
/// `[update]` timing from the boot record.
fn machine_bless_setup(record: &BootRecord, fatal: Option<String>) -> Option<BlessSetup> {
    let Some(version) = record.version.clone() else {
        error!("no image version known: cannot tell whether this boot is counted");
        return None;
    };
    let timing = record
        .update_timing
        .map_or_else(Timing::default, |(bless_after_s, deadline_s)| {
            Timing::from_secs(bless_after_s, deadline_s)
        });
    Some(BlessSetup {
        esp: esp::MOUNT_POINT.into(),
        version,
        timing,
        fatal,
    })
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

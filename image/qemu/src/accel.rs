//! Choosing the accelerator: KVM when it really runs guests, TCG otherwise.
//!
//! `/dev/kvm` existing proves little: on some hosts (nested or PVM-style
//! hypervisors) QEMU starts, then aborts with an MSR error or stops with
//! "KVM internal error" as soon as the guest leaves real mode. So KVM is
//! tested by booting a 512-byte probe guest (`src/kvm_probe.S`) that goes
//! real mode → 32-bit protected mode → 64-bit long mode with paging, x87 and
//! SSE, then exits QEMU through the `isa-debug-exit` device. Only that exit
//! code counts as "KVM works".

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::host::HostPaths;

/// A QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`, with the host's CPU model.
    Kvm,
    /// QEMU's software emulator: always available, several times slower.
    Tcg,
}

impl Accel {
    /// The QEMU arguments selecting this accelerator and its CPU model.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            // The default model plus RDRAND: the guest kernel (which trusts the CPU's
            // generator, as on real servers) has a ready CRNG at once instead of ~7 s into a
            // TCG boot, where OpenSSL in HAProxy blocks in getrandom. Measured on the lb
            // image: CAIRN-READY 14.3 s after QEMU start, against 15.2 s without RDRAND and
            // 16.3 s with `-cpu max` (whose extra features make the guest slower under TCG).
            Accel::Tcg => &["-accel", "tcg", "-cpu", "qemu64,+rdrand"],
        }
    }

    /// Short lowercase name: `kvm` or `tcg`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The accelerator this process uses and a human-readable note saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, for the console of `cairn run` and for test logs.
    pub note: String,
}

/// Environment variable that skips the probe: `tcg` or `kvm`.
pub const ACCEL_OVERRIDE_VAR: &str = "CAIRN_ACCEL";

/// How long the probe guest may take before KVM is declared unusable. A working
/// KVM finishes in well under a second; TCG in about 0.2 s on this kind of host.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Status QEMU exits with when the probe guest writes 0x10 to `isa-debug-exit`.
const PROBE_EXIT_CODE: i32 = (0x10 << 1) | 1;

/// Errors of one probe run; their text becomes the note of the fallback to TCG.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `/dev/kvm` is absent or not accessible.
    #[error("cannot open {path}: {source}")]
    NoDevice {
        /// The KVM device.
        path: PathBuf,
        /// Why it could not be opened.
        source: std::io::Error,
    },
    /// QEMU is not installed.
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    /// The probe disk image could not be written.
    #[error("cannot write the probe image in {dir}: {source}")]
    ProbeImage {
        /// Directory of the temporary image.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The QEMU binary.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The probe guest did not reach 64-bit mode.
    #[error("QEMU with {accel} could not run the probe guest: {reason}")]
    Failed {
        /// The accelerator that was tried.
        accel: Accel,
        /// What QEMU said, or what happened.
        reason: String,
    },
}

/// Returns the accelerator for this process: probed once, then cached.
///
/// `CAIRN_ACCEL=tcg` or `CAIRN_ACCEL=kvm` skips the probe.
pub fn detect_accel() -> &'static AccelChoice {
    static CHOICE: OnceLock<AccelChoice> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let choice = choose(std::env::var(ACCEL_OVERRIDE_VAR).ok().as_deref(), || {
            probe_accel(&HostPaths::default(), Accel::Kvm)
        });
        tracing::info!(accel = %choice.accel, note = %choice.note, "QEMU accelerator");
        choice
    })
}

/// Decides from the override variable and, without one, from a KVM probe.
fn choose(
    override_var: Option<&str>,
    probe_kvm: impl FnOnce() -> Result<Duration, ProbeError>,
) -> AccelChoice {
    let ignored = match override_var.map(str::trim) {
        Some("tcg") => {
            return AccelChoice {
                accel: Accel::Tcg,
                note: format!("TCG (software emulation) forced by {ACCEL_OVERRIDE_VAR}=tcg"),
            };
        }
        Some("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                note: format!("KVM forced by {ACCEL_OVERRIDE_VAR}=kvm (not probed)"),
            };
        }
        Some("") | None => String::new(),
        Some(other) => format!(" ({ACCEL_OVERRIDE_VAR}={other:?} ignored: use tcg or kvm)"),
    };
    match probe_kvm() {
        Ok(took) => AccelChoice {
            accel: Accel::Kvm,
            note: format!(
                "KVM works (probe guest reached 64-bit mode in {} ms){ignored}",
                took.as_millis()
            ),
        },
        Err(why) => AccelChoice {
            accel: Accel::Tcg,
            note: format!("KVM unusable, using TCG (software emulation, slower): {why}{ignored}"),
        },
    }
}

/// Boots the probe guest with `accel` and returns how long it took, or why it
/// failed. Public so tests can check the probe itself under TCG.
pub fn probe_accel(host: &HostPaths, accel: Accel) -> Result<Duration, ProbeError> {
    if accel == Accel::Kvm {
        let path = PathBuf::from("/dev/kvm");
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| ProbeError::NoDevice { path, source })?;
    }
    let qemu = host.resolve_qemu()?;
    let image = write_probe_image()?;
    run_probe(&qemu, accel, image.path(), PROBE_TIMEOUT)
}

fn write_probe_image() -> Result<tempfile::NamedTempFile, ProbeError> {
    use std::io::Write;
    let dir = std::env::temp_dir();
    let err = |source| ProbeError::ProbeImage {
        dir: dir.clone(),
        source,
    };
    let mut file = tempfile::Builder::new()
        .prefix("cairn-kvm-probe-")
        .suffix(".img")
        .tempfile()
        .map_err(err)?;
    file.write_all(&probe_boot_sector()).map_err(err)?;
    // SeaBIOS refuses disks smaller than one cylinder; a sparse 1 MiB is plenty.
    file.as_file().set_len(1 << 20).map_err(err)?;
    file.flush().map_err(err)?;
    Ok(file)
}

fn run_probe(
    qemu: &Path,
    accel: Accel,
    image: &Path,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let mut drive = std::ffi::OsString::from("format=raw,if=virtio,readonly=on,file=");
    drive.push(crate::args::escape_value(image.as_os_str()));
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(accel.qemu_args())
        .args([
            "-machine",
            "q35",
            "-m",
            "32",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive",
        ])
        .arg(drive)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: qemu.to_path_buf(),
            source,
        })?;

    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = child.stderr.take().map(|mut pipe| {
        let stderr = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                stderr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&text);
            }
        })
    });

    let end = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(code), _) => ProbeEnd::Exit(code),
                    (None, signal) => ProbeEnd::Signal(signal.unwrap_or(0)),
                };
            }
            Ok(None) => {}
            Err(_) => break ProbeEnd::TimedOut,
        }
        let internal_error = stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains("internal error");
        if internal_error || started.elapsed() >= timeout {
            // Kill errors only mean it exited meanwhile; wait() reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
            break if internal_error {
                ProbeEnd::InternalError
            } else {
                ProbeEnd::TimedOut
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    // QEMU has exited, so its stderr is closed and the reader ends promptly.
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let stderr = stderr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    probe_verdict(end, &stderr, timeout)
        .map(|()| took)
        .map_err(|reason| ProbeError::Failed { accel, reason })
}

/// How a probe run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeEnd {
    /// QEMU exited with this status.
    Exit(i32),
    /// QEMU died of this signal (an assertion aborts it with SIGABRT).
    Signal(i32),
    /// QEMU reported a KVM internal error (it then pauses); the probe killed it.
    InternalError,
    /// The guest did not finish in time; the probe killed QEMU.
    TimedOut,
}

/// Judges a probe run from how it ended and QEMU's stderr.
fn probe_verdict(end: ProbeEnd, stderr: &str, timeout: Duration) -> Result<(), String> {
    let said = summarize_stderr(stderr);
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    match end {
        ProbeEnd::Exit(PROBE_EXIT_CODE) => Ok(()),
        ProbeEnd::Exit(0) => Err(format!("the probe guest reset instead of finishing{said}")),
        ProbeEnd::Exit(code) => Err(format!("QEMU exited with status {code}{said}")),
        ProbeEnd::Signal(signal) => Err(format!("QEMU died of signal {signal}{said}")),
        ProbeEnd::InternalError => Err(format!("the guest stopped with an internal error{said}")),
        ProbeEnd::TimedOut => Err(format!(
            "the probe guest made no progress within {} s{said}",
            timeout.as_secs()
        )),
    }
}

/// The first few informative lines QEMU wrote to stderr, on one line.
fn summarize_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.contains("terminating on signal")
                && !line.contains("warning: host doesn't support requested feature")
                && !line.starts_with("extra data")
        })
        .take(3)
        .collect();
    let mut summary = lines.join("; ");
    if summary.len() > 300 {
        let mut end = 300;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
        summary.push('…');
    }
    summary
}

/// Assembled `src/kvm_probe.S` up to the end of its GDT descriptor; the rest of
/// the sector is zero except the 0x55 0xAA boot signature.
const PROBE_CODE: [u8; 190] = [
    0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, //
    0x7c, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x18, 0xf3, 0xab, 0xc7, 0x06, 0x00, //
    0x10, 0x03, 0x20, 0xc7, 0x06, 0x00, 0x20, 0x03, 0x30, 0xc7, 0x06, 0x00, //
    0x30, 0x83, 0x00, 0x66, 0x0f, 0x01, 0x16, 0xb8, 0x7c, 0x0f, 0x20, 0xc0, //
    0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x3f, 0x7c, 0x00, //
    0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, //
    0xd0, 0xdb, 0xe3, 0x0f, 0x20, 0xe0, 0x0d, 0x20, 0x06, 0x00, 0x00, 0x0f, //
    0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, //
    0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, //
    0x0f, 0x20, 0xc0, 0x0d, 0x02, 0x00, 0x00, 0x80, 0x83, 0xe0, 0xfb, 0x0f, //
    0x22, 0xc0, 0xea, 0x81, 0x7c, 0x00, 0x00, 0x18, 0x00, 0xdb, 0xe3, 0xd9, //
    0xe8, 0xdd, 0xd8, 0x0f, 0x57, 0xc0, 0xb0, 0x10, 0xe6, 0xf4, 0xf4, 0xeb, //
    0xfd, 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, //
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, //
    0x00, 0x9a, 0xaf, 0x00, 0x1f, 0x00, 0x98, 0x7c, 0x00, 0x00, //
];

/// The probe's 512-byte boot sector.
fn probe_boot_sector() -> [u8; 512] {
    let mut sector = [0u8; 512];
    sector[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_matches_the_assembly_source() {
        // binutils is a host package of the project (`cargo xtask setup`).
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kvm_probe.S");
        let object = dir.path().join("p.o");
        let binary = dir.path().join("p.bin");
        let status = Command::new("as")
            .arg("--64")
            .arg("-o")
            .arg(&object)
            .arg(&source)
            .status()
            .expect("run `as` (package binutils)");
        assert!(status.success(), "as failed on {}", source.display());
        let status = Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-Ttext=0x7c00",
                "--oformat",
                "binary",
                "-o",
            ])
            .arg(&binary)
            .arg(&object)
            .status()
            .expect("run `ld` (package binutils)");
        assert!(status.success(), "ld failed");
        let assembled = std::fs::read(&binary).unwrap();
        assert_eq!(assembled.len(), 512);
        assert_eq!(assembled[..], probe_boot_sector()[..]);
    }

    #[test]
    fn only_the_debug_exit_code_counts_as_success() {
        let t = Duration::from_secs(5);
        assert_eq!(probe_verdict(ProbeEnd::Exit(33), "", t), Ok(()));
        let reset = probe_verdict(ProbeEnd::Exit(0), "", t).unwrap_err();
        assert!(reset.contains("reset"), "{reset}");
        let exit = probe_verdict(ProbeEnd::Exit(1), "qemu: bad option", t).unwrap_err();
        assert!(exit.contains("status 1: qemu: bad option"), "{exit}");
        // What QEMU 7.2 says with `-cpu host` on a host whose KVM cannot run
        // guests; the assertion kills it with SIGABRT.
        let msr = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                   qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: \
                   Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        let why = probe_verdict(ProbeEnd::Signal(6), msr, t).unwrap_err();
        assert!(why.contains("signal 6"), "{why}");
        assert!(why.contains("failed to set MSR 0x10a"), "{why}");
        // What it says when the guest hits an instruction KVM cannot emulate.
        let internal = "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n\
                        KVM internal error. Suberror: 1\nextra data[0]: 0x0000000000000001\nemulation failure\n";
        let why = probe_verdict(ProbeEnd::InternalError, internal, t).unwrap_err();
        assert!(why.contains("internal error"), "{why}");
        assert!(why.contains("emulation failure"), "{why}");
        assert!(!why.contains("extra data"), "{why}");
        assert!(!why.contains("pni"), "{why}");
        let hang = probe_verdict(ProbeEnd::TimedOut, "", t).unwrap_err();
        assert!(hang.contains("no progress within 5 s"), "{hang}");
    }

    #[test]
    fn stderr_summary_is_bounded() {
        let long = "x".repeat(1000);
        let summary = summarize_stderr(&format!("{long}\n{long}\n"));
        assert!(summary.chars().count() <= 301, "{}", summary.len());
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn override_variable_skips_the_probe() {
        let never = || -> Result<Duration, ProbeError> { panic!("probe must not run") };
        assert_eq!(choose(Some("tcg"), never).accel, Accel::Tcg);
        assert_eq!(choose(Some("kvm"), never).accel, Accel::Kvm);
    }

    #[test]
    fn probe_result_decides_without_override() {
        let ok = choose(None, || Ok(Duration::from_millis(40)));
        assert_eq!(ok.accel, Accel::Kvm);
        assert!(ok.note.contains("40 ms"), "{}", ok.note);

        let failed = choose(Some("fast"), || {
            Err(ProbeError::Failed {
                accel: Accel::Kvm,
                reason: "QEMU exited with status 134".into(),
            })
        });
        assert_eq!(failed.accel, Accel::Tcg);
        assert!(failed.note.contains("status 134"), "{}", failed.note);
        assert!(failed.note.contains("\"fast\" ignored"), "{}", failed.note);
    }

    #[test]
    fn accel_arguments() {
        assert_eq!(Accel::Kvm.qemu_args(), ["-accel", "kvm", "-cpu", "host"]);
        assert_eq!(
            Accel::Tcg.qemu_args(),
            ["-accel", "tcg", "-cpu", "qemu64,+rdrand"]
        );
        assert_eq!(Accel::Tcg.to_string(), "tcg");
    }
}

//! `cargo xtask`: the project's tasks. `setup` installs host packages,
//! `demo` runs the main job on the built-in example, `test` runs every test,
//! `k8s-bins` builds the Kubernetes binaries the k8s tests use,
//! `bench` measures and writes `bench/report.md`.

mod bench;
mod bench_chart;
mod bench_debian;
mod bench_image;
mod bench_storage;
mod bench_update;
mod bench_vrrp;
mod demo;
mod demo_lb;
mod k8s_bins;
mod lab;
mod setup;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "cairn project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the host packages the project needs (idempotent; needs root).
    Setup,
    /// Set up, build, and run the live demo on the built-in example: the load-balancer
    /// pair as a QEMU lab, failing over under load.
    Demo {
        /// Leave the lab running at the end (remove it with `cairn lab down`).
        #[arg(long)]
        keep: bool,
        /// Instead: cairn-init as PID 1 of a PID namespace with a few demo services, and the
        /// `base` image booted to CAIRN-READY.
        #[arg(long)]
        pid1: bool,
    },
    /// Set up, then run formatting and lint checks and every test (unit, privileged).
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments passed to `cargo test` after `--`.
        #[arg(last = true)]
        rest: Vec<String>,
    },
    /// Build kubelet, kube-apiserver and kube-controller-manager from Debian's
    /// `kubernetes` source package (and take Debian's kubectl) into
    /// `$CAIRN_CACHE/k8s/<version>/bin` (idempotent; needs root; ≈ 9 min cold on 2 cores).
    K8sBins {
        /// Keep the unpacked source tree and its Go cache (≈ 2.5 GB) after a
        /// successful build.
        #[arg(long)]
        keep_tree: bool,
    },
    /// Build in release mode and run the benchmark suite.
    Bench {
        /// Runs per measurement.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Run one part only and update its section of the report, keeping the rest.
        #[arg(long, value_enum)]
        only: Option<BenchPart>,
    },
}

/// A part of the benchmark suite that can run alone.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchPart {
    /// cairn-init as PID 1 of a PID namespace with ten services: resident memory,
    /// readiness, restart latency, shutdown (root, no QEMU).
    Pid1,
    /// cairn-vipd against keepalived: node death and graceful stop (root).
    Failover,
    /// Boot to serving and footprint: the cairn `lb` image against a minimal
    /// Debian image (mmdebstrap), plus bench/boot-timeline.png (root).
    Boot,
    /// A/B upgrade: bundle size, time to apply, rolling upgrade of the LB pair under a
    /// client, time to automatic rollback (root, QEMU lab; runs/3 scenario runs).
    Upgrade,
    /// The cairn `storage` image against Debian with glusterfs-server: footprint
    /// and three VMs each from QEMU start to the replica-3 volume mountable
    /// (root, QEMU; at most 5 runs).
    Storage,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Demo { keep, pid1 } => {
            setup::run()?;
            if pid1 {
                demo::run()
            } else {
                demo_lb::run(keep)
            }
        }
        Cmd::K8sBins { keep_tree } => {
            setup::run()?;
            k8s_bins::run(keep_tree).map(|_| ())
        }
        Cmd::Test { no_lint, rest } => {
            setup::run()?;
            let k8s_bin = k8s_bins::run(false)?;
            test(no_lint, &rest, &k8s_bin)
        }
        Cmd::Bench { runs, only } => {
            setup::run()?;
            match only {
                Some(BenchPart::Pid1) => bench::run_pid1_alone(runs),
                Some(BenchPart::Failover) => bench_vrrp::run_alone(runs),
                Some(BenchPart::Boot) => bench_debian::run_alone(runs),
                Some(BenchPart::Upgrade) => bench_update::run_alone(runs),
                Some(BenchPart::Storage) => bench_storage::run_alone(runs),
                // The storage part adds its section to the report the others wrote.
                None => bench::run(runs).and_then(|()| bench_storage::run_alone(runs)),
            }
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts build output (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// Prints a step header.
pub fn step(what: &str) {
    println!("\n==> {what}");
}

/// Runs a command in the workspace root, failing on a non-zero exit.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let t = Instant::now();
    let st = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    println!("    ({:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}

/// A cargo command (the one running xtask).
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The target the box binaries are built for: static, so an image needs no
/// shared libraries for them and PID 1 maps no libc.so.
pub const BOX_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the release binaries that run on a box (static glibc), as the demo,
/// the benchmarks and images use them; returns their directory.
pub fn build_release() -> Result<PathBuf> {
    step("building release binaries (static)");
    run_cmd(
        cargo()
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--release",
                "--target",
                BOX_TARGET,
                "-p",
                "cairn-init",
                "-p",
                "cairnctl",
            ]),
    )?;
    Ok(target_dir().join(BOX_TARGET).join("release"))
}

/// Runs the lints and every test; `k8s_bin` (the binaries of `cargo xtask
/// k8s-bins`) reaches the QEMU tests as `CAIRN_K8S_BIN`.
fn test(no_lint: bool, rest: &[String], k8s_bin: &std::path::Path) -> Result<()> {
    let t = Instant::now();
    if !nix::unistd::geteuid().is_root() {
        bail!("the test suite includes privileged tests (namespaces): run it as root");
    }
    if !no_lint {
        step("cargo fmt --check");
        run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
        step("cargo clippy -D warnings");
        run_cmd(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // Tests run the workspace's binaries (cairnctl, cairn) as real programs;
    // `cargo test` only builds the binaries of packages with integration tests.
    step("cargo build --workspace --bins");
    run_cmd(cargo().args(["build", "--workspace", "--bins"]))?;
    step("cargo test --workspace (unit, integration, privileged and QEMU tests)");
    let mut c = cargo();
    c.env("CAIRN_K8S_BIN", k8s_bin)
        .args(["test", "--workspace"]);
    if !rest.is_empty() {
        c.arg("--").args(rest);
    }
    run_cmd(&mut c)?;
    println!("\nall tests passed in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

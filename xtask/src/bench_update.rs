//! Upgrade benchmark (section "A/B upgrade"): runs the QEMU update scenario
//! (`qemu-tests/tests/update.rs`: the example site's LB pair in a lab, v1 → v2 rolling
//! upgrade under a client, a v3 that never becomes ready, power cuts) and reports the
//! figures it writes: bundle size, time to apply a bundle on one box (download, write,
//! verify, install), the rolling upgrade of both boxes (failed client requests, time until
//! both are blessed) and the time to the automatic rollback. Nothing here asserts a time;
//! the scenario's own assertions (zero failed requests, rollback, refusals) still hold.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::bench::Metric;
use crate::{cargo, step, target_dir};

/// The markdown heading of this benchmark's section in `bench/report.md`.
pub const SECTION: &str = "## A/B upgrade";

/// The measured figures.
#[derive(Debug, Serialize)]
pub struct UpgradeReport {
    runs: usize,
    metrics: Vec<Metric>,
}

/// One run of the scenario's figures file.
fn one_run(i: usize, n: usize) -> Result<serde_json::Value> {
    step(&format!(
        "upgrade scenario, run {} of {n} (QEMU lab of lb1, lb2, web1, web2; several minutes)",
        i + 1
    ));
    let figures = target_dir().join(format!("tmp/bench-update-{i}.json"));
    let _ = std::fs::remove_file(&figures);
    let status = cargo()
        .args([
            "test",
            "-p",
            "qemu-tests",
            "--test",
            "update",
            "--",
            "--nocapture",
        ])
        .env("CAIRN_UPDATE_FIGURES", &figures)
        .status()
        .context("running the update scenario")?;
    if !status.success() {
        bail!("the update scenario failed ({status}); see its output above");
    }
    let text = std::fs::read_to_string(&figures)
        .with_context(|| format!("the scenario wrote no {}", figures.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Runs the scenario `n` times and collects the figures (root, QEMU).
pub fn run(n: usize) -> Result<UpgradeReport> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the upgrade benchmark boots a QEMU lab in network namespaces: run it as root");
    }
    let runs: Vec<serde_json::Value> = (0..n).map(|i| one_run(i, n)).collect::<Result<_>>()?;
    let series = |key: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[key].as_f64()).collect() };
    let metrics = vec![
        Metric::new(
            "bundle size (root.img + UKI + signed manifest)",
            "MiB",
            "",
            series("bundle_mib"),
        ),
        Metric::new(
            "apply one bundle on one box (download + write + verify + install UKI)",
            "s",
            "",
            series("apply_s"),
        ),
        Metric::new(
            "rolling upgrade of both LB boxes: both applied",
            "s",
            "",
            series("rolling_apply_s"),
        ),
        Metric::new(
            "rolling upgrade of both LB boxes: until both blessed and lb1 holds the VIP again",
            "s",
            "",
            series("rolling_blessed_s"),
        ),
        Metric::new(
            "rolling upgrade: client requests (one every 10 ms, 1 s timeout)",
            "requests",
            "",
            series("rolling_requests"),
        ),
        Metric::new(
            "rolling upgrade: failed client requests",
            "requests",
            "0",
            series("rolling_failed"),
        ),
        Metric::new(
            "automatic rollback: reboot into a version that never gets ready → previous version serving, failure reported (3 tries)",
            "s",
            "",
            series("rollback_s"),
        ),
    ];
    Ok(UpgradeReport { runs: n, metrics })
}

/// The report section (heading included) as markdown.
pub fn markdown(r: &UpgradeReport) -> String {
    let mut md = format!("{SECTION}\n\n");
    md.push_str(&format!(
        "The QEMU update scenario (`qemu-tests/tests/update.rs`, {} run(s)): the example site's LB pair \
         as a lab (TCG, UEFI disks), bundles published to the lab's repository and applied with \
         `cairnctl upgrade`. Median / min / max.\n\n",
        r.runs
    ));
    md.push_str("| measurement | unit | median / min / max | goal |\n|---|---|---|---|\n");
    for m in &r.metrics {
        md.push_str(&format!(
            "| {} | {} | {:.1} / {:.1} / {:.1} | {} |\n",
            m.name, m.unit, m.median, m.min, m.max, m.goal
        ));
    }
    md
}

/// `cargo xtask bench --only upgrade`: measures and puts the section into the existing
/// report (markdown section and the `upgrade` key of report.json).
pub fn run_alone(runs: usize) -> Result<()> {
    let report = run(runs_for(runs))?;
    crate::bench::write_part(
        SECTION,
        &markdown(&report),
        "upgrade",
        serde_json::to_value(&report)?,
    )
}

/// Scenario runs for `--runs` (each takes minutes).
pub fn runs_for(runs: usize) -> usize {
    (runs / 3).max(1)
}

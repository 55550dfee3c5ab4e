//! Failover benchmark, cairn-vipd against keepalived (section "Failover (VRRPv3)").
//!
//! Each run builds a fresh cairn-labnet lab: VRRP nodes `a` (priority 150, 192.0.2.11)
//! and `b` (100, .12) with an HTTP responder each (body = node name), a client `cl`
//! (.200) and the VIP 192.0.2.100/24 (VRID 51, VRRPv3, preempt; the configurations
//! come from one `vrrpd::Instance`, so both daemons get identical settings). `a` is
//! started first and becomes master, then `b`. Two scenarios:
//!
//! - node death: SIGKILL to `a`'s daemon, then its cable is cut (the order of the
//!   privileged tests). The kill is placed at a fixed phase after one of `a`'s adverts
//!   seen on the bridge; run `r` of `n` uses phase `(r + ½) / n` of the interval for both
//!   daemons, so the advert phase varies over the runs but never between the two daemons.
//! - graceful stop: SIGTERM to `a` (it resigns with priority 0), placed at phase
//!   `(r + ½) / n` of the client's 10 ms request grid, the same phases for both daemons.
//!
//! Measured from the kill / SIGTERM: VIP present on `b` (labnet's `AddrWatch`), first
//! answer from `b`'s responder to a client in `cl` starting a request to the VIP every 10 ms,
//! failed client requests, gratuitous ARPs `b` sent (labnet's `BridgeCapture`). Runs
//! alternate daemon by daemon so machine noise hits both. Nothing here asserts a time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cairn_labnet::frames::Seen;
use cairn_labnet::probe::{Attempt, ProbeSummary};
use cairn_labnet::vrrpd::{self, Daemon, Instance};
use cairn_labnet::{AddrWatch, BridgeCapture, Lab, Spawn};
use serde::Serialize;

use crate::bench::Metric;
use crate::{BOX_TARGET, cargo, root, run_cmd, step, target_dir};

/// The markdown heading of this benchmark's section in `bench/report.md`.
pub const SECTION: &str = "## Failover (VRRPv3)";

/// The VIP with its prefix, as configured on both daemons.
const VIP_CIDR: &str = "192.0.2.100/24";
/// The VRID of the instance (`Instance::web`).
const VRID: u8 = 51;
/// The client's probe period.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// One request's limit (connect, send, read), as in the privileged tests; shorter limits
/// (50 ms) were tried and counted stalls of a loaded two-core machine as failed requests,
/// even before any failover. [`PROBE_WORKERS`] × [`PROBE_EVERY`] must exceed it, so a
/// request that times out still ends before its thread's next slot.
const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// Gratuitous ARPs are counted from the kill until this long after the VIP arrived on the
/// backup: cairn-vipd's five rounds 200 ms apart and keepalived's first burst of five
/// fit; keepalived's repeat burst after `vrrp_garp_master_delay` (5 s) does not.
const GARP_WINDOW: Duration = Duration::from_millis(900);

fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))
}

/// The failover results of one advertisement interval.
#[derive(Debug, Serialize)]
pub struct IntervalReport {
    /// Advertisement interval of both daemons, ms.
    pub advert_interval_ms: u32,
    /// Runs per daemon and scenario.
    pub runs: usize,
    /// One row per measured quantity.
    pub rows: Vec<Row>,
}

/// One measured quantity for both daemons.
#[derive(Debug, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// cairn-vipd's samples.
    pub cairn_vipd: Metric,
    /// keepalived's samples.
    pub keepalived: Metric,
    /// cairn-vipd median / keepalived median (NaN unless both medians are positive).
    pub ratio: f64,
    /// The goal in words (empty: informational).
    pub goal: String,
    /// How cairn-vipd did against the row's goals (`None`: no goal).
    pub verdict: Option<Verdict>,
}

/// Everything the failover benchmark measured.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    /// `keepalived --version`, first line.
    pub keepalived_version: String,
    /// One entry per advertisement interval.
    pub intervals: Vec<IntervalReport>,
    /// Wall time of the whole failover benchmark, s.
    pub wall_s: f64,
}

/// How cairn-vipd's samples compare with a goal; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Goal met.
    Met,
    /// "Not worse than keepalived" missed by at most [`TIE`] of keepalived's median:
    /// within what the observers resolve.
    Tie,
    /// Goal missed.
    Missed,
}

/// Relative margin within which a higher cairn-vipd median counts as a tie.
const TIE: f64 = 0.01;

/// A goal a row's cairn-vipd samples are checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// cairn-vipd's median at most this value.
    MedianAtMost(f64),
    /// Every cairn-vipd sample at most this value.
    AllAtMost(f64),
    /// cairn-vipd's median at most keepalived's.
    NotWorse,
}

impl Goal {
    fn text(self, unit: &str) -> String {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        match self {
            Goal::MedianAtMost(v) => format!("median ≤ {v:.0}{unit}"),
            Goal::AllAtMost(0.0) => "0 in every run".into(),
            Goal::AllAtMost(v) => format!("≤ {v:.0}{unit} in every run"),
            Goal::NotWorse => "≤ keepalived".into(),
        }
    }

    fn verdict(self, cairn: &Metric, keepalived: &Metric) -> Verdict {
        let met = match self {
            Goal::MedianAtMost(v) => cairn.median <= v,
            Goal::AllAtMost(v) => !cairn.samples.is_empty() && cairn.max <= v,
            Goal::NotWorse => cairn.median <= keepalived.median,
        };
        if met {
            Verdict::Met
        } else if self == Goal::NotWorse
            && keepalived.median > 0.0
            && cairn.median <= keepalived.median * (1.0 + TIE)
        {
            Verdict::Tie
        } else {
            Verdict::Missed
        }
    }
}

/// Builds one row from both daemons' samples; checks `goals` on cairn-vipd's.
fn row(name: &str, unit: &str, goals: &[Goal], cairn: Vec<f64>, keepalived: Vec<f64>) -> Row {
    let cairn = Metric::new(name, unit, "", cairn);
    let keepalived = Metric::new(name, unit, "", keepalived);
    let ratio = if keepalived.median > 0.0 && cairn.median > 0.0 {
        cairn.median / keepalived.median
    } else {
        f64::NAN
    };
    let goal = goals
        .iter()
        .map(|g| g.text(unit))
        .collect::<Vec<_>>()
        .join("; ");
    let verdict = goals.iter().map(|g| g.verdict(&cairn, &keepalived)).max();
    Row {
        name: name.into(),
        unit: unit.into(),
        cairn_vipd: cairn,
        keepalived,
        ratio,
        goal,
        verdict,
    }
}

/// Which way the master goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// SIGKILL, then cable cut.
    Death,
    /// SIGTERM.
    Graceful,
}

/// What one run measured (ms from the kill / SIGTERM unless said otherwise).
#[derive(Debug, Clone)]
struct Sample {
    /// VIP present on `b`.
    vip_ms: f64,
    /// First answer from `b`'s responder through the VIP.
    answer_ms: f64,
    /// Failed client requests that ended at or after the event (until the end of the
    /// GARP window).
    failed: f64,
    /// Failed client requests that ended before the event: not the failover's doing
    /// (a stalled machine), shown in the progress lines only.
    failed_before: usize,
    /// Gratuitous ARPs for the VIP from `b` in the GARP window.
    garps: f64,
    /// `b`'s first gratuitous ARP relative to the VIP arriving on it (negative: before).
    first_garp_ms: f64,
    /// Death: the dead master's last advert on the bridge → VIP on `b`.
    from_last_advert_ms: f64,
    /// Graceful: `a` released the VIP → `b` acquired it (negative: both held it; NaN:
    /// `a` never released it).
    unowned_ms: f64,
}

/// Signed milliseconds from `from` to `to`.
fn ms_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1000.0),
    }
}

/// One client request: when it started and ended, and the body or the error.
#[derive(Debug, Clone)]
struct Timed {
    start: Instant,
    end: Instant,
    result: Result<String, String>,
}

/// Client threads inside a lab node starting a `GET /` to the VIP every [`PROBE_EVERY`]:
/// [`PROBE_WORKERS`] threads, staggered by one period, each waiting for its own request
/// (at most [`PROBE_TIMEOUT`]) before the next, so an outage is still sampled every
/// [`PROBE_EVERY`] (a single sequential client, like `cairn-lab-probe`, samples it once
/// per timeout). Requests use `cairn_labnet::http::get`; in-process, so the timestamps
/// share the clock of the kill and of the address observer.
///
/// Every request starts on a fixed grid (`grid` + k × [`PROBE_EVERY`]), whatever the
/// answers: when requests time out, threads that restarted at once after each timeout
/// drifted off the grid and sampled the end of an outage more densely than a run
/// without failed requests, which favoured the daemon whose clients saw failures.
struct Prober {
    /// The first slot of the request grid.
    grid: Instant,
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Timed>>>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

/// Client threads: one request in flight each, one started every [`PROBE_EVERY`] overall.
const PROBE_WORKERS: u32 = 11;

impl Prober {
    fn start(netns: &str, target: SocketAddr) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let first = Instant::now() + Duration::from_millis(20);
        let period = PROBE_EVERY * PROBE_WORKERS;
        let mut prober = Prober {
            grid: first,
            stop,
            attempts,
            threads: Vec::new(),
        };
        for k in 0..PROBE_WORKERS {
            let (s2, a2, ns) = (
                prober.stop.clone(),
                prober.attempts.clone(),
                netns.to_owned(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("failover-client-{k}"))
                .spawn(move || {
                    cairn_labnet::netns::enter(&ns).map_err(|e| e.to_string())?;
                    let mut next = first + PROBE_EVERY * k;
                    while !s2.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if now < next {
                            std::thread::sleep(next - now);
                            continue;
                        }
                        // The next slot of this thread; one is skipped only if a request
                        // overran it (a stall of the machine: the timeout is shorter).
                        next += period;
                        while next <= now {
                            next += period;
                        }
                        let result = cairn_labnet::http::get(target, PROBE_TIMEOUT);
                        let t = Timed {
                            start: now,
                            end: Instant::now(),
                            result,
                        };
                        a2.lock().map_err(|e| e.to_string())?.push(t);
                    }
                    Ok(())
                })
                .context("starting a client thread")?;
            prober.threads.push(thread);
        }
        Ok(prober)
    }

    /// The moment `phase` (0..1) of a grid period after the first grid slot at or after `t`.
    fn slot_after(&self, t: Instant, phase: f64) -> Instant {
        let since = t.saturating_duration_since(self.grid);
        let every = PROBE_EVERY.as_nanos();
        let k = since.as_nanos().div_ceil(every);
        self.grid
            + Duration::from_nanos(u64::try_from(k * every).unwrap_or(u64::MAX))
            + PROBE_EVERY.mul_f64(phase)
    }

    /// When the first answer with `body` that ended at or after `since` arrived.
    fn first_answer(&self, body: &str, since: Instant) -> Option<Instant> {
        let a = self.attempts.lock().ok()?;
        a.iter()
            .filter(|t| t.end >= since && t.result.as_deref() == Ok(body))
            .map(|t| t.end)
            .min()
    }

    /// Stops the threads and returns every attempt in the order they started.
    fn stop(mut self) -> Result<Vec<Timed>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("client thread: {e}"),
                Err(_) => bail!("client thread panicked"),
            }
        }
        let mut a = self
            .attempts
            .lock()
            .map_err(|_| anyhow::anyhow!("client attempts poisoned"))?
            .clone();
        a.sort_by_key(|t| t.start);
        Ok(a)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The binaries a run needs.
struct Bins {
    vipd: PathBuf,
    responder: PathBuf,
}

/// The lab of one run with its observers.
struct Bed {
    lab: Lab,
    watch: AddrWatch,
    capture: BridgeCapture,
}

impl Bed {
    fn new(bins: &Bins) -> Result<Self> {
        let mut lab = Lab::new("fb")?;
        lab.add_node("a", &["192.0.2.11/24"])?;
        lab.add_node("b", &["192.0.2.12/24"])?;
        lab.add_node("cl", &["192.0.2.200/24"])?;
        let watch = AddrWatch::start(&lab, &["a", "b"], &[vip()])?;
        let capture = BridgeCapture::start(&lab)?;
        for node in ["a", "b"] {
            let spec = Spawn::new(&bins.responder, &["--listen", "0.0.0.0:80", "--name", node]);
            let name = format!("http-{node}");
            lab.spawn(node, &name, &spec)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while !lab.process(&name)?.log().contains("on 0.0.0.0:80") {
                if Instant::now() > deadline {
                    bail!("the responder on {node} did not start");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(Bed {
            lab,
            watch,
            capture,
        })
    }

    /// The last lines of both daemon logs, for error messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for n in ["a", "b"] {
            if let Ok(p) = self.lab.process(&vrrpd::process_name(n)) {
                let log = p.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(15)..];
                out.push_str(&format!("--- {n} ---\n{}\n", tail.join("\n")));
            }
        }
        out
    }

    /// Waits for `node` to acquire the VIP at or after `since`.
    fn acquired(&self, node: &str, since: Instant, timeout: Duration) -> Result<Instant> {
        let (ok, t) = self
            .watch
            .wait_until(timeout, |t| t.acquired(vip(), node, since).is_some());
        match t.acquired(vip(), node, since) {
            Some(at) if ok => Ok(at),
            _ => bail!(
                "{node} did not take the VIP within {timeout:?} (holders {:?})\n{}",
                t.holders(vip()),
                self.logs()
            ),
        }
    }

    /// When the next advert from `node` enters the bridge after `since`.
    fn next_advert(&self, node: &str, since: Instant, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self
                .capture
                .adverts(VRID, since)
                .into_iter()
                .find(|c| c.from == node)
            {
                return Ok(c.at);
            }
            if Instant::now() > deadline {
                bail!("no advert from {node} within {timeout:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// One run: a fresh lab, `a` master then `b` backup, the event, the measurements.
fn run_once(
    bins: &Bins,
    daemon: &Daemon,
    interval: Duration,
    scenario: Scenario,
    phase: f64,
) -> Result<Sample> {
    let mut bed = Bed::new(bins)?;
    let interval_ms = u32::try_from(interval.as_millis()).context("interval")?;
    let inst = |priority| {
        let mut i = Instance::web(priority, VIP_CIDR);
        i.advert_interval_ms = interval_ms;
        i
    };
    vrrpd::start(&mut bed.lab, "a", daemon, &inst(150), &[])?;
    // A lone backup waits Master_Down_Interval (3.4 intervals) before it becomes master.
    bed.acquired(
        "a",
        bed.watch.started(),
        interval * 5 + Duration::from_secs(3),
    )?;
    vrrpd::start(&mut bed.lab, "b", daemon, &inst(100), &[])?;
    // b must be up and have heard a's adverts, so its Master_Down_Timer runs from a's
    // last advert and not from its own start.
    std::thread::sleep((interval + Duration::from_millis(300)).max(Duration::from_millis(600)));
    let holders = bed.watch.holders(vip());
    if holders.len() != 1 || !holders.contains("a") {
        bail!(
            "before the event the VIP is on {holders:?}, not on a\n{}",
            bed.logs()
        );
    }

    let target = SocketAddr::new(vip(), 80);
    let prober = Prober::start(&bed.lab.netns("cl"), target)?;
    std::thread::sleep(Duration::from_millis(200));
    let t0 = match scenario {
        Scenario::Death => {
            let adv = bed.next_advert("a", Instant::now(), interval * 3)?;
            let at = adv + interval.mul_f64(phase);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let t0 = Instant::now();
            vrrpd::kill9(&mut bed.lab, "a")?;
            bed.lab.cut("a")?;
            t0
        }
        Scenario::Graceful => {
            let at = prober.slot_after(Instant::now(), phase);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let t0 = Instant::now();
            vrrpd::terminate(&bed.lab, "a")?;
            t0
        }
    };
    let vip_at = bed.acquired("b", t0, interval * 5 + Duration::from_secs(2))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let answer_at = loop {
        if let Some(at) = prober.first_answer("b", t0) {
            break at;
        }
        if Instant::now() > deadline {
            bail!(
                "no answer from b within 3 s of it taking the VIP\n{}",
                bed.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let window_end = vip_at + GARP_WINDOW;
    if let Some(wait) = window_end.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let attempts = prober.stop()?;
    let (after, before): (Vec<Timed>, Vec<Timed>) = attempts.into_iter().partition(|t| t.end >= t0);
    let summary = ProbeSummary::from_attempts(
        &after
            .iter()
            .map(|t| Attempt {
                t_ms: ms_between(t0, t.start),
                ok: t.result.is_ok(),
                body: t.result.clone().ok(),
                error: t.result.clone().err(),
                mono_ms: None,
            })
            .collect::<Vec<_>>(),
    );
    let garps: Vec<Instant> = bed
        .capture
        .garps(vip(), t0)
        .into_iter()
        .filter(|g| g.from == "b" && g.at <= window_end)
        .map(|g| g.at)
        .collect();
    let last_advert = bed
        .capture
        .adverts(VRID, bed.watch.started())
        .into_iter()
        .filter(|c| c.from == "a" && matches!(c.seen, Seen::Vrrp { priority, .. } if priority > 0))
        .map(|c| c.at)
        .next_back();
    let released = bed.watch.timeline().released(vip(), "a", t0);
    if !bed.watch.errors().is_empty() {
        bail!("address observer errors: {:?}", bed.watch.errors());
    }
    Ok(Sample {
        vip_ms: ms_between(t0, vip_at),
        answer_ms: ms_between(t0, answer_at),
        failed: summary.failures as f64,
        failed_before: before.iter().filter(|t| t.result.is_err()).count(),
        garps: garps.len() as f64,
        first_garp_ms: garps
            .first()
            .map(|g| ms_between(vip_at, *g))
            .unwrap_or(f64::NAN),
        from_last_advert_ms: last_advert
            .map(|a| ms_between(a, vip_at))
            .unwrap_or(f64::NAN),
        unowned_ms: released.map(|r| ms_between(r, vip_at)).unwrap_or(f64::NAN),
    })
}

/// Runs for one interval: `runs` pairs, cairn-vipd and keepalived alternating.
fn measure_interval(bins: &Bins, interval: Duration, runs: usize) -> Result<IntervalReport> {
    let ms = interval.as_secs_f64() * 1000.0;
    let daemons = [Daemon::CairnVipd(bins.vipd.clone()), Daemon::Keepalived];
    // [daemon][scenario] samples.
    let mut samples: [[Vec<Sample>; 2]; 2] = Default::default();
    for r in 0..runs {
        let phase = (r as f64 + 0.5) / runs as f64;
        for (si, scenario) in [Scenario::Death, Scenario::Graceful]
            .into_iter()
            .enumerate()
        {
            for (di, d) in daemons.iter().enumerate() {
                let s = run_once(bins, d, interval, scenario, phase).with_context(|| {
                    format!(
                        "{} {scenario:?} run {}, {ms:.0} ms adverts",
                        d.label(),
                        r + 1
                    )
                })?;
                let noise = if s.failed_before > 0 {
                    format!(" (+{} failed before the event)", s.failed_before)
                } else {
                    String::new()
                };
                println!(
                    "    {ms:>4.0} ms {:<8} {}/{runs} {:<10}: VIP {:>6.0} ms, answer {:>6.0} ms, {} failed, {} GARPs{noise}",
                    format!("{scenario:?}"),
                    r + 1,
                    d.label(),
                    s.vip_ms,
                    s.answer_ms,
                    s.failed,
                    s.garps
                );
                samples[di][si].push(s);
            }
        }
    }
    let col = |di: usize, si: usize, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples[di][si].iter().map(f).collect()
    };
    let both = |name: &str, unit: &str, goals: &[Goal], si: usize, f: fn(&Sample) -> f64| {
        row(name, unit, goals, col(0, si, f), col(1, si, f))
    };
    let (death, graceful) = (0, 1);
    // Master_Down_Interval of the backup (priority 100): 3 intervals + Skew_Time.
    let mdi = 3.0 * ms + (256.0 - 100.0) * ms / 256.0;
    let rows = vec![
        both(
            "node death: kill → VIP on backup",
            "ms",
            &[Goal::MedianAtMost(3.5 * ms), Goal::NotWorse],
            death,
            |s| s.vip_ms,
        ),
        both(
            &format!("  dead master's last advert → VIP on backup (MDI {mdi:.0} ms)"),
            "ms",
            &[Goal::NotWorse],
            death,
            |s| s.from_last_advert_ms,
        ),
        both(
            "  kill → first client answer from backup",
            "ms",
            &[Goal::NotWorse],
            death,
            |s| s.answer_ms,
        ),
        both(
            "  failed client requests",
            "",
            &[Goal::NotWorse],
            death,
            |s| s.failed,
        ),
        both(
            "  gratuitous ARPs from the new master",
            "",
            &[],
            death,
            |s| s.garps,
        ),
        both(
            "  VIP on backup → its first gratuitous ARP",
            "ms",
            &[],
            death,
            |s| s.first_garp_ms,
        ),
        both(
            "graceful stop: SIGTERM → VIP on backup",
            "ms",
            &[Goal::NotWorse],
            graceful,
            |s| s.vip_ms,
        ),
        both(
            "  VIP released on master → on backup (negative: overlap)",
            "ms",
            &[],
            graceful,
            |s| s.unowned_ms,
        ),
        both(
            "  SIGTERM → first client answer from backup",
            "ms",
            &[Goal::NotWorse],
            graceful,
            |s| s.answer_ms,
        ),
        both(
            "  failed client requests",
            "",
            &[Goal::AllAtMost(0.0)],
            graceful,
            |s| s.failed,
        ),
        both(
            "  gratuitous ARPs from the new master",
            "",
            &[],
            graceful,
            |s| s.garps,
        ),
    ];
    Ok(IntervalReport {
        advert_interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
        runs,
        rows,
    })
}

/// Builds cairn-vipd and the lab responder as for a box (release, static glibc).
fn build() -> Result<Bins> {
    step("building cairn-vipd and the lab tools (release, static)");
    run_cmd(
        cargo()
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--release",
                "--target",
                BOX_TARGET,
                "-p",
                "cairn-vipd",
                "-p",
                "cairn-labnet",
            ]),
    )?;
    let dir = target_dir().join(BOX_TARGET).join("release");
    Ok(Bins {
        vipd: dir.join("cairn-vipd"),
        responder: dir.join("cairn-lab-responder"),
    })
}

fn keepalived_version() -> Result<String> {
    let out = Command::new("keepalived")
        .arg("--version")
        .output()
        .context("keepalived is not installed: run `cargo xtask setup`")?;
    // keepalived prints its version on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(text.lines().next().unwrap_or("unknown").trim().to_owned())
}

/// Runs per daemon and scenario at 1 s and at 100 ms adverts for `runs` (bench's
/// `--runs`): at least 3 and 5.
pub fn run_counts(runs: usize) -> (usize, usize) {
    ((runs / 2).max(3), runs.max(5))
}

/// Builds what it needs and runs the failover benchmark (root).
pub fn run(runs: usize) -> Result<FailoverReport> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the failover benchmark creates network namespaces: run it as root");
    }
    let keepalived_version = keepalived_version()?;
    let bins = build()?;
    let t = Instant::now();
    let (slow, fast) = run_counts(runs);
    let mut intervals = Vec::new();
    for (interval, n) in [
        (Duration::from_millis(100), fast),
        (Duration::from_secs(1), slow),
    ] {
        step(&format!(
            "failover: cairn-vipd vs {keepalived_version}, {} ms adverts, {n} runs each",
            interval.as_millis()
        ));
        intervals.push(measure_interval(&bins, interval, n)?);
    }
    Ok(FailoverReport {
        keepalived_version,
        intervals,
        wall_s: t.elapsed().as_secs_f64(),
    })
}

fn cell(m: &Metric) -> String {
    let p = if m.max.abs() >= 100.0 || m.samples.iter().all(|v| v.fract() == 0.0) {
        0
    } else {
        1
    };
    format!("{:.p$} / {:.p$} / {:.p$}", m.median, m.min, m.max)
}

/// The report section (heading included) as markdown.
pub fn markdown(r: &FailoverReport) -> String {
    let mut md = String::new();
    md.push_str(&format!("{SECTION}\n\n"));
    md.push_str(&format!(
        "cairn-vipd against {} with identical settings (VRRPv3, VRID 51, priorities 150/100, \
         preempt, VIP {VIP_CIDR}, no strict mode), in network namespaces on one bridge \
         (cairn-labnet). Every run is a fresh lab; runs alternate between the daemons. \
         Node death = SIGKILL of the master's daemon, then its cable is cut; the kill is \
         placed at phase (r + ½)/n of the interval after one of the master's adverts, the \
         same phases for both daemons. Graceful = SIGTERM, placed at phase (r + ½)/n of the \
         client's 10 ms request grid, the same phases for both daemons. A client in a third \
         namespace starts a `GET /` to the VIP every 10 ms, always on the same grid ({} client \
         threads taking turns, each waiting for its request, {} ms timeout, so an outage is \
         sampled every 10 ms and the grid does not drift when requests fail); both \
         nodes run a responder answering with their name. Gratuitous ARPs are counted from the event until {} ms \
         after the VIP arrived; failed requests are those that ended after the event. \
         Cells: median / min / max; ratio = cairn-vipd median / keepalived median. Goals \
         are checked on cairn-vipd: \"≤ keepalived\" compares medians, and a median at most \
         {:.0} % above keepalived's is a tie (the observers resolve about 1 ms). The node-death \
         goal is on the median: by RFC 5798 a priority-100 backup waits Master_Down_Interval = \
         3.61 intervals after the last advert, so a kill right after an advert cannot be \
         followed within 3.5 intervals by any conforming daemon. Whole section: {:.0} s.\n\n",
        r.keepalived_version,
        PROBE_WORKERS,
        PROBE_TIMEOUT.as_millis(),
        GARP_WINDOW.as_millis(),
        TIE * 100.0,
        r.wall_s
    ));
    for i in &r.intervals {
        md.push_str(&format!(
            "### {} ms advertisement interval ({} runs per daemon and scenario)\n\n",
            i.advert_interval_ms, i.runs
        ));
        md.push_str(
            "| metric | unit | cairn-vipd median / min / max | keepalived median / min / max | ratio | goal | met |\n\
             |---|---|---:|---:|---:|---|---|\n",
        );
        for x in &i.rows {
            let ratio = if x.ratio.is_finite() {
                format!("{:.2}", x.ratio)
            } else {
                "–".into()
            };
            let met = match x.verdict {
                Some(Verdict::Met) => "yes",
                Some(Verdict::Tie) => "tie",
                Some(Verdict::Missed) => "**no**",
                None => "",
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {ratio} | {} | {met} |\n",
                x.name,
                x.unit,
                cell(&x.cairn_vipd),
                cell(&x.keepalived),
                x.goal
            ));
        }
        md.push('\n');
    }
    md
}

/// Sets the top-level key `failover` of a pretty-printed JSON object (as
/// `serde_json::to_string_pretty` writes it) to `value_pretty` in place, keeping the other
/// keys' order and text; `None` if `existing` is not such an object.
fn splice_json(existing: &str, value_pretty: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_str(existing).ok()?;
    if !parsed.is_object() {
        return None;
    }
    let body = existing.trim_end();
    let close = body.rfind("\n}")?;
    let entry = format!("  \"failover\": {}", value_pretty.replace('\n', "\n  "));
    // Top-level keys start a line with exactly two spaces and a quote.
    let key = "\n  \"failover\": ";
    let out = match body.find(key) {
        Some(at) => {
            let from = at + 1;
            match body[from..].find("\n  \"").map(|i| from + i) {
                Some(next) => format!("{}{entry},{}", &body[..from], &body[next..]),
                None => format!("{}{entry}{}", &body[..from], &body[close..]),
            }
        }
        None => format!("{},\n{entry}{}", &body[..close], &body[close..]),
    };
    let check: serde_json::Value = serde_json::from_str(&out).ok()?;
    let want: serde_json::Value = serde_json::from_str(value_pretty).ok()?;
    (check.get("failover") == Some(&want)).then_some(out)
}

/// `cargo xtask bench --only failover`: measures and puts the section into the existing
/// `bench/report.md` and the `failover` key of `bench/report.json`, leaving the rest.
pub fn run_alone(runs: usize) -> Result<()> {
    let report = run(runs)?;
    let out = root().join("bench");
    std::fs::create_dir_all(&out)?;
    write_alone(&out, &report)
}

fn write_alone(out: &Path, report: &FailoverReport) -> Result<()> {
    let md_path = out.join("report.md");
    let existing = std::fs::read_to_string(&md_path).unwrap_or_default();
    let existing = if existing.trim().is_empty() {
        "# cairn benchmark report\n\nGenerated by `cargo xtask bench`. Measurements only: \
         nothing here is asserted by a test.\n"
            .to_owned()
    } else {
        existing
    };
    let section = markdown(report);
    std::fs::write(
        &md_path,
        crate::bench::splice_section(&existing, SECTION, &section),
    )
    .with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = out.join("report.json");
    let existing = std::fs::read_to_string(&json_path).unwrap_or_default();
    let failover = serde_json::to_string_pretty(report)?;
    let text = match splice_json(&existing, &failover) {
        Some(t) => t,
        None => {
            // Not a report written by `cargo xtask bench`: rebuild it as a value (keys
            // sorted), keeping whatever object was there.
            let mut json: serde_json::Value = serde_json::from_str(&existing)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({}));
            json["failover"] = serde_json::from_str(&failover)?;
            serde_json::to_string_pretty(&json)?
        }
    };
    std::fs::write(&json_path, text).with_context(|| format!("writing {}", json_path.display()))?;
    println!("\n{section}");
    println!("wrote {} and report.json", md_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    fn splice(existing: &str, section: &str) -> String {
        crate::bench::splice_section(existing, SECTION, section)
    }

    use super::*;

    #[test]
    fn goals_check_cairn_samples_against_limits_and_keepalived() {
        let r = row(
            "x",
            "ms",
            &[Goal::MedianAtMost(350.0), Goal::NotWorse],
            vec![300.0, 340.0, 355.0],
            vec![330.0, 350.0, 360.0],
        );
        assert_eq!(r.verdict, Some(Verdict::Met));
        assert!((r.ratio - 340.0 / 350.0).abs() < 1e-9);
        assert_eq!(r.goal, "median ≤ 350 ms; ≤ keepalived");

        let once = row(
            "x",
            "ms",
            &[Goal::AllAtMost(350.0)],
            vec![300.0, 351.0],
            vec![],
        );
        assert_eq!(once.verdict, Some(Verdict::Missed));
        let worse = row("x", "", &[Goal::NotWorse], vec![2.0], vec![1.0]);
        assert_eq!(worse.verdict, Some(Verdict::Missed));
        let tie = row("x", "ms", &[Goal::NotWorse], vec![362.0], vec![361.0]);
        assert_eq!(tie.verdict, Some(Verdict::Tie));
        // A tie on one goal and a miss on another is a miss.
        let mixed = row(
            "x",
            "ms",
            &[Goal::MedianAtMost(300.0), Goal::NotWorse],
            vec![362.0],
            vec![361.0],
        );
        assert_eq!(mixed.verdict, Some(Verdict::Missed));
        let zero = row("x", "", &[Goal::AllAtMost(0.0)], vec![0.0, 1.0], vec![1.0]);
        assert_eq!(
            (zero.verdict, zero.goal.as_str()),
            (Some(Verdict::Missed), "0 in every run")
        );
        let info = row("x", "", &[], vec![5.0], vec![0.0]);
        assert_eq!(info.verdict, None);
        assert!(info.ratio.is_nan());
        let negative = row("x", "ms", &[], vec![-50.0], vec![61.0]);
        assert!(negative.ratio.is_nan());
    }

    #[test]
    fn splice_json_keeps_key_order_and_text() {
        let old = "{\n  \"machine\": {\n    \"cores\": 2\n  },\n  \"runs\": 7\n}";
        let v = "{\n  \"wall_s\": 1.0\n}";
        let added = splice_json(old, v).unwrap();
        assert_eq!(
            added,
            "{\n  \"machine\": {\n    \"cores\": 2\n  },\n  \"runs\": 7,\n  \"failover\": {\n    \"wall_s\": 1.0\n  }\n}"
        );
        // Replacing it again, last key or in the middle.
        let v2 = "{\n  \"wall_s\": 2.0\n}";
        let again = splice_json(&added, v2).unwrap();
        assert_eq!(again, added.replace("1.0", "2.0"));
        let middle = "{\n  \"failover\": {\n    \"a\": [\n      1\n    ]\n  },\n  \"runs\": 7\n}";
        assert_eq!(
            splice_json(middle, v2).unwrap(),
            "{\n  \"failover\": {\n    \"wall_s\": 2.0\n  },\n  \"runs\": 7\n}"
        );
        assert_eq!(splice_json("not json", v), None);
        assert_eq!(splice_json("[1]", v), None);
        assert_eq!(splice_json("{}", v), None);
    }

    #[test]
    fn run_counts_follow_runs_with_floors() {
        assert_eq!(run_counts(1), (3, 5));
        assert_eq!(run_counts(7), (3, 7));
        assert_eq!(run_counts(10), (5, 10));
    }

    #[test]
    fn signed_milliseconds() {
        let a = Instant::now();
        let b = a + Duration::from_millis(250);
        assert_eq!(ms_between(a, b), 250.0);
        assert_eq!(ms_between(b, a), -250.0);
    }

    #[test]
    fn splice_replaces_only_the_failover_section() {
        let old = "# r\n\n## PID 1\n\nx\n\n## Failover (VRRPv3)\n\nold\n\n## Later\n\ny\n";
        let new = splice(old, "## Failover (VRRPv3)\n\nnew\n");
        assert_eq!(
            new,
            "# r\n\n## PID 1\n\nx\n\n## Failover (VRRPv3)\n\nnew\n\n## Later\n\ny\n"
        );
        let last = "# r\n\n## Failover (VRRPv3)\n\nold\n### 1 s\n\nmore\n";
        assert_eq!(
            splice(last, "## Failover (VRRPv3)\n\nnew"),
            "# r\n\n## Failover (VRRPv3)\n\nnew\n"
        );
    }

    #[test]
    fn splice_appends_when_the_section_is_missing() {
        assert_eq!(
            splice("# r\n\n## PID 1\n\nx\n", "## Failover (VRRPv3)\n\nnew\n"),
            "# r\n\n## PID 1\n\nx\n\n## Failover (VRRPv3)\n\nnew\n"
        );
    }

    #[test]
    fn markdown_has_a_table_per_interval_with_verdicts() {
        let r = FailoverReport {
            keepalived_version: "Keepalived v2.2.7".into(),
            intervals: vec![IntervalReport {
                advert_interval_ms: 100,
                runs: 2,
                rows: vec![row(
                    "node death: kill → VIP on backup",
                    "ms",
                    &[Goal::AllAtMost(350.0)],
                    vec![340.0, 360.0],
                    vec![350.0, 352.0],
                )],
            }],
            wall_s: 1.0,
        };
        let md = markdown(&r);
        assert!(md.starts_with(SECTION));
        assert!(md.contains("### 100 ms advertisement interval (2 runs"));
        assert!(md.contains(
            "| node death: kill → VIP on backup | ms | 350 / 340 / 360 | 351 / 350 / 352 | 1.00 | ≤ 350 ms in every run | **no** |"
        ));
    }

    #[test]
    fn write_alone_keeps_other_sections_and_json_keys() {
        let dir = std::env::temp_dir().join(format!("xtask-fb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.md"), "# r\n\n## PID 1\n\nx\n").unwrap();
        std::fs::write(dir.join("report.json"), r#"{"runs": 7}"#).unwrap();
        let r = FailoverReport {
            keepalived_version: "k".into(),
            intervals: vec![],
            wall_s: 0.0,
        };
        write_alone(&dir, &r).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.starts_with("# r\n\n## PID 1\n\nx\n\n## Failover (VRRPv3)\n"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["runs"], 7);
        assert_eq!(json["failover"]["keepalived_version"], "k");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

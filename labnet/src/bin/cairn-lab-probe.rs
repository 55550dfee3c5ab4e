//! `cairn-lab-probe --target <ip:port> --every-ms 10 --duration-ms N --out <file.jsonl>`:
//! one HTTP GET per period (sequential: a slow attempt delays the next), each recorded as a
//! JSON line `{"t_ms":..,"ok":..,"body"|"error":..}`; prints a summary at the end. Stops
//! after the duration or on SIGTERM / SIGINT, keeping everything recorded.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_labnet::probe::{Attempt, ProbeSummary};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

/// Probes an HTTP endpoint at a fixed rate and records every attempt.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address and port to GET, e.g. `192.0.2.100:80`.
    #[arg(long)]
    target: SocketAddr,
    /// Period between attempt starts, in milliseconds.
    #[arg(long, default_value_t = 10)]
    every_ms: u64,
    /// Stop after this many milliseconds (0: run until SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration_ms: u64,
    /// Limit for one attempt (connect, send, read), in milliseconds.
    #[arg(long, default_value_t = 100)]
    timeout_ms: u64,
    /// JSON-lines file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Block the stop signals before any thread exists; one thread waits for them.
    let mut stop_set = SigSet::empty();
    stop_set.add(Signal::SIGTERM);
    stop_set.add(Signal::SIGINT);
    stop_set.thread_block().context("block SIGTERM/SIGINT")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        if stop_set.wait().is_ok() {
            stop2.store(true, Ordering::Relaxed);
        }
    });

    let file = File::create(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let mut out = BufWriter::new(file);
    let every = Duration::from_millis(args.every_ms.max(1));
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let end =
        (args.duration_ms > 0).then(|| Instant::now() + Duration::from_millis(args.duration_ms));
    let start = Instant::now();
    let mut next = start;
    let mut attempts = Vec::new();
    while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
            continue;
        }
        next += every;
        if next < Instant::now() {
            next = Instant::now();
        }
        let t_ms = start.elapsed().as_secs_f64() * 1000.0;
        let mono_ms = Some(cairn_labnet::probe::monotonic_ms());
        let attempt = match cairn_labnet::http::get(args.target, timeout) {
            Ok(body) => Attempt {
                t_ms,
                ok: true,
                body: Some(body),
                error: None,
                mono_ms,
            },
            Err(error) => Attempt {
                t_ms,
                ok: false,
                body: None,
                error: Some(error),
                mono_ms,
            },
        };
        serde_json::to_writer(&mut out, &attempt).context("write attempt")?;
        out.write_all(b"\n").context("write attempt")?;
        out.flush().context("flush")?;
        attempts.push(attempt);
    }
    out.flush().context("flush")?;
    println!("{}", ProbeSummary::from_attempts(&attempts).line());
    Ok(())
}

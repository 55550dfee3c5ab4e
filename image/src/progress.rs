//! Progress of long steps: lines for people, JSON lines for scripts, or nothing.

use std::io::Write;
use std::time::Instant;

use serde_json::json;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `[3/9] fetching packages (12/40)` lines on stderr.
    Human,
    /// One JSON object per line on stdout.
    Json,
    /// Errors only.
    Quiet,
}

/// Reports the steps of a build.
#[derive(Debug)]
pub struct Progress {
    style: Style,
    total: usize,
    n: usize,
    started: Instant,
    step_started: Instant,
}

impl Progress {
    /// A reporter for `total` steps.
    pub fn new(style: Style, total: usize) -> Self {
        Self {
            style,
            total,
            n: 0,
            started: Instant::now(),
            step_started: Instant::now(),
        }
    }

    /// Starts the next step.
    pub fn step(&mut self, what: &str) {
        self.n += 1;
        self.step_started = Instant::now();
        match self.style {
            Style::Human => eprintln!(
                "[{}/{}] {what} (at {:.1} s)",
                self.n,
                self.total,
                self.started.elapsed().as_secs_f64()
            ),
            Style::Json => {
                emit(json!({"event": "step", "n": self.n, "of": self.total, "step": what}))
            }
            Style::Quiet => {}
        }
    }

    /// Progress within the current step (e.g. packages fetched so far).
    pub fn detail(&self, what: &str, done: usize, of: usize) {
        match self.style {
            Style::Human => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r      {what} {done}/{of}");
                if done == of {
                    let _ = writeln!(err);
                }
            }
            Style::Json => emit(
                json!({"event": "progress", "n": self.n, "what": what, "done": done, "of": of}),
            ),
            Style::Quiet => {}
        }
    }

    /// A note within the current step.
    pub fn note(&self, text: &str) {
        match self.style {
            Style::Human => eprintln!("      {text}"),
            Style::Json => emit(json!({"event": "note", "n": self.n, "text": text})),
            Style::Quiet => {}
        }
    }

    /// Seconds since the reporter was made.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
}

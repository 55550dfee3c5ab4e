//! The probe's record format (one JSON object per line) and its summary (no I/O besides
//! reading the file in [`ProbeSummary::from_file`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One attempt: when it started (ms since the probe started), whether it got a 200, and
/// the body (trimmed) or the error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// Start of the attempt, milliseconds since the probe started.
    pub t_ms: f64,
    /// Whether the answer was `200` with a body.
    pub ok: bool,
    /// The response body, trimmed (present when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// What went wrong (present when not `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Start of the attempt on CLOCK_MONOTONIC in milliseconds ([`monotonic_ms`]), so other
    /// processes on the host can place it against their own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mono_ms: Option<f64>,
}

/// CLOCK_MONOTONIC now, in milliseconds: one time line for every process on the host
/// (Rust's `Instant` reads the same clock but hides its value).
pub fn monotonic_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 * 1000.0 + t.tv_nsec() as f64 / 1e6)
        .unwrap_or(0.0)
}

/// A probe file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFileError {
    /// Unreadable.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an [`Attempt`].
    #[error("{path}:{line}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

/// A run of failed attempts between successes.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// Start of the first failed attempt (ms).
    pub from_ms: f64,
    /// Start of the next successful attempt, or of the last attempt if none followed (ms).
    pub to_ms: f64,
    /// Failed attempts in the run.
    pub failures: usize,
}

impl Outage {
    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.to_ms - self.from_ms
    }
}

/// What a probe run amounts to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeSummary {
    /// Attempts made.
    pub attempts: usize,
    /// Attempts that failed.
    pub failures: usize,
    /// Runs of failures, in order.
    pub outages: Vec<Outage>,
    /// Successful answers per body (which node served how often).
    pub per_body: BTreeMap<String, usize>,
    /// When the serving node changed: (ms, new body), starting with the first answer.
    pub switches: Vec<(f64, String)>,
}

impl ProbeSummary {
    /// Summarises attempts in time order.
    pub fn from_attempts(attempts: &[Attempt]) -> Self {
        let mut s = ProbeSummary {
            attempts: attempts.len(),
            ..Default::default()
        };
        let mut open: Option<Outage> = None;
        for a in attempts {
            if a.ok {
                if let Some(mut o) = open.take() {
                    o.to_ms = a.t_ms;
                    s.outages.push(o);
                }
                let body = a.body.clone().unwrap_or_default();
                if s.switches.last().map(|(_, b)| b) != Some(&body) {
                    s.switches.push((a.t_ms, body.clone()));
                }
                *s.per_body.entry(body).or_default() += 1;
            } else {
                s.failures += 1;
                match &mut open {
                    Some(o) => {
                        o.failures += 1;
                        o.to_ms = a.t_ms;
                    }
                    None => {
                        open = Some(Outage {
                            from_ms: a.t_ms,
                            to_ms: a.t_ms,
                            failures: 1,
                        })
                    }
                }
            }
        }
        s.outages.extend(open);
        s
    }

    /// Parses JSON lines (blank lines skipped).
    pub fn parse(text: &str, path: &Path) -> Result<(Vec<Attempt>, Self), ProbeFileError> {
        let mut attempts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let a: Attempt =
                serde_json::from_str(line).map_err(|source| ProbeFileError::Parse {
                    path: path.to_owned(),
                    line: i + 1,
                    source,
                })?;
            attempts.push(a);
        }
        let summary = Self::from_attempts(&attempts);
        Ok((attempts, summary))
    }

    /// Reads and summarises a probe's `--out` file.
    pub fn from_file(path: &Path) -> Result<(Vec<Attempt>, Self), ProbeFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProbeFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The longest outage in milliseconds (0 if none).
    pub fn longest_outage_ms(&self) -> f64 {
        self.outages
            .iter()
            .map(Outage::duration_ms)
            .fold(0.0, f64::max)
    }

    /// One human line: attempts, failures, longest outage, answers per body.
    pub fn line(&self) -> String {
        let bodies: Vec<String> = self
            .per_body
            .iter()
            .map(|(b, n)| format!("{b}={n}"))
            .collect();
        format!(
            "attempts={} failures={} outages={} longest_outage_ms={:.1} answers: {}",
            self.attempts,
            self.failures,
            self.outages.len(),
            self.longest_outage_ms(),
            bodies.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"t_ms":0.0,"ok":true,"body":"a"}
{"t_ms":10.0,"ok":true,"body":"a"}
{"t_ms":20.0,"ok":false,"error":"connect: timed out"}
{"t_ms":120.0,"ok":false,"error":"connect: timed out"}

{"t_ms":220.0,"ok":true,"body":"b"}
{"t_ms":230.0,"ok":false,"error":"read: reset"}
{"t_ms":240.0,"ok":true,"body":"b"}
"#;

    #[test]
    fn summarises_outages_and_who_answered() {
        let (attempts, s) = ProbeSummary::parse(RUN, Path::new("run.jsonl")).unwrap();
        assert_eq!(attempts.len(), 7);
        assert_eq!((s.attempts, s.failures), (7, 3));
        assert_eq!(s.outages.len(), 2);
        assert_eq!(s.outages[0].failures, 2);
        assert_eq!(s.longest_outage_ms(), 200.0);
        assert_eq!(s.per_body.get("a"), Some(&2));
        assert_eq!(s.per_body.get("b"), Some(&2));
        assert_eq!(s.switches, vec![(0.0, "a".into()), (220.0, "b".into())]);
        assert!(s.line().contains("failures=3"));
    }

    #[test]
    fn a_trailing_outage_ends_at_the_last_attempt() {
        let a = |t, ok| Attempt {
            mono_ms: None,
            t_ms: t,
            ok,
            body: ok.then(|| "a".to_owned()),
            error: (!ok).then(|| "x".to_owned()),
        };
        let s = ProbeSummary::from_attempts(&[a(0.0, true), a(10.0, false), a(50.0, false)]);
        assert_eq!(
            s.outages,
            vec![Outage {
                from_ms: 10.0,
                to_ms: 50.0,
                failures: 2
            }]
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = ProbeSummary::parse(
            "{\"t_ms\":1,\"ok\":true}\n{\"x\":1}\n",
            Path::new("p.jsonl"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.jsonl:2:"), "{err}");
    }

    #[test]
    fn attempts_round_trip_as_json_lines() {
        let a = Attempt {
            mono_ms: None,
            t_ms: 12.5,
            ok: false,
            body: None,
            error: Some("connect: refused".into()),
        };
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(
            line,
            r#"{"t_ms":12.5,"ok":false,"error":"connect: refused"}"#
        );
        assert_eq!(serde_json::from_str::<Attempt>(&line).unwrap(), a);
    }
}

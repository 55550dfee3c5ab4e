//! Running the gluster CLI: always `--mode=script` (no questions) and
//! `--xml` (parsed by [`crate::xml`]), with a bounded timeout.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::xml::{self, Peer, VolumeInfo, XmlError};

/// Why a gluster CLI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The program could not run.
    #[error("running {program}: {source}")]
    Spawn {
        /// The CLI.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It did not finish in time and was killed.
    #[error("gluster {args}: no answer within {after:?} (killed)")]
    TimedOut {
        /// The arguments, space-separated.
        args: String,
        /// The limit.
        after: Duration,
    },
    /// It ran but its answer is an error.
    #[error("gluster {args}: {source}")]
    Answer {
        /// The arguments, space-separated.
        args: String,
        /// Why.
        #[source]
        source: XmlError,
    },
}

/// The gluster CLI.
#[derive(Debug, Clone)]
pub struct Cli {
    /// The program (`/usr/sbin/gluster`).
    pub program: PathBuf,
    /// Seconds the CLI waits for glusterd (`--timeout`).
    pub timeout_s: u32,
}

impl Default for Cli {
    fn default() -> Self {
        Self {
            program: PathBuf::from("/usr/sbin/gluster"),
            timeout_s: 60,
        }
    }
}

impl Cli {
    /// Runs `gluster --mode=script --xml --timeout=N <args>`; the XML text.
    pub fn raw(&self, args: &[String]) -> Result<String, CliError> {
        let out = Command::new(&self.program)
            .arg("--mode=script")
            .arg("--xml")
            .arg(format!("--timeout={}", self.timeout_s))
            .args(args)
            .output()
            .map_err(|source| CliError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        Ok(text)
    }

    /// [`Cli::raw`], but the CLI is killed after `limit` whatever its own
    /// `--timeout` does (a hung glusterd connection, a stuck process).
    pub fn raw_within(&self, args: &[String], limit: Duration) -> Result<String, CliError> {
        let mut child = Command::new(&self.program)
            .arg("--mode=script")
            .arg("--xml")
            .arg(format!("--timeout={}", self.timeout_s))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CliError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        // Readers on their own threads, so a chatty CLI never blocks on a full pipe.
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    // A read error leaves what was read; the parser reports the rest.
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CliError::TimedOut {
                        args: args.join(" "),
                        after: limit,
                    });
                }
            }
        }
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let mut text = String::from_utf8_lossy(&stdout).into_owned();
        if text.trim().is_empty() {
            text = String::from_utf8_lossy(&stderr).into_owned();
        }
        Ok(text)
    }

    /// `volume info`, the CLI killed after `limit`.
    pub fn volumes_within(&self, limit: Duration) -> Result<Vec<VolumeInfo>, CliError> {
        let args = ["volume".to_owned(), "info".to_owned()];
        let text = self.raw_within(&args, limit)?;
        xml::volume_info(&text).map_err(|source| CliError::Answer {
            args: args.join(" "),
            source,
        })
    }

    fn parsed<T>(
        &self,
        args: &[&str],
        f: impl FnOnce(&str) -> Result<T, XmlError>,
    ) -> Result<T, CliError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let text = self.raw(&args)?;
        f(&text).map_err(|source| CliError::Answer {
            args: args.join(" "),
            source,
        })
    }

    fn parsed_within<T>(
        &self,
        args: &[&str],
        limit: Duration,
        f: impl FnOnce(&str) -> Result<T, XmlError>,
    ) -> Result<T, CliError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let text = self.raw_within(&args, limit)?;
        f(&text).map_err(|source| CliError::Answer {
            args: args.join(" "),
            source,
        })
    }

    /// `peer status`, the CLI killed after `limit`.
    pub fn peers_within(&self, limit: Duration) -> Result<Vec<Peer>, CliError> {
        self.parsed_within(&["peer", "status"], limit, xml::peers)
    }

    /// `volume status <v>`, the CLI killed after `limit`.
    pub fn volume_status_within(
        &self,
        v: &str,
        limit: Duration,
    ) -> Result<Vec<xml::ProcessStatus>, CliError> {
        self.parsed_within(&["volume", "status", v], limit, xml::volume_status)
    }

    /// `volume heal <v> info`, the CLI killed after `limit` (it can take long while a
    /// heal holds locks).
    pub fn heal_info_within(
        &self,
        v: &str,
        limit: Duration,
    ) -> Result<Vec<xml::BrickHeal>, CliError> {
        self.parsed_within(&["volume", "heal", v, "info"], limit, xml::heal_info)
    }

    /// Runs a command whose answer is only success or failure.
    pub fn run(&self, args: &[String]) -> Result<(), CliError> {
        let text = self.raw(args)?;
        xml::check(&text).map_err(|source| CliError::Answer {
            args: args.join(" "),
            source,
        })
    }

    /// `peer status`.
    pub fn peers(&self) -> Result<Vec<Peer>, CliError> {
        self.parsed(&["peer", "status"], xml::peers)
    }

    /// `volume info`.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>, CliError> {
        self.parsed(&["volume", "info"], xml::volume_info)
    }

    /// `volume status <v>`.
    pub fn volume_status(&self, v: &str) -> Result<Vec<xml::ProcessStatus>, CliError> {
        self.parsed(&["volume", "status", v], xml::volume_status)
    }

    /// `volume heal <v> info`.
    pub fn heal_info(&self, v: &str) -> Result<Vec<xml::BrickHeal>, CliError> {
        self.parsed(&["volume", "heal", v, "info"], xml::heal_info)
    }
}

//! Running `ip` (and other tools) with errors that say what failed.

use std::process::{Command, Output};

/// A command that could not run or exited non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("cannot run `{cmdline}`: {source}")]
    Spawn {
        /// The command line.
        cmdline: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{cmdline}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmdline: String,
        /// Exit status text.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// Runs `program args...`, returns its output when it exits 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output, CmdError> {
    let cmdline = format!("{program} {}", args.join(" "));
    tracing::debug!(%cmdline, "run");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| CmdError::Spawn {
            cmdline: cmdline.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmdline,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> Result<Output, CmdError> {
    run("ip", args)
}

/// Runs `ip -n <ns> args...`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output, CmdError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Sets sysctl `key` to `value` inside namespace `ns`.
pub fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    let kv = format!("{key}={value}");
    run("ip", &["netns", "exec", ns, "sysctl", "-qw", &kv]).map(drop)
}

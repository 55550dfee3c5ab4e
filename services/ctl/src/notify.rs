//! `cairnctl notify`: the sd_notify protocol's sending side, like systemd-notify.
//!
//! The supervisor learns who sent a datagram from the credentials the kernel
//! attaches. cairnctl usually exits before the supervisor reads the message,
//! so by default (as systemd-notify does) it sends its parent's pid — the
//! service script, which is still running — when it may (root can, for any
//! pid); otherwise the kernel fills in its own.

use std::io::IoSlice;

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials, sendmsg, socket,
};

/// Builds the datagram: one `KEY=VALUE` per line.
pub fn message(ready: bool, assignments: &[String]) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    if ready {
        lines.push("READY=1");
    }
    for assignment in assignments {
        match assignment.split_once('=') {
            Some((key, _)) if !key.is_empty() && !assignment.contains('\n') => {
                lines.push(assignment);
            }
            _ => bail!("invalid assignment \"{assignment}\" (expected KEY=VALUE on one line)"),
        }
    }
    Ok(lines.join("\n"))
}

/// Which pid to claim, from `--pid`.
fn claimed_pid(spec: &str) -> anyhow::Result<Option<i32>> {
    match spec {
        "self" => Ok(None),
        "parent" => Ok(Some(nix::unistd::getppid().as_raw())),
        n => n
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .map(Some)
            .with_context(|| format!("invalid --pid \"{n}\" (expected parent, self or a number)")),
    }
}

/// Sends the assignments to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
pub fn send(ready: bool, assignments: &[String], pid: &str) -> anyhow::Result<()> {
    let message = message(ready, assignments)?;
    let target = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|v| !v.is_empty())
        .context("NOTIFY_SOCKET is not set: cairnctl notify must run under a supervisor that provides it")?;
    let addr = match target.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(target.as_str()),
    }
    .with_context(|| format!("invalid NOTIFY_SOCKET \"{target}\""))?;
    let fd = socket(
        nix::sys::socket::AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("cannot create a datagram socket")?;
    let iov = [IoSlice::new(message.as_bytes())];
    let send = |creds: Option<&UnixCredentials>| {
        let cmsgs: Vec<ControlMessage<'_>> = creds
            .map(ControlMessage::ScmCredentials)
            .into_iter()
            .collect();
        sendmsg(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            Some(&addr),
        )
    };
    let sent = match claimed_pid(pid)? {
        Some(p) => {
            let creds = UnixCredentials::from(nix::libc::ucred {
                pid: p,
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
            });
            match send(Some(&creds)) {
                // Only root may claim another pid; fall back to our own.
                Err(Errno::EPERM) => send(None),
                other => other,
            }
        }
        None => send(None),
    }
    .with_context(|| format!("cannot send to NOTIFY_SOCKET {target}"))?;
    if sent != message.len() {
        bail!(
            "short send to NOTIFY_SOCKET {target}: {sent} of {} bytes",
            message.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_joins_assignments_and_rejects_bad_ones() {
        let m = message(true, &["STATUS=warming up".into()]).unwrap_or_default();
        assert_eq!(m, "READY=1\nSTATUS=warming up");
        assert!(message(false, &["NOEQUALS".into()]).is_err());
        assert!(message(false, &["=x".into()]).is_err());
        assert!(message(false, &["A=b\nc".into()]).is_err());
    }

    #[test]
    fn pid_specs() {
        assert_eq!(claimed_pid("self").ok(), Some(None));
        assert_eq!(claimed_pid("42").ok(), Some(Some(42)));
        assert!(claimed_pid("0").is_err());
        assert!(claimed_pid("bogus").is_err());
    }
}

//! Starting service and probe processes: clean environment, `/dev/null` on
//! stdin, stdout and stderr into pipes PID 1 reads, own session and cgroup.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::config::Service;

/// `PATH` given to every service.
pub const SERVICE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A started service process and the read ends of its output pipes.
#[derive(Debug)]
pub struct Spawned {
    /// Process id (also its session and process group id).
    pub pid: u32,
    /// Read end of its stdout, non-blocking.
    pub stdout: OwnedFd,
    /// Read end of its stderr, non-blocking.
    pub stderr: OwnedFd,
}

/// Creates the service's `dirs` (mode 0755, missing parents too) and gives the leaf
/// directories to the service's user, as systemd's `RuntimeDirectory=` does. Called before
/// every start, so a directory removed at run time comes back.
pub fn prepare_dirs(svc: &Service) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in &svc.dirs {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        if svc.uid.is_some() || svc.gid.is_some() {
            nix::unistd::chown(
                dir,
                svc.uid.map(nix::unistd::Uid::from_raw),
                svc.gid.map(nix::unistd::Gid::from_raw),
            )
            .map_err(|e| io::Error::other(format!("chown {}: {e}", dir.display())))?;
        }
    }
    Ok(())
}

/// Starts a service's main process.
pub fn service(
    svc: &Service,
    notify_socket: Option<&Path>,
    cgroup_procs: Option<&File>,
) -> io::Result<Spawned> {
    let mut cmd = Command::new(&svc.exec[0]);
    cmd.args(&svc.exec[1..])
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .current_dir(&svc.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(sock) = notify_socket {
        cmd.env("NOTIFY_SOCKET", sock);
    }
    cmd.envs(&svc.env);
    if let Some(gid) = svc.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = svc.uid {
        cmd.uid(uid);
    }
    crate::sys::child_setup(&mut cmd, cgroup_procs.map(|f| f.as_raw_fd()), svc.nice);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("child has no output pipes"));
    };
    let stdout = OwnedFd::from(out);
    let stderr = OwnedFd::from(err);
    set_nonblocking(&stdout)?;
    set_nonblocking(&stderr)?;
    // Dropping `child` neither waits nor kills: PID 1 reaps with waitpid(-1).
    Ok(Spawned {
        pid,
        stdout,
        stderr,
    })
}

/// Starts a readiness probe command with all stdio on `/dev/null`.
pub fn probe(argv: &[String]) -> io::Result<u32> {
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty probe command",
        ));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::sys::child_setup(&mut cmd, None, 0);
    Ok(cmd.spawn()?.id())
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

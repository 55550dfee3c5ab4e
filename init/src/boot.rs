//! Machine-mode early boot: API filesystems, console, hostname, loopback.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use tracing::{info, warn};

use crate::mounts::{boot_mounts, mount_points};

/// Mounts what is not mounted yet. Failures are logged; boot goes on.
pub fn mount_api_filesystems() {
    let already =
        mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    for m in boot_mounts() {
        if already.iter().any(|p| p == Path::new(m.target)) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(m.target) {
            warn!(target = m.target, error = %e, "cannot create mount point");
        }
        let data = (!m.data.is_empty()).then_some(m.data);
        if let Err(e) = mount(Some(m.source), m.target, Some(m.fstype), m.flags, data) {
            warn!(target = m.target, fstype = m.fstype, error = %e, "mount failed");
        }
    }
    let _ =
        mount::<str, str, str, str>(None, "/", None, MsFlags::MS_REC | MsFlags::MS_SHARED, None);
}

/// Points stdin, stdout and stderr at /dev/console (the kernel may have
/// started us without them when /dev was empty).
pub fn attach_console() {
    let Ok(console) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    let _ = nix::unistd::dup2_stdin(console.as_fd());
    let _ = nix::unistd::dup2_stdout(console.as_fd());
    let _ = nix::unistd::dup2_stderr(console.as_fd());
}

/// The hostname to use: `cairn.hostname=` on the kernel command line, else
/// /etc/hostname, else "cairn".
pub fn hostname_from(cmdline: &str, etc_hostname: Option<&str>) -> String {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cairn.hostname="))
        .map(str::to_owned)
        .or_else(|| {
            etc_hostname
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "cairn".into())
}

/// Sets the hostname, brings up `lo` and routes ctrl-alt-del to SIGINT.
pub fn configure_system() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let etc = std::fs::read_to_string("/etc/hostname").ok();
    let name = hostname_from(&cmdline, etc.as_deref());
    match nix::unistd::sethostname(&name) {
        Ok(()) => info!(hostname = %name, "hostname set"),
        Err(e) => warn!(error = %e, "cannot set hostname"),
    }
    if let Err(e) = crate::sys::set_link_up("lo") {
        warn!(error = %e, "cannot bring up lo");
    }
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!(error = %e, "cannot route ctrl-alt-del to SIGINT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_precedence() {
        assert_eq!(
            hostname_from("quiet cairn.hostname=lb1 x=y", Some("etc")),
            "lb1"
        );
        assert_eq!(hostname_from("quiet", Some("etc-name\n")), "etc-name");
        assert_eq!(hostname_from("quiet", Some("  \n")), "cairn");
        assert_eq!(hostname_from("", None), "cairn");
    }
}

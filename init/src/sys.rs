//! The few system calls std and nix do not wrap safely. Every `unsafe` block
//! of cairn-init lives here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

/// Runs in the child between fork and exec: empty signal mask (PID 1 blocks
/// the signals it reads through its signalfd, and the mask survives exec),
/// new session (own process group, no controlling terminal), join the
/// service's cgroup, set its niceness (when not 0), and mark every inherited
/// descriptor above stderr close-on-exec so nothing leaks.
pub fn child_setup(cmd: &mut Command, cgroup_procs: Option<RawFd>, nice: i32) {
    let empty = SigSet::empty();
    let setup = move || -> io::Result<()> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&empty), None).map_err(io::Error::from)?;
        // Ignored signals survive exec; give the service default dispositions.
        // The raw system call also resets the two signals glibc reserves
        // (32, 33), which `signal(3)` refuses to touch but which may arrive
        // ignored from whoever started us.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // SAFETY: rt_sigaction with an all-zero kernel `struct sigaction`
            // (handler SIG_DFL, no flags, empty mask; 32 bytes, sigsetsize 8)
            // reads only our stack array; it is async-signal-safe.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        nix::unistd::setsid().map_err(io::Error::from)?;
        if let Some(fd) = cgroup_procs {
            // SAFETY: `fd` is an open descriptor of cgroup.procs owned by the
            // parent for the duration of the spawn; write(2) is
            // async-signal-safe and the buffer is a static byte string.
            let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
            if n != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if nice != 0 {
            // SAFETY: setpriority(2) on the calling process (who 0) with a plain integer;
            // a system call without memory arguments, async-signal-safe.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags on
        // descriptors; it is a plain system call, async-signal-safe, and
        // keeps std's exec-error pipe usable until exec.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe system calls
    // (sigprocmask, rt_sigaction, setsid, write, setpriority, close_range) on values prepared before the
    // fork, and does not allocate, lock or log.
    unsafe {
        cmd.pre_exec(setup);
    }
}

/// Sets IFF_UP on a network interface (used for `lo` at boot).
pub fn set_link_up(name: &str) -> io::Result<()> {
    let sock =
        std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the flags member of the union is initialised.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own, valid for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

nix::ioctl_readwrite!(
    /// WDIOC_SETTIMEOUT from <linux/watchdog.h>.
    wdioc_settimeout, b'W', 6, libc::c_int);

/// Sets a watchdog device's timeout in seconds; returns what the driver chose.
pub fn watchdog_set_timeout(fd: RawFd, seconds: i32) -> io::Result<i32> {
    let mut t: libc::c_int = seconds;
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int we own; `fd` is an
    // open watchdog device.
    unsafe { wdioc_settimeout(fd, &mut t) }.map_err(io::Error::from)?;
    Ok(t)
}

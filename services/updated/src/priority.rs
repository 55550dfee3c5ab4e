//! Keeps the update out of the role's way: the agent runs at idle CPU and I/O
//! priority, so writing and hashing a slot never delays the service the box
//! exists for (under QEMU's software emulation, hashing a 20 MiB root at normal
//! priority made HAProxy miss 100 ms client timeouts during a rolling upgrade).
#![allow(unsafe_code)]

/// `ioprio_set(2)`: who = a process.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// `ioprio_set(2)`: the idle class, shifted into place.
const IOPRIO_IDLE: libc::c_int = 3 << 13;

/// Puts the calling process (and the threads it starts afterwards) in
/// `SCHED_IDLE` and the idle I/O class. Errors are returned, not fatal: the
/// agent still works at normal priority.
pub fn lower() -> Result<(), std::io::Error> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is this
    // thread, and SCHED_IDLE takes priority 0.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_can_lower_itself() {
        // In a thread of its own, so the test process keeps its priority.
        std::thread::spawn(|| {
            super::lower().unwrap();
            // SAFETY: reading this thread's policy has no preconditions.
            let policy = unsafe { libc::sched_getscheduler(0) };
            assert_eq!(policy, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}

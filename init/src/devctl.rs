//! The raw system calls of the early boot stage: `finit_module(2)` and the
//! loop and device-mapper ioctls. Every `unsafe` block of the early boot code
//! lives here; each function checks the buffer it hands the kernel against
//! the size the request reads and writes, so callers stay safe.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `sizeof(struct dm_ioctl)` from <linux/dm-ioctl.h>.
pub const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct loop_info64)` from <linux/loop.h>.
pub const LOOP_INFO64_SIZE: usize = 232;
/// `sizeof(struct loop_config)` from <linux/loop.h>.
pub const LOOP_CONFIG_SIZE: usize = 304;

/// `LOOP_SET_FD`.
pub const LOOP_SET_FD: u32 = 0x4C00;
/// `LOOP_CLR_FD`.
pub const LOOP_CLR_FD: u32 = 0x4C01;
/// `LOOP_SET_STATUS64`.
pub const LOOP_SET_STATUS64: u32 = 0x4C04;
/// `LOOP_CONFIGURE` (Linux 5.8+).
pub const LOOP_CONFIGURE: u32 = 0x4C0A;
/// `LOOP_CTL_GET_FREE` on /dev/loop-control.
pub const LOOP_CTL_GET_FREE: u32 = 0x4C82;

/// Flag for `finit_module`: the file is compressed; the kernel decompresses it.
pub const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the kernel module in `module` with `params` (`finit_module(2)`).
pub fn finit_module(module: &File, params: &CStr, flags: u32) -> io::Result<()> {
    // SAFETY: the descriptor is open for the call's duration and `params` is
    // a NUL-terminated string the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            module.as_raw_fd(),
            params.as_ptr(),
            flags as libc::c_uint,
        )
    };
    check(r).map(drop)
}

/// Issues a device-mapper ioctl. `buf` starts with an encoded `struct
/// dm_ioctl`; its `data_size` field (what the kernel reads and writes back)
/// must not exceed the buffer.
pub fn dm_ioctl(control: &File, request: u32, buf: &mut [u8]) -> io::Result<()> {
    if buf.len() < DM_IOCTL_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "dm_ioctl buffer shorter than struct dm_ioctl",
        ));
    }
    let data_size = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
    if data_size < DM_IOCTL_SIZE || data_size > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "dm_ioctl data_size does not match the buffer",
        ));
    }
    // SAFETY: the kernel reads and writes at most `data_size` bytes of `buf`,
    // checked above to lie within the buffer we exclusively borrow.
    let r = unsafe {
        libc::ioctl(
            control.as_raw_fd(),
            request as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    };
    check(r.into()).map(drop)
}

/// `LOOP_CTL_GET_FREE`: the number of a free loop device (allocating one if needed).
pub fn loop_ctl_get_free(control: &File) -> io::Result<u32> {
    // SAFETY: this request takes no argument and returns an int.
    let r = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as libc::Ioctl) };
    check(r.into()).map(|n| n as u32)
}

/// `LOOP_CONFIGURE`: binds and configures a loop device in one step.
pub fn loop_configure(dev: &File, config: &[u8; LOOP_CONFIG_SIZE]) -> io::Result<()> {
    // SAFETY: the kernel reads exactly sizeof(struct loop_config) bytes, the
    // length of the array we pass.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as libc::Ioctl,
            config.as_ptr(),
        )
    };
    check(r.into()).map(drop)
}

/// `LOOP_SET_FD`: binds `backing` to a loop device (pre-5.8 kernels).
pub fn loop_set_fd(dev: &File, backing: &File) -> io::Result<()> {
    // SAFETY: the argument is a file descriptor passed by value.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_FD as libc::Ioctl,
            backing.as_raw_fd() as libc::c_ulong,
        )
    };
    check(r.into()).map(drop)
}

/// `LOOP_SET_STATUS64`: sets flags and name of a bound loop device.
pub fn loop_set_status64(dev: &File, info: &[u8; LOOP_INFO64_SIZE]) -> io::Result<()> {
    // SAFETY: the kernel reads exactly sizeof(struct loop_info64) bytes, the
    // length of the array we pass.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as libc::Ioctl,
            info.as_ptr(),
        )
    };
    check(r.into()).map(drop)
}

/// `LOOP_CLR_FD`: detaches a loop device (used to undo a half-done attach).
pub fn loop_clr_fd(dev: &File) -> io::Result<()> {
    // SAFETY: this request takes no argument.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as libc::Ioctl) };
    check(r.into()).map(drop)
}

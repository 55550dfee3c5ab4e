//! QEMU runner for cairn images: UEFI disk and PXE boot, KVM detection with
//! TCG fallback, serial console.
//!
//! Shared by `cairn run` (boot a build and print its console), the QEMU tests
//! and the multi-VM lab. A [`VmConfig`] says how a VM boots; [`Vm::start`]
//! runs QEMU with its serial console on a pipe and a QMP socket for control;
//! dropping the [`Vm`] kills QEMU and removes every file it made.
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn_qemu::{Boot, Nic, Vm, VmConfig};
//!
//! let mut config = VmConfig::new("lb-1", Boot::Direct {
//!     kernel: "out/pxe/vmlinuz".into(),
//!     initrd: Some("out/pxe/initrd".into()),
//!     append: "console=ttyS0".into(),
//! });
//! config.nics.push(Nic::user([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]));
//! let vm = Vm::start(&config)?;
//! let ready = vm.wait_for_text("CAIRN-READY", Duration::from_secs(60))?;
//! println!("ready after {:?}: {}", ready.at, ready.text);
//! # Ok::<(), cairn_qemu::VmError>(())
//! ```

pub mod accel;
mod args;
pub mod config;
pub mod console;
pub mod disk;
pub mod host;
pub mod qmp;
pub mod vm;

pub use accel::{Accel, AccelChoice, detect_accel, probe_accel};
pub use args::ArgsError;
pub use config::{
    Boot, CAIRN_CONTROL_PORT, ControlChannel, DiskBus, DiskWrites, Firmware, NetBackend, Nic,
    VmConfig, format_mac,
};
pub use console::ConsoleLine;
pub use disk::{DiskError, DiskFormat};
pub use host::{HostError, HostPaths};
pub use qmp::QmpError;
pub use vm::{PumpEnd, Vm, VmError};

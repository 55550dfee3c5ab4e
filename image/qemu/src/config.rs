//! What a VM looks like: how it boots, its memory, CPUs, network cards and
//! watchdog. Plain data; `args` turns it into a QEMU command line.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::accel::Accel;
use crate::host::HostPaths;

/// Everything needed to start one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Name shown by QEMU and used in errors, logs and temp-dir names.
    pub name: String,
    /// Firmware and boot path.
    pub boot: Boot,
    /// Guest memory in MiB (default 512).
    pub memory_mib: u32,
    /// Virtual CPUs (default 1).
    pub cpus: u32,
    /// Network cards, in PCI order: the first is the one PXE boots from.
    pub nics: Vec<Nic>,
    /// Adds an i6300esb watchdog whose expiry resets the VM.
    pub watchdog: bool,
    /// A virtio-serial control channel into the guest, when wanted.
    pub control: Option<ControlChannel>,
    /// Makes a guest reboot end QEMU instead (`-no-reboot`). Off by default,
    /// because tests of reboots, boot counting and watchdogs need real reboots.
    pub no_reboot: bool,
    /// Accelerator; `None` uses [`crate::detect_accel`].
    pub accel: Option<Accel>,
    /// Where QEMU and the firmware are on the host.
    pub host: HostPaths,
    /// Appended verbatim to the QEMU command line (e.g. an extra disk).
    pub extra_args: Vec<OsString>,
}

impl VmConfig {
    /// A VM with the defaults: 512 MiB, 1 CPU, no NIC, no watchdog, real reboots.
    pub fn new(name: impl Into<String>, boot: Boot) -> Self {
        Self {
            name: name.into(),
            boot,
            memory_mib: 512,
            cpus: 1,
            nics: Vec::new(),
            watchdog: false,
            control: None,
            no_reboot: false,
            accel: None,
            host: HostPaths::default(),
            extra_args: Vec::new(),
        }
    }
}

/// A virtio-serial port whose host end is a unix socket QEMU listens on: a
/// way into the guest without a network, reachable only by whoever may open
/// the socket (cairn's `cairnctl agent` serves it, see docs/lab.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlChannel {
    /// The unix socket QEMU creates (replacing a stale one) and listens on,
    /// one client at a time; at most 107 bytes (the kernel's limit).
    pub socket: PathBuf,
    /// The port's name in the guest (`/sys/class/virtio-ports/*/name`):
    /// letters, digits, `.`, `_`, `-`.
    pub port_name: String,
}

impl ControlChannel {
    /// The channel cairn's agent looks for: port `org.cairn.control` on `socket`.
    pub fn cairn(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            port_name: CAIRN_CONTROL_PORT.to_owned(),
        }
    }
}

/// The port name `cairnctl agent` serves by default.
pub const CAIRN_CONTROL_PORT: &str = "org.cairn.control";

/// How the VM boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// UEFI (OVMF) from a disk image, as a real box boots from its disk.
    UefiDisk {
        /// The disk image, raw or qcow2 (detected from its header).
        disk: PathBuf,
        /// What happens to the guest's writes; the build output must stay untouched.
        writes: DiskWrites,
        /// The controller the disk hangs off.
        bus: DiskBus,
        /// UEFI variable store to use and keep (created from the template when
        /// missing); `None` gives a fresh copy that is removed with the VM.
        ovmf_vars: Option<PathBuf>,
    },
    /// Network boot through iPXE (the NIC's option ROM) from the first NIC.
    /// On a `NetBackend::User` NIC, QEMU's DHCP hands out `bootfile` and its
    /// TFTP server serves `tftp_root`; on a tap, the network's own DHCP/TFTP do.
    Pxe {
        /// Legacy BIOS (SeaBIOS) or UEFI (OVMF) underneath iPXE.
        firmware: Firmware,
        /// Directory served over TFTP.
        tftp_root: PathBuf,
        /// File name DHCP hands out, relative to `tftp_root`; an iPXE script
        /// (`#!ipxe`, e.g. `boot.ipxe`). Under UEFI, the script's `kernel` line
        /// must carry `initrd=<name>`: the iPXE in Debian's `ipxe-qemu` passes
        /// the initrd to the kernel's EFI stub only that way.
        bootfile: String,
    },
    /// Direct kernel boot (`-kernel`), through SeaBIOS: the fastest path.
    Direct {
        /// The kernel (bzImage, e.g. Debian's vmlinuz).
        kernel: PathBuf,
        /// The initramfs, if any.
        initrd: Option<PathBuf>,
        /// Kernel command line (include `console=ttyS0` to see it).
        append: String,
    },
}

/// Firmware under a network boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default legacy BIOS.
    Bios,
    /// OVMF. `vars` as in [`Boot::UefiDisk`]: kept if given, fresh copy if not.
    Uefi {
        /// UEFI variable store to use and keep.
        vars: Option<PathBuf>,
    },
}

/// What becomes of the guest's writes to its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskWrites {
    /// Writes go to a temporary file that vanishes with the VM (QEMU's
    /// `snapshot=on`); they survive guest reboots, not a new `Vm`.
    Snapshot,
    /// Writes go to this qcow2 overlay on top of the disk, created when
    /// missing and kept, so state survives from one `Vm` to the next.
    Overlay(PathBuf),
    /// Writes go to the disk itself: for a copy the caller made.
    InPlace,
}

/// The controller the boot disk is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`), the `qemu-x86_64` profile's disk.
    #[default]
    Virtio,
    /// NVMe (`/dev/nvme0n1`), like most current servers.
    Nvme,
    /// SATA through the q35 AHCI controller (`/dev/sda`).
    Ahci,
}

/// One network card (virtio-net, modern-only so iPXE's ROM matches it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// Its MAC address: nodes find their identity by it.
    pub mac: [u8; 6],
    /// What it is plugged into.
    pub backend: NetBackend,
}

impl Nic {
    /// A NIC on QEMU's user-mode network (NAT, DHCP, TFTP for PXE).
    pub fn user(mac: [u8; 6]) -> Self {
        Self {
            mac,
            backend: NetBackend::User,
        }
    }
}

/// What a NIC is plugged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetBackend {
    /// QEMU's user-mode network: 10.0.2.0/24, DHCP, and TFTP for PXE. Per VM.
    User,
    /// An existing tap device with this name (set up by the caller, e.g. on a
    /// bridge in a network namespace), so several VMs share one network.
    Tap(String),
    /// No cable: the guest sees the card and its MAC, but no traffic.
    None,
}

/// Formats a MAC address as QEMU and Linux print it: `52:54:00:12:34:56`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = VmConfig::new(
            "t",
            Boot::Direct {
                kernel: "k".into(),
                initrd: None,
                append: String::new(),
            },
        );
        assert_eq!(config.memory_mib, 512);
        assert_eq!(config.cpus, 1);
        assert!(config.nics.is_empty());
        assert!(!config.watchdog);
        assert_eq!(config.control, None);
        assert!(!config.no_reboot);
        assert_eq!(config.accel, None);
        assert_eq!(DiskBus::default(), DiskBus::Virtio);
    }

    #[test]
    fn mac_is_lowercase_colon_separated() {
        assert_eq!(
            format_mac(&[0x52, 0x54, 0x00, 0xab, 0x0c, 0xff]),
            "52:54:00:ab:0c:ff"
        );
    }
}

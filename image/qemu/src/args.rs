//! The QEMU command line for a [`VmConfig`]: pure, so every flag is unit-tested.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::accel::Accel;
use crate::config::{Boot, ControlChannel, DiskBus, Firmware, NetBackend, VmConfig, format_mac};
use crate::disk::DiskFormat;

/// A configuration QEMU would reject or misread.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    /// PXE boot needs a NIC to boot from.
    #[error("VM {vm}: PXE boot needs at least one NIC")]
    PxeWithoutNic {
        /// The VM.
        vm: String,
    },
    /// A multicast MAC cannot be a NIC's address.
    #[error("VM {vm}: MAC {mac} is a multicast address (lowest bit of the first byte set)")]
    MulticastMac {
        /// The VM.
        vm: String,
        /// The address.
        mac: String,
    },
    /// Two NICs of one VM have the same MAC.
    #[error("VM {vm}: MAC {mac} is used by two NICs")]
    DuplicateMac {
        /// The VM.
        vm: String,
        /// The address.
        mac: String,
    },
    /// Not a usable Linux interface name.
    #[error(
        "VM {vm}: tap device name {name:?} must be 1 to 15 characters without ',', '/' or spaces"
    )]
    BadTapName {
        /// The VM.
        vm: String,
        /// The name given.
        name: String,
    },
    /// The PXE boot file name cannot be passed to QEMU's DHCP server.
    #[error("VM {vm}: PXE boot file {bootfile:?} must be a non-empty relative path without ','")]
    BadBootfile {
        /// The VM.
        vm: String,
        /// The name given.
        bootfile: String,
    },
    /// The control channel's socket path or port name cannot be used.
    #[error("VM {vm}: control channel: {reason}")]
    BadControlChannel {
        /// The VM.
        vm: String,
        /// What is wrong.
        reason: String,
    },
    /// Memory or CPU count of zero.
    #[error("VM {vm}: {what} must be at least 1")]
    Zero {
        /// The VM.
        vm: String,
        /// `memory_mib` or `cpus`.
        what: &'static str,
    },
}

/// Files `Vm::start` prepared for the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// QMP control socket QEMU listens on.
    pub qmp_socket: PathBuf,
    /// OVMF code and this VM's variable store, when the boot path is UEFI.
    pub uefi: Option<UefiFiles>,
    /// The boot disk as QEMU should open it, for `Boot::UefiDisk`.
    pub disk: Option<PreparedDisk>,
}

/// OVMF's two flash images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UefiFiles {
    /// Read-only firmware code.
    pub code: PathBuf,
    /// Writable variable store of this VM.
    pub vars: PathBuf,
}

/// The boot disk as QEMU opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PreparedDisk {
    /// Image QEMU opens (the disk itself or its overlay).
    pub path: PathBuf,
    /// Format of that image.
    pub format: DiskFormat,
    /// Whether QEMU diverts writes to a throwaway file.
    pub snapshot: bool,
}

/// Checks what QEMU would otherwise reject late or misread.
pub(crate) fn validate(config: &VmConfig) -> Result<(), ArgsError> {
    let vm = || config.name.clone();
    if config.memory_mib == 0 {
        return Err(ArgsError::Zero {
            vm: vm(),
            what: "memory_mib",
        });
    }
    if config.cpus == 0 {
        return Err(ArgsError::Zero {
            vm: vm(),
            what: "cpus",
        });
    }
    if let Boot::Pxe { bootfile, .. } = &config.boot {
        if config.nics.is_empty() {
            return Err(ArgsError::PxeWithoutNic { vm: vm() });
        }
        if bootfile.is_empty() || bootfile.contains(',') || bootfile.starts_with('/') {
            return Err(ArgsError::BadBootfile {
                vm: vm(),
                bootfile: bootfile.clone(),
            });
        }
    }
    for (index, nic) in config.nics.iter().enumerate() {
        let mac = format_mac(&nic.mac);
        if nic.mac[0] & 1 == 1 {
            return Err(ArgsError::MulticastMac { vm: vm(), mac });
        }
        if config.nics[..index]
            .iter()
            .any(|other| other.mac == nic.mac)
        {
            return Err(ArgsError::DuplicateMac { vm: vm(), mac });
        }
        if let NetBackend::Tap(name) = &nic.backend {
            let bad = name.is_empty()
                || name.len() > 15
                || name.contains([',', '/', ' ', '\t', '\n', '=']);
            if bad {
                return Err(ArgsError::BadTapName {
                    vm: vm(),
                    name: name.clone(),
                });
            }
        }
    }
    if let Some(control) = &config.control {
        validate_control(control)
            .map_err(|reason| ArgsError::BadControlChannel { vm: vm(), reason })?;
    }
    Ok(())
}

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

fn validate_control(control: &ControlChannel) -> Result<(), String> {
    let len = control.socket.as_os_str().len();
    if len == 0 || len > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path {} is {len} bytes; a unix socket path must be 1 to {MAX_SOCKET_PATH}",
            control.socket.display()
        ));
    }
    let name = &control.port_name;
    let name_ok = !name.is_empty()
        && name.len() <= 127
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(format!(
            "port name {name:?} must be 1 to 127 letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

/// Builds QEMU's arguments (without the program name).
pub(crate) fn qemu_args(
    config: &VmConfig,
    accel: Accel,
    prepared: &Prepared,
) -> Result<Vec<OsString>, ArgsError> {
    validate(config)?;
    let mut args = Args::default();

    args.flag("-name")
        .value(format!("guest={}", escape_str(&config.name)));
    // For BIOS PXE, graphics=off makes SeaBIOS mirror its and iPXE's screen to
    // the serial port: iPXE's progress is the only diagnostic of a network
    // boot. Elsewhere the BIOS banner would only be noise (OVMF writes to the
    // serial port by itself).
    let machine = match &config.boot {
        Boot::Pxe {
            firmware: Firmware::Bios,
            ..
        } => "q35,graphics=off",
        _ => "q35",
    };
    args.flag("-machine").value(machine);
    for arg in accel.qemu_args() {
        args.value(*arg);
    }
    args.flag("-m").value(config.memory_mib.to_string());
    args.flag("-smp").value(config.cpus.to_string());
    args.flag("-nodefaults")
        .flag("-no-user-config")
        .flag("-display")
        .value("none");
    // The serial console goes to QEMU's stdout, which the Vm reads from a pipe.
    args.flag("-chardev")
        .value("stdio,id=console,signal=off")
        .flag("-serial")
        .value("chardev:console");
    args.flag("-qmp")
        .path_value("unix:", &prepared.qmp_socket, ",server=on,wait=off");
    if config.no_reboot {
        args.flag("-no-reboot");
    }
    if let Some(uefi) = &prepared.uefi {
        args.flag("-drive").path_value(
            "if=pflash,format=raw,unit=0,readonly=on,file=",
            &uefi.code,
            "",
        );
        args.flag("-drive")
            .path_value("if=pflash,format=raw,unit=1,file=", &uefi.vars, "");
    }

    let mut boot_nic = false;
    match &config.boot {
        Boot::Direct {
            kernel,
            initrd,
            append,
        } => {
            args.flag("-kernel").value(kernel.as_os_str());
            if let Some(initrd) = initrd {
                args.flag("-initrd").value(initrd.as_os_str());
            }
            args.flag("-append").value(append.as_str());
        }
        Boot::UefiDisk { bus, .. } => {
            if let Some(disk) = &prepared.disk {
                let snapshot = if disk.snapshot { ",snapshot=on" } else { "" };
                let tail = format!(",format={},if=none,id=disk0{snapshot}", disk.format.name());
                args.flag("-drive").path_value("file=", &disk.path, &tail);
                let device = match bus {
                    DiskBus::Virtio => "virtio-blk-pci,drive=disk0,bootindex=1",
                    DiskBus::Nvme => "nvme,drive=disk0,serial=cairn-disk0,bootindex=1",
                    DiskBus::Ahci => "ide-hd,drive=disk0,bus=ide.0,bootindex=1",
                };
                args.flag("-device").value(device);
            }
        }
        Boot::Pxe { .. } => boot_nic = true,
    }

    for (index, nic) in config.nics.iter().enumerate() {
        let netdev = format!("net{index}");
        let pxe_here = boot_nic && index == 0;
        match &nic.backend {
            NetBackend::User => {
                let mut value = OsString::from(format!("user,id={netdev}"));
                if let (
                    true,
                    Boot::Pxe {
                        tftp_root,
                        bootfile,
                        ..
                    },
                ) = (pxe_here, &config.boot)
                {
                    value.push(",tftp=");
                    value.push(escape_value(tftp_root.as_os_str()));
                    value.push(format!(",bootfile={bootfile}"));
                }
                args.flag("-netdev").value(value);
            }
            NetBackend::Tap(name) => {
                args.flag("-netdev").value(format!(
                    "tap,id={netdev},ifname={name},script=no,downscript=no"
                ));
            }
            NetBackend::None => {}
        }
        let mut device = OsString::from(format!(
            "virtio-net-pci,disable-legacy=on,id=nic{index},mac={}",
            format_mac(&nic.mac)
        ));
        if nic.backend != NetBackend::None {
            device.push(format!(",netdev={netdev}"));
        }
        if pxe_here {
            device.push(",bootindex=1,romfile=");
            device.push(escape_value(config.host.ipxe_rom.as_os_str()));
        } else {
            // No option ROM: nothing to boot from it, and firmware starts faster.
            device.push(",romfile=");
        }
        args.flag("-device").value(device);
    }

    if let Some(control) = &config.control {
        // Port 0 of a virtio-serial device is reserved for a console, so the
        // guest sees this one as /dev/vport<N>p1.
        args.flag("-device")
            .value("virtio-serial-pci,id=ctlserial")
            .flag("-chardev")
            .path_value(
                "socket,id=cairnctl,path=",
                &control.socket,
                ",server=on,wait=off",
            )
            .flag("-device")
            .value(format!(
                "virtserialport,bus=ctlserial.0,chardev=cairnctl,name={}",
                control.port_name
            ));
    }
    if config.watchdog {
        args.flag("-device")
            .value("i6300esb")
            .flag("-action")
            .value("watchdog=reset");
    }
    for extra in &config.extra_args {
        args.value(extra.as_os_str());
    }
    Ok(args.0)
}

/// Which firmware a boot path needs.
pub(crate) fn needs_uefi(boot: &Boot) -> bool {
    matches!(
        boot,
        Boot::UefiDisk { .. }
            | Boot::Pxe {
                firmware: Firmware::Uefi { .. },
                ..
            }
    )
}

/// Escapes a value for a QEMU option list, where `,` separates options and
/// `,,` stands for a literal comma.
pub(crate) fn escape_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn escape_str(value: &str) -> String {
    value.replace(',', ",,")
}

/// Renders arguments for messages: each quoted when it has spaces or quotes.
pub(crate) fn render(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains([' ', '"', '\'', '\t']) {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, flag: &str) -> &mut Self {
        self.0.push(flag.into());
        self
    }

    fn value(&mut self, value: impl Into<OsString>) -> &mut Self {
        self.0.push(value.into());
        self
    }

    fn path_value(&mut self, head: &str, path: &Path, tail: &str) -> &mut Self {
        let mut value = OsString::from(head);
        value.push(escape_value(path.as_os_str()));
        value.push(tail);
        self.value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DiskWrites, Nic};

    fn prepared() -> Prepared {
        Prepared {
            qmp_socket: "/run/vm/qmp.sock".into(),
            uefi: None,
            disk: None,
        }
    }

    fn direct() -> VmConfig {
        VmConfig::new(
            "node-1",
            Boot::Direct {
                kernel: "/k/vmlinuz".into(),
                initrd: Some("/k/initrd".into()),
                append: "console=ttyS0 quiet".into(),
            },
        )
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `flag`, for each occurrence.
    fn values_of(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].clone())
            .collect()
    }

    #[test]
    fn direct_boot_command_line() {
        let args = strings(&qemu_args(&direct(), Accel::Tcg, &prepared()).unwrap());
        let expected: Vec<String> = [
            "-name",
            "guest=node-1",
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-cpu",
            "qemu64,+rdrand",
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-qmp",
            "unix:/run/vm/qmp.sock,server=on,wait=off",
            "-kernel",
            "/k/vmlinuz",
            "-initrd",
            "/k/initrd",
            "-append",
            "console=ttyS0 quiet",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(args, expected);
    }

    #[test]
    fn kvm_reboot_watchdog_and_extra_args() {
        let mut config = direct();
        config.no_reboot = true;
        config.watchdog = true;
        config.memory_mib = 1024;
        config.cpus = 2;
        config.extra_args = vec!["-device".into(), "virtio-rng-pci".into()];
        let args = strings(&qemu_args(&config, Accel::Kvm, &prepared()).unwrap());
        assert_eq!(values_of(&args, "-accel"), ["kvm"]);
        assert_eq!(values_of(&args, "-cpu"), ["host"]);
        assert_eq!(values_of(&args, "-m"), ["1024"]);
        assert_eq!(values_of(&args, "-smp"), ["2"]);
        assert!(args.contains(&"-no-reboot".to_string()));
        assert_eq!(values_of(&args, "-device"), ["i6300esb", "virtio-rng-pci"]);
        assert_eq!(values_of(&args, "-action"), ["watchdog=reset"]);
        assert_eq!(args.last().map(String::as_str), Some("virtio-rng-pci"));
    }

    #[test]
    fn control_channel_is_a_virtio_serial_port_on_a_listening_socket() {
        let mut config = direct();
        config.watchdog = true;
        config.control = Some(ControlChannel::cairn("/state/vms/lb,1/ctl.sock"));
        let args = strings(&qemu_args(&config, Accel::Tcg, &prepared()).unwrap());
        assert_eq!(
            values_of(&args, "-device"),
            [
                "virtio-serial-pci,id=ctlserial",
                "virtserialport,bus=ctlserial.0,chardev=cairnctl,name=org.cairn.control",
                "i6300esb",
            ]
        );
        assert_eq!(
            values_of(&args, "-chardev"),
            [
                "stdio,id=console,signal=off",
                "socket,id=cairnctl,path=/state/vms/lb,,1/ctl.sock,server=on,wait=off",
            ]
        );
        // The chardev is defined before the port that uses it.
        let chardev = args
            .iter()
            .position(|a| a.starts_with("socket,id=cairnctl"))
            .unwrap();
        let port = args
            .iter()
            .position(|a| a.starts_with("virtserialport"))
            .unwrap();
        assert!(chardev < port);
        // Without a channel there is no virtio-serial device at all.
        let args = strings(&qemu_args(&direct(), Accel::Tcg, &prepared()).unwrap());
        assert!(
            !args
                .iter()
                .any(|a| a.contains("virtio-serial") || a.contains("cairnctl"))
        );
    }

    #[test]
    fn control_channel_paths_and_names_are_checked() {
        let mut config = direct();
        let long = format!("/{}", "s".repeat(107));
        for (channel, reason) in [
            (ControlChannel::cairn(long.as_str()), "socket path /sss"),
            (ControlChannel::cairn(""), "socket path  is 0 bytes"),
            (
                ControlChannel {
                    socket: "/s".into(),
                    port_name: "org.cairn,x".into(),
                },
                "port name \"org.cairn,x\" must be",
            ),
            (
                ControlChannel {
                    socket: "/s".into(),
                    port_name: String::new(),
                },
                "port name \"\" must be",
            ),
        ] {
            config.control = Some(channel);
            let err = validate(&config).unwrap_err();
            assert!(matches!(err, ArgsError::BadControlChannel { .. }), "{err}");
            let text = err.to_string();
            assert!(text.starts_with("VM node-1: control channel: "), "{text}");
            assert!(text.contains(reason), "{text}");
        }
        config.control = Some(ControlChannel::cairn(format!("/{}", "s".repeat(106))));
        assert_eq!(validate(&config), Ok(()), "107 bytes fit");
    }

    #[test]
    fn uefi_disk_uses_pflash_and_the_chosen_bus() {
        let config = VmConfig::new(
            "disk,vm",
            Boot::UefiDisk {
                disk: "/out/disk.qcow2".into(),
                writes: DiskWrites::Snapshot,
                bus: DiskBus::Nvme,
                ovmf_vars: None,
            },
        );
        let prepared = Prepared {
            uefi: Some(UefiFiles {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: "/run/vm,1/vars.fd".into(),
            }),
            disk: Some(PreparedDisk {
                path: "/out/disk.qcow2".into(),
                format: DiskFormat::Qcow2,
                snapshot: true,
            }),
            ..prepared()
        };
        let args = strings(&qemu_args(&config, Accel::Tcg, &prepared).unwrap());
        assert_eq!(values_of(&args, "-name"), ["guest=disk,,vm"]);
        assert_eq!(
            values_of(&args, "-drive"),
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/run/vm,,1/vars.fd",
                "file=/out/disk.qcow2,format=qcow2,if=none,id=disk0,snapshot=on",
            ]
        );
        assert_eq!(
            values_of(&args, "-device"),
            ["nvme,drive=disk0,serial=cairn-disk0,bootindex=1"]
        );
        assert!(values_of(&args, "-kernel").is_empty());
    }

    #[test]
    fn overlay_disk_has_no_snapshot_flag_and_virtio_bus() {
        let config = VmConfig::new(
            "vm",
            Boot::UefiDisk {
                disk: "/out/disk.img".into(),
                writes: DiskWrites::Overlay("/state/overlay.qcow2".into()),
                bus: DiskBus::Virtio,
                ovmf_vars: None,
            },
        );
        let prepared = Prepared {
            disk: Some(PreparedDisk {
                path: "/state/overlay.qcow2".into(),
                format: DiskFormat::Qcow2,
                snapshot: false,
            }),
            ..prepared()
        };
        let args = strings(&qemu_args(&config, Accel::Tcg, &prepared).unwrap());
        assert_eq!(
            values_of(&args, "-drive"),
            ["file=/state/overlay.qcow2,format=qcow2,if=none,id=disk0"]
        );
        assert_eq!(
            values_of(&args, "-device"),
            ["virtio-blk-pci,drive=disk0,bootindex=1"]
        );
    }

    #[test]
    fn pxe_boots_from_the_first_nic_with_tftp_on_user_net() {
        let mut config = VmConfig::new(
            "pxe",
            Boot::Pxe {
                firmware: Firmware::Bios,
                tftp_root: "/out/pxe".into(),
                bootfile: "boot.ipxe".into(),
            },
        );
        config.nics = vec![
            Nic::user([0x52, 0x54, 0x00, 0, 0, 1]),
            Nic {
                mac: [0x52, 0x54, 0x00, 0, 0, 2],
                backend: NetBackend::Tap("tap-lb1".into()),
            },
            Nic {
                mac: [0x52, 0x54, 0x00, 0, 0, 3],
                backend: NetBackend::None,
            },
        ];
        let args = strings(&qemu_args(&config, Accel::Tcg, &prepared()).unwrap());
        assert_eq!(
            values_of(&args, "-netdev"),
            [
                "user,id=net0,tftp=/out/pxe,bootfile=boot.ipxe",
                "tap,id=net1,ifname=tap-lb1,script=no,downscript=no",
            ]
        );
        assert_eq!(
            values_of(&args, "-device"),
            [
                "virtio-net-pci,disable-legacy=on,id=nic0,mac=52:54:00:00:00:01,netdev=net0,\
                 bootindex=1,romfile=/usr/lib/ipxe/qemu/efi-virtio.rom",
                "virtio-net-pci,disable-legacy=on,id=nic1,mac=52:54:00:00:00:02,netdev=net1,romfile=",
                "virtio-net-pci,disable-legacy=on,id=nic2,mac=52:54:00:00:00:03,romfile=",
            ]
        );
        // SeaBIOS: no pflash, and its screen (with iPXE's) on the serial port.
        assert!(values_of(&args, "-drive").is_empty());
        assert_eq!(values_of(&args, "-machine"), ["q35,graphics=off"]);
    }

    #[test]
    fn user_net_without_pxe_has_no_tftp() {
        let mut config = direct();
        config.nics = vec![Nic::user([2, 0, 0, 0, 0, 1])];
        let args = strings(&qemu_args(&config, Accel::Tcg, &prepared()).unwrap());
        assert_eq!(values_of(&args, "-netdev"), ["user,id=net0"]);
    }

    #[test]
    fn invalid_configurations_are_rejected_with_the_vm_name() {
        let pxe = |bootfile: &str| {
            VmConfig::new(
                "p",
                Boot::Pxe {
                    firmware: Firmware::Bios,
                    tftp_root: "/t".into(),
                    bootfile: bootfile.into(),
                },
            )
        };
        assert_eq!(
            validate(&pxe("boot.ipxe")),
            Err(ArgsError::PxeWithoutNic { vm: "p".into() })
        );
        for bad in ["", "a,b", "/abs"] {
            let mut config = pxe(bad);
            config.nics = vec![Nic::user([2, 0, 0, 0, 0, 1])];
            assert!(
                matches!(validate(&config), Err(ArgsError::BadBootfile { .. })),
                "{bad:?}"
            );
        }

        let mut config = direct();
        config.nics = vec![Nic::user([1, 0, 0, 0, 0, 1])];
        let err = validate(&config).unwrap_err();
        assert_eq!(
            err,
            ArgsError::MulticastMac {
                vm: "node-1".into(),
                mac: "01:00:00:00:00:01".into()
            }
        );
        assert!(err.to_string().contains("node-1"));

        config.nics = vec![Nic::user([2, 0, 0, 0, 0, 1]), Nic::user([2, 0, 0, 0, 0, 1])];
        assert!(matches!(
            validate(&config),
            Err(ArgsError::DuplicateMac { .. })
        ));

        for name in ["", "a-name-longer-than-15", "a,b", "a b"] {
            config.nics = vec![Nic {
                mac: [2, 0, 0, 0, 0, 1],
                backend: NetBackend::Tap(name.into()),
            }];
            assert!(
                matches!(validate(&config), Err(ArgsError::BadTapName { .. })),
                "{name:?}"
            );
        }

        let mut config = direct();
        config.cpus = 0;
        assert_eq!(
            validate(&config),
            Err(ArgsError::Zero {
                vm: "node-1".into(),
                what: "cpus"
            })
        );
        config.cpus = 1;
        config.memory_mib = 0;
        assert!(matches!(validate(&config), Err(ArgsError::Zero { .. })));
    }

    #[test]
    fn uefi_is_needed_for_disk_and_uefi_pxe_only() {
        assert!(!needs_uefi(&direct().boot));
        let pxe = |firmware| Boot::Pxe {
            firmware,
            tftp_root: "/t".into(),
            bootfile: "b".into(),
        };
        assert!(!needs_uefi(&pxe(Firmware::Bios)));
        assert!(needs_uefi(&pxe(Firmware::Uefi { vars: None })));
    }

    #[test]
    fn commas_are_doubled_and_rendering_quotes() {
        assert_eq!(
            escape_value(OsStr::new("/a,b,,c")),
            OsString::from("/a,,b,,,,c")
        );
        let rendered = render(
            Path::new("qemu"),
            &["-append".into(), "console=ttyS0 it's".into(), "".into()],
        );
        assert_eq!(rendered, r"qemu -append 'console=ttyS0 it'\''s' ''");
    }
}

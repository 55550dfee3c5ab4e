//! The one-time machine setup on the real root, run by the early stage
//! (`cairn-early`) after it switched into the verified root and before it
//! execs PID 1: the data partition on /var, the ESP on /efi (disk boots),
//! hostname and loopback, this box's identity from the site file, its network,
//! and the boot history. The outcome goes to PID 1 as a [`BootRecord`].
//! Nothing here is fatal: a box that cannot identify itself boots on without
//! role services, saying why (docs/boot.md).

use std::path::Path;

use tracing::{error, info, warn};

use crate::bootrecord::BootRecord;
use crate::{abroot, blockdev, boot, boothistory, cmdline, datapart, esp, identity, network};

/// Runs every step and returns what PID 1 needs to know.
pub fn run() -> BootRecord {
    datapart::setup_machine();
    let esp_mounted = mount_esp_on_disk_boots();
    boot::configure_system();
    let mut record = BootRecord {
        esp_mounted,
        ..BootRecord::default()
    };
    match identify_and_configure() {
        Ok((image, site, node)) => {
            record_boot(&image, &node);
            record.update_timing = site
                .update
                .as_ref()
                .map(|u| (u.bless_after_s, u.boot_deadline_s));
            record.role = Some(image.role.as_str().to_owned());
            record.version = Some(image.version);
            record.node = Some(node);
        }
        Err(e) => {
            record.error = Some(format!("this box could not identify itself: {e}"));
            // Boots are still counted against the image's version.
            let image = identity::load_image_info(Path::new(identity::IMAGE_FILE)).ok();
            let site = identity::load_site(Path::new(identity::SITE_FILE)).ok();
            record.role = image.as_ref().map(|i| i.role.as_str().to_owned());
            record.version = image
                .map(|i| i.version)
                .or_else(|| site.as_ref().map(|s| s.image.version.clone()));
            record.update_timing = site
                .and_then(|s| s.update)
                .map(|u| (u.bless_after_s, u.boot_deadline_s));
        }
    }
    record
}

/// Appends this boot to the history on the data partition (docs/init.md).
fn record_boot(image: &identity::ImageInfo, node: &str) {
    let slot = abroot::read_boot_slot(Path::new(abroot::BOOT_SLOT_FILE));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let boot = boothistory::Boot {
        version: &image.version,
        slot: slot.map_or("-", |s| s.as_str()),
        node,
        role: image.role.as_str(),
        time,
    };
    match boothistory::record(Path::new(boothistory::FILE), &boot) {
        Ok(n) => {
            info!(boot = n, version = %image.version, slot = boot.slot, "boot recorded in {}", boothistory::FILE)
        }
        Err(e) => warn!(error = %e, "cannot record the boot in {}", boothistory::FILE),
    }
}

/// On a disk boot (`cairn.root=` names a partition or `ab`, or the early
/// stage recorded a slot) mounts the ESP on /efi. Failures are logged, never
/// fatal: the box runs on, it just cannot install updates or bless a boot.
fn mount_esp_on_disk_boots() -> bool {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let root = cmdline::parse(&text).ok().and_then(|p| p.root);
    let slot = abroot::read_boot_slot(Path::new(abroot::BOOT_SLOT_FILE));
    let disk = slot.is_some()
        || matches!(
            root,
            Some(cmdline::RootSource::Device(_) | cmdline::RootSource::AbSlots)
        );
    if !disk {
        return false;
    }
    match esp::mount_esp(&blockdev::Roots::system(), Path::new(esp::MOUNT_POINT)) {
        Ok(dev) => {
            info!(device = %dev.display(), target = esp::MOUNT_POINT, slot = slot.map_or("-", |s| s.as_str()), "ESP mounted");
            true
        }
        Err(e) => {
            error!("ESP not mounted: {e}; updates and blessing are off for this boot");
            false
        }
    }
}

/// Finds this box's node in the site file (by MAC, or `cairn.node=`), sets
/// the hostname and configures the network. When the box cannot find
/// itself it says so on the console and returns the reason.
fn identify_and_configure()
-> Result<(identity::ImageInfo, cairn_site::Site, String), identity::IdentityError> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let override_name = cmdline::words(&cmdline)
        .into_iter()
        .find(|(k, _)| k == "cairn.node")
        .and_then(|(_, v)| v);
    let found = (|| {
        let image = identity::load_image_info(Path::new(identity::IMAGE_FILE))?;
        let site = identity::load_site(Path::new(identity::SITE_FILE))?;
        // NICs appear while their drivers probe; give them a few seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let node = loop {
            let macs: Vec<_> = identity::local_macs(Path::new("/sys/class/net"))
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            match identity::resolve(&site, image.role, &macs, override_name.as_deref()) {
                Ok(n) => break n.clone(),
                Err(identity::IdentityError::NoMatch { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        Ok::<_, identity::IdentityError>((image, site, node))
    })();
    let (image, site, node) = match found {
        Ok(v) => v,
        Err(e) => {
            error!("cannot identify this box: {e}");
            crate::runtime::console_line(&format!(
                "cairn-early: this box could not identify itself: {e}; no role services will start"
            ));
            return Err(e);
        }
    };
    match nix::unistd::sethostname(&node.name) {
        Ok(()) => info!(hostname = %node.name, role = %image.role, "identified"),
        Err(e) => error!(error = %e, "cannot set hostname"),
    }
    match cairn_netlink::Netlink::open()
        .map_err(network::NetworkError::from)
        .and_then(|mut nl| network::configure(&mut nl, &site, &node))
    {
        Ok(c) => info!(
            interface = %c.interface,
            addresses = %c.addresses.join(" "),
            gateway = ?c.gateway,
            "network configured"
        ),
        Err(e) => error!("network: {e}"),
    }
    let name = node.name.clone();
    Ok((image, site, name))
}

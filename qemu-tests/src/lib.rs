//! Shared helpers for the QEMU tests: build images once per test process
//! with the real `cairn` binary, boot them, and read their consoles.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod k8s_control;
pub mod labcli;

use cairn_qemu::{Boot, DiskBus, DiskWrites, Firmware, Nic, Vm, VmConfig};

/// Time allowed for a boot to reach a console line (TCG is slow; KVM is not needed).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `cairn` binary built by `cargo test --workspace` (a sibling of this
/// test's target directory). Fails loudly when it is missing.
pub fn cairn_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/cairn
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("cairn"))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "{} not found: run the QEMU tests with `cargo test --workspace` (or `cargo xtask test`) so the cairn binary is built",
        bin.display()
    );
    bin
}

/// Where test builds go: `<target>/tmp/qemu-tests`.
pub fn scratch() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/tmp
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("tmp/qemu-tests"))
        .unwrap_or_else(|| std::env::temp_dir().join("cairn-qemu-tests"))
}

/// Runs `cairn build` with the example site for `role` on `qemu-x86_64`.
pub fn cairn_build(site: &Path, role: &str, out: &Path) -> Output {
    Command::new(cairn_bin())
        .args([
            "build",
            "--quiet",
            "--profile",
            "qemu-x86_64",
            "--role",
            role,
        ])
        .arg("--site")
        .arg(site)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cairn: {e}"))
}

/// Builds the example site's image of `role` into the scratch dir; panics with cairn's
/// output when the build fails.
fn build_example(role: &str) -> PathBuf {
    let out = scratch().join(role);
    let t = Instant::now();
    let o = cairn_build(&workspace().join("examples/site.toml"), role, &out);
    assert!(
        o.status.success(),
        "cairn build --role {role} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "built the {role} image in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    out
}

/// The example site's `base` image, built once per test process.
pub fn base_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| build_example("base"))
}

/// Parses "52:54:00:c0:00:01".
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    m
}

/// Boots `disk` (qcow2 or raw) through OVMF with one NIC.
pub fn boot_disk(name: &str, disk: &Path, nic_mac: [u8; 6]) -> Vm {
    let mut c = VmConfig::new(
        name,
        Boot::UefiDisk {
            disk: disk.to_path_buf(),
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        },
    );
    c.nics.push(Nic::user(nic_mac));
    c.watchdog = true;
    c.no_reboot = true;
    Vm::start(&c).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// Boots a build's PXE set through iPXE over QEMU's TFTP.
pub fn boot_pxe(name: &str, build: &Path, nic_mac: [u8; 6]) -> Vm {
    let mut c = VmConfig::new(
        name,
        Boot::Pxe {
            firmware: Firmware::Bios,
            tftp_root: build.join("pxe"),
            bootfile: "boot.ipxe".into(),
        },
    );
    c.nics.push(Nic::user(nic_mac));
    c.no_reboot = true;
    c.memory_mib = 768;
    Vm::start(&c).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// The example site's `lb` image, built once per test process.
pub fn lb_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| build_example("lb"))
}

/// QEMU's user-mode network moved onto a site subnet, so a box keeps its
/// static site address and still talks to the host: `hostfwd` forwards a host
/// port on 127.0.0.1 into the guest, `guestfwd` answers the guest's TCP
/// connections to an address with a host program (one process per connection,
/// stdin/stdout are the connection).
#[derive(Debug, Clone, Default)]
pub struct SiteUserNet {
    /// The subnet the guest's address is in, e.g. `192.0.2.0/24`.
    pub net: String,
    /// The host's address in it (the site's gateway), e.g. `192.0.2.1`.
    pub host: String,
    /// (host port on 127.0.0.1, guest address:port).
    pub hostfwd: Vec<(u16, String)>,
    /// (guest-side address:port, host program).
    pub guestfwd: Vec<(String, PathBuf)>,
}

impl SiteUserNet {
    /// The `-netdev` value for this network with id `id`.
    pub fn netdev(&self, id: &str) -> String {
        let mut v = format!("user,id={id},net={},host={}", self.net, self.host);
        for (port, guest) in &self.hostfwd {
            v.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-{guest}"));
        }
        for (at, cmd) in &self.guestfwd {
            // QEMU option values escape commas by doubling them.
            let cmd = cmd.display().to_string().replace(',', ",,");
            v.push_str(&format!(",guestfwd=tcp:{at}-cmd:{cmd}"));
        }
        v
    }
}

/// Boots `disk` through OVMF with one NIC (`nic_mac`) on a [`SiteUserNet`].
pub fn boot_disk_on_site_net(name: &str, disk: &Path, nic_mac: [u8; 6], net: &SiteUserNet) -> Vm {
    let mut c = VmConfig::new(
        name,
        Boot::UefiDisk {
            disk: disk.to_path_buf(),
            writes: DiskWrites::Snapshot,
            bus: DiskBus::Virtio,
            ovmf_vars: None,
        },
    );
    let mac = nic_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    c.extra_args = vec![
        "-netdev".into(),
        net.netdev("sitenet").into(),
        "-device".into(),
        format!("virtio-net-pci,disable-legacy=on,id=nic0,mac={mac},netdev=sitenet,romfile=")
            .into(),
    ];
    c.watchdog = true;
    c.no_reboot = true;
    Vm::start(&c).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// One `GET path` over HTTP/1.0 to 127.0.0.1:`port`; returns the status code
/// and body, or why it failed. Bounded by a 5 s timeout per socket operation.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t = Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, t).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(t)).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: cairn.test\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Byte offset and length of partition `n` (1-based) of a GPT disk image, from sgdisk.
pub fn partition_range(disk: &Path, n: u32) -> (u64, u64) {
    let out = Command::new("sgdisk")
        .arg("-i")
        .arg(n.to_string())
        .arg(disk)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sgdisk (gdisk): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("sgdisk -i {n} {}: no {name:?} in {text}", disk.display()))
    };
    let first = field("First sector: ");
    let last = field("Last sector: ");
    (first * 512, (last + 1 - first) * 512)
}

/// Byte offset of partition `n` (1-based) of a GPT disk image.
pub fn partition_offset(disk: &Path, n: u32) -> u64 {
    partition_range(disk, n).0
}

/// Extracts the erofs root of a build's `disk.img` (root-a, `rootfs` bytes
/// from the manifest, before the verity hash tree) into `dir`.
pub fn extract_root(build: &Path, dir: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(build.join("manifest.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", build.display())),
    )
    .unwrap_or_else(|e| panic!("manifest.json: {e}"));
    let len = manifest["sizes"]["rootfs"]
        .as_u64()
        .unwrap_or_else(|| panic!("manifest.json has no sizes.rootfs"));
    let disk = build.join("disk.img");
    let mut f = std::fs::File::open(&disk).unwrap_or_else(|e| panic!("{}: {e}", disk.display()));
    f.seek(SeekFrom::Start(partition_offset(&disk, 2)))
        .unwrap_or_else(|e| panic!("seek: {e}"));
    let mut erofs = vec![0u8; len as usize];
    f.read_exact(&mut erofs)
        .unwrap_or_else(|e| panic!("reading root-a: {e}"));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let img = dir.with_extension("erofs");
    std::fs::write(&img, &erofs).unwrap_or_else(|e| panic!("{}: {e}", img.display()));
    let o = Command::new("fsck.erofs")
        .arg(format!("--extract={}", dir.display()))
        .arg("--overwrite")
        .arg(&img)
        .output()
        .unwrap_or_else(|e| panic!("cannot run fsck.erofs (erofs-utils): {e}"));
    assert!(
        o.status.success(),
        "fsck.erofs --extract failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_file(&img);
}

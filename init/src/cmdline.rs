//! The `cairn.*` kernel command line parameters, parsed into a typed
//! [`BootParams`]. Pure: text in, a value or an error naming the parameter
//! out. The syntax is documented in docs/boot.md.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `cairn.root=`: where the root filesystem image is.
pub const ROOT: &str = "cairn.root";
/// `cairn.verity=`: the dm-verity parameters of the root image.
pub const VERITY: &str = "cairn.verity";
/// `cairn.verity.scan=`: read the whole root through dm-verity before mounting it.
pub const VERITY_SCAN: &str = "cairn.verity.scan";
/// `cairn.slot=`: the A/B slot this boot came from.
pub const SLOT: &str = "cairn.slot";
/// `cairn.data=`: where writable state lives.
pub const DATA: &str = "cairn.data";
/// `cairn.node=`: node name override (instead of matching MAC addresses).
pub const NODE: &str = "cairn.node";
/// `cairn.debug`: verbose early boot and `CAIRN_LOG=debug` for the real init.
pub const DEBUG: &str = "cairn.debug";
/// `cairn.rootwait=`: seconds to wait for the root device to appear.
pub const ROOTWAIT: &str = "cairn.rootwait";

/// Block size of data and hash tree of every cairn root image.
pub const VERITY_BLOCK: u64 = 4096;
/// Longest salt dm-verity accepts, in bytes.
pub const MAX_SALT: usize = 256;
/// Default time to wait for the root and data devices.
pub const DEFAULT_ROOT_WAIT: Duration = Duration::from_secs(10);
/// Longest `cairn.rootwait=` accepted, in seconds.
pub const MAX_ROOT_WAIT_SECS: u64 = 600;
/// The GPT partition name of the data partition the builder writes.
pub const DATA_LABEL: &str = "data";
/// `cairn.root=ab`: the root is whichever A/B slot holds the image.
pub const ROOT_AB: &str = "ab";
/// The GPT partition names of the two root slots, in the order they are tried.
pub const SLOT_LABELS: [(Slot, &str); 2] = [(Slot::A, "root-a"), (Slot::B, "root-b")];

/// A block device named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `PARTUUID=<guid>`: the GPT unique partition GUID, kept lowercase.
    PartUuid(String),
    /// `PARTLABEL=<name>`: the GPT partition name.
    PartLabel(String),
    /// `/dev/<name>`: a kernel device name.
    Path(PathBuf),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::PartUuid(u) => write!(f, "PARTUUID={u}"),
            DeviceSpec::PartLabel(l) => write!(f, "PARTLABEL={l}"),
            DeviceSpec::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where the root image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// A partition or disk (UEFI disk boot).
    Device(DeviceSpec),
    /// `file:/path`: a file inside the initramfs, attached to a loop device (PXE).
    File(PathBuf),
    /// `ab`: the partition labelled `root-a` or `root-b` whose verity tree
    /// matches the root hash (A/B disk boots; docs/update.md).
    AbSlots,
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSource::Device(d) => d.fmt(f),
            RootSource::File(p) => write!(f, "file:{}", p.display()),
            RootSource::AbSlots => f.write_str(ROOT_AB),
        }
    }
}

/// Where writable state (/var) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A partition, formatted ext4 on first boot when empty.
    Device(DeviceSpec),
    /// `tmpfs`: RAM only (PXE boots).
    Tmpfs,
}

/// dm-verity parameters of the root image: an erofs image of `data_blocks`
/// 4096-byte blocks followed, at `hash_offset` bytes, by its sha256 hash tree
/// (`veritysetup format --hash-offset=<data size>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    /// The sha256 root hash.
    pub root_hash: [u8; 32],
    /// The salt (may be empty).
    pub salt: Vec<u8>,
    /// Number of 4096-byte data blocks.
    pub data_blocks: u64,
    /// Byte offset of the hash tree on the same device.
    pub hash_offset: u64,
}

impl VerityParams {
    /// The first block of the hash area, in hash blocks. veritysetup puts a
    /// superblock there unless told `--no-superblock`; see
    /// [`crate::dm::hash_start`] for where the tree itself starts.
    pub fn hash_start_block(&self) -> u64 {
        self.hash_offset / VERITY_BLOCK
    }

    /// Size of the verified data in 512-byte sectors.
    pub fn data_sectors(&self) -> u64 {
        self.data_blocks * (VERITY_BLOCK / 512)
    }

    /// Size of the verified data in bytes.
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks * VERITY_BLOCK
    }

    /// The root hash as lowercase hex.
    pub fn root_hash_hex(&self) -> String {
        to_hex(&self.root_hash)
    }

    /// The salt as lowercase hex, or `-` when there is none (dm-verity's spelling).
    pub fn salt_hex(&self) -> String {
        if self.salt.is_empty() {
            "-".into()
        } else {
            to_hex(&self.salt)
        }
    }
}

/// Whether and how the root is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verity {
    /// Verify with dm-verity (the normal case).
    Params(VerityParams),
    /// `cairn.verity=none`: development only, the root is mounted unverified.
    Disabled,
}

/// When dm-verity checks the root's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerityScan {
    /// Read every data block once before mounting, so a corrupted image is
    /// refused at boot rather than when a damaged file is first read.
    Full,
    /// Only verify blocks when they are read (dm-verity's own behaviour).
    Lazy,
}

/// The A/B root slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Slot A (`root-a`).
    A,
    /// Slot B (`root-b`).
    B,
}

impl Slot {
    /// The slot's letter as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// Everything cairn-init reads from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `cairn.root=`; required by the early boot stage.
    pub root: Option<RootSource>,
    /// `cairn.verity=`; required by the early boot stage.
    pub verity: Option<Verity>,
    /// `cairn.verity.scan=full|lazy`, default full.
    pub verity_scan: VerityScan,
    /// `cairn.slot=a|b`: the slot of a `cairn.root=` naming one partition
    /// (UKIs from before `cairn.root=ab`).
    pub slot: Option<Slot>,
    /// `cairn.data=`, default `PARTLABEL=data`.
    pub data: DataSource,
    /// `cairn.node=`.
    pub node: Option<String>,
    /// `cairn.debug` (bare, or `=1`/`=0`).
    pub debug: bool,
    /// `cairn.rootwait=<seconds>`, default 10.
    pub root_wait: Duration,
}

impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            root: None,
            verity: None,
            verity_scan: VerityScan::Full,
            slot: None,
            data: DataSource::Device(DeviceSpec::PartLabel(DATA_LABEL.into())),
            node: None,
            debug: false,
            root_wait: DEFAULT_ROOT_WAIT,
        }
    }
}

impl BootParams {
    /// The root source and its verity setting, which the early boot stage
    /// cannot do without.
    pub fn require_root(&self) -> Result<(&RootSource, &Verity), CmdlineError> {
        let root = self
            .root
            .as_ref()
            .ok_or(CmdlineError::Missing { param: ROOT })?;
        let verity = self
            .verity
            .as_ref()
            .ok_or(CmdlineError::Missing { param: VERITY })?;
        if *root == RootSource::AbSlots && *verity == Verity::Disabled {
            return Err(invalid(
                ROOT,
                ROOT_AB,
                "needs cairn.verity=<root hash>:...: the root hash picks the slot",
            ));
        }
        Ok((root, verity))
    }
}

/// A command line that cairn-init cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// A parameter's value is malformed.
    #[error("{param}={value}: {reason}")]
    Invalid {
        /// The parameter, e.g. `cairn.verity`.
        param: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter needs a value and has none.
    #[error("{param} needs a value ({param}=...)")]
    NoValue {
        /// The parameter.
        param: &'static str,
    },
    /// A parameter appears twice; cairn refuses to guess which one counts.
    #[error("{param} is given more than once")]
    Duplicate {
        /// The parameter.
        param: &'static str,
    },
    /// A required parameter is absent.
    #[error("{param} is missing")]
    Missing {
        /// The parameter.
        param: &'static str,
    },
}

/// Splits a kernel command line into `(name, value)` words the way the
/// kernel does: whitespace separates words except inside double quotes, the
/// quotes themselves are dropped, and everything after a bare `--` belongs to
/// init's argv rather than to the parameters.
pub fn words(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let finish = |cur: &mut String, out: &mut Vec<(String, Option<String>)>| {
        let w = std::mem::take(cur);
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_owned(), Some(v.to_owned()))),
            None => out.push((w, None)),
        }
    };
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
            in_word = true;
            continue;
        }
        if c.is_whitespace() && !quoted {
            if in_word {
                if cur == "--" {
                    return out;
                }
                finish(&mut cur, &mut out);
                in_word = false;
            }
            continue;
        }
        cur.push(c);
        in_word = true;
    }
    if in_word && cur != "--" {
        finish(&mut cur, &mut out);
    }
    out
}

/// Parses the `cairn.*` parameters of a kernel command line. Other
/// parameters are ignored; a `cairn.*` parameter this stage does not know
/// (e.g. `cairn.hostname`, read elsewhere) is left alone too.
pub fn parse(text: &str) -> Result<BootParams, CmdlineError> {
    let mut p = BootParams::default();
    let mut seen: Vec<&'static str> = Vec::new();
    for (name, value) in words(text) {
        let Some(param) = known(&name) else {
            continue;
        };
        if seen.contains(&param) {
            return Err(CmdlineError::Duplicate { param });
        }
        seen.push(param);
        if param == DEBUG {
            p.debug = parse_flag(param, value.as_deref())?;
            continue;
        }
        let value = value.ok_or(CmdlineError::NoValue { param })?;
        match param {
            ROOT => p.root = Some(parse_root(&value)?),
            VERITY => p.verity = Some(parse_verity(&value)?),
            VERITY_SCAN => p.verity_scan = parse_scan(&value)?,
            SLOT => p.slot = Some(parse_slot(&value)?),
            DATA => p.data = parse_data(&value)?,
            NODE => p.node = Some(parse_node(&value)?),
            ROOTWAIT => p.root_wait = parse_rootwait(&value)?,
            _ => {}
        }
    }
    Ok(p)
}

fn known(name: &str) -> Option<&'static str> {
    [ROOT, VERITY, VERITY_SCAN, SLOT, DATA, NODE, DEBUG, ROOTWAIT]
        .into_iter()
        .find(|k| *k == name)
}

fn invalid(param: &'static str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::Invalid {
        param,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_flag(param: &'static str, value: Option<&str>) -> Result<bool, CmdlineError> {
    match value {
        None | Some("1" | "yes" | "true" | "on") => Ok(true),
        Some("0" | "no" | "false" | "off") => Ok(false),
        Some(v) => Err(invalid(param, v, "expected 1 or 0")),
    }
}

/// Parses a device spec for `param`: `PARTUUID=`, `PARTLABEL=` or `/dev/...`.
pub fn parse_device(param: &'static str, value: &str) -> Result<DeviceSpec, CmdlineError> {
    if let Some(u) = value.strip_prefix("PARTUUID=") {
        if !is_guid(u) {
            return Err(invalid(
                param,
                value,
                "PARTUUID must be a GUID like 0fc63daf-8483-4772-8e79-3d69d8477de4",
            ));
        }
        return Ok(DeviceSpec::PartUuid(u.to_ascii_lowercase()));
    }
    if let Some(l) = value.strip_prefix("PARTLABEL=") {
        if l.is_empty() || l.chars().count() > 36 {
            return Err(invalid(
                param,
                value,
                "PARTLABEL must be 1 to 36 characters (a GPT partition name)",
            ));
        }
        return Ok(DeviceSpec::PartLabel(l.to_owned()));
    }
    if let Some(name) = value.strip_prefix("/dev/") {
        if name.is_empty() || name.split('/').any(|c| c.is_empty() || c == "..") {
            return Err(invalid(param, value, "not a device path"));
        }
        return Ok(DeviceSpec::Path(PathBuf::from(value)));
    }
    Err(invalid(
        param,
        value,
        "expected PARTUUID=<guid>, PARTLABEL=<name> or /dev/<name>",
    ))
}

/// Whether `cairn.debug` is set on `text`, even when the rest of the
/// command line does not parse (the early stage's failure path needs to know).
pub fn debug_requested(text: &str) -> bool {
    words(text)
        .into_iter()
        .filter(|(k, _)| k == DEBUG)
        .any(|(_, v)| parse_flag(DEBUG, v.as_deref()).unwrap_or(false))
}

fn parse_root(value: &str) -> Result<RootSource, CmdlineError> {
    if value == ROOT_AB {
        return Ok(RootSource::AbSlots);
    }
    if let Some(path) = value.strip_prefix("file:") {
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(invalid(
                ROOT,
                value,
                "file: needs an absolute path inside the initramfs",
            ));
        }
        return Ok(RootSource::File(PathBuf::from(path)));
    }
    parse_device(ROOT, value).map(RootSource::Device)
}

fn parse_data(value: &str) -> Result<DataSource, CmdlineError> {
    if value == "tmpfs" {
        return Ok(DataSource::Tmpfs);
    }
    parse_device(DATA, value).map(DataSource::Device)
}

fn parse_slot(value: &str) -> Result<Slot, CmdlineError> {
    match value {
        "a" | "A" => Ok(Slot::A),
        "b" | "B" => Ok(Slot::B),
        _ => Err(invalid(SLOT, value, "expected a or b")),
    }
}

fn parse_scan(value: &str) -> Result<VerityScan, CmdlineError> {
    match value {
        "full" => Ok(VerityScan::Full),
        "lazy" => Ok(VerityScan::Lazy),
        _ => Err(invalid(VERITY_SCAN, value, "expected full or lazy")),
    }
}

fn parse_node(value: &str) -> Result<String, CmdlineError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            NODE,
            value,
            "a node name is 1 to 63 of [A-Za-z0-9._-]",
        ))
    }
}

fn parse_rootwait(value: &str) -> Result<Duration, CmdlineError> {
    match value.parse::<u64>() {
        Ok(s) if s <= MAX_ROOT_WAIT_SECS => Ok(Duration::from_secs(s)),
        _ => Err(invalid(
            ROOTWAIT,
            value,
            format!("expected whole seconds, 0 to {MAX_ROOT_WAIT_SECS}"),
        )),
    }
}

/// Parses `<roothash-hex>:<salt-hex>:<data-blocks>:<hash-offset-bytes>`
/// (salt `-` or empty for none) or `none`.
fn parse_verity(value: &str) -> Result<Verity, CmdlineError> {
    if value == "none" {
        return Ok(Verity::Disabled);
    }
    let fields: Vec<&str> = value.split(':').collect();
    let [hash, salt, blocks, offset] = fields[..] else {
        return Err(invalid(
            VERITY,
            value,
            "expected <roothash-hex>:<salt-hex>:<data-blocks>:<hash-offset-bytes>",
        ));
    };
    let root_hash: [u8; 32] = from_hex(hash)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| invalid(VERITY, value, "root hash must be 64 hex digits (sha256)"))?;
    let salt = match salt {
        "" | "-" => Vec::new(),
        s => from_hex(s)
            .filter(|s| s.len() <= MAX_SALT)
            .ok_or_else(|| invalid(VERITY, value, "salt must be hex, at most 256 bytes"))?,
    };
    let data_blocks: u64 = blocks
        .parse()
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(|| invalid(VERITY, value, "data blocks must be a positive integer"))?;
    let hash_offset: u64 = offset
        .parse()
        .map_err(|_| invalid(VERITY, value, "hash offset must be an integer (bytes)"))?;
    if hash_offset % VERITY_BLOCK != 0 {
        return Err(invalid(
            VERITY,
            value,
            "hash offset must be a multiple of 4096",
        ));
    }
    let data_bytes = data_blocks
        .checked_mul(VERITY_BLOCK)
        .ok_or_else(|| invalid(VERITY, value, "data blocks out of range"))?;
    if hash_offset < data_bytes {
        return Err(invalid(
            VERITY,
            value,
            format!("hash offset {hash_offset} lies inside the {data_bytes} bytes of data"),
        ));
    }
    Ok(Verity::Params(VerityParams {
        root_hash,
        salt,
        data_blocks,
        hash_offset,
    }))
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Bytes of an even-length hex string, or `None` when it is not one.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HASH: &str = "4fa4a8cbd3a7a0f1d2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";
    const UUID: &str = "6C8B0F3E-1D2A-4B5C-9D8E-7F6A5B4C3D2E";

    fn disk_line() -> String {
        format!(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 cairn.root=PARTUUID={UUID} \
             cairn.verity={HASH}:00ff10:2560:10485760 cairn.slot=a cairn.data=PARTLABEL=data quiet"
        )
    }

    #[test]
    fn parses_the_disk_command_line() {
        let p = parse(&disk_line()).unwrap();
        assert_eq!(
            p.root,
            Some(RootSource::Device(DeviceSpec::PartUuid(
                UUID.to_ascii_lowercase()
            )))
        );
        let Some(Verity::Params(v)) = &p.verity else {
            panic!("verity: {:?}", p.verity)
        };
        assert_eq!(v.root_hash_hex(), HASH);
        assert_eq!(v.salt, vec![0x00, 0xff, 0x10]);
        assert_eq!(v.salt_hex(), "00ff10");
        assert_eq!(v.data_blocks, 2560);
        assert_eq!(v.hash_offset, 10_485_760);
        assert_eq!(v.hash_start_block(), 2560);
        assert_eq!(v.data_sectors(), 20480);
        assert_eq!(p.slot, Some(Slot::A));
        assert_eq!(
            p.data,
            DataSource::Device(DeviceSpec::PartLabel("data".into()))
        );
        assert_eq!(p.verity_scan, VerityScan::Full);
        assert!(!p.debug);
        assert_eq!(p.node, None);
        assert_eq!(p.root_wait, DEFAULT_ROOT_WAIT);
        assert!(p.require_root().is_ok());
    }

    #[test]
    fn parses_the_pxe_command_line() {
        let line = format!(
            "console=ttyS0 cairn.root=file:/root.img cairn.verity={HASH}:-:100:409600 \
             cairn.data=tmpfs cairn.node=lb-1 cairn.debug cairn.verity.scan=lazy cairn.rootwait=30"
        );
        let p = parse(&line).unwrap();
        assert_eq!(p.root, Some(RootSource::File("/root.img".into())));
        let Some(Verity::Params(v)) = &p.verity else {
            panic!()
        };
        assert!(v.salt.is_empty());
        assert_eq!(v.salt_hex(), "-");
        assert_eq!(p.data, DataSource::Tmpfs);
        assert_eq!(p.node.as_deref(), Some("lb-1"));
        assert!(p.debug);
        assert_eq!(p.verity_scan, VerityScan::Lazy);
        assert_eq!(p.root_wait, Duration::from_secs(30));
        assert_eq!(p.slot, None);
    }

    #[test]
    fn defaults_when_absent() {
        let p = parse("console=ttyS0 quiet").unwrap();
        assert_eq!(p, BootParams::default());
        assert_eq!(
            p.require_root().unwrap_err(),
            CmdlineError::Missing { param: ROOT }
        );
        let p = parse("cairn.root=/dev/vda2").unwrap();
        assert_eq!(
            p.require_root().unwrap_err(),
            CmdlineError::Missing { param: VERITY }
        );
        assert_eq!(
            p.root,
            Some(RootSource::Device(DeviceSpec::Path("/dev/vda2".into())))
        );
    }

    #[test]
    fn verity_none_is_explicit() {
        let p = parse("cairn.root=/dev/vda2 cairn.verity=none").unwrap();
        assert_eq!(p.verity, Some(Verity::Disabled));
        assert!(p.require_root().is_ok());
    }

    fn err(line: &str) -> CmdlineError {
        parse(line).unwrap_err()
    }

    fn reason_of(line: &str) -> (&'static str, String) {
        match err(line) {
            CmdlineError::Invalid { param, reason, .. } => (param, reason),
            e => panic!("expected Invalid for {line:?}, got {e:?}"),
        }
    }

    #[test]
    fn errors_name_the_parameter_and_reason() {
        let (p, r) = reason_of(&format!("cairn.verity={}:-:1:4096", &HASH[..62]));
        assert_eq!(p, VERITY);
        assert!(r.contains("64 hex digits"), "{r}");
        let (p, r) = reason_of(&format!("cairn.verity={HASH}:-:1"));
        assert_eq!(p, VERITY);
        assert!(r.contains("<roothash-hex>"), "{r}");
        let (_, r) = reason_of(&format!("cairn.verity={HASH}:xyz0:1:4096"));
        assert!(r.contains("salt"), "{r}");
        let (_, r) = reason_of(&format!("cairn.verity={HASH}:-:0:4096"));
        assert!(r.contains("data blocks"), "{r}");
        let (_, r) = reason_of(&format!("cairn.verity={HASH}:-:2:4097"));
        assert!(r.contains("multiple of 4096"), "{r}");
        let (_, r) = reason_of(&format!("cairn.verity={HASH}:-:2:4096"));
        assert!(r.contains("inside"), "{r}");
        let (_, r) = reason_of(&format!("cairn.verity={HASH}:-:18446744073709551615:4096"));
        assert!(r.contains("out of range"), "{r}");
        let (p, _) = reason_of("cairn.root=PARTUUID=1234");
        assert_eq!(p, ROOT);
        let (p, _) = reason_of("cairn.root=file:root.img");
        assert_eq!(p, ROOT);
        let (p, _) = reason_of("cairn.root=/dev/../etc/passwd");
        assert_eq!(p, ROOT);
        let (p, _) = reason_of("cairn.root=LABEL=root");
        assert_eq!(p, ROOT);
        let (p, _) = reason_of("cairn.data=PARTLABEL=");
        assert_eq!(p, DATA);
        let (p, _) = reason_of("cairn.slot=c");
        assert_eq!(p, SLOT);
        let (p, _) = reason_of("cairn.node=a/b");
        assert_eq!(p, NODE);
        let (p, _) = reason_of("cairn.debug=maybe");
        assert_eq!(p, DEBUG);
        let (p, _) = reason_of("cairn.verity.scan=some");
        assert_eq!(p, VERITY_SCAN);
        let (p, _) = reason_of("cairn.rootwait=601");
        assert_eq!(p, ROOTWAIT);
        assert_eq!(err("cairn.root"), CmdlineError::NoValue { param: ROOT });
        assert_eq!(
            err("cairn.slot=a cairn.slot=b"),
            CmdlineError::Duplicate { param: SLOT }
        );
        let msg = err("cairn.slot=c").to_string();
        assert_eq!(msg, "cairn.slot=c: expected a or b");
    }

    #[test]
    fn splits_words_like_the_kernel() {
        let w = words("a=1  \"b=x y\" c=\"p q\" d -- cairn.slot=zzz");
        assert_eq!(
            w,
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("x y".into())),
                ("c".into(), Some("p q".into())),
                ("d".into(), None),
            ]
        );
        // Parameters after `--` are init's arguments, not parameters.
        assert_eq!(
            parse("cairn.slot=b -- cairn.slot=zzz").unwrap().slot,
            Some(Slot::B)
        );
        // A value keeps everything after the first '='.
        assert_eq!(words("k=a=b"), vec![("k".into(), Some("a=b".into()))]);
        assert!(words("").is_empty());
        assert_eq!(words("--"), Vec::<(String, Option<String>)>::new());
    }

    #[test]
    fn unknown_cairn_parameters_are_left_alone() {
        let p = parse("cairn.hostname=x cairn.root=PARTLABEL=root-a cairn.verity=none").unwrap();
        assert_eq!(
            p.root,
            Some(RootSource::Device(DeviceSpec::PartLabel("root-a".into())))
        );
    }

    #[test]
    fn root_ab_names_both_slots() {
        let line = format!("cairn.root=ab cairn.verity={HASH}:-:100:409600");
        let p = parse(&line).unwrap();
        assert_eq!(p.root, Some(RootSource::AbSlots));
        assert_eq!(p.slot, None);
        assert_eq!(RootSource::AbSlots.to_string(), "ab");
        assert_eq!(SLOT_LABELS[0], (Slot::A, "root-a"));
        assert_eq!(SLOT_LABELS[1], (Slot::B, "root-b"));
        // Old UKIs name a partition and the slot.
        let p = parse("cairn.root=PARTLABEL=root-b cairn.slot=b").unwrap();
        assert_eq!(p.slot, Some(Slot::B));
        let (param, _) = reason_of("cairn.root=abc");
        assert_eq!(param, ROOT);
        let p = parse("cairn.root=ab cairn.verity=none").unwrap();
        assert_eq!(
            p.require_root().unwrap_err().to_string(),
            "cairn.root=ab: needs cairn.verity=<root hash>:...: the root hash picks the slot"
        );
    }

    #[test]
    fn debug_is_found_on_a_broken_line() {
        assert!(debug_requested("cairn.verity=zz cairn.debug"));
        assert!(debug_requested("cairn.debug=1 cairn.slot=q"));
        assert!(!debug_requested("cairn.debug=0 cairn.slot=q"));
        assert!(!debug_requested("cairn.debug=maybe"));
        assert!(!debug_requested("quiet -- cairn.debug"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0, 1, 0xab, 0xff]), "0001abff");
        assert_eq!(from_hex("0001ABff"), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(""), Some(vec![]));
    }

    #[test]
    fn displays_round_trip_the_syntax() {
        let d = parse_device(ROOT, &format!("PARTUUID={UUID}")).unwrap();
        assert_eq!(
            d.to_string(),
            format!("PARTUUID={}", UUID.to_ascii_lowercase())
        );
        assert_eq!(
            RootSource::File("/root.img".into()).to_string(),
            "file:/root.img"
        );
        assert_eq!(
            DeviceSpec::PartLabel("data".into()).to_string(),
            "PARTLABEL=data"
        );
    }
}

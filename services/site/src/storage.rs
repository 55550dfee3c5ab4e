//! The storage role's section: GlusterFS volumes, where each node's brick
//! lives, and the checks Gluster itself would only make at run time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Collector;
use crate::net::IfAddr;
use crate::site::{LbSection, Node, Role};

/// Where bricks are mounted and created on a box (on the data partition, `/var`).
pub const BRICKS_DIR: &str = "/var/lib/cairn/bricks";
/// VRRP virtual router id of the storage VIP when `[storage] vrid` is not set
/// (the examples' `[lb]` uses 51).
pub const DEFAULT_STORAGE_VRID: u8 = 52;
/// VRRP advertisement interval of the storage VIP by default (as `[lb]`'s).
pub const DEFAULT_STORAGE_ADVERT_MS: u32 = 1000;

/// `[storage]`: the Gluster volumes of the site's storage nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Optional floating address clients fetch the volume file from (held by
    /// cairn-vipd on a healthy storage node).
    pub vip: Option<IfAddr>,
    /// VRRP virtual router id of the VIP (only with `vip`; default
    /// [`DEFAULT_STORAGE_VRID`]); must differ from `[lb] vrid`.
    pub vrid: Option<u8>,
    /// VRRP advertisement interval of the VIP in ms (only with `vip`; default
    /// [`DEFAULT_STORAGE_ADVERT_MS`]).
    pub advert_interval_ms: Option<u32>,
    /// Whether a healthy node of higher priority takes the VIP back (only with
    /// `vip`; default false: moving the VIP cuts clients' volume-file
    /// connections and gains nothing).
    pub preempt: Option<bool>,
    /// The volumes, created in this order.
    #[serde(rename = "volume", default)]
    pub volumes: Vec<Volume>,
    /// Dedicated brick disks; a storage node without one keeps its bricks on
    /// the data partition.
    #[serde(rename = "disk", default)]
    pub disks: Vec<BrickDisk>,
}

/// One Gluster volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name (letters, digits, `-`, `_`; at most 64; not `all`).
    pub name: String,
    /// Layout: `replica`, `disperse` or `distribute`.
    #[serde(rename = "type")]
    pub kind: VolumeType,
    /// Copies of every file (`replica` only; at least 2).
    pub replica: Option<u32>,
    /// Bricks per disperse set (`disperse` only; default: every brick).
    pub disperse: Option<u32>,
    /// Bricks of a disperse set that may fail (`disperse` only; default 1).
    pub redundancy: Option<u32>,
    /// Nodes carrying one brick each, in Gluster's brick order (consecutive
    /// groups of `replica` bricks form a replica set).
    pub bricks: Vec<String>,
    /// `gluster volume set` options, key → value (keys quoted in TOML:
    /// `"performance.client-io-threads" = "off"`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// How a volume spreads files over its bricks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// Every file on `replica` bricks.
    Replica,
    /// Erasure coded over `disperse` bricks, `redundancy` of which may fail.
    Disperse,
    /// Every file on one brick (no redundancy).
    Distribute,
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeType::Replica => "replica",
            VolumeType::Disperse => "disperse",
            VolumeType::Distribute => "distribute",
        })
    }
}

/// A dedicated brick disk of one node, named by a stable path or a serial.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrickDisk {
    /// The storage node.
    pub node: String,
    /// A stable device path (`/dev/disk/by-path/...`, `/dev/disk/by-id/...`).
    pub device: Option<PathBuf>,
    /// The disk's serial number (`/sys/block/*/serial`, or the `device/serial`
    /// attribute), for boards whose bus paths are not stable.
    pub serial: Option<String>,
}

impl Volume {
    /// The Gluster brick path of this volume on any node.
    pub fn brick_path(&self) -> String {
        format!("{BRICKS_DIR}/{}/brick", self.name)
    }

    /// Bricks per replica or disperse set (1 for distribute).
    pub fn set_size(&self) -> u32 {
        match self.kind {
            VolumeType::Replica => self.replica.unwrap_or(0),
            VolumeType::Disperse => self
                .disperse
                .unwrap_or(u32::try_from(self.bricks.len()).unwrap_or(u32::MAX)),
            VolumeType::Distribute => 1,
        }
    }

    /// Bricks of a disperse set that may fail (default 1).
    pub fn redundancy(&self) -> u32 {
        self.redundancy.unwrap_or(1)
    }
}

impl StorageSection {
    /// The VIP's VRRP virtual router id.
    pub fn vrid(&self) -> u8 {
        self.vrid.unwrap_or(DEFAULT_STORAGE_VRID)
    }

    /// The VIP's VRRP advertisement interval in ms.
    pub fn advert_interval_ms(&self) -> u32 {
        self.advert_interval_ms.unwrap_or(DEFAULT_STORAGE_ADVERT_MS)
    }

    /// Whether the VIP's VRRP instance preempts (default false).
    pub fn preempt(&self) -> bool {
        self.preempt.unwrap_or(false)
    }

    /// The checks of `[storage]` that need `[lb]`: the two VIPs are two VRRP
    /// routers and must not share a virtual router id (on one link they would
    /// take each other's adverts for their own). Site validation calls it.
    pub fn validate_with_lb(&self, lb: Option<&LbSection>, c: &mut Collector) {
        if let (Some(_), Some(lb)) = (self.vip, lb) {
            if lb.vrid == self.vrid() {
                c.add(
                    "storage.vrid",
                    format!(
                        "VRID {} is also [lb] vrid: the storage VIP needs its own virtual router id{}",
                        lb.vrid,
                        if self.vrid.is_none() {
                            " (52 is the default: set storage.vrid)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
    }

    /// VRRP settings of the VIP: given only with `vip`, in VRRPv3's ranges,
    /// and the VIP inside a subnet of every storage node (vipd adds it to the
    /// interface carrying the node's address).
    fn validate_vrrp(&self, nodes: &[Node], c: &mut Collector) {
        let Some(vip) = self.vip else {
            for (field, given) in [
                ("storage.vrid", self.vrid.is_some()),
                (
                    "storage.advert_interval_ms",
                    self.advert_interval_ms.is_some(),
                ),
                ("storage.preempt", self.preempt.is_some()),
            ] {
                if given {
                    c.add(field, "only used with storage.vip (the VIP's VRRP router)");
                }
            }
            return;
        };
        if self.vrid == Some(0) {
            c.add("storage.vrid", "must be between 1 and 255");
        }
        let advert = self.advert_interval_ms();
        if !(10..=40_950).contains(&advert) || advert % 10 != 0 {
            c.add(
                "storage.advert_interval_ms",
                format!("{advert}: must be a multiple of 10 between 10 and 40950 (VRRPv3 centiseconds, 12 bits)"),
            );
        }
        for n in nodes
            .iter()
            .filter(|n| n.role == Role::Storage && !n.external)
        {
            if !n.addresses.iter().any(|a| a.contains(vip.addr)) {
                c.add(
                    "storage.vip",
                    format!(
                        "{} is outside every subnet of storage node {:?}: the node could not hold it on its interface",
                        vip.addr, n.name
                    ),
                );
            }
        }
    }

    /// The brick disk declared for `node`, if any.
    pub fn disk_of(&self, node: &str) -> Option<&BrickDisk> {
        self.disks.iter().find(|d| d.node == node)
    }

    /// Volumes with a brick on `node`.
    pub fn volumes_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Volume> + 'a {
        self.volumes
            .iter()
            .filter(move |v| v.bricks.iter().any(|b| b == node))
    }

    pub(crate) fn validate(&self, nodes: &[Node], c: &mut Collector) {
        if self.volumes.is_empty() {
            c.add(
                "storage.volume",
                "the storage section has no [[storage.volume]]: the nodes would form nothing",
            );
        }
        let storage_node = |field: String, name: &str, c: &mut Collector| match nodes
            .iter()
            .find(|n| n.name == name)
        {
            None => c.add(field, format!("{name:?} is not a node of the site")),
            Some(n) if n.role != Role::Storage || n.external => c.add(
                field,
                format!(
                    "node {name:?} is not a storage node (role {}{})",
                    n.role,
                    if n.external { ", external" } else { "" }
                ),
            ),
            Some(_) => {}
        };
        if let Some(vip) = self.vip {
            if let Some(n) = nodes
                .iter()
                .find(|n| n.addresses.iter().any(|a| a.addr == vip.addr))
            {
                c.add(
                    "storage.vip",
                    format!("{} is also an address of node {:?}", vip.addr, n.name),
                );
            }
        }
        self.validate_vrrp(nodes, c);
        let mut names = HashMap::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let f = |k: &str| format!("storage.volume[{i}].{k}");
            check_volume_name(c, &f("name"), &v.name);
            if let Some(j) = names.insert(v.name.as_str(), i) {
                c.add(
                    f("name"),
                    format!(
                        "volume name {:?} is also used by storage.volume[{j}]",
                        v.name
                    ),
                );
            }
            let mut seen = HashMap::new();
            for (k, b) in v.bricks.iter().enumerate() {
                let field = format!("storage.volume[{i}].bricks[{k}]");
                if let Some(j) = seen.insert(b.as_str(), k) {
                    c.add(
                        field,
                        format!(
                            "node {b:?} is named twice (also bricks[{j}]): one brick per node and volume"
                        ),
                    );
                    continue;
                }
                storage_node(field, b, c);
            }
            v.validate_layout(c, i);
            for (key, value) in &v.options {
                check_option(c, &f("options"), key, value);
            }
        }
        let mut disk_nodes = HashMap::new();
        for (i, d) in self.disks.iter().enumerate() {
            let f = |k: &str| format!("storage.disk[{i}].{k}");
            storage_node(f("node"), &d.node, c);
            if let Some(j) = disk_nodes.insert(d.node.as_str(), i) {
                c.add(
                    f("node"),
                    format!(
                        "node {:?} already has a brick disk (storage.disk[{j}])",
                        d.node
                    ),
                );
            }
            match (&d.device, &d.serial) {
                (Some(_), Some(_)) | (None, None) => c.add(
                    format!("storage.disk[{i}]"),
                    "name the disk by exactly one of `device` (a stable /dev path) or `serial`",
                ),
                (Some(p), None) => {
                    let s = p.to_string_lossy();
                    let ok = s.starts_with("/dev/")
                        && !s.contains("/../")
                        && !s.ends_with("/..")
                        && s.chars().all(|ch| ch.is_ascii_graphic());
                    if !ok {
                        c.add(
                            f("device"),
                            format!("{s:?} is not a device path (absolute, under /dev/)"),
                        );
                    }
                }
                (None, Some(s)) => {
                    if s.is_empty()
                        || s.len() > 64
                        || !s.chars().all(|ch| ch.is_ascii_graphic() && ch != '/')
                    {
                        c.add(
                            f("serial"),
                            format!(
                                "{s:?} is not a disk serial (1-64 printable characters, no spaces or '/')"
                            ),
                        );
                    }
                }
            }
        }
    }
}

impl Volume {
    /// Layout checks: counts that Gluster would refuse at `volume create`.
    fn validate_layout(&self, c: &mut Collector, i: usize) {
        let f = |k: &str| format!("storage.volume[{i}].{k}");
        let n = u32::try_from(self.bricks.len()).unwrap_or(u32::MAX);
        if n == 0 {
            c.add(f("bricks"), "a volume needs at least one brick");
            return;
        }
        let misplaced = |c: &mut Collector, key: &str, present: bool| {
            if present {
                c.add(
                    f(key),
                    format!("`{key}` does not apply to a {} volume", self.kind),
                );
            }
        };
        match self.kind {
            VolumeType::Replica => {
                misplaced(c, "disperse", self.disperse.is_some());
                misplaced(c, "redundancy", self.redundancy.is_some());
                match self.replica {
                    None => c.add(f("replica"), "a replica volume needs `replica` (the copy count, at least 2)"),
                    Some(r) if r < 2 => c.add(f("replica"), format!("replica {r}: at least 2 copies (use type = \"distribute\" for one)")),
                    Some(r) if n % r != 0 => c.add(
                        f("replica"),
                        format!("replica {r} does not divide the {n} bricks: Gluster needs whole replica sets of {r} bricks"),
                    ),
                    Some(_) => {}
                }
            }
            VolumeType::Disperse => {
                misplaced(c, "replica", self.replica.is_some());
                let d = self.set_size();
                let r = self.redundancy();
                if d < 3 {
                    c.add(
                        f("disperse"),
                        format!("disperse {d}: a disperse set needs at least 3 bricks"),
                    );
                } else if n % d != 0 {
                    c.add(
                        f("disperse"),
                        format!("disperse {d} does not divide the {n} bricks: Gluster needs whole disperse sets of {d} bricks"),
                    );
                }
                if r == 0 || 2 * r >= d {
                    c.add(
                        f("redundancy"),
                        format!("redundancy {r} with disperse {d}: must be at least 1 and less than half the set"),
                    );
                }
            }
            VolumeType::Distribute => {
                misplaced(c, "replica", self.replica.is_some());
                misplaced(c, "disperse", self.disperse.is_some());
                misplaced(c, "redundancy", self.redundancy.is_some());
            }
        }
    }
}

/// Gluster volume names: letters, digits, `-` and `_`, 1-64, not `all`.
fn check_volume_name(c: &mut Collector, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !ok {
        c.add(
            field,
            format!("{name:?} is not a volume name (letters, digits, '-', '_'; at most 64)"),
        );
    } else if name == "all" {
        c.add(
            field,
            "\"all\" is reserved by the gluster CLI (`volume status all`)",
        );
    }
}

/// Option keys look like `group.name` (`performance.client-io-threads`);
/// values are one printable word list without control characters.
fn check_option(c: &mut Collector, field: &str, key: &str, value: &str) {
    let key_ok = key.contains('.')
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.');
    if !key_ok {
        c.add(
            field,
            format!("{key:?} is not a Gluster option name (`group.name`: lower-case letters, digits, '-', '.')"),
        );
        return;
    }
    if value.is_empty() || value.len() > 1024 || value.chars().any(|ch| ch.is_control()) {
        c.add(
            field,
            format!(
                "option {key:?}: value {value:?} is empty, too long or holds control characters"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::parse_site;

    const SITE: &str = r#"
[cluster]
name = "demo-storage"

[[node]]
name = "st1"
role = "storage"
mac = "52:54:00:c0:00:31"
addresses = ["192.0.2.31/24"]

[[node]]
name = "st2"
role = "storage"
mac = "52:54:00:c0:00:32"
addresses = ["192.0.2.32/24"]

[[node]]
name = "st3"
role = "storage"
mac = "52:54:00:c0:00:33"
addresses = ["192.0.2.33/24"]

[[node]]
name = "box1"
role = "base"
mac = "52:54:00:c0:00:01"
addresses = ["192.0.2.5/24"]

[storage]
vip = "192.0.2.30/24"

[[storage.volume]]
name = "gv0"
type = "replica"
replica = 3
bricks = ["st1", "st2", "st3"]
options = { "performance.client-io-threads" = "off", "cluster.heal-timeout" = "10" }
"#;

    fn errs(text: &str) -> Vec<String> {
        parse_site(text, Path::new("site.toml"))
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_replica_3_volume_parses() {
        let s = parse_site(SITE, Path::new("site.toml")).unwrap();
        let st = s.storage.unwrap();
        let v = &st.volumes[0];
        assert_eq!(v.kind, super::VolumeType::Replica);
        assert_eq!(v.set_size(), 3);
        assert_eq!(v.brick_path(), "/var/lib/cairn/bricks/gv0/brick");
        assert_eq!(v.options["cluster.heal-timeout"], "10");
        assert_eq!(st.volumes_on("st2").count(), 1);
        assert_eq!(st.volumes_on("box1").count(), 0);
        assert!(st.disk_of("st1").is_none());
        assert_eq!(st.vip.unwrap().to_string(), "192.0.2.30/24");
    }

    #[test]
    fn a_replica_count_that_does_not_divide_the_bricks_is_refused() {
        let e = errs(&SITE.replace("replica = 3", "replica = 2"));
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.volume[0].replica`: replica 2 does not divide the 3 bricks: Gluster needs whole replica sets of 2 bricks"
            ]
        );
        let e = errs(&SITE.replace("replica = 3", "replica = 1"));
        assert!(e[0].contains("replica 1: at least 2 copies"), "{e:?}");
        let e = errs(&SITE.replace("replica = 3\n", ""));
        assert!(
            e[0].contains("storage.volume[0].replica") && e[0].contains("needs `replica`"),
            "{e:?}"
        );
    }

    #[test]
    fn a_node_named_twice_and_foreign_bricks_are_refused() {
        let e = errs(&SITE.replace(
            "bricks = [\"st1\", \"st2\", \"st3\"]",
            "bricks = [\"st1\", \"st2\", \"st1\", \"box1\", \"st9\", \"st3\"]",
        ));
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.volume[0].bricks[2]`: node \"st1\" is named twice (also bricks[0]): one brick per node and volume",
                "site.toml: field `storage.volume[0].bricks[3]`: node \"box1\" is not a storage node (role base)",
                "site.toml: field `storage.volume[0].bricks[4]`: \"st9\" is not a node of the site",
            ]
        );
    }

    #[test]
    fn unknown_volume_types_and_misplaced_counts_are_named() {
        let e = errs(&SITE.replace("type = \"replica\"", "type = \"stripe\""));
        assert!(
            e[0].contains("field `storage.volume[0].type`")
                && e[0].contains("unknown variant `stripe`"),
            "{e:?}"
        );
        let e = errs(&SITE.replace("type = \"replica\"", "type = \"distribute\""));
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.volume[0].replica`: `replica` does not apply to a distribute volume"
            ]
        );
        let e = errs(&SITE.replace("vip =", "vips ="));
        assert!(e[0].contains("unknown field `vips`"), "{e:?}");
    }

    #[test]
    fn disperse_layouts_are_checked() {
        let d = |extra: &str| {
            SITE.replace(
                "type = \"replica\"\nreplica = 3",
                &format!("type = \"disperse\"{extra}"),
            )
        };
        assert!(parse_site(&d(""), Path::new("s")).is_ok());
        let e = errs(&d("\nredundancy = 2"));
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.volume[0].redundancy`: redundancy 2 with disperse 3: must be at least 1 and less than half the set"
            ]
        );
        let e = errs(&d("\ndisperse = 2"));
        assert!(
            e[0].contains("disperse 2: a disperse set needs at least 3"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_options_names_disks_and_the_missing_section_are_named() {
        let e = errs(&SITE.replace(
            "\"cluster.heal-timeout\" = \"10\"",
            "\"heal timeout\" = \"\"",
        ));
        assert!(
            e[0].contains("field `storage.volume[0].options`")
                && e[0].contains("\"heal timeout\" is not a Gluster option name"),
            "{e:?}"
        );
        let e = errs(&SITE.replace("\"10\"", "\"1\\n0\""));
        assert!(e[0].contains("control characters"), "{e:?}");
        let e = errs(&SITE.replace("name = \"gv0\"", "name = \"all\""));
        assert!(e[0].contains("reserved"), "{e:?}");
        let disks = format!(
            "{SITE}\n[[storage.disk]]\nnode = \"st1\"\ndevice = \"/dev/disk/by-path/pci-0000:00:05.0\"\n\
             [[storage.disk]]\nnode = \"st1\"\nserial = \"QM0001\"\n\
             [[storage.disk]]\nnode = \"st2\"\ndevice = \"disk0\"\n\
             [[storage.disk]]\nnode = \"box1\"\n"
        );
        let e = errs(&disks);
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.disk[1].node`: node \"st1\" already has a brick disk (storage.disk[0])",
                "site.toml: field `storage.disk[2].device`: \"disk0\" is not a device path (absolute, under /dev/)",
                "site.toml: field `storage.disk[3].node`: node \"box1\" is not a storage node (role base)",
                "site.toml: field `storage.disk[3]`: name the disk by exactly one of `device` (a stable /dev path) or `serial`",
            ]
        );
        let e = errs(SITE.split("[storage]").next().unwrap_or_default());
        assert_eq!(
            e,
            vec!["site.toml: field `storage`: the site has storage nodes but no [storage] section"]
        );
        let e = errs(&SITE.replace("192.0.2.30/24", "192.0.2.31/24"));
        assert!(
            e[0].contains("storage.vip") && e[0].contains("node \"st1\""),
            "{e:?}"
        );
    }

    #[test]
    fn the_vip_router_has_defaults_a_user_expects() {
        let st = parse_site(SITE, Path::new("site.toml"))
            .unwrap()
            .storage
            .unwrap();
        assert_eq!(
            (st.vrid(), st.advert_interval_ms(), st.preempt()),
            (52, 1000, false)
        );
        let given = SITE.replace(
            "vip = \"192.0.2.30/24\"",
            "vip = \"192.0.2.30/24\"\nvrid = 60\nadvert_interval_ms = 200\npreempt = true",
        );
        let st = parse_site(&given, Path::new("site.toml"))
            .unwrap()
            .storage
            .unwrap();
        assert_eq!(
            (st.vrid(), st.advert_interval_ms(), st.preempt()),
            (60, 200, true)
        );
    }

    #[test]
    fn bad_vip_router_settings_are_named() {
        let bad = SITE.replace(
            "vip = \"192.0.2.30/24\"",
            "vip = \"192.0.2.30/24\"\nvrid = 0\nadvert_interval_ms = 15",
        );
        assert_eq!(
            errs(&bad),
            vec![
                "site.toml: field `storage.vrid`: must be between 1 and 255",
                "site.toml: field `storage.advert_interval_ms`: 15: must be a multiple of 10 between 10 and 40950 (VRRPv3 centiseconds, 12 bits)",
            ]
        );
        let e = errs(&SITE.replace("vip = \"192.0.2.30/24\"", "vip = \"198.51.100.30/24\""));
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(
            e[0],
            "site.toml: field `storage.vip`: 198.51.100.30 is outside every subnet of storage node \"st1\": the node could not hold it on its interface"
        );
        let e = errs(&SITE.replace("vip = \"192.0.2.30/24\"", "vrid = 53\npreempt = false"));
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.vrid`: only used with storage.vip (the VIP's VRRP router)",
                "site.toml: field `storage.preempt`: only used with storage.vip (the VIP's VRRP router)",
            ]
        );
        let e = errs(&SITE.replace("vip =", "vrid = 300\nvip ="));
        assert!(e[0].contains("field `storage.vrid`"), "{e:?}");
    }

    #[test]
    fn the_storage_vrid_must_differ_from_the_lb_vrid() {
        let st = parse_site(SITE, Path::new("site.toml"))
            .unwrap()
            .storage
            .unwrap();
        let lb: crate::LbSection = toml::from_str(
            "vrid = 52\nvips = [\"192.0.2.100/24\"]\n[[frontend]]\nname = \"web\"\nport = 80\n\
             [[frontend.backend]]\nname = \"w\"\naddress = \"192.0.2.21:80\"\n",
        )
        .unwrap();
        let mut c = crate::error::Collector::new(Path::new("site.toml"));
        st.validate_with_lb(Some(&lb), &mut c);
        let e: Vec<String> = c.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            e,
            vec![
                "site.toml: field `storage.vrid`: VRID 52 is also [lb] vrid: the storage VIP needs its own virtual router id (52 is the default: set storage.vrid)"
            ]
        );
        let mut own = st.clone();
        own.vrid = Some(53);
        let mut c = crate::error::Collector::new(Path::new("site.toml"));
        own.validate_with_lb(Some(&lb), &mut c);
        own.validate_with_lb(None, &mut c);
        let mut no_vip = st.clone();
        no_vip.vip = None;
        no_vip.validate_with_lb(Some(&lb), &mut c);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
    }

    #[test]
    fn the_example_storage_site_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let site = crate::load_site(&root.join("examples/storage-site.toml")).unwrap();
        assert_eq!(site.boxes_with_role(crate::Role::Storage).count(), 3);
        let st = site.storage.unwrap();
        assert_eq!(st.volumes[0].set_size(), 3);
        assert_eq!(st.volumes[0].bricks.len(), 3);
        assert_eq!(
            st.vip.map(|v| v.to_string()).as_deref(),
            Some("192.0.2.30/24")
        );
        assert_eq!(st.vrid(), 52);
    }
}

//! The config file (`--config`): its TOML schema, defaults and validation.
//!
//! Parsing is two steps: serde reads [`ConfigFile`] (unknown keys are errors, defaults filled
//! in), then [`ConfigFile::validate`] checks every field and returns the typed [`Config`]
//! the daemon runs, or every problem at once, each naming the file, the field path
//! (`instance[1].vrid`) and the reason. The site-derived config ([`crate::site`]) builds a
//! [`ConfigFile`] and goes through the same validation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cairn_netlink::IpNet;
use cairn_site::error::{Collector, from_toml, read};
use serde::{Deserialize, Serialize};

/// Longest instance or track name.
pub const MAX_NAME_LEN: usize = 32;

/// One problem in a config file (file, field path such as `instance[1].vrid`, reason): the
/// same error type as the site file's.
pub type ConfigError = cairn_site::FileError;

/// Every problem found in a config file (never empty).
pub type ConfigErrors = cairn_site::FileErrors;

/// The config file as written: `[[instance]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The virtual routers this node runs.
    #[serde(rename = "instance", default)]
    pub instances: Vec<InstanceSpec>,
}

/// One `[[instance]]`: a virtual router as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Name used in logs and the control API.
    pub name: String,
    /// Virtual router id, 1..=255.
    pub vrid: u32,
    /// Interface the instance runs on.
    pub interface: String,
    /// Priority, 1..=255 (255: this node owns the addresses).
    pub priority: u32,
    /// Advertisement interval in milliseconds: a multiple of 10 in 10..=40950.
    #[serde(default = "default_advert_ms")]
    pub advert_interval_ms: u32,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// Virtual addresses `addr/prefix`, all of one family.
    pub vips: Vec<String>,
    /// Send adverts to these addresses instead of the multicast group.
    #[serde(default)]
    pub unicast_peers: Vec<IpAddr>,
    /// Put the VIPs on a macvlan link with the VRRP virtual MAC.
    #[serde(default)]
    pub use_vmac: bool,
    /// Gratuitous ARP / unsolicited NA rounds on becoming master.
    #[serde(default = "default_announce_count")]
    pub announce_count: u32,
    /// Pause between announcement rounds, in milliseconds.
    #[serde(default = "default_announce_interval_ms")]
    pub announce_interval_ms: u32,
    /// How long a planned move keeps the old holder's connections working, in
    /// milliseconds (0: off); see docs/vipd.md, "Draining".
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u32,
    /// Health checks that lower the priority while they fail.
    #[serde(default)]
    pub track: Vec<TrackSpec>,
}

/// What a health check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// TCP connect to `target`.
    Tcp,
    /// Run `command`; exit status 0 is healthy.
    Exec,
    /// The cairn-init service `service` is ready.
    Service,
}

impl TrackKind {
    fn as_str(self) -> &'static str {
        match self {
            TrackKind::Tcp => "tcp",
            TrackKind::Exec => "exec",
            TrackKind::Service => "service",
        }
    }
}

/// One `[[instance.track]]` health check as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackSpec {
    /// Name used in logs and the control API.
    pub name: String,
    /// What to probe.
    pub kind: TrackKind,
    /// `host:port` for `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// argv for `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// cairn-init service name for `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Pause between probes, in milliseconds.
    #[serde(default = "default_check_ms")]
    pub interval_ms: u32,
    /// How long one probe may take, in milliseconds.
    #[serde(default = "default_check_ms")]
    pub timeout_ms: u32,
    /// Consecutive failures before the check counts as failing.
    #[serde(default = "default_fall_rise")]
    pub fall: u32,
    /// Consecutive successes before a failing check counts as healthy again.
    #[serde(default = "default_fall_rise")]
    pub rise: u32,
    /// How much the priority drops while the check fails, 1..=255.
    pub weight: u32,
}

fn default_advert_ms() -> u32 {
    1000
}
fn default_true() -> bool {
    true
}
fn default_announce_count() -> u32 {
    5
}
fn default_announce_interval_ms() -> u32 {
    200
}
fn default_drain_ms() -> u32 {
    DEFAULT_DRAIN_MS
}

/// Default drain window: long enough for requests in flight at a planned move to finish.
pub const DEFAULT_DRAIN_MS: u32 = 2000;

fn default_check_ms() -> u32 {
    1000
}
fn default_fall_rise() -> u32 {
    2
}

/// A validated config: what the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Instances in file order.
    pub instances: Vec<Instance>,
}

/// A validated virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Name.
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface name.
    pub interface: String,
    /// Configured priority.
    pub priority: u8,
    /// Advertisement interval in centiseconds.
    pub interval_cs: u16,
    /// Preempt lower-priority masters.
    pub preempt: bool,
    /// Virtual addresses with prefix, one family.
    pub vips: Vec<IpNet>,
    /// Unicast advert destinations (empty: multicast).
    pub unicast_peers: Vec<IpAddr>,
    /// Use a macvlan with the virtual MAC.
    pub use_vmac: bool,
    /// Announcement rounds on becoming master.
    pub announce_count: u32,
    /// Pause between announcement rounds.
    pub announce_interval: Duration,
    /// Drain window of planned moves (zero: off).
    pub drain: Duration,
    /// Health checks.
    pub tracks: Vec<Track>,
}

impl Instance {
    /// Whether this is an IPv6 instance.
    pub fn is_ipv6(&self) -> bool {
        self.vips.first().is_some_and(|v| v.addr().is_ipv6())
    }

    /// Name of the macvlan link carrying the virtual MAC: `vrrp.<vrid>` (IPv4) or
    /// `vrrp6.<vrid>` (IPv6).
    pub fn vmac_link_name(&self) -> String {
        if self.is_ipv6() {
            format!("vrrp6.{}", self.vrid)
        } else {
            format!("vrrp.{}", self.vrid)
        }
    }

    /// The VRRP virtual MAC of this instance (RFC 5798 section 7.3).
    pub fn virtual_mac(&self) -> [u8; 6] {
        if self.is_ipv6() {
            cairn_vrrp::announce::virtual_mac_v6(self.vrid)
        } else {
            cairn_vrrp::announce::virtual_mac_v4(self.vrid)
        }
    }
}

/// A validated health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Name.
    pub name: String,
    /// What it probes.
    pub probe: Probe,
    /// Pause between probes.
    pub interval: Duration,
    /// Time limit of one probe.
    pub timeout: Duration,
    /// Failures before failing.
    pub fall: u32,
    /// Successes before healthy.
    pub rise: u32,
    /// Priority drop while failing.
    pub weight: u8,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect to `host:port` (resolved at every probe).
    Tcp(String),
    /// Run this argv; exit 0 is healthy.
    Exec(Vec<String>),
    /// This cairn-init service is ready.
    Service(String),
}

/// Reads, parses and validates a config file.
pub fn load_config(path: &Path) -> Result<(ConfigFile, Config), ConfigErrors> {
    let text = read(path)?;
    parse_config(&text, path)
}

/// Parses and validates config text; `file` names it in errors. Returns the file as read
/// (defaults filled in, for `--check` to print) and the validated config.
pub fn parse_config(text: &str, file: &Path) -> Result<(ConfigFile, Config), ConfigErrors> {
    let raw: ConfigFile = from_toml(text, file)?;
    let config = raw.validate(file)?;
    Ok((raw, config))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl ConfigFile {
    /// Checks every field; `file` names the file in errors.
    pub fn validate(&self, file: &Path) -> Result<Config, ConfigErrors> {
        let mut c = Collector::new(file);
        if self.instances.is_empty() {
            c.add("instance", "no [[instance]] is configured");
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        // (vrid, interface, is_ipv6) -> index
        let mut routers: HashMap<(u32, &str, bool), usize> = HashMap::new();
        // vmac link name -> index
        let mut vmac_links: HashMap<String, usize> = HashMap::new();
        let mut instances = Vec::new();
        for (i, spec) in self.instances.iter().enumerate() {
            let instance = validate_instance(&mut c, i, spec);
            if let Some(&j) = names.get(spec.name.as_str()) {
                c.add(
                    format!("instance[{i}].name"),
                    format!("name {:?} is also used by instance[{j}]", spec.name),
                );
            } else {
                names.insert(&spec.name, i);
            }
            if let Some(inst) = instance {
                let key = (spec.vrid, spec.interface.as_str(), inst.is_ipv6());
                if let Some(&j) = routers.get(&key) {
                    c.add(
                        format!("instance[{i}].vrid"),
                        format!(
                            "VRID {} for {} on {} is also used by instance[{j}]",
                            spec.vrid,
                            family(inst.vips[0].addr()),
                            spec.interface
                        ),
                    );
                } else {
                    routers.insert(key, i);
                }
                if inst.use_vmac {
                    let link = inst.vmac_link_name();
                    if let Some(&j) = vmac_links.get(&link) {
                        c.add(
                            format!("instance[{i}].use_vmac"),
                            format!("virtual MAC link {link} is also used by instance[{j}]"),
                        );
                    } else {
                        vmac_links.insert(link, i);
                    }
                }
                instances.push(inst);
            }
        }
        c.finish(Config { instances })
    }
}

/// Validates one instance; `None` when a field is unusable (errors are in `c`).
fn validate_instance(c: &mut Collector, i: usize, s: &InstanceSpec) -> Option<Instance> {
    let f = |k: &str| format!("instance[{i}].{k}");
    let before = c.errors.len();
    if !valid_name(&s.name) {
        c.add(
            f("name"),
            format!(
                "{:?} is not a valid name (1-{MAX_NAME_LEN} letters, digits, '-', '_', '.')",
                s.name
            ),
        );
    }
    if !(1..=255).contains(&s.vrid) {
        c.add(f("vrid"), format!("{} is not between 1 and 255", s.vrid));
    }
    if let Err(e) = cairn_netlink::validate_name(&s.interface) {
        c.add(f("interface"), e.to_string());
    }
    if !(1..=255).contains(&s.priority) {
        c.add(
            f("priority"),
            format!(
                "{} is not between 1 and 255 (255: this node owns the addresses)",
                s.priority
            ),
        );
    }
    if !(10..=40_950).contains(&s.advert_interval_ms) || s.advert_interval_ms % 10 != 0 {
        c.add(
            f("advert_interval_ms"),
            format!(
                "{} is not a multiple of 10 between 10 and 40950 (VRRPv3 counts centiseconds in 12 bits)",
                s.advert_interval_ms
            ),
        );
    }
    let mut vips: Vec<IpNet> = Vec::new();
    if s.vips.is_empty() {
        c.add(f("vips"), "at least one virtual IP is needed");
    }
    for (k, text) in s.vips.iter().enumerate() {
        let field = format!("instance[{i}].vips[{k}]");
        let net: IpNet = match text.parse() {
            Ok(net) => net,
            Err(e) => {
                c.add(field, format!("{text:?}: {e}"));
                continue;
            }
        };
        if let Some(first) = vips.first() {
            if first.addr().is_ipv4() != net.addr().is_ipv4() {
                c.add(
                    field,
                    format!(
                        "{net} is {} but {first} is {}: one family per instance",
                        family(net.addr()),
                        family(first.addr())
                    ),
                );
                continue;
            }
        }
        if let Some(dup) = vips.iter().find(|v| v.addr() == net.addr()) {
            c.add(
                field,
                format!("{} is listed twice (also as {dup})", net.addr()),
            );
            continue;
        }
        if net.addr().is_unspecified() || net.addr().is_multicast() || net.addr().is_loopback() {
            c.add(
                field,
                format!(
                    "{} cannot be a virtual IP (unspecified, multicast or loopback)",
                    net.addr()
                ),
            );
            continue;
        }
        if let IpAddr::V6(a) = net.addr() {
            if a.is_unicast_link_local() {
                c.add(
                    field,
                    format!("{a} is link-local; IPv6 virtual IPs must be global or unique-local"),
                );
                continue;
            }
        }
        vips.push(net);
    }
    let v6 = vips.first().map(|v| v.addr().is_ipv6());
    for (k, peer) in s.unicast_peers.iter().enumerate() {
        if v6.is_some_and(|v6| v6 != peer.is_ipv6()) {
            c.add(
                format!("instance[{i}].unicast_peers[{k}]"),
                format!(
                    "{peer} is {} but the virtual IPs are {}",
                    family(*peer),
                    if v6 == Some(true) { "IPv6" } else { "IPv4" }
                ),
            );
        } else if peer.is_multicast() || peer.is_unspecified() {
            c.add(
                format!("instance[{i}].unicast_peers[{k}]"),
                format!("{peer} is not a unicast address"),
            );
        }
    }
    if !(1..=100).contains(&s.announce_count) {
        c.add(
            f("announce_count"),
            format!("{} is not between 1 and 100", s.announce_count),
        );
    }
    if !(10..=10_000).contains(&s.announce_interval_ms) {
        c.add(
            f("announce_interval_ms"),
            format!("{} is not between 10 and 10000", s.announce_interval_ms),
        );
    }
    if s.drain_ms > 600_000 {
        c.add(
            f("drain_ms"),
            format!("{} is not between 0 and 600000", s.drain_ms),
        );
    }
    if s.priority == 255 && !s.track.is_empty() {
        c.add(
            f("track"),
            "an address owner (priority 255) never lowers its priority; health tracking needs a priority below 255",
        );
    }
    let mut tracks = Vec::new();
    let mut track_names: HashMap<&str, usize> = HashMap::new();
    for (k, t) in s.track.iter().enumerate() {
        if let Some(&j) = track_names.get(t.name.as_str()) {
            c.add(
                format!("instance[{i}].track[{k}].name"),
                format!("name {:?} is also used by track[{j}]", t.name),
            );
        } else {
            track_names.insert(&t.name, k);
        }
        if let Some(track) = validate_track(c, i, k, t) {
            tracks.push(track);
        }
    }
    if c.errors.len() != before {
        return None;
    }
    Some(Instance {
        name: s.name.clone(),
        vrid: u8::try_from(s.vrid).ok()?,
        interface: s.interface.clone(),
        priority: u8::try_from(s.priority).ok()?,
        interval_cs: u16::try_from(s.advert_interval_ms / 10).ok()?,
        preempt: s.preempt,
        vips,
        unicast_peers: s.unicast_peers.clone(),
        use_vmac: s.use_vmac,
        announce_count: s.announce_count,
        announce_interval: Duration::from_millis(u64::from(s.announce_interval_ms)),
        drain: Duration::from_millis(u64::from(s.drain_ms)),
        tracks,
    })
}

fn validate_track(c: &mut Collector, i: usize, k: usize, t: &TrackSpec) -> Option<Track> {
    let f = |key: &str| format!("instance[{i}].track[{k}].{key}");
    let before = c.errors.len();
    if !valid_name(&t.name) {
        c.add(
            f("name"),
            format!(
                "{:?} is not a valid name (1-{MAX_NAME_LEN} letters, digits, '-', '_', '.')",
                t.name
            ),
        );
    }
    let kind = t.kind.as_str();
    let unused = |c: &mut Collector, key: &str, present: bool, for_kind: &str| {
        if present {
            c.add(
                f(key),
                format!("only used by kind = \"{for_kind}\", this track is kind = \"{kind}\""),
            );
        }
    };
    let probe = match t.kind {
        TrackKind::Tcp => {
            unused(c, "command", t.command.is_some(), "exec");
            unused(c, "service", t.service.is_some(), "service");
            match &t.target {
                None => {
                    c.add(f("target"), "kind = \"tcp\" needs a target \"host:port\"");
                    None
                }
                Some(target) if !valid_target(target) => {
                    c.add(
                        f("target"),
                        format!("{target:?} is not \"host:port\" (e.g. \"127.0.0.1:80\")"),
                    );
                    None
                }
                Some(target) => Some(Probe::Tcp(target.clone())),
            }
        }
        TrackKind::Exec => {
            unused(c, "target", t.target.is_some(), "tcp");
            unused(c, "service", t.service.is_some(), "service");
            match &t.command {
                Some(argv) if argv.first().is_some_and(|a| !a.is_empty()) => {
                    Some(Probe::Exec(argv.clone()))
                }
                _ => {
                    c.add(
                        f("command"),
                        "kind = \"exec\" needs a command: a non-empty argv list",
                    );
                    None
                }
            }
        }
        TrackKind::Service => {
            unused(c, "target", t.target.is_some(), "tcp");
            unused(c, "command", t.command.is_some(), "exec");
            match &t.service {
                Some(name) if !name.is_empty() => Some(Probe::Service(name.clone())),
                _ => {
                    c.add(
                        f("service"),
                        "kind = \"service\" needs the name of a cairn-init service",
                    );
                    None
                }
            }
        }
    };
    if !(10..=600_000).contains(&t.interval_ms) {
        c.add(
            f("interval_ms"),
            format!("{} is not between 10 and 600000", t.interval_ms),
        );
    }
    if !(10..=600_000).contains(&t.timeout_ms) {
        c.add(
            f("timeout_ms"),
            format!("{} is not between 10 and 600000", t.timeout_ms),
        );
    }
    if !(1..=100).contains(&t.fall) {
        c.add(f("fall"), format!("{} is not between 1 and 100", t.fall));
    }
    if !(1..=100).contains(&t.rise) {
        c.add(f("rise"), format!("{} is not between 1 and 100", t.rise));
    }
    if !(1..=255).contains(&t.weight) {
        c.add(
            f("weight"),
            format!("{} is not between 1 and 255", t.weight),
        );
    }
    if c.errors.len() != before {
        return None;
    }
    Some(Track {
        name: t.name.clone(),
        probe: probe?,
        interval: Duration::from_millis(u64::from(t.interval_ms)),
        timeout: Duration::from_millis(u64::from(t.timeout_ms)),
        fall: t.fall,
        rise: t.rise,
        weight: u8::try_from(t.weight).ok()?,
    })
}

/// `host:port` with a non-empty host and a port 1..=65535 (IPv6 hosts in brackets).
fn valid_target(target: &str) -> bool {
    if target.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match target.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(':')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[instance]]
name = "web"
vrid = 51
interface = "eth0"
priority = 150
advert_interval_ms = 100
vips = ["192.0.2.100/24", "192.0.2.101/24"]

[[instance.track]]
name = "haproxy"
kind = "tcp"
target = "127.0.0.1:80"
interval_ms = 200
timeout_ms = 200
weight = 100

[[instance]]
name = "web6"
vrid = 51
interface = "eth0"
priority = 100
vips = ["2001:db8::100/64"]
use_vmac = true
unicast_peers = ["2001:db8::12"]
"#;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        parse_config(text, Path::new("vipd.toml"))
            .map(|(_, c)| c)
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn errs(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e,
        }
    }

    /// A one-instance config with `extra` lines appended to the instance table.
    fn one(extra: &str) -> String {
        format!(
            "[[instance]]\nname = \"a\"\nvrid = 1\ninterface = \"eth0\"\npriority = 100\nvips = [\"192.0.2.1/24\"]\n{extra}\n"
        )
    }

    fn track(body: &str) -> String {
        format!(
            "{}\n[[instance.track]]\nname = \"t\"\nweight = 10\n{body}\n",
            one("")
        )
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.instances.len(), 2);
        let web = &c.instances[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.vrid, 51);
        assert_eq!(web.priority, 150);
        assert_eq!(web.interval_cs, 10);
        assert!(web.preempt);
        assert!(!web.use_vmac);
        assert_eq!(web.announce_count, 5);
        assert_eq!(web.announce_interval, Duration::from_millis(200));
        assert_eq!(web.vips.len(), 2);
        assert_eq!(
            web.tracks,
            vec![Track {
                name: "haproxy".into(),
                probe: Probe::Tcp("127.0.0.1:80".into()),
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(200),
                fall: 2,
                rise: 2,
                weight: 100,
            }]
        );
        let web6 = &c.instances[1];
        assert!(web6.is_ipv6());
        assert_eq!(web6.interval_cs, 100);
        assert_eq!(web6.vmac_link_name(), "vrrp6.51");
        assert_eq!(web6.virtual_mac(), [0, 0, 0x5e, 0, 2, 51]);
        assert_eq!(web.vmac_link_name(), "vrrp.51");
        assert_eq!(web.virtual_mac(), [0, 0, 0x5e, 0, 1, 51]);
    }

    #[test]
    fn check_output_round_trips() {
        let (raw, config) = parse_config(GOOD, Path::new("vipd.toml")).unwrap();
        let printed = toml::to_string(&raw).unwrap();
        let (raw2, config2) = parse_config(&printed, Path::new("printed.toml")).unwrap();
        assert_eq!(raw, raw2);
        assert_eq!(config, config2);
        assert!(printed.contains("announce_count = 5"), "{printed}");
    }

    #[test]
    fn syntax_and_schema_errors_name_line_and_field() {
        let e = errs("[[instance]\nname = 1");
        assert!(
            e[0].starts_with("vipd.toml: ") && e[0].contains("line 1"),
            "{e:?}"
        );
        let e = errs(&one("prio = 3"));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains("field `instance[0].prio`") && e[0].contains("unknown field `prio`"),
            "{e:?}"
        );
        let e = errs("[[instance]]\nname = \"a\"\n");
        assert!(e[0].contains("missing field `vrid`"), "{e:?}");
        let e = errs(&one("preempt = \"yes\""));
        assert!(e[0].contains("instance[0].preempt"), "{e:?}");
        let e = errs(&track("kind = \"http\""));
        assert!(
            e[0].contains("instance[0].track[0].kind") && e[0].contains("unknown variant `http`"),
            "{e:?}"
        );
        assert_eq!(
            errs(""),
            vec!["vipd.toml: field `instance`: no [[instance]] is configured"]
        );
    }

    #[test]
    fn instance_field_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"a\"",
                "name = \"\"",
                "field `instance[0].name`: \"\" is not a valid name (1-32 letters, digits, '-', '_', '.')",
            ),
            (
                "name = \"a\"",
                "name = \"a b\"",
                "field `instance[0].name`: \"a b\" is not a valid name",
            ),
            (
                "vrid = 1",
                "vrid = 0",
                "field `instance[0].vrid`: 0 is not between 1 and 255",
            ),
            (
                "vrid = 1",
                "vrid = 256",
                "field `instance[0].vrid`: 256 is not between 1 and 255",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"eth/0\"",
                "field `instance[0].interface`: \"eth/0\" is not a valid interface name",
            ),
            (
                "interface = \"eth0\"",
                "interface = \"averyveryverylongname\"",
                "field `instance[0].interface`: \"averyveryverylongname\" is not a valid interface name",
            ),
            (
                "priority = 100",
                "priority = 0",
                "field `instance[0].priority`: 0 is not between 1 and 255 (255: this node owns the addresses)",
            ),
            (
                "priority = 100",
                "priority = 300",
                "field `instance[0].priority`: 300 is not between 1 and 255",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = []",
                "field `instance[0].vips`: at least one virtual IP is needed",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"192.0.2.1\"]",
                "field `instance[0].vips[0]`: \"192.0.2.1\": ",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"192.0.2.1/33\"]",
                "field `instance[0].vips[0]`: \"192.0.2.1/33\": ",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"192.0.2.1/24\", \"2001:db8::1/64\"]",
                "field `instance[0].vips[1]`: 2001:db8::1/64 is IPv6 but 192.0.2.1/24 is IPv4: one family per instance",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"192.0.2.1/24\", \"192.0.2.1/32\"]",
                "field `instance[0].vips[1]`: 192.0.2.1 is listed twice (also as 192.0.2.1/24)",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"224.0.0.18/32\"]",
                "field `instance[0].vips[0]`: 224.0.0.18 cannot be a virtual IP (unspecified, multicast or loopback)",
            ),
            (
                "vips = [\"192.0.2.1/24\"]",
                "vips = [\"fe80::1/64\"]",
                "field `instance[0].vips[0]`: fe80::1 is link-local; IPv6 virtual IPs must be global or unique-local",
            ),
        ];
        for (from, to, expected) in cases {
            let text = one("").replace(from, to);
            let e = errs(&text);
            assert_eq!(e.len(), 1, "{to}: {e:?}");
            assert!(e[0].starts_with("vipd.toml: "), "{e:?}");
            assert!(
                e[0].contains(expected),
                "{to}: got {:?}, want {expected:?}",
                e[0]
            );
        }
    }

    #[test]
    fn optional_instance_field_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "advert_interval_ms = 5",
                "field `instance[0].advert_interval_ms`: 5 is not a multiple of 10 between 10 and 40950 (VRRPv3 counts centiseconds in 12 bits)",
            ),
            (
                "advert_interval_ms = 105",
                "field `instance[0].advert_interval_ms`: 105 is not a multiple of 10",
            ),
            (
                "advert_interval_ms = 40960",
                "field `instance[0].advert_interval_ms`: 40960 is not a multiple of 10",
            ),
            (
                "unicast_peers = [\"2001:db8::2\"]",
                "field `instance[0].unicast_peers[0]`: 2001:db8::2 is IPv6 but the virtual IPs are IPv4",
            ),
            (
                "unicast_peers = [\"224.0.0.18\"]",
                "field `instance[0].unicast_peers[0]`: 224.0.0.18 is not a unicast address",
            ),
            (
                "unicast_peers = [\"not-an-ip\"]",
                "field `instance[0].unicast_peers[0]`: invalid IP address syntax",
            ),
            (
                "announce_count = 0",
                "field `instance[0].announce_count`: 0 is not between 1 and 100",
            ),
            (
                "announce_interval_ms = 5",
                "field `instance[0].announce_interval_ms`: 5 is not between 10 and 10000",
            ),
        ];
        for (extra, expected) in cases {
            let e = errs(&one(extra));
            assert_eq!(e.len(), 1, "{extra}: {e:?}");
            assert!(
                e[0].contains(expected),
                "{extra}: got {:?}, want {expected:?}",
                e[0]
            );
        }
        assert!(parse(&one("advert_interval_ms = 40950")).is_ok());
        assert!(parse(&one("advert_interval_ms = 10")).is_ok());
    }

    #[test]
    fn owner_cannot_track() {
        let text = track("kind = \"tcp\"\ntarget = \"127.0.0.1:80\"")
            .replace("priority = 100", "priority = 255");
        let e = errs(&text);
        assert_eq!(
            e,
            vec![
                "vipd.toml: field `instance[0].track`: an address owner (priority 255) never lowers its priority; health tracking needs a priority below 255"
            ]
        );
    }

    #[test]
    fn track_field_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "kind = \"tcp\"",
                "field `instance[0].track[0].target`: kind = \"tcp\" needs a target \"host:port\"",
            ),
            (
                "kind = \"tcp\"\ntarget = \"localhost\"",
                "field `instance[0].track[0].target`: \"localhost\" is not \"host:port\" (e.g. \"127.0.0.1:80\")",
            ),
            (
                "kind = \"tcp\"\ntarget = \"localhost:0\"",
                "is not \"host:port\"",
            ),
            (
                "kind = \"tcp\"\ntarget = \"h:1\"\ncommand = [\"true\"]",
                "field `instance[0].track[0].command`: only used by kind = \"exec\", this track is kind = \"tcp\"",
            ),
            (
                "kind = \"exec\"",
                "field `instance[0].track[0].command`: kind = \"exec\" needs a command: a non-empty argv list",
            ),
            (
                "kind = \"exec\"\ncommand = []",
                "field `instance[0].track[0].command`: kind = \"exec\" needs a command",
            ),
            (
                "kind = \"exec\"\ncommand = [\"true\"]\ntarget = \"h:1\"",
                "field `instance[0].track[0].target`: only used by kind = \"tcp\", this track is kind = \"exec\"",
            ),
            (
                "kind = \"service\"",
                "field `instance[0].track[0].service`: kind = \"service\" needs the name of a cairn-init service",
            ),
            (
                "kind = \"service\"\nservice = \"h\"\ncommand = [\"x\"]",
                "field `instance[0].track[0].command`: only used by kind = \"exec\", this track is kind = \"service\"",
            ),
            (
                "kind = \"exec\"\ncommand = [\"true\"]\nservice = \"h\"",
                "field `instance[0].track[0].service`: only used by kind = \"service\", this track is kind = \"exec\"",
            ),
            (
                "kind = \"service\"\nservice = \"h\"\ninterval_ms = 5",
                "field `instance[0].track[0].interval_ms`: 5 is not between 10 and 600000",
            ),
            (
                "kind = \"service\"\nservice = \"h\"\ntimeout_ms = 0",
                "field `instance[0].track[0].timeout_ms`: 0 is not between 10 and 600000",
            ),
            (
                "kind = \"service\"\nservice = \"h\"\nfall = 0",
                "field `instance[0].track[0].fall`: 0 is not between 1 and 100",
            ),
            (
                "kind = \"service\"\nservice = \"h\"\nrise = 101",
                "field `instance[0].track[0].rise`: 101 is not between 1 and 100",
            ),
        ];
        for (body, expected) in cases {
            let e = errs(&track(body));
            assert_eq!(e.len(), 1, "{body}: {e:?}");
            assert!(
                e[0].contains(expected),
                "{body}: got {:?}, want {expected:?}",
                e[0]
            );
        }
        let e = errs(
            &track("kind = \"service\"\nservice = \"h\"").replace("weight = 10", "weight = 0"),
        );
        assert!(
            e[0].contains("field `instance[0].track[0].weight`: 0 is not between 1 and 255"),
            "{e:?}"
        );
        let e = errs(
            &track("kind = \"service\"\nservice = \"h\"").replace("name = \"t\"", "name = \"\""),
        );
        assert!(
            e[0].contains("field `instance[0].track[0].name`: \"\" is not a valid name"),
            "{e:?}"
        );
        let two = format!(
            "{}\n[[instance.track]]\nname = \"t\"\nkind = \"exec\"\ncommand = [\"true\"]\nweight = 1\n",
            track("kind = \"service\"\nservice = \"h\"")
        );
        assert_eq!(
            errs(&two),
            vec![
                "vipd.toml: field `instance[0].track[1].name`: name \"t\" is also used by track[0]"
            ]
        );
        for ok in [
            "[::1]:80",
            "127.0.0.1:80",
            "localhost:8080",
            "lb-1.example:443",
        ] {
            assert!(valid_target(ok), "{ok}");
        }
        for bad in ["::1:80", ":80", "host:", "host:99999", "a b:1"] {
            assert!(!valid_target(bad), "{bad}");
        }
    }

    #[test]
    fn duplicates_across_instances() {
        let twice = format!("{}{}", one(""), one(""));
        let e = errs(&twice);
        assert_eq!(
            e,
            vec![
                "vipd.toml: field `instance[1].name`: name \"a\" is also used by instance[0]",
                "vipd.toml: field `instance[1].vrid`: VRID 1 for IPv4 on eth0 is also used by instance[0]",
            ]
        );
        // Same VRID on another interface, or in the other family, is a different router.
        let other_if = format!(
            "{}{}",
            one(""),
            one("").replace("\"a\"", "\"b\"").replace("eth0", "eth1")
        );
        assert!(parse(&other_if).is_ok());
        let other_family = format!(
            "{}{}",
            one(""),
            one("")
                .replace("\"a\"", "\"b\"")
                .replace("192.0.2.1/24", "2001:db8::1/64")
        );
        assert!(parse(&other_family).is_ok());
        // ...but two virtual-MAC instances with one VRID and family share the link name.
        let vmac = format!(
            "{}{}",
            one("use_vmac = true"),
            one("use_vmac = true")
                .replace("\"a\"", "\"b\"")
                .replace("eth0", "eth1")
        );
        assert_eq!(
            errs(&vmac),
            vec![
                "vipd.toml: field `instance[1].use_vmac`: virtual MAC link vrrp.1 is also used by instance[0]"
            ]
        );
    }

    #[test]
    fn all_errors_are_reported_together() {
        let text = one("")
            .replace("vrid = 1", "vrid = 0")
            .replace("priority = 100", "priority = 0");
        let e = parse_config(&text, Path::new("vipd.toml")).unwrap_err();
        assert_eq!(e.0.len(), 2);
        let shown = e.to_string();
        assert!(
            shown.starts_with("2 errors:\n  vipd.toml: field `instance[0].vrid`"),
            "{shown}"
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let e = load_config(Path::new("/nonexistent/vipd.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/vipd.toml: cannot read: "),
            "{e}"
        );
    }
}

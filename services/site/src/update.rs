//! The site's `[update]` section: where boxes fetch updates, the key that
//! signs them, and how cautiously a new version is booted.

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::Collector;
use crate::site::{Role, Site};

/// A/B update settings (`[update]`). Without it images carry no bundle and
/// boxes run no update agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Repository base URL: `http://host[:port]/path/` (the signatures carry the trust).
    pub url: String,
    /// The public key, `ed25519:<base64 of 32 bytes>`, baked into every image.
    pub public_key: String,
    /// Builder only: the private key's PEM file, relative paths as written
    /// (the builder resolves them against the site file's directory).
    pub signing_key: Option<PathBuf>,
    /// Seconds between polls of the repository; 0 = only on request.
    #[serde(default = "default_interval")]
    pub interval_s: u64,
    /// Boot tries a new version gets (1–9).
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// Seconds every service must have been ready without a failure before a
    /// counted boot is blessed.
    #[serde(default = "default_bless_after")]
    pub bless_after_s: u64,
    /// Seconds after which an unblessed counted boot reboots (costing a try).
    #[serde(default = "default_boot_deadline")]
    pub boot_deadline_s: u64,
    /// When a box reboots into an installed update; see [`Site::reboot_policy`].
    pub reboot: Option<RebootPolicy>,
    /// Whether a box may go back to an older version when the newest one on
    /// offer (not recorded as failed) is older than what it runs, e.g. after
    /// `cairn publish --withdraw`. Off by default: versions only go forward.
    #[serde(default)]
    pub allow_downgrade: bool,
}

fn default_interval() -> u64 {
    3600
}

fn default_tries() -> u32 {
    3
}

fn default_bless_after() -> u64 {
    30
}

fn default_boot_deadline() -> u64 {
    300
}

/// When a box reboots into an installed update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootPolicy {
    /// As soon as the update is installed.
    Immediately,
    /// A VIP master first hands its VIPs to a healthy peer; a backup reboots at once.
    PeerHoldsVip,
}

/// Why `url` is not `http://host[:port]/path/`, if it is not.
fn url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Some("must start with \"http://\" (the signatures carry the trust)".into());
    };
    if !url.chars().all(|c| c.is_ascii_graphic()) || url.contains(['?', '#', '\\', '@']) {
        return Some(
            "must be printable ASCII without spaces, '?', '#', '\\' or '@' (no query, fragment or user)"
                .into(),
        );
    }
    let Some(slash) = rest.find('/') else {
        return Some(
            "needs a path ending in '/' after the host (e.g. \"http://host:8080/\")".into(),
        );
    };
    let (authority, path) = rest.split_at(slash);
    if !path.ends_with('/') {
        return Some(format!(
            "path {path:?} must end in '/' (the repository is a directory)"
        ));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Some(format!("path {path:?} must not contain \"..\""));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Some("IPv6 host is missing its ']'".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("{addr:?} is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Some(format!("unexpected {p:?} after the IPv6 host")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Some("has no host".into());
    }
    if !authority.starts_with('[') {
        let ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !ok {
            return Some(format!("{host:?} is not a host name or IPv4 address"));
        }
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) || port.starts_with('+') {
            return Some(format!("port {port:?} is not between 1 and 65535"));
        }
    }
    None
}

/// Why `key` is not `ed25519:<base64 of 32 bytes>`, if it is not.
fn public_key_problem(key: &str) -> Option<String> {
    let Some(b64) = key.strip_prefix("ed25519:") else {
        return Some("must start with \"ed25519:\" (as `cairn keygen` prints it)".into());
    };
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Err(e) => Some(format!("is not base64 after \"ed25519:\": {e}")),
        Ok(bytes) if bytes.len() != 32 => Some(format!(
            "holds {} bytes, an Ed25519 public key has 32",
            bytes.len()
        )),
        Ok(_) => None,
    }
}

impl UpdateConfig {
    /// Checks values serde cannot: URL shape, key syntax, ranges.
    pub(crate) fn validate(&self, c: &mut Collector) {
        if let Some(p) = url_problem(&self.url) {
            c.add("update.url", format!("{:?} {p}", self.url));
        }
        if let Some(p) = public_key_problem(&self.public_key) {
            c.add("update.public_key", p);
        }
        if let Some(k) = &self.signing_key {
            if k.as_os_str().is_empty() {
                c.add("update.signing_key", "is empty (leave it out instead)");
            }
        }
        if self.interval_s != 0 && self.interval_s < 10 {
            c.add(
                "update.interval_s",
                format!(
                    "{} is too short: 0 (only on request) or at least 10 seconds",
                    self.interval_s
                ),
            );
        }
        if !(1..=9).contains(&self.tries) {
            c.add(
                "update.tries",
                format!(
                    "{} is not between 1 and 9 (boot tries a new version gets)",
                    self.tries
                ),
            );
        }
        if self.bless_after_s == 0 {
            c.add("update.bless_after_s", "must be at least 1 second");
        }
        if self.bless_after_s >= self.boot_deadline_s {
            c.add(
                "update.boot_deadline_s",
                format!(
                    "{} must be greater than bless_after_s ({}): a boot could never be blessed in time",
                    self.boot_deadline_s, self.bless_after_s
                ),
            );
        }
    }
}

impl Site {
    /// When a box of `role` reboots into an installed update: the
    /// `[update] reboot` setting if given, else `peer-holds-vip` for load
    /// balancers (they hold a VIP) and `immediately` for every other role.
    pub fn reboot_policy(&self, role: Role) -> RebootPolicy {
        match self.update.as_ref().and_then(|u| u.reboot) {
            Some(p) => p,
            None if role == Role::Lb => RebootPolicy::PeerHoldsVip,
            None => RebootPolicy::Immediately,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::parse_site;

    const KEY: &str = "ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn site(update: &str) -> String {
        format!(
            r#"
[cluster]
name = "demo"

[[node]]
name = "box1"
role = "base"
mac = "52:54:00:00:00:21"

[update]
{update}
"#
        )
    }

    fn parse(update: &str) -> Result<Site, Vec<String>> {
        parse_site(&site(update), Path::new("site.toml"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn one_error(update: &str) -> String {
        let e = parse(update).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    }

    fn minimal() -> String {
        format!("url = \"http://192.0.2.250:8080/\"\npublic_key = \"{KEY}\"")
    }

    #[test]
    fn defaults_apply() {
        let s = parse(&minimal()).unwrap();
        let u = s.update.clone().unwrap();
        assert_eq!(u.url, "http://192.0.2.250:8080/");
        assert_eq!(u.public_key, KEY);
        assert_eq!(
            (u.interval_s, u.tries, u.bless_after_s, u.boot_deadline_s),
            (3600, 3, 30, 300)
        );
        assert_eq!(u.signing_key, None);
        assert_eq!(u.reboot, None);
        assert!(!u.allow_downgrade, "versions only go forward by default");
        assert_eq!(s.reboot_policy(Role::Lb), RebootPolicy::PeerHoldsVip);
        assert_eq!(s.reboot_policy(Role::Base), RebootPolicy::Immediately);
    }

    #[test]
    fn everything_set_is_kept() {
        let s = parse(&format!(
            "{}\nsigning_key = \"keys/update-key.pem\"\ninterval_s = 0\ntries = 9\nbless_after_s = 1\nboot_deadline_s = 2\nreboot = \"immediately\"\nallow_downgrade = true",
            minimal()
        ))
        .unwrap();
        let u = s.update.clone().unwrap();
        assert_eq!(
            u.signing_key.as_deref(),
            Some(Path::new("keys/update-key.pem"))
        );
        assert_eq!(
            (u.interval_s, u.tries, u.bless_after_s, u.boot_deadline_s),
            (0, 9, 1, 2)
        );
        assert!(u.allow_downgrade);
        assert_eq!(s.reboot_policy(Role::Lb), RebootPolicy::Immediately);
        let s = parse(&format!("{}\nreboot = \"peer-holds-vip\"", minimal())).unwrap();
        assert_eq!(s.reboot_policy(Role::Base), RebootPolicy::PeerHoldsVip);
    }

    #[test]
    fn no_update_section_means_none() {
        let text = site("").replace("[update]", "");
        let s = parse_site(&text, Path::new("site.toml")).unwrap();
        assert_eq!(s.update, None);
        assert_eq!(s.reboot_policy(Role::Lb), RebootPolicy::PeerHoldsVip);
    }

    #[test]
    fn good_urls_pass() {
        for url in [
            "http://192.0.2.250:8080/",
            "http://repo.example/",
            "http://repo.example/cairn/demo/",
            "http://[2001:db8::1]:8080/r/",
            "http://[2001:db8::1]/",
        ] {
            let u = minimal().replace("http://192.0.2.250:8080/", url);
            assert!(parse(&u).is_ok(), "{url}: {:?}", parse(&u));
        }
    }

    #[test]
    fn bad_urls_are_named() {
        for (url, why) in [
            ("https://192.0.2.250/", "must start with \"http://\""),
            ("192.0.2.250/", "must start with \"http://\""),
            ("http://192.0.2.250:8080", "needs a path ending in '/'"),
            ("http://192.0.2.250/repo", "must end in '/'"),
            ("http://192.0.2.250/a/../", "must not contain \"..\""),
            ("http://192.0.2.250/?x=1/", "no query"),
            ("http://a b/", "printable ASCII"),
            ("http://user@host/", "no query, fragment or user"),
            ("http:///", "has no host"),
            ("http://:80/", "has no host"),
            ("http://host:0/", "port \"0\" is not between 1 and 65535"),
            ("http://host:99999/", "port \"99999\""),
            ("http://host:/", "port \"\""),
            ("http://-host/", "not a host name"),
            ("http://[2001:db8::1/", "missing its ']'"),
            ("http://[zz::1]/", "not an IPv6 address"),
        ] {
            let e = one_error(&minimal().replace("http://192.0.2.250:8080/", url));
            assert!(
                e.starts_with("site.toml: field `update.url`: ") && e.contains(why),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn bad_public_keys_are_named() {
        for (key, why) in [
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "must start with \"ed25519:\"",
            ),
            ("ed25519:not base64!", "is not base64"),
            (
                "ed25519:AAECAw==",
                "holds 4 bytes, an Ed25519 public key has 32",
            ),
        ] {
            let e = one_error(&minimal().replace(KEY, key));
            assert!(
                e.starts_with("site.toml: field `update.public_key`: ") && e.contains(why),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn bad_numbers_are_named() {
        for (extra, field, why) in [
            ("tries = 0", "update.tries", "0 is not between 1 and 9"),
            ("tries = 10", "update.tries", "10 is not between 1 and 9"),
            (
                "interval_s = 5",
                "update.interval_s",
                "0 (only on request) or at least 10",
            ),
            (
                "bless_after_s = 0",
                "update.bless_after_s",
                "at least 1 second",
            ),
            (
                "bless_after_s = 300",
                "update.boot_deadline_s",
                "300 must be greater than bless_after_s (300)",
            ),
            (
                "boot_deadline_s = 10",
                "update.boot_deadline_s",
                "10 must be greater than bless_after_s (30)",
            ),
            ("signing_key = \"\"", "update.signing_key", "is empty"),
        ] {
            let e = one_error(&format!("{}\n{extra}", minimal()));
            assert!(
                e.starts_with(&format!("site.toml: field `{field}`: ")) && e.contains(why),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_enums_are_refused() {
        let e = one_error(&format!("{}\ntry = 3", minimal()));
        assert!(
            e.contains("field `update.try`") && e.contains("unknown field `try`"),
            "{e}"
        );
        let e = one_error(&format!("{}\nreboot = \"later\"", minimal()));
        assert!(
            e.contains("field `update.reboot`") && e.contains("later"),
            "{e}"
        );
        let e = one_error(&format!("{}\nallow_downgrade = \"yes\"", minimal()));
        assert!(
            e.contains("field `update.allow_downgrade`") && e.contains("a boolean"),
            "{e}"
        );
        let e = one_error("public_key = \"x\"");
        assert!(e.contains("missing field `url`"), "{e}");
    }

    #[test]
    fn image_version_uses_the_version_syntax() {
        let text = site(&minimal()).replace("[update]", "[image]\nversion = \"1.0+2\"\n\n[update]");
        let e = parse_site(&text, Path::new("site.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("site.toml: field `image.version`: version \"1.0+2\" contains '+'"),
            "{e}"
        );
        let text =
            site(&minimal()).replace("[update]", "[image]\nversion = \"2026.1~rc1\"\n\n[update]");
        assert_eq!(
            parse_site(&text, Path::new("site.toml"))
                .unwrap()
                .image
                .version,
            "2026.1~rc1"
        );
    }
}
